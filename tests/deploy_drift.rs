//! The deployment files under `deploy/` against the binary, without Kafka.
//!
//! The binary ignores environment variables it does not know, and
//! Prometheus answers a query for an unknown metric with nothing, so a
//! misspelt variable or a renamed metric in a manifest, a dashboard or an
//! alert would never show: the variable silently keeps its default, the
//! panel stays empty, the alert never fires. This test makes them fail:
//!
//! - every `.yaml`/`.yml`/`.json` file under `deploy/` parses (YAML: every
//!   document, merge keys applied);
//! - every variable set for an `event-poller` container (Kubernetes `env`,
//!   Compose `environment`, the Dockerfile's `ENV`) is one the binary reads
//!   (`settings::check_variable_name`), and their literal values together
//!   are valid settings (`Settings::from_vars`); a path value lies inside a
//!   mount of that container; `$(VAR)` references resolve;
//! - every `event_poller_*` name in a PromQL expression (dashboard targets
//!   and variables, alert rules) is a family the worker serves
//!   (`telemetry::metric_names`), a histogram only with `_bucket`, `_sum` or
//!   `_count`, and the labels the expression selects or groups by are
//!   labels those families carry (or Prometheus target labels); names in
//!   prose (descriptions) must exist too;
//! - the Kubernetes files agree with each other and with the settings:
//!   topics, state partitions and replicas, probes, the grace period
//!   against `KAFKA_COMMIT_TIMEOUT_MS`, the ServiceMonitor's port, and the
//!   instance files they mount validate like `event-poller validate`.
//!
//! It also checks that it is not vacuous: enough variables, metrics,
//! alerts and panels were found, and the StatefulSet sets `WORKER_ID` from
//! the pod name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use event_poller::javadate::Zone;
use event_poller::settings::{self, Settings};
use event_poller::telemetry::metric_names as names;
use serde::Deserialize;
use serde_json::Value;

/// Labels Prometheus itself puts on every scraped series.
const TARGET_LABELS: &[&str] = &[
    "instance",
    "job",
    "pod",
    "namespace",
    "service",
    "container",
    "endpoint",
];

/// After the commit timeout, a clean drain takes up to one abort call
/// (10 s), token rotations settling (10 s), leaving the group (5 s) and the
/// ops endpoint finishing (5 s); see deploy/k8s/statefulset.yaml.
const DRAIN_AFTER_COMMIT: Duration = Duration::from_secs(30);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy() -> PathBuf {
    root().join("deploy")
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

// --- Loading -------------------------------------------------------------

/// One parsed document of a deployment file.
struct Doc {
    file: PathBuf,
    value: Value,
}

impl Doc {
    fn name(&self) -> String {
        match (
            str_at(&self.value, &["kind"]),
            str_at(&self.value, &["metadata", "name"]),
        ) {
            (Some(kind), Some(name)) => format!("{} ({kind} {name})", relative(&self.file)),
            _ => relative(&self.file),
        }
    }

    fn kind(&self) -> &str {
        str_at(&self.value, &["kind"]).unwrap_or_default()
    }
}

/// Directories the repository ignores (downloaded jars, broker data):
/// build output, not deployment files.
fn ignored_dirs() -> Vec<PathBuf> {
    let gitignore = std::fs::read_to_string(root().join(".gitignore")).unwrap_or_default();
    gitignore
        .lines()
        .filter_map(|l| l.trim().strip_prefix("/deploy/"))
        .map(|d| deploy().join(d.trim_end_matches('/')))
        .collect()
}

fn files_under(dir: &Path, skip: &[PathBuf], out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            if !skip.contains(&path) {
                files_under(&path, skip, out);
            }
        } else {
            out.push(path);
        }
    }
}

fn deploy_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    files_under(&deploy(), &ignored_dirs(), &mut files);
    files.sort();
    files
}

fn parse_yaml(text: &str) -> Result<Vec<Value>, String> {
    let mut docs = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let mut value = serde_yaml_ng::Value::deserialize(document).map_err(|e| e.to_string())?;
        // One pass leaves the `<<` of a merged mapping in place (a merge
        // of a mapping that merges another), so merge until none is left.
        for _ in 0..16 {
            if !has_merge_key(&value) {
                break;
            }
            value.apply_merge().map_err(|e| e.to_string())?;
        }
        if value.is_null() {
            continue;
        }
        docs.push(serde_json::to_value(&value).map_err(|e| e.to_string())?);
    }
    Ok(docs)
}

fn has_merge_key(v: &serde_yaml_ng::Value) -> bool {
    match v {
        serde_yaml_ng::Value::Mapping(m) => m.contains_key("<<") || m.values().any(has_merge_key),
        serde_yaml_ng::Value::Sequence(s) => s.iter().any(has_merge_key),
        serde_yaml_ng::Value::Tagged(t) => has_merge_key(&t.value),
        _ => false,
    }
}

