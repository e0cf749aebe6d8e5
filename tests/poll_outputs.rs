//! What the poller publishes, checked on real output: the event JSON
//! Schema, the CloudEvents headers, dead letters, which instances run, hub
//! mode, and an independent client (`kcat`) reading the committed events.
//! Each test runs the real `event-poller run` against an in-process sandbox
//! and the real broker, like `poll_e2e`.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta};
use common::e2e::{
    self, Instances, Names, Poller, Record, control, parse_keap_date, requests_to, spawn_poller,
};
use keap_sandbox::{self as sandbox, RunningSandbox, SandboxConfig};
use reqwest::Method;
use serde_json::{Value, json};

/// The default `createdCheckTolerance`: a record whose updated time is
/// within this of its created time is CREATED.
const CREATED_TOLERANCE: TimeDelta = TimeDelta::seconds(1);

const EVENT_SCHEMA: &str = "event.schema.json";
const DEAD_LETTER_SCHEMA: &str = "dead-letter.schema.json";

/// One sandbox, one instance polling it every second, the poller running,
/// and the job's starting point committed.
struct Run {
    sb: RunningSandbox,
    base: String,
    names: Names,
    poller: Poller,
    poller_stopped: bool,
    // Owns the instance directory (and the poller's log) until the end.
    _files: Instances,
}

async fn start(sandbox: SandboxConfig, instance: &str, api_root: &str, config: Value) -> Run {
    let sb = sandbox::start(sandbox).await.expect("sandbox");
    start_on(sb, instance, api_root, config).await
}

async fn start_on(sb: RunningSandbox, instance: &str, api_root: &str, config: Value) -> Run {
    let base = sb.base_url();
    let names = Names::new();
    let files = Instances::new(&[(
        &format!("{instance}.json"),
        e2e::instance(instance, &format!("{base}{api_root}"), 1, config).to_string(),
    )]);
    let poller = spawn_poller(&names, &files, &[]);
    e2e::await_checkpoint(&names, &poller, instance, "orders").await;
    Run {
        sb,
        base,
        names,
        poller,
        poller_stopped: false,
        _files: files,
    }
}

/// The Keap shop of the seed, direct mode with OAuth.
async fn start_shop(config: Value) -> Run {
    start(e2e::oauth_sandbox(), "shop", "/crm/rest", config).await
}

