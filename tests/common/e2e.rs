//! End-to-end harness: a sandbox in this process (real HTTP on a free
//! port), instance files in a temporary directory, and the real
//! `event-poller run` binary as a child process with its own topics.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keap_sandbox::{SandboxConfig, Secret};
use serde_json::{Value, json};

use super::{bootstrap, unique};

/// A demo-style key for tests only.
pub const TEST_KEY: &str = "ZGVtby1rZXktZGVtby1rZXktZGVtby1rZXktMDAwMDA=";

/// Topics and group of one test, unique per run.
pub struct Names {
    pub events: String,
    pub dlq: String,
    pub state: String,
    pub group: String,
}

impl Names {
    pub fn new() -> Self {
        let base = unique("e2e");
        Self {
            events: format!("{base}.events"),
            dlq: format!("{base}.dlq"),
            state: format!("{base}.state"),
            group: format!("{base}.workers"),
        }
    }
}

/// A sandbox whose Keap API wants OAuth, with the client and the one-time
/// authorization code that [`instance`] documents carry.
pub fn oauth_sandbox() -> SandboxConfig {
    SandboxConfig {
        client_id: Some("test-client".into()),
        client_secret: Some(Secret::new("test-secret")),
        authorization_codes: vec!["test-code".into()],
        ..SandboxConfig::default()
    }
}

/// The seed's instance, pointed at `base_url`, polling every
/// `interval_secs`; `config` entries are merged into `configuration`.
pub fn instance(name: &str, base_url: &str, interval_secs: u64, config: Value) -> Value {
    let mut v = json!({
        "element": {"key": "infusionsoftecommerce"},
        "providerData": {"code": "test-code"},
        "configuration": {
            "base.url": base_url,
            "oauth.callback.url": "https://example.test/callback",
            "oauth.api.key": "test-client",
            "oauth.api.secret": "test-secret",
            "event.notification.enabled": "true",
            "event.notification.callback.url": "https://example.test/events",
            "event.poller.refresh_interval_seconds": interval_secs.to_string(),
            "event.poller.configuration": {
                "orders": {
                    "url": "/hubs/ecommerce/orders?where=since='${date:yyyy-MM-dd'T'HH:mm:ssXXX}' ",
                    "idField": "id",
                    "datesConfiguration": {
                        "updatedAtField": "modification_date",
                        "updatedAtFormat": "yyyy-MM-dd'T'HH:mm:ssXXX",
                        "createdAtField": "creation_date",
                        "createdAtFormat": "yyyy-MM-dd'T'HH:mm:ssXXX"
                    }
                }
            }
        },
        "tags": [""],
        "name": name
    });
    if let (Some(cfg), Value::Object(extra)) = (v["configuration"].as_object_mut(), config) {
        for (k, x) in extra {
            cfg.insert(k, x);
        }
    }
    v
}

/// A directory of instance files.
pub struct Instances {
    pub dir: tempfile::TempDir,
}

impl Instances {
    pub fn new(files: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write instance");
        }
        Self { dir }
    }
}

/// A running `event-poller run`; killed on drop.
pub struct Poller {
    child: Child,
    pub log: PathBuf,
}

pub fn spawn_poller(names: &Names, instances: &Instances, extra_env: &[(&str, &str)]) -> Poller {
    let log = instances
        .dir
        .path()
        .join(format!("poller-{}.log", unique("run")));
    let file = std::fs::File::create(&log).expect("log file");
    let mut cmd = command(names, instances);
    cmd.arg("run")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(file));
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn event-poller");
    Poller { child, log }
}

/// `event-poller` with the environment of [`spawn_poller`]'s workers (the
/// same topics, group, instances and key), for its other commands.
pub fn command(names: &Names, instances: &Instances) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_event-poller"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap())
        .env("EVENTS_TOPIC", &names.events)
        .env("DLQ_TOPIC", &names.dlq)
        .env("STATE_TOPIC", &names.state)
        .env("WORKER_GROUP_ID", &names.group)
        .env("TOPIC_PARTITIONS", "3")
        .env("INSTANCES_PATH", instances.dir.path())
        .env("STATE_ENCRYPTION_KEY", TEST_KEY)
        .env("LOG_FORMAT", "json")
        .env("LOG_LEVEL", "event_poller=debug,info")
        // Any free port: pollers of parallel tests must not collide on the
        // default; a test that reads the endpoint passes its own address.
        .env("OPS_LISTEN", "127.0.0.1:0");
    cmd
}