/// Every document of every YAML and JSON file under `deploy/`; fails
/// naming each file that does not parse.
fn load() -> Vec<Doc> {
    let mut docs = Vec::new();
    let mut failures = Vec::new();
    let mut parsed_files = 0;
    for file in deploy_files() {
        let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
        let parsed = match ext {
            "yaml" | "yml" => std::fs::read_to_string(&file)
                .map_err(|e| e.to_string())
                .and_then(|t| parse_yaml(&t)),
            "json" => std::fs::read_to_string(&file)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
                .map(|v| vec![v]),
            _ => continue,
        };
        match parsed {
            Ok(values) => {
                parsed_files += 1;
                docs.extend(values.into_iter().map(|value| Doc {
                    file: file.clone(),
                    value,
                }));
            }
            Err(e) => failures.push(format!("{}: {e}", relative(&file))),
        }
    }
    assert!(
        failures.is_empty(),
        "deployment files that do not parse:\n{}",
        failures.join("\n")
    );
    // The Dockerfile's directory, compose, k8s, grafana, prometheus and the
    // examples: far fewer would mean the walk missed them.
    assert!(parsed_files >= 12, "only {parsed_files} files parsed");
    docs
}

// --- JSON helpers --------------------------------------------------------

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, key| v.get(key))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

fn array_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// A scalar as the environment would see it.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Calls `f` on every value inside `v` with the key it is under.
fn walk<'a>(v: &'a Value, key: Option<&'a str>, f: &mut impl FnMut(Option<&'a str>, &'a Value)) {
    f(key, v);
    match v {
        Value::Object(map) => map.iter().for_each(|(k, v)| walk(v, Some(k), f)),
        Value::Array(items) => items.iter().for_each(|v| walk(v, key, f)),
        _ => {}
    }
}

// --- Containers ----------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Program {
    Poller,
    Sandbox,
    Other,
}

/// A mount: where it appears in the container, and the file names it
/// holds when the volume lists them.
#[derive(Debug, Clone)]
struct Mount {
    target: String,
    items: Option<Vec<String>>,
    /// The ConfigMap behind it, if any.
    config_map: Option<String>,
    /// The host directory behind it (Compose bind mounts).
    host: Option<PathBuf>,
}

#[derive(Debug, Clone)]
struct Container {
    origin: String,
    program: Program,
    /// In order; `None` for values taken from elsewhere (`valueFrom`).
    env: Vec<(String, Option<String>)>,
    /// `None`: not known (the Dockerfile's image, mounted by others).
    mounts: Option<Vec<Mount>>,
    args: Vec<String>,
    /// How long a stop waits before killing (Compose `stop_grace_period`).
    stop_grace: Option<String>,
}

impl Container {
    fn var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// The settings its literal values make (secret files are not read:
    /// they exist only where it runs).
    fn settings(&self) -> Result<Settings, String> {
        let literal = self
            .env
            .iter()
            .filter(|(n, _)| !n.ends_with("_FILE"))
            .filter_map(|(n, v)| Some((n.clone(), v.clone()?)));
        Settings::from_vars(literal).map_err(|e| e.to_string())
    }

    fn mount_of(&self, path: &str) -> Option<(&Mount, String)> {
        self.mounts.as_ref()?.iter().find_map(|m| {
            let rest = path.strip_prefix(m.target.trim_end_matches('/'))?;
            (rest.is_empty() || rest.starts_with('/'))
                .then(|| (m, rest.trim_start_matches('/').to_string()))
        })
    }
}

/// `rest` inside `dir`; `dir` itself when empty (a joined "" would add a
/// trailing slash, which a file does not have).
fn under(dir: &Path, rest: &str) -> PathBuf {
    if rest.is_empty() {
        dir.to_path_buf()
    } else {
        dir.join(rest)
    }
}

fn program_of(image: Option<&str>, entrypoint: Option<&str>, ours: bool) -> Program {
    let entry = entrypoint.unwrap_or_default();
    if entry.ends_with("keap-sandbox") {
        return Program::Sandbox;
    }
    let image_name = image
        .unwrap_or_default()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .split([':', '@'])
        .next()
        .unwrap_or_default();
    if (ours || image_name == "event-poller")
        && (entry.is_empty() || entry.ends_with("event-poller"))
    {
        Program::Poller
    } else {
        Program::Other
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        Some(Value::Array(items)) => items.iter().filter_map(scalar).collect(),
        _ => Vec::new(),
    }
}