impl Run {
    async fn create(&self, count: usize) -> Vec<String> {
        let created = control(
            &self.base,
            Method::POST,
            "/_sandbox/orders",
            json!({ "count": count }),
        )
        .await;
        created["ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(Value::to_string)
            .collect()
    }

    /// Touches `id` once the sandbox clock is clearly past the order's
    /// creation (more than the created-check tolerance, at whole-second
    /// precision), so the change is an UPDATED one.
    async fn touch_later(&self, id: &str) {
        let truth = e2e::changes(&self.base).await;
        let created = truth
            .iter()
            .filter(|(i, _, _)| i == id)
            .filter_map(|(_, _, d)| parse_keap_date(d))
            .max()
            .unwrap_or_else(|| panic!("order {id} is not in the change log"));
        e2e::await_sandbox_time_after(&self.base, created + CREATED_TOLERANCE * 2).await;
        control(
            &self.base,
            Method::POST,
            &format!("/_sandbox/orders/{id}/touch"),
            json!({}),
        )
        .await;
    }

    async fn await_events(&self, done: impl FnMut(&[Record]) -> bool) -> Vec<Record> {
        e2e::await_records(
            &self.names.events,
            Duration::from_secs(45),
            Some(&self.poller),
            done,
        )
        .await
    }

    /// Create 3 orders, then update one of them: 3 CREATED + 1 UPDATED.
    async fn three_created_one_updated(&self) -> Vec<Record> {
        let ids = self.create(3).await;
        self.await_events(|s| s.len() >= 3).await;
        self.touch_later(&ids[0]).await;
        self.await_events(|s| s.len() >= 4).await
    }

    /// SIGTERM: the poller finishes in-flight polls and exits 0. After
    /// this, the topics no longer change.
    fn stop_poller(&mut self) {
        if !self.poller_stopped {
            self.poller_stopped = true;
            assert_eq!(self.poller.terminate(), Some(0), "poller exits cleanly");
        }
    }

    async fn stop(mut self) {
        self.stop_poller();
        self.sb.stop().await.expect("sandbox stop");
    }
}

fn docs(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(name)
}

/// A schema from `docs/`, itself checked against the 2020-12 meta-schema,
/// with `format` asserted (2020-12 treats it as an annotation by default).
fn validator(name: &str) -> jsonschema::Validator {
    let path = docs(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
        "{name} declares draft 2020-12"
    );
    if let Err(e) = jsonschema::meta::validate(&schema) {
        panic!("{name} is not a valid JSON Schema: {e}");
    }
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn schema_errors(v: &jsonschema::Validator, value: &Value) -> Vec<String> {
    v.iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn expected_type(raw: &Value) -> &'static str {
    let date = |field: &str| {
        raw[field]
            .as_str()
            .and_then(parse_keap_date)
            .unwrap_or_else(|| panic!("{field} of {raw}"))
    };
    if (date("modification_date") - date("creation_date")).abs() <= CREATED_TOLERANCE {
        "CREATED"
    } else {
        "UPDATED"
    }
}

fn object_id(r: &Record) -> &str {
    r.value["objectId"].as_str().unwrap_or_default()
}

fn raw_id(raw: &Value) -> Option<String> {
    raw.get("id").map(|id| match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// The events are exactly the sandbox's changes of orders not in `before`,
/// each once, with the value fields of `instance`.
async fn assert_exactly_once(
    events: &[Record],
    base: &str,
    before: &HashSet<String>,
    instance: &str,
) {
    let truth: HashSet<(String, String)> = e2e::changes(base)
        .await
        .into_iter()
        .filter(|(id, _, _)| !before.contains(id))
        .map(|(id, _, date)| (id, date))
        .collect();
    let mut got: HashMap<(String, String), usize> = HashMap::new();
    for e in events {
        let date = e.value["raw"]["modification_date"]
            .as_str()
            .unwrap_or_default();
        *got.entry((object_id(e).to_string(), date.to_string()))
            .or_default() += 1;
        assert_eq!(e.key.as_deref(), Some(object_id(e)), "key = objectId");
        assert_eq!(raw_id(&e.value["raw"]).as_deref(), Some(object_id(e)));
        assert_eq!(e.value["objectType"], "orders");
        assert_eq!(e.value["elementKey"], "infusionsoftecommerce");
        assert_eq!(e.value["instanceId"], instance);
        assert_eq!(
            e.value["eventType"],
            expected_type(&e.value["raw"]),
            "{}",
            e.text
        );
    }
    let duplicated: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "published twice: {duplicated:?}");
    let got: HashSet<(String, String)> = got.into_keys().collect();
    assert_eq!(got, truth, "exactly the changes made after the job started");
}

/// 1. Every real event is valid against `docs/event.schema.json`, and the
///    schema is not vacuous: mutated events are refused.
#[tokio::test(flavor = "multi_thread")]
async fn every_event_is_valid_against_the_event_schema() {
    let schema = validator(EVENT_SCHEMA);
    let run = start_shop(json!({})).await;
    let events = run.three_created_one_updated().await;
    assert_exactly_once(&events, &run.base, &HashSet::new(), "shop").await;
    assert!(events.iter().any(|e| e.value["eventType"] == "CREATED"));
    assert!(events.iter().any(|e| e.value["eventType"] == "UPDATED"));
    for e in &events {
        let errors = schema_errors(&schema, &e.value);
        assert!(errors.is_empty(), "{}: {errors:?}", e.text);
        // eventDate is the record's updated time, in RFC 3339.
        let event_date = DateTime::parse_from_rfc3339(e.value["eventDate"].as_str().unwrap())
            .expect("eventDate")
            .to_utc();
        assert_eq!(
            Some(event_date),
            parse_keap_date(e.value["raw"]["modification_date"].as_str().unwrap()),
            "{}",
            e.text
        );
    }

    let sample = &events[0].value;
    // Each mutation sets a field (or removes it, `None`).
    let mutations = [
        ("objectId", None),
        ("eventId", None),
        ("eventType", None),
        ("raw", None),
        ("objectId", Some(json!(7))),
        ("eventId", Some(json!("order-7"))),
        ("eventType", Some(json!("MODIFIED"))),
        ("eventDate", Some(json!("yesterday"))),
        ("raw", Some(json!("{\"id\":1}"))),
        ("instanceId", Some(json!(""))),
        ("extra", Some(json!(1))),
    ];
    for (field, set) in mutations {
        let mut bad = sample.clone();
        let obj = bad.as_object_mut().unwrap();
        match &set {
            Some(x) => obj.insert(field.into(), x.clone()),
            None => obj.remove(field),
        };
        assert!(
            !schema_errors(&schema, &bad).is_empty(),
            "the schema accepts an event with {field} = {set:?}: {bad}"
        );
    }
    run.stop().await;
}

/// 2. CloudEvents 1.0 Kafka binding, binary mode, plus the callback URL.
#[tokio::test(flavor = "multi_thread")]
async fn events_carry_cloudevents_binary_mode_headers() {
    let callback = "https://example.test/hooks/shop-42?via=poller";
    let run = start_shop(json!({ "event.notification.callback.url": callback })).await;
    let events = run.three_created_one_updated().await;
    assert_exactly_once(&events, &run.base, &HashSet::new(), "shop").await;
    let mut types = HashSet::new();
    for e in &events {
        let v = &e.value;
        let ctx = &e.text;
        assert_eq!(e.header("ce_specversion"), "1.0", "{ctx}");
        assert_eq!(e.header("ce_id"), v["eventId"].as_str().unwrap(), "{ctx}");
        assert_eq!(
            e.header("ce_source"),
            "event-poller/infusionsoftecommerce/shop",
            "{ctx}"
        );
        let ce_type = e.header("ce_type");
        assert_eq!(
            ce_type,
            format!(
                "io.event-poller.orders.{}",
                v["eventType"].as_str().unwrap().to_ascii_lowercase()
            ),
            "{ctx}"
        );
        types.insert(ce_type.to_string());
        assert_eq!(
            e.header("ce_time"),
            v["eventDate"].as_str().unwrap(),
            "{ctx}"
        );
        assert_eq!(e.header("ce_subject"), object_id(e), "{ctx}");
        assert_eq!(e.header("ce_subject"), e.key.as_deref().unwrap(), "{ctx}");
        assert_eq!(e.header("content-type"), "application/json", "{ctx}");
        assert_eq!(e.header("callback-url"), callback, "{ctx}");
        // ce_id is unique per event.
        assert_eq!(
            events
                .iter()
                .filter(|o| o.header("ce_id") == e.header("ce_id"))
                .count(),
            1
        );
    }
    assert_eq!(
        types,
        HashSet::from([
            "io.event-poller.orders.created".to_string(),
            "io.event-poller.orders.updated".to_string()
        ])
    );
    run.stop().await;
}

/// 3. Records whose id or dates cannot be read go to the dead-letter topic
///    with a reason naming the field and the raw record; the rest of each
///    window is still published, nothing is lost and nothing duplicated.
#[tokio::test(flavor = "multi_thread")]
async fn unreadable_records_become_dead_letters_and_the_rest_is_published() {
    const ORDERS: usize = 4;
    let callback = "https://example.test/events";
    let dl_schema = validator(DEAD_LETTER_SCHEMA);
    let mut run = start_shop(json!({})).await;
    // Every data response corrupts one of its records (no id, or a date
    // that does not parse); an empty page has nothing to corrupt.
    control(
        &run.base,
        Method::PUT,
        "/_sandbox/faults",
        json!({"bad_record_rate": 1.0}),
    )
    .await;
    run.create(ORDERS).await;
    // The first window holding the orders dead-letters one and publishes
    // the others; later windows re-read them (safety overlap) and corrupt
    // another each time.
    e2e::await_records(
        &run.names.dlq,
        Duration::from_secs(45),
        Some(&run.poller),
        |d| d.len() >= 3,
    )
    .await;
    run.await_events(|s| s.len() >= ORDERS - 1).await;
    control(&run.base, Method::DELETE, "/_sandbox/faults", json!({})).await;
    let faults = control(&run.base, Method::GET, "/_sandbox/faults", json!({})).await;
    assert_eq!(faults["bad_record_rate"], 0.0);
    // With clean responses the overlap brings back whatever was only ever
    // served corrupted: every order is published.
    run.await_events(|s| s.len() >= ORDERS).await;
    run.stop_poller();
    let log = run.poller.log_lines();
    let (events_topic, dlq_topic, base) = (&run.names.events, &run.names.dlq, &run.base);

    let events = e2e::read_committed_records(events_topic).await;
    assert_exactly_once(&events, base, &HashSet::new(), "shop").await;
    assert_eq!(events.len(), ORDERS);
    let by_id: HashMap<&str, &Value> = events
        .iter()
        .map(|e| (object_id(e), &e.value["raw"]))
        .collect();

    let dead = e2e::read_committed_records(dlq_topic).await;
    assert!(dead.len() >= 3, "{} dead letters", dead.len());
    let mut kinds = BTreeMap::<String, usize>::new();
    for d in &dead {
        let v = &d.value;
        let errors = schema_errors(&dl_schema, v);
        assert!(errors.is_empty(), "{}: {errors:?}", d.text);
        assert_eq!(v["objectType"], "orders");
        assert_eq!(v["elementKey"], "infusionsoftecommerce");
        assert_eq!(v["instanceId"], "shop");
        let reason = v["reason"].as_str().unwrap();
        let raw = &v["raw"];
        // Which order it is, and which field was broken: the raw record
        // is the order's record with exactly that field changed.
        let (order, field) = match raw_id(raw) {
            None => {
                let matching: Vec<_> = by_id
                    .iter()
                    .filter(|(_, good)| {
                        let mut good = (**good).clone();
                        good.as_object_mut().unwrap().remove("id");
                        &good == raw
                    })
                    .collect();
                assert_eq!(matching.len(), 1, "the raw record of {}", d.text);
                (matching[0].0.to_string(), "id".to_string())
            }
            Some(id) => {
                let good = by_id
                    .get(id.as_str())
                    .unwrap_or_else(|| panic!("dead letter of an unknown order: {}", d.text));
                let changed: Vec<&String> = good
                    .as_object()
                    .unwrap()
                    .iter()
                    .filter(|(k, x)| raw.get(k.as_str()) != Some(*x))
                    .map(|(k, _)| k)
                    .collect();
                assert_eq!(changed.len(), 1, "one field broken in {}", d.text);
                assert_eq!(
                    raw.as_object().unwrap().len(),
                    good.as_object().unwrap().len(),
                    "{}",
                    d.text
                );
                (id, changed[0].clone())
            }
        };
        assert!(
            reason.contains(&format!("'{field}'")),
            "the reason names the broken field {field}: {}",
            d.text
        );
        *kinds.entry(field.clone()).or_default() += 1;
        // Keyed by the object id when it could be read.
        let expected_key = (field != "id").then_some(order.as_str());
        assert_eq!(d.key.as_deref(), expected_key, "{}", d.text);
        // Same headers as events.
        assert_eq!(d.header("ce_specversion"), "1.0");
        assert_eq!(d.header("ce_type"), "io.event-poller.orders.deadletter");
        assert_eq!(
            d.header("ce_source"),
            "event-poller/infusionsoftecommerce/shop"
        );
        assert_eq!(d.header("content-type"), "application/json");
        assert_eq!(d.header("callback-url"), callback);
        assert!(DateTime::parse_from_rfc3339(d.header("ce_time")).is_ok());
        assert_eq!(
            d.header_values("ce_subject"),
            expected_key.into_iter().collect::<Vec<_>>()
        );
    }
    assert!(!kinds.is_empty());

    // Per window (one committed poll = one transaction): every record was
    // published now or before, or dead-lettered. Nothing else is possible
    // here: every order is newer than the job, so none is "before window".
    let polls: Vec<&Value> = log
        .iter()
        .filter(|l| l["message"] == "Poll committed." && l["dead_letters"].as_u64() > Some(0))
        .collect();
    assert!(
        !polls.is_empty(),
        "no committed poll with dead letters in the log"
    );
    for p in &polls {
        let n = |k: &str| p[k].as_u64().unwrap_or_else(|| panic!("{k} in {p}"));
        assert_eq!(
            n("events") + n("duplicates") + n("dead_letters"),
            n("records"),
            "a window lost a good record: {p}"
        );
    }
    // The first window that held the orders published all but the
    // corrupted one, in the same transaction as its dead letter.
    assert!(
        polls
            .iter()
            .any(|p| p["events"].as_u64() == Some(ORDERS as u64 - 1)),
        "no window published its good records next to a dead letter: {polls:?}"
    );
    run.stop().await;
}

/// 4. A disabled instance is not polled; an invalid instance file is
///    reported (file and JSON path) and the valid instance still runs.
#[tokio::test(flavor = "multi_thread")]
async fn disabled_and_invalid_instances_are_not_polled_and_the_others_run() {
    let polled = sandbox::start(e2e::oauth_sandbox()).await.expect("sandbox");
    let idle = sandbox::start(e2e::oauth_sandbox()).await.expect("sandbox");
    let (a, b) = (polled.base_url(), idle.base_url());
    let valid = e2e::instance("shop", &format!("{a}/crm/rest"), 1, json!({}));
    let disabled = e2e::instance(
        "paused",
        &format!("{b}/crm/rest"),
        1,
        json!({"event.notification.enabled": "false"}),
    );
    let mut broken = e2e::instance("broken", &format!("{b}/crm/rest"), 1, json!({}));
    broken["configuration"]["event.poller.configuration"]["orders"]
        .as_object_mut()
        .unwrap()
        .remove("idField");
    let names = Names::new();
    let files = Instances::new(&[
        ("valid.json", valid.to_string()),
        ("disabled.json", disabled.to_string()),
        ("broken.json", broken.to_string()),
    ]);
    let mut poller = spawn_poller(&names, &files, &[]);
    e2e::await_checkpoint(&names, &poller, "shop", "orders").await;
    // Both sandboxes have changes: if the others were polled, they would
    // be events.
    for base in [&a, &b] {
        control(base, Method::POST, "/_sandbox/orders", json!({"count": 2})).await;
    }
    e2e::await_records(&names.events, Duration::from_secs(45), Some(&poller), |s| {
        s.len() >= 2
    })
    .await;
    // Several more polls of the valid instance: time enough for the others
    // to have been polled (every second) had they been scheduled.
    let orders = |e: &str| e.starts_with("GET ") && e.ends_with("/orders");
    let polls_so_far = requests_to(&e2e::stats(&a).await, orders);
    let deadline = Instant::now() + Duration::from_secs(30);
    while requests_to(&e2e::stats(&a).await, orders) < polls_so_far + 3 {
        assert!(
            Instant::now() < deadline,
            "the valid instance stopped polling"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let idle_stats = e2e::stats(&b).await;
    assert_eq!(
        requests_to(&idle_stats, orders),
        0,
        "the disabled and the broken instance were polled: {idle_stats}"
    );
    assert_eq!(
        requests_to(&idle_stats, |e| !e.contains("/_sandbox/")),
        0,
        "a disabled or broken instance talked to its provider: {idle_stats}"
    );

    let events = e2e::read_committed_records(&names.events).await;
    assert!(
        events.iter().all(|e| e.value["instanceId"] == "shop"),
        "events of other instances: {events:?}"
    );
    let state = e2e::read_committed_records(&names.state).await;
    let keys: HashSet<&str> = state.iter().filter_map(|r| r.key.as_deref()).collect();
    assert!(keys.contains("job/shop/orders"), "{keys:?}");
    assert!(
        keys.iter()
            .all(|k| !k.contains("paused") && !k.contains("broken")),
        "state of an instance that must not run: {keys:?}"
    );

    let log = poller.log_lines();
    let problems: Vec<&str> = log
        .iter()
        .filter(|l| l["level"] == "ERROR")
        .filter_map(|l| l["problem"].as_str())
        .collect();
    let broken_path = files.dir.path().join("broken.json");
    let expected = format!(
        "{}: $.configuration[\"event.poller.configuration\"].orders.idField: ",
        broken_path.display()
    );
    assert!(
        problems.iter().any(|p| p.starts_with(&expected)),
        "no error naming {expected:?}; errors: {problems:?}"
    );
    assert!(
        problems
            .iter()
            .all(|p| !p.contains("valid.json") && !p.contains("disabled.json")),
        "a usable instance was reported invalid: {problems:?}"
    );
    let start = log
        .iter()
        .find(|l| l["message"] == "Worker starting.")
        .expect("worker start logged");
    assert_eq!(
        start["instances"], 2,
        "valid + disabled are loaded: {start}"
    );
    assert_eq!(
        start["jobs"], 1,
        "only the enabled instance has a job: {start}"
    );

    assert_eq!(poller.terminate(), Some(0), "poller exits cleanly");
    polled.stop().await.expect("sandbox stop");
    idle.stop().await.expect("sandbox stop");
}

/// 5. Hub mode: the same orders through an Open Connectors-compatible hub
///    (`User/Organization/Element` auth, CEQL `where`, cursor paging) become
///    events exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn hub_mode_changes_become_exactly_one_event() {
    let hub = SandboxConfig {
        hub_user: Some("hub-user-secret".into()),
        hub_organization: Some("hub-org-secret".into()),
        ..SandboxConfig::default()
    };
    let sb = sandbox::start(hub).await.expect("sandbox");
    let base = sb.base_url();
    // Orders from two minutes ago: inside the first window (the safety
    // overlap reaches back further), but older than the job, so never
    // events.
    e2e::orders_dated_back(&base, 5, 120).await;
    let before: HashSet<String> = e2e::changes(&base).await.into_iter().map(|c| c.0).collect();

    let mut orders = e2e::instance("x", "http://unused", 1, json!({}))["configuration"]
        ["event.poller.configuration"]["orders"]
        .clone();
    // Small pages, so that the hub's cursor is followed.
    orders["pageSize"] = json!(2);
    let config = json!({
        "connection.mode": "hub",
        "hub.user.secret": "hub-user-secret",
        "hub.organization.secret": "hub-org-secret",
        "hub.element.token": "hub-element-token",
        "event.poller.configuration": { "orders": orders },
    });
    let run = start_on(sb, "hubshop", "/elements/api-v2", config).await;
    let events = run.three_created_one_updated().await;
    assert_exactly_once(&events, &run.base, &before, "hubshop").await;
    assert!(events.iter().any(|e| e.value["eventType"] == "UPDATED"));

    let stats = e2e::stats(&run.base).await;
    let hub_orders = &stats["requests"]["GET /elements/api-v2/hubs/ecommerce/orders"];
    assert!(
        hub_orders["200"].as_u64().unwrap_or(0) >= 2,
        "polled through the hub: {stats}"
    );
    assert!(hub_orders.get("401").is_none(), "hub auth refused: {stats}");
    assert_eq!(
        requests_to(&stats, |e| e.contains("/crm/rest") || e.contains("/token")),
        0,
        "hub mode must not use the direct API or OAuth: {stats}"
    );
    run.stop().await;
}

/// Runs `cmd` with stdout and stderr captured in files, killing it if it
/// runs longer than `limit`. A missing program fails with `missing`.
fn run_bounded(cmd: &mut Command, limit: Duration, missing: &str) -> (ExitStatus, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => panic!("{missing}"),
            _ => panic!("{cmd:?}: {e}"),
        });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} did not finish within {limit:?}; stderr:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |p: &Path| std::fs::read_to_string(p).expect("captured output");
    (status, read(&out), read(&err))
}

/// `kcat -C … -e -f '%k\t%s\n'`: every `(key, value)` of `topic` at the
/// given isolation level.
fn kcat(topic: &str, isolation: &str) -> Vec<(String, String)> {
    let (status, out, err) = run_bounded(
        Command::new("kcat").args([
            "-C",
            "-b",
            &common::bootstrap(),
            "-t",
            topic,
            "-X",
            &format!("isolation.level={isolation}"),
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%k\t%s\n",
        ]),
        Duration::from_secs(60),
        "kcat is not installed: it is the independent client of this test \
         (Debian package `kcat`; .ci/run installs it)",
    );
    assert!(status.success(), "kcat failed ({status}):\n{err}");
    out.lines()
        .map(|l| {
            let (k, v) = l
                .split_once('\t')
                .unwrap_or_else(|| panic!("kcat line without a tab: {l}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// An aborted transaction on `topic`: a `read_committed` reader must
/// never show its record.
async fn write_aborted(topic: &str, key: &str) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let (topic, key) = (topic.to_string(), key.to_string());
    tokio::task::spawn_blocking(move || {
        let producer: BaseProducer = common::client_config()
            .set("transactional.id", common::unique("aborted-probe"))
            .create()
            .expect("producer");
        let t = Duration::from_secs(30);
        producer.init_transactions(t).expect("init transactions");
        producer.begin_transaction().expect("begin");
        producer
            .send(
                BaseRecord::to(&topic)
                    .key(&key)
                    .payload("{\"aborted\":true}"),
            )
            .map_err(|(e, _)| e)
            .expect("send");
        producer.flush(t).expect("flush");
        producer.abort_transaction(t).expect("abort");
    })
    .await
    .expect("aborted writer");
}

/// 6. An independent client, Debian's `kcat` (on Debian's librdkafka, not
///    the one built into the poller), reads the committed events with `isolation.level=read_committed`:
///    the same records as our reader, keys equal to objectIds, and no
///    record of an aborted transaction.
#[tokio::test(flavor = "multi_thread")]
async fn kcat_reads_the_committed_events() {
    let mut run = start_shop(json!({})).await;
    run.three_created_one_updated().await;
    let probe = "aborted-probe";
    write_aborted(&run.names.events, probe).await;
    // Nothing changes the topic any more.
    run.stop_poller();

    let ours = e2e::read_committed_records(&run.names.events).await;
    assert_exactly_once(&ours, &run.base, &HashSet::new(), "shop").await;
    let mut expected: Vec<(String, String)> = ours
        .iter()
        .map(|r| (r.key.clone().unwrap_or_default(), r.text.clone()))
        .collect();
    expected.sort();

    let mut committed = kcat(&run.names.events, "read_committed");
    committed.sort();
    assert_eq!(
        committed.len(),
        ours.len(),
        "kcat and our reader count alike"
    );
    for (key, value) in &committed {
        let v: Value = serde_json::from_str(value)
            .unwrap_or_else(|e| panic!("kcat printed a value that is not JSON ({e}): {value}"));
        assert_eq!(v["objectId"].as_str(), Some(key.as_str()), "key = objectId");
    }
    assert_eq!(committed, expected, "kcat reads what our reader reads");

    // The probe is really in the log: a read_uncommitted kcat shows it, so
    // its absence above is read_committed at work, not a missed record.
    let uncommitted = kcat(&run.names.events, "read_uncommitted");
    assert!(
        uncommitted.iter().any(|(k, _)| k == probe),
        "read_uncommitted kcat did not see the aborted probe: {uncommitted:?}"
    );
    assert!(
        committed.iter().all(|r| uncommitted.contains(r)),
        "read_uncommitted kcat misses committed records"
    );
    run.stop().await;
}