impl Poller {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit; returns its exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        // SAFETY-free: kill(1) via the command line keeps this test code
        // free of unsafe libc calls.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                self.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One event as a consumer sees it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub key: String,
    pub value: Value,
}

impl Seen {
    pub fn object_id(&self) -> &str {
        self.value["objectId"].as_str().unwrap_or_default()
    }
    pub fn modification_date(&self) -> &str {
        self.value["raw"]["modification_date"]
            .as_str()
            .unwrap_or_default()
    }
}

/// Every committed event so far.
pub async fn events(topic: &str) -> Vec<Seen> {
    super::read_records(topic, "read_committed")
        .await
        .into_iter()
        .map(|r| Seen {
            key: r.key.unwrap_or_default(),
            value: r.value,
        })
        .collect()
}

/// Reads until `done(events)` holds or `timeout` passes (then panics with
/// the poller's log tail), polling the topic every half second.
pub async fn await_events(
    topic: &str,
    timeout: Duration,
    poller: Option<&Poller>,
    done: impl FnMut(&[Seen]) -> bool,
) -> Vec<Seen> {
    await_read(
        topic,
        timeout,
        poller,
        |t| async move { events(&t).await },
        done,
    )
    .await
}

/// Reads `topic` with `read` until `done` holds or `timeout` passes.
async fn await_read<T, F>(
    topic: &str,
    timeout: Duration,
    poller: Option<&Poller>,
    read: impl Fn(String) -> F,
    mut done: impl FnMut(&[T]) -> bool,
) -> Vec<T>
where
    F: std::future::Future<Output = Vec<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if topic_exists(topic) {
            let seen = read(topic.to_string()).await;
            if done(&seen) {
                return seen;
            }
            if Instant::now() > deadline {
                let log = poller.map(Poller::log_text).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                panic!(
                    "condition not met within {timeout:?}; {} records in {topic}; poller log tail:\n{}",
                    seen.len(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        } else if Instant::now() > deadline {
            panic!("topic {topic} never appeared");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn topic_exists(topic: &str) -> bool {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let Ok(c) = super::client_config().create::<BaseConsumer>() else {
        return false;
    };
    c.fetch_metadata(Some(topic), Duration::from_secs(5))
        .map(|md| {
            md.topics()
                .iter()
                .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        })
        .unwrap_or(false)
}

/// The sandbox's ground truth: `(id, change, modification_date)` in order.
pub async fn changes(base_url: &str) -> Vec<(String, String, String)> {
    let v: Value = reqwest::get(format!("{base_url}/_sandbox/changes"))
        .await
        .expect("changes")
        .json()
        .await
        .expect("changes json");
    v["changes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            let id = match &c["id"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (
                id,
                c["change"].as_str().unwrap_or_default().to_string(),
                c["modification_date"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// Events per `(objectId, modification_date)`.
pub fn counts(events: &[Seen]) -> HashMap<(String, String), usize> {
    let mut m = HashMap::new();
    for e in events {
        *m.entry((e.object_id().to_string(), e.modification_date().to_string()))
            .or_insert(0) += 1;
    }
    m
}

pub async fn control(base_url: &str, method: reqwest::Method, path: &str, body: Value) -> Value {
    let resp = reqwest::Client::new()
        .request(method, format!("{base_url}{path}"))
        .json(&body)
        .send()
        .await
        .expect("control request");
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.unwrap_or(Value::Null)
}

/// Creates `count` orders dated `seconds_ago` on the provider's clock
/// (the sandbox's clock is set back for them, then restored).
pub async fn orders_dated_back(base_url: &str, count: u32, seconds_ago: i64) {
    let clock = |offset: i64| json!({ "offset_seconds": offset });
    let put = reqwest::Method::PUT;
    control(
        base_url,
        put.clone(),
        "/_sandbox/clock",
        clock(-seconds_ago),
    )
    .await;
    let orders = json!({ "count": count });
    control(base_url, reqwest::Method::POST, "/_sandbox/orders", orders).await;
    control(base_url, put, "/_sandbox/clock", clock(0)).await;
}

pub use super::Record;

/// Every record of every partition of `topic` visible to a `read_committed`
/// reader (keys, values and headers).
pub async fn read_committed_records(topic: &str) -> Vec<Record> {
    super::read_records(topic, "read_committed").await
}

/// Like [`await_events`], with headers: reads `topic` until `done(records)`
/// holds or `timeout` passes (then panics with the poller's log tail).
pub async fn await_records(
    topic: &str,
    timeout: Duration,
    poller: Option<&Poller>,
    done: impl FnMut(&[Record]) -> bool,
) -> Vec<Record> {
    await_read(
        topic,
        timeout,
        poller,
        |t| async move { read_committed_records(&t).await },
        done,
    )
    .await
}

/// Waits until the job `instance/resource` has committed its first
/// checkpoint (its starting point), so changes made afterwards are its
/// events.
pub async fn await_checkpoint(names: &Names, poller: &Poller, instance: &str, resource: &str) {
    let key = format!("job/{instance}/{resource}");
    await_records(&names.state, Duration::from_secs(60), Some(poller), |s| {
        s.iter().any(|r| r.key.as_deref() == Some(key.as_str()))
    })
    .await;
}

/// Waits until some job has committed its first checkpoint (a `job/`
/// record; the state topic also holds a layout record written earlier, at
/// start-up).
pub async fn await_any_checkpoint(names: &Names, poller: &Poller) {
    await_records(&names.state, Duration::from_secs(60), Some(poller), |s| {
        s.iter()
            .any(|r| r.key.as_deref().is_some_and(|k| k.starts_with("job/")))
    })
    .await;
}

/// `GET /_sandbox/stats`: request counts by endpoint and status.
pub async fn stats(base_url: &str) -> Value {
    control(base_url, reqwest::Method::GET, "/_sandbox/stats", json!({})).await
}

/// Requests counted in `stats` (all statuses) on endpoints for which
/// `endpoint` holds, e.g. `|e| e.ends_with("/orders")`.
pub fn requests_to(stats: &Value, endpoint: impl Fn(&str) -> bool) -> u64 {
    stats["requests"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(e, _)| endpoint(e))
        .flat_map(|(_, by_status)| by_status.as_object().into_iter().flatten())
        .map(|(_, n)| n.as_u64().unwrap_or(0))
        .sum()
}

/// Waits until the sandbox's clock (`GET /_sandbox/clock`) reads later
/// than `t`, so that the next change is stamped after it.
pub async fn await_sandbox_time_after(base_url: &str, t: chrono::DateTime<chrono::Utc>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let clock = control(base_url, reqwest::Method::GET, "/_sandbox/clock", json!({})).await;
        let now = clock["now"]
            .as_str()
            .and_then(parse_keap_date)
            .unwrap_or_else(|| panic!("sandbox clock: {clock}"));
        if now > t {
            return;
        }
        assert!(Instant::now() < deadline, "sandbox clock stuck at {now}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A date as the sandbox (and Keap) writes it, `2019-10-25T18:53:10.000+0000`,
/// or RFC 3339.
pub fn parse_keap_date(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(text))
        .ok()
        .map(|t| t.to_utc())
}

// ---------------------------------------------------------------------------
// Fault scenarios: the "exactly once" check, sandbox stats and the poller's
// JSON log (used by `poll_faults.rs`).
// ---------------------------------------------------------------------------

/// The change log as `(id, change, modification_date)`, see [`changes`].
pub type ChangeLog = [(String, String, String)];

/// What [`assert_exactly_once`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExactlyOnce {
    /// Distinct `(objectId, modification_date)` published.
    pub published: usize,
    /// Changes of the job that had to be published (and were).
    pub required: usize,
    /// Changes of the job that polling may legitimately miss: followed by a
    /// change of the same order within one poll interval.
    pub exempt: usize,
}

fn keap_date(text: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z")
        .unwrap_or_else(|e| panic!("sandbox date {text:?}: {e}"))
        .to_utc()
}

/// The "exactly once" check, for what a `read_committed` reader sees after
/// a run (`seen`) against the sandbox's change log (`log`):
///
/// 1. no `(objectId, modification_date)` is published twice, and every key
///    equals its objectId;
/// 2. every published pair is one the sandbox served (is in its log), and
///    none is a change of `log[..before_job]` (made before the job began);
/// 3. every creation or update of `log[job_started..]` is published unless
///    the next change of the same order is dated at most `interval` later
///    (two changes between two polls: only the second is visible). The
///    last state of every order is therefore always required.
///
/// Changes in `log[before_job..job_started]` (around the job's start) may
/// be published or not. Panics with the offending pairs.
pub fn assert_exactly_once(
    seen: &[Seen],
    log: &ChangeLog,
    before_job: usize,
    job_started: usize,
    interval: Duration,
) -> ExactlyOnce {
    for e in seen {
        assert_eq!(e.key, e.object_id(), "key = objectId: {}", e.value);
    }
    let got = counts(seen);
    let mut twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    twice.sort();
    assert!(twice.is_empty(), "published more than once: {twice:?}");

    let pair = |c: &(String, String, String)| (c.0.clone(), c.2.clone());
    let served: std::collections::HashSet<(String, String)> = log.iter().map(pair).collect();
    let mut unknown: Vec<_> = got.keys().filter(|k| !served.contains(*k)).collect();
    unknown.sort();
    assert!(
        unknown.is_empty(),
        "published states the sandbox never had: {unknown:?}"
    );
    let old: std::collections::HashSet<(String, String)> =
        log[..before_job].iter().map(pair).collect();
    let mut too_old: Vec<_> = got.keys().filter(|k| old.contains(*k)).collect();
    too_old.sort();
    assert!(
        too_old.is_empty(),
        "published changes made before the job started: {too_old:?}"
    );

    let spacing = chrono::TimeDelta::from_std(interval).expect("interval");
    let mut required = Vec::new();
    let mut exempt = 0;
    for (i, c) in log.iter().enumerate().skip(job_started) {
        if c.1 == "deleted" {
            continue;
        }
        let next = log[i + 1..].iter().find(|n| n.0 == c.0);
        match next {
            Some(n) if keap_date(&n.2) - keap_date(&c.2) <= spacing => exempt += 1,
            _ => required.push(pair(c)),
        }
    }
    let mut missing: Vec<_> = required.iter().filter(|k| !got.contains_key(*k)).collect();
    missing.sort();
    assert!(
        missing.is_empty(),
        "changes never published ({} of {} required): {missing:?}",
        missing.len(),
        required.len()
    );
    ExactlyOnce {
        published: got.len(),
        required: required.len(),
        exempt,
    }
}

/// `GET /_sandbox/stats`: responses served for `endpoint` (such as
/// `GET /crm/rest/v1/orders`) with `status`.
pub async fn served(base_url: &str, endpoint: &str, status: u16) -> u64 {
    let v: Value = reqwest::get(format!("{base_url}/_sandbox/stats"))
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats json");
    v["requests"][endpoint][status.to_string()]
        .as_u64()
        .unwrap_or(0)
}

/// Every response `endpoint` was answered with, whatever the status.
pub async fn served_total(base_url: &str, endpoint: &str) -> u64 {
    let v: Value = reqwest::get(format!("{base_url}/_sandbox/stats"))
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats json");
    v["requests"][endpoint]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

impl Poller {
    /// The poller's JSON log lines (`LOG_FORMAT=json`), parsed; lines that
    /// are not JSON are skipped.
    pub fn log_lines(&self) -> Vec<Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The log lines whose `message` is `message`.
    pub fn logged(&self, message: &str) -> Vec<Value> {
        self.log_lines()
            .into_iter()
            .filter(|l| l["message"] == message)
            .collect()
    }

    /// Waits until `done(lines)` holds for the parsed log, or panics with
    /// the log tail after `timeout`.
    pub async fn await_log(&self, timeout: Duration, mut done: impl FnMut(&[Value]) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.log_lines()) {
                return;
            }
            if Instant::now() > deadline {
                let log = self.log_text();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                panic!(
                    "log condition not met within {timeout:?}; poller log tail:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Poller {
    /// The address of the poller's ops endpoint (it binds a free port and
    /// logs it).
    pub async fn ops_address(&self) -> String {
        let mut address = String::new();
        self.await_log(Duration::from_secs(30), |lines| {
            match lines
                .iter()
                .find(|l| l["message"] == "Ops endpoint listening.")
            {
                Some(l) => {
                    address = l["address"].as_str().unwrap_or_default().to_owned();
                    true
                }
                None => false,
            }
        })
        .await;
        address
    }

    /// `GET path` on the ops endpoint: status and body.
    pub async fn ops_get(&self, path: &str) -> (u16, String) {
        let url = format!("http://{}{path}", self.ops_address().await);
        let response = reqwest::get(&url).await.expect("ops endpoint");
        let status = response.status().as_u16();
        (status, response.text().await.expect("ops body"))
    }

    /// The sum of every sample of metric `name` (all label sets), or
    /// `None` when the family has no sample.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let (_, text) = self.ops_get("/metrics").await;
        metric_sum(&text, name)
    }

    /// Waits until `done(/metrics text)` holds.
    pub async fn await_metrics(&self, timeout: Duration, mut done: impl FnMut(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, text) = self.ops_get("/metrics").await;
            if done(&text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "metrics condition not met within {timeout:?}:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits for the process to end by itself; its exit code.
    pub async fn await_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            if Instant::now() > deadline {
                let log = self.log_text();
                panic!("poller still running after {timeout:?}; log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The sum of the samples of `name` in Prometheus text (`name` or
/// `name{labels}` lines).
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}