/// Containers of every Kubernetes pod template (any object with
/// `containers`, so Deployments, Jobs and CronJobs count too).
fn k8s_containers(doc: &Doc, out: &mut Vec<Container>) {
    if doc.value.get("apiVersion").is_none() {
        return;
    }
    walk(&doc.value, None, &mut |_, pod| {
        let Some(containers) = pod.get("containers").and_then(Value::as_array) else {
            return;
        };
        let volumes: BTreeMap<&str, &Value> = array_at(pod, &["volumes"])
            .iter()
            .filter_map(|v| Some((v.get("name")?.as_str()?, v)))
            .collect();
        let init = array_at(pod, &["initContainers"]);
        for c in containers.iter().chain(init) {
            let command = strings(c.get("command"));
            let env = array_at(c, &["env"])
                .iter()
                .map(|e| {
                    let name = str_at(e, &["name"]).unwrap_or_default().to_string();
                    (name, e.get("value").and_then(scalar))
                })
                .collect();
            let mounts = array_at(c, &["volumeMounts"])
                .iter()
                .map(|m| {
                    let volume = str_at(m, &["name"]).and_then(|n| volumes.get(n));
                    let source = volume.and_then(|v| v.get("secret").or(v.get("configMap")));
                    let items = source
                        .and_then(|s| s.get("items"))
                        .and_then(Value::as_array)
                        .map(|items| {
                            items
                                .iter()
                                .filter_map(|i| str_at(i, &["path"]).map(str::to_string))
                                .collect()
                        });
                    Mount {
                        target: str_at(m, &["mountPath"]).unwrap_or_default().to_string(),
                        items,
                        config_map: volume
                            .and_then(|v| str_at(v, &["configMap", "name"]))
                            .map(str::to_string),
                        host: None,
                    }
                })
                .collect();
            out.push(Container {
                origin: format!(
                    "{}, container {}",
                    doc.name(),
                    str_at(c, &["name"]).unwrap_or("?")
                ),
                program: program_of(
                    str_at(c, &["image"]),
                    command.first().map(String::as_str),
                    false,
                ),
                env,
                mounts: Some(mounts),
                args: command.into_iter().chain(strings(c.get("args"))).collect(),
                stop_grace: None,
            });
        }
    });
}

/// Services of a Compose file.
fn compose_containers(doc: &Doc, out: &mut Vec<Container>) {
    let Some(services) = doc.value.get("services").and_then(Value::as_object) else {
        return;
    };
    let dir = doc.file.parent().unwrap_or(Path::new("."));
    for (name, s) in services {
        let dockerfile = str_at(s, &["build", "dockerfile"]).unwrap_or_default();
        let ours = dockerfile.ends_with("deploy/Dockerfile");
        let entrypoint = strings(s.get("entrypoint"));
        let env = match s.get("environment") {
            Some(Value::Object(map)) => map.iter().map(|(k, v)| (k.clone(), scalar(v))).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (kv.to_string(), None),
                })
                .collect(),
            _ => Vec::new(),
        };
        let mut mounts: Vec<Mount> = array_at(s, &["volumes"])
            .iter()
            .filter_map(|v| match v {
                Value::String(short) => {
                    let mut parts = short.split(':');
                    let source = parts.next()?;
                    let target = parts.next()?;
                    Some((source.to_string(), target.to_string()))
                }
                _ => Some((
                    str_at(v, &["source"])?.to_string(),
                    str_at(v, &["target"])?.to_string(),
                )),
            })
            .map(|(source, target)| Mount {
                host: (source.starts_with('.') || source.starts_with('/'))
                    .then(|| dir.join(&source)),
                target,
                items: None,
                config_map: None,
            })
            .collect();
        mounts.extend(array_at(s, &["secrets"]).iter().filter_map(|secret| {
            let (source, target) = match secret {
                Value::String(n) => (n.as_str(), None),
                _ => (str_at(secret, &["source"])?, str_at(secret, &["target"])),
            };
            let target = match target {
                Some(t) if t.starts_with('/') => t.to_string(),
                Some(t) => format!("/run/secrets/{t}"),
                None => format!("/run/secrets/{source}"),
            };
            Some(Mount {
                target,
                items: None,
                config_map: None,
                host: None,
            })
        }));
        out.push(Container {
            origin: format!("{}, service {name}", relative(&doc.file)),
            program: program_of(
                str_at(s, &["image"]),
                entrypoint.first().map(String::as_str),
                ours,
            ),
            env,
            mounts: Some(mounts),
            args: entrypoint
                .into_iter()
                .chain(strings(s.get("command")))
                .collect(),
            stop_grace: str_at(s, &["stop_grace_period"]).map(str::to_string),
        });
    }
}

/// `ENV` of deploy/Dockerfile (both `ENV K=V K2=V2` and `ENV K V`).
fn dockerfile_container() -> Container {
    let path = deploy().join("Dockerfile");
    let text = std::fs::read_to_string(&path).expect("deploy/Dockerfile");
    let joined = text.replace("\\\n", " ");
    let mut env = Vec::new();
    for line in joined.lines() {
        let mut words = line.split_whitespace();
        if !words.next().is_some_and(|w| w.eq_ignore_ascii_case("ENV")) {
            continue;
        }
        let words: Vec<&str> = words.collect();
        if words.first().is_some_and(|w| !w.contains('=')) {
            env.push((words[0].to_string(), Some(words[1..].join(" "))));
            continue;
        }
        for kv in words {
            let (k, v) = kv.split_once('=').expect("ENV K=V");
            env.push((k.to_string(), Some(v.trim_matches('"').to_string())));
        }
    }
    Container {
        origin: relative(&path),
        program: Program::Poller,
        env,
        mounts: None,
        args: Vec::new(),
        stop_grace: None,
    }
}

fn containers(docs: &[Doc]) -> Vec<Container> {
    let mut out = vec![dockerfile_container()];
    for doc in docs {
        k8s_containers(doc, &mut out);
        compose_containers(doc, &mut out);
    }
    out
}

/// Kubernetes' `$(VAR)` references in a string.
fn references(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("$(") {
        let after = &rest[start + 2..];
        let Some(end) = after.find(')') else { break };
        found.push(&after[..end]);
        rest = &after[end..];
    }
    found
}

fn check_container(c: &Container, problems: &mut Vec<String>) {
    match c.program {
        Program::Other => {}
        Program::Sandbox => {
            // keap-sandbox reads its own variables, which this test cannot
            // list; its flags are visible in the file instead.
            if !c.env.is_empty() {
                problems.push(format!(
                    "{}: configure keap-sandbox with flags, not environment variables",
                    c.origin
                ));
            }
        }
        Program::Poller => {
            let mut defined = BTreeSet::new();
            for (name, value) in &c.env {
                if let Err(e) = settings::check_variable_name(name) {
                    problems.push(format!("{}: {e}", c.origin));
                }
                for reference in value.iter().flat_map(|v| references(v)) {
                    if !defined.contains(reference) {
                        problems.push(format!(
                            "{}: {name} refers to $({reference}), not defined before it",
                            c.origin
                        ));
                    }
                }
                defined.insert(name.as_str());
                let Some(value) = value else { continue };
                if value.starts_with('/') && c.mounts.is_some() {
                    match c.mount_of(value) {
                        None => problems.push(format!(
                            "{}: {name}={value} is not inside any mount of the container",
                            c.origin
                        )),
                        Some((mount, rest)) => {
                            if let Some(items) = &mount.items
                                && !rest.is_empty()
                                && !items.contains(&rest)
                            {
                                problems.push(format!(
                                    "{}: {name}={value}: the volume at {} holds only {items:?}",
                                    c.origin, mount.target
                                ));
                            }
                            if let Some(host) = &mount.host
                                && !under(host, &rest).exists()
                            {
                                problems.push(format!(
                                    "{}: {name}={value}: {} does not exist",
                                    c.origin,
                                    relative(&under(host, &rest))
                                ));
                            }
                        }
                    }
                }
            }
            for reference in c.args.iter().flat_map(|a| references(a)) {
                if !defined.contains(reference) {
                    problems.push(format!(
                        "{}: an argument refers to $({reference}), not in env",
                        c.origin
                    ));
                }
            }
            if let Err(e) = c.settings() {
                problems.push(format!("{}: invalid settings: {e}", c.origin));
            }
        }
    }
}

// --- PromQL --------------------------------------------------------------

/// A metric name found in an expression, with the labels its selector
/// names.
struct MetricRef {
    name: String,
    selector_labels: Vec<String>,
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Metric names (`event_poller_…`) of a PromQL expression with the label
/// names of their `{…}` selectors, and the labels of every `by`,
/// `without`, `on`, `ignoring`, `group_left` and `group_right` list.
fn scan_promql(expr: &str) -> (Vec<MetricRef>, Vec<String>) {
    let chars: Vec<char> = expr.chars().collect();
    let mut metrics = Vec::new();
    let mut grouping = Vec::new();
    let mut i = 0;
    let mut quoted: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quoted {
            if c == '\\' {
                i += 1;
            } else if c == q {
                quoted = None;
            }
            i += 1;
            continue;
        }
        if c == '"' || c == '\'' || c == '`' {
            quoted = Some(c);
            i += 1;
            continue;
        }
        if !is_ident(c) || (i > 0 && is_ident(chars[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && is_ident(chars[i]) {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let mut j = i;
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        let opens = chars.get(j).copied();
        if word.starts_with("event_poller_") {
            let mut labels = Vec::new();
            if opens == Some('{') {
                let (inside, end) = until_close(&chars, j + 1, '}');
                labels = label_names_of_matchers(&inside);
                i = end;
            }
            metrics.push(MetricRef {
                name: word,
                selector_labels: labels,
            });
        } else if matches!(
            word.as_str(),
            "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
        ) && opens == Some('(')
        {
            let (inside, end) = until_close(&chars, j + 1, ')');
            grouping.extend(
                inside
                    .split(',')
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty()),
            );
            i = end;
        }
    }
    (metrics, grouping)
}

/// `event_poller_…` words of prose (where quotes are apostrophes).
fn names_in_text(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("event_poller_") {
        let before = rest[..start].chars().next_back();
        let tail = &rest[start..];
        let end = tail.find(|c: char| !is_ident(c)).unwrap_or(tail.len());
        if !before.is_some_and(is_ident) {
            found.push(&tail[..end]);
        }
        rest = &tail[end..];
    }
    found
}

/// The text from `from` to the closing `close` (quotes respected), and the
/// index after it.
fn until_close(chars: &[char], from: usize, close: char) -> (String, usize) {
    let mut quoted: Option<char> = None;
    let mut i = from;
    while i < chars.len() {
        let c = chars[i];
        match quoted {
            Some(_) if c == '\\' => i += 1,
            Some(q) if c == q => quoted = None,
            Some(_) => {}
            None if c == '"' || c == '\'' || c == '`' => quoted = Some(c),
            None if c == close => return (chars[from..i].iter().collect(), i + 1),
            None => {}
        }
        i += 1;
    }
    (chars[from..].iter().collect(), chars.len())
}

/// `a="x", b=~"y"` → `[a, b]`.
fn label_names_of_matchers(inside: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut quoted: Option<char> = None;
    let mut current = String::new();
    let mut in_name = true;
    let mut escaped = false;
    for c in inside.chars() {
        if let Some(q) = quoted {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quoted = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => quoted = Some(c),
            ',' => {
                in_name = true;
                current.clear();
            }
            '=' | '!' | '~' if in_name => {
                if !current.trim().is_empty() {
                    names.push(current.trim().to_string());
                }
                in_name = false;
            }
            _ if in_name => current.push(c),
            _ => {}
        }
    }
    names
}

/// The family a series name belongs to, and whether the name is one that
/// is served (a histogram's own name is not: only its three series are).
fn family_of(name: &str) -> Option<(&'static str, bool)> {
    if let Some(f) = names::ALL.iter().find(|f| **f == name) {
        return Some((f, !names::HISTOGRAMS.contains(f)));
    }
    names::HISTOGRAMS.iter().find_map(|h| {
        ["_bucket", "_sum", "_count"]
            .iter()
            .any(|s| name.strip_suffix(s) == Some(*h))
            .then_some((*h, true))
    })
}

fn labels_of(family: &str) -> &'static [&'static str] {
    names::LABELS
        .iter()
        .find(|(n, _)| *n == family)
        .map(|(_, l)| *l)
        .unwrap_or_default()
}

/// Checks one expression; returns the families it uses.
fn check_expr(origin: &str, expr: &str, problems: &mut Vec<String>) -> BTreeSet<&'static str> {
    let (metrics, grouping) = scan_promql(expr);
    let mut families = BTreeSet::new();
    let mut allowed: BTreeSet<&str> = TARGET_LABELS.iter().copied().collect();
    for m in &metrics {
        let Some((family, served)) = family_of(&m.name) else {
            problems.push(format!(
                "{origin}: {} is not a metric the worker serves",
                m.name
            ));
            continue;
        };
        if !served {
            problems.push(format!(
                "{origin}: {} is a histogram: query {0}_bucket, {0}_sum or {0}_count",
                m.name
            ));
        }
        families.insert(family);
        let own = labels_of(family);
        allowed.extend(own);
        let bucket = m.name.ends_with("_bucket");
        if bucket {
            allowed.insert("le");
        }
        for label in &m.selector_labels {
            let known = own.contains(&label.as_str())
                || TARGET_LABELS.contains(&label.as_str())
                || (bucket && label == "le");
            if !known {
                problems.push(format!(
                    "{origin}: {} has no label {label} (it has {own:?})",
                    m.name
                ));
            }
        }
    }
    for label in &grouping {
        if !allowed.contains(label.as_str()) {
            problems.push(format!(
                "{origin}: groups by {label}, which none of {families:?} has"
            ));
        }
    }
    families
}

// --- The test ------------------------------------------------------------

#[test]
fn deployment_files_use_only_what_the_binary_reads_and_serves() {
    let docs = load();
    let mut problems = Vec::new();

    // Environment.
    let all = containers(&docs);
    let pollers: Vec<&Container> = all
        .iter()
        .filter(|c| c.program == Program::Poller)
        .collect();
    for c in &all {
        check_container(c, &mut problems);
    }
    let variables: BTreeSet<&str> = pollers
        .iter()
        .flat_map(|c| c.env.iter().map(|(n, _)| n.as_str()))
        .collect();
    assert!(
        pollers.len() >= 4,
        "event-poller containers found: {:?}",
        pollers.iter().map(|c| &c.origin).collect::<Vec<_>>()
    );
    assert!(
        variables.len() >= 15,
        "only {} variables found: {variables:?}",
        variables.len()
    );

    // Metrics in expressions, and in any other text.
    let mut used = BTreeSet::new();
    let (mut alerts, mut targets) = (0, 0);
    for doc in &docs {
        let origin = doc.name();
        walk(&doc.value, None, &mut |key, v| {
            let Some(text) = v.as_str() else { return };
            let expression = match key {
                Some("expr") => true,
                // Dashboard variables: `definition` and `query` (a string,
                // or an object holding `query`).
                Some("definition" | "query") => text.contains("event_poller_"),
                _ => false,
            };
            if expression {
                let found = check_expr(&origin, text, &mut problems);
                if found.is_empty() {
                    problems.push(format!("{origin}: expression without a metric: {text}"));
                }
                used.extend(found);
            } else {
                for name in names_in_text(text) {
                    if family_of(name).is_none() {
                        problems.push(format!("{origin}: mentions {name}, not served"));
                    }
                }
            }
        });
        if doc.kind() == "PrometheusRule" {
            for group in array_at(&doc.value, &["spec", "groups"]) {
                alerts += array_at(group, &["rules"])
                    .iter()
                    .filter(|r| r.get("alert").is_some() && r.get("expr").is_some())
                    .count();
            }
        }
        walk(&doc.value, None, &mut |key, v| {
            if key == Some("targets") && v.get("expr").is_some() {
                targets += 1;
            }
        });
    }
    assert!(
        used.len() >= 12,
        "only {} metrics used: {used:?}",
        used.len()
    );
    assert!(alerts >= 6, "only {alerts} alerts found");
    assert!(targets >= 10, "only {targets} dashboard targets found");

    problems.extend(k8s_consistency(&docs, &all));
    problems.extend(compose_consistency(&pollers));
    problems.extend(instances_validate(&docs, &all));

    assert!(
        problems.is_empty(),
        "deployment files drifted from the binary:\n{}",
        problems.join("\n")
    );
}

/// The Kubernetes manifests agree with each other and with the settings.
fn k8s_consistency(docs: &[Doc], all: &[Container]) -> Vec<String> {
    let mut problems = Vec::new();
    let sets: Vec<&Doc> = docs.iter().filter(|d| d.kind() == "StatefulSet").collect();
    assert_eq!(sets.len(), 1, "one StatefulSet expected");
    let set = sets[0];
    let container = all
        .iter()
        .find(|c| c.program == Program::Poller && c.origin.starts_with(&set.name()))
        .expect("the StatefulSet runs event-poller");
    let spec = at(&set.value, &["spec", "template", "spec"]).expect("a pod template");

    // WORKER_ID must be the pod's name: the static member id.
    let pod_container = array_at(spec, &["containers"])
        .iter()
        .find(|c| {
            array_at(c, &["env"])
                .iter()
                .any(|e| e["name"] == "WORKER_ID")
        })
        .expect("the StatefulSet sets WORKER_ID");
    let worker_id = array_at(pod_container, &["env"])
        .iter()
        .find(|e| e["name"] == "WORKER_ID")
        .expect("WORKER_ID");
    assert_eq!(
        str_at(worker_id, &["valueFrom", "fieldRef", "fieldPath"]),
        Some("metadata.name"),
        "WORKER_ID comes from the pod name"
    );

    let Ok(settings) = container.settings() else {
        return problems; // reported by check_container
    };

    // Topics.
    let topics: BTreeMap<String, &Value> = docs
        .iter()
        .filter(|d| d.kind() == "KafkaTopic")
        .filter_map(|d| {
            let name = str_at(&d.value, &["spec", "topicName"])
                .or(str_at(&d.value, &["metadata", "name"]))?;
            Some((name.to_string(), at(&d.value, &["spec"])?))
        })
        .collect();
    for topic in [
        &settings.events_topic,
        &settings.state_topic,
        &settings.dlq_topic,
    ] {
        if !topics.contains_key(topic) {
            problems.push(format!(
                "{}: no KafkaTopic for {topic} (have {:?})",
                container.origin,
                topics.keys().collect::<Vec<_>>()
            ));
        }
    }
    if let Some(state) = topics.get(&settings.state_topic) {
        let policy = str_at(state, &["config", "cleanup.policy"]).unwrap_or("delete");
        if !policy.split(',').any(|p| p.trim() == "compact") {
            problems.push(format!(
                "KafkaTopic {}: cleanup.policy={policy}, must be compact",
                settings.state_topic
            ));
        }
        let partitions = at(state, &["partitions"]).and_then(Value::as_i64);
        if partitions != Some(i64::from(settings.topic_partitions)) {
            problems.push(format!(
                "KafkaTopic {}: {partitions:?} partitions, TOPIC_PARTITIONS says {}",
                settings.state_topic, settings.topic_partitions
            ));
        }
        let replicas = at(&set.value, &["spec", "replicas"])
            .and_then(Value::as_i64)
            .unwrap_or(1);
        if partitions.is_some_and(|p| replicas > p) {
            problems.push(format!(
                "{}: {replicas} replicas but {partitions:?} state partitions: the extra workers would own nothing",
                set.name()
            ));
        }
    }

    // Probes and ports.
    let ops_port = i64::from(settings.ops_listen.port());
    let ports: BTreeMap<&str, i64> = array_at(pod_container, &["ports"])
        .iter()
        .filter_map(|p| Some((str_at(p, &["name"])?, at(p, &["containerPort"])?.as_i64()?)))
        .collect();
    let resolve = |port: &Value| match port {
        Value::String(name) => ports.get(name.as_str()).copied(),
        other => other.as_i64(),
    };
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = at(pod_container, &[probe, "httpGet"]);
        let (p, port) = (
            get.and_then(|g| str_at(g, &["path"])),
            get.and_then(|g| g.get("port")).and_then(resolve),
        );
        if p != Some(path) || port != Some(ops_port) {
            problems.push(format!(
                "{}: {probe} asks {p:?} on port {port:?}, the worker serves {path} on {ops_port}",
                set.name()
            ));
        }
    }

    // Grace period against the commit timeout.
    let grace = at(spec, &["terminationGracePeriodSeconds"])
        .and_then(Value::as_u64)
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(30));
    let needed = settings.kafka_commit_timeout_ms + DRAIN_AFTER_COMMIT;
    if grace < needed {
        problems.push(format!(
            "{}: terminationGracePeriodSeconds {grace:?} < KAFKA_COMMIT_TIMEOUT_MS + the rest of the drain ({needed:?})",
            set.name()
        ));
    }

    // The ServiceMonitor's port belongs to a Service it selects.
    for monitor in docs.iter().filter(|d| d.kind() == "ServiceMonitor") {
        let selector = at(&monitor.value, &["spec", "selector", "matchLabels"])
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let services: Vec<&Doc> = docs
            .iter()
            .filter(|d| d.kind() == "Service")
            .filter(|d| {
                let labels = at(&d.value, &["metadata", "labels"]);
                selector
                    .iter()
                    .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
            })
            .collect();
        if services.is_empty() {
            problems.push(format!("{}: selects no Service", monitor.name()));
        }
        for endpoint in array_at(&monitor.value, &["spec", "endpoints"]) {
            let port = str_at(endpoint, &["port"]);
            let found = services.iter().any(|s| {
                array_at(&s.value, &["spec", "ports"]).iter().any(|p| {
                    str_at(p, &["name"]) == port
                        && p.get("targetPort").and_then(resolve) == Some(ops_port)
                })
            });
            if !found {
                problems.push(format!(
                    "{}: port {port:?} is no port of its Services leading to the ops port {ops_port}",
                    monitor.name()
                ));
            }
        }
    }
    problems
}

/// `90s`, `1m30s`, `2m`: the Compose durations the files use.
fn compose_duration(text: &str) -> Option<Duration> {
    let mut total = 0;
    let mut number = String::new();
    for c in text.chars() {
        match c {
            '0'..='9' => number.push(c),
            'h' | 'm' | 's' => {
                let n: u64 = number.parse().ok()?;
                total += n * match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                number.clear();
            }
            _ => return None,
        }
    }
    number.is_empty().then(|| Duration::from_secs(total))
}

/// Two workers in one group, each with its own identity, each given the
/// time its drain needs.
fn compose_consistency(pollers: &[&Container]) -> Vec<String> {
    let mut problems = Vec::new();
    for c in pollers
        .iter()
        .filter(|c| c.origin.contains("docker-compose"))
    {
        let Ok(settings) = c.settings() else { continue };
        let needed = settings.kafka_commit_timeout_ms + DRAIN_AFTER_COMMIT;
        // Compose's default is 10 s.
        let grace = c
            .stop_grace
            .as_deref()
            .map_or(Some(Duration::from_secs(10)), compose_duration);
        if grace.is_none_or(|g| g < needed) {
            problems.push(format!(
                "{}: stop_grace_period {:?} < KAFKA_COMMIT_TIMEOUT_MS + the rest of the drain ({needed:?})",
                c.origin, c.stop_grace
            ));
        }
    }
    let workers: Vec<&&Container> = pollers
        .iter()
        .filter(|c| c.origin.contains("docker-compose"))
        .collect();
    let ids: BTreeSet<Option<&str>> = workers.iter().map(|c| c.var("WORKER_ID")).collect();
    let groups: BTreeSet<Option<&str>> = workers.iter().map(|c| c.var("WORKER_GROUP_ID")).collect();
    if workers.len() < 2 || ids.len() != workers.len() || ids.contains(&None) || groups.len() != 1 {
        problems.push(format!(
            "docker-compose: expected two or more workers with distinct WORKER_IDs in one group, found ids {ids:?}, groups {groups:?}"
        ));
    }
    problems
}

/// Every instance file the deployment ships validates like
/// `event-poller validate`: the Compose instance directories, the
/// ConfigMaps mounted at INSTANCES_PATH, and any JSON file shaped like an
/// instance.
fn instances_validate(docs: &[Doc], all: &[Container]) -> Vec<String> {
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let mut files: BTreeSet<PathBuf> = docs
        .iter()
        .filter(|d| d.value.get("element").is_some() && d.value.get("configuration").is_some())
        .map(|d| d.file.clone())
        .collect();
    let mut problems = Vec::new();
    for c in all.iter().filter(|c| c.program == Program::Poller) {
        let Some(path) = c.var("INSTANCES_PATH") else {
            continue;
        };
        let Some((mount, rest)) = c.mount_of(path) else {
            continue;
        };
        if let Some(host) = &mount.host {
            let dir = under(host, &rest);
            let mut any = dir.is_file();
            if any {
                files.insert(dir.clone());
            }
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if entry.path().extension().is_some_and(|e| e == "json") {
                    files.insert(entry.path());
                    any = true;
                }
            }
            if !any {
                problems.push(format!(
                    "{}: no instance file in {}",
                    c.origin,
                    relative(&dir)
                ));
            }
        }
        if let Some(name) = &mount.config_map {
            let map = docs.iter().find(|d| {
                d.kind() == "ConfigMap" && str_at(&d.value, &["metadata", "name"]) == Some(name)
            });
            let Some(map) = map else {
                problems.push(format!("{}: ConfigMap {name} is not in deploy/", c.origin));
                continue;
            };
            let data = at(&map.value, &["data"]).and_then(Value::as_object);
            let mut any = false;
            for (key, text) in data.into_iter().flatten() {
                if key.ends_with(".json")
                    && let Some(text) = text.as_str()
                {
                    let file = scratch.path().join(format!("{name}-{key}"));
                    std::fs::write(&file, text).expect("write an instance");
                    files.insert(file);
                    any = true;
                }
            }
            if !any {
                problems.push(format!("{}: ConfigMap {name} holds no *.json", map.name()));
            }
        }
    }
    // The examples (which Compose mounts) and the ConfigMap.
    assert!(files.len() >= 2, "instance files found: {files:?}");
    // One at a time: each deployment is its own, so one instance name in
    // two of them is no conflict.
    for file in files {
        let mut out = Vec::new();
        let ok =
            event_poller::validate::run(std::slice::from_ref(&file), None, &Zone::Utc, &mut out)
                .expect("validate");
        if !ok {
            problems.push(format!(
                "{} does not validate:\n{}",
                relative(&file),
                String::from_utf8_lossy(&out)
            ));
        }
    }
    problems
}

// --- The scanners themselves ---------------------------------------------

#[test]
fn promql_scanning_finds_names_selectors_and_groupings() {
    let (metrics, grouping) = scan_promql(
        r#"histogram_quantile(0.99, sum by (le, job) (rate(event_poller_poll_duration_seconds_bucket{job=~"a,b}", le!="1"}[5m])))
           / on (instance) group_left event_poller_ready and ignoring(x) event_poller_nope"#,
    );
    let found: Vec<(&str, Vec<&str>)> = metrics
        .iter()
        .map(|m| {
            (
                m.name.as_str(),
                m.selector_labels.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (
                "event_poller_poll_duration_seconds_bucket",
                vec!["job", "le"]
            ),
            ("event_poller_ready", vec![]),
            ("event_poller_nope", vec![]),
        ]
    );
    assert_eq!(grouping, ["le", "job", "instance", "x"]);

    let mut problems = Vec::new();
    check_expr(
        "t",
        r#"sum by (outcome) (rate(event_poller_polls_total{result="x"}[5m])) + event_poller_commit_duration_seconds + event_poller_polls"#,
        &mut problems,
    );
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems[0].contains("event_poller_polls_total has no label result"));
    assert!(problems[1].contains("is a histogram"));
    assert!(problems[2].contains("event_poller_polls is not a metric"));
}

#[test]
fn variables_outside_the_settings_are_caught() {
    let c = Container {
        origin: "t".into(),
        program: Program::Poller,
        env: vec![
            ("KAFKA_BOOTSTRAP_SERVER".into(), Some("k:9092".into())),
            ("WORKER_ID".into(), None),
            ("LOG_LEVEL".into(), Some("$(WORKER_ID)".into())),
            ("KAFKA_PROPERTY_SASL_JAAS_CONFIG".into(), Some("x".into())),
            (
                "STATE_ENCRYPTION_KEY_FILE".into(),
                Some("/nowhere/key".into()),
            ),
        ],
        mounts: Some(vec![]),
        args: vec!["$(UNDEFINED)".into()],
        stop_grace: None,
    };
    let mut problems = Vec::new();
    check_container(&c, &mut problems);
    let text = problems.join("\n");
    for expected in [
        "KAFKA_BOOTSTRAP_SERVER: not a variable",
        "KAFKA_PROPERTY_SASL_JAAS_CONFIG",
        "/nowhere/key is not inside any mount",
        "$(UNDEFINED)",
    ] {
        assert!(text.contains(expected), "{expected} missing in\n{text}");
    }
    assert!(!text.contains("$(WORKER_ID)"), "{text}");
}
