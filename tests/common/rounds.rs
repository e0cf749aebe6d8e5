//! Rounds of changes against one poller and one sandbox: the harness of
//! the end-to-end fault tests. Each round's changes are awaited in Kafka
//! before the next round, and two rounds are at least one poll interval
//! plus a second apart (see [`Run::space`]), so every change is observable
//! and must be published: the check finds no change that polling could
//! legitimately miss.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use keap_sandbox::{self as sandbox, RunningSandbox, SandboxConfig};
use reqwest::Method;
use serde_json::{Value, json};

use super::e2e::{self, ExactlyOnce, Instances, Names, Poller, control, spawn_poller};

/// The Keap list endpoint as `GET /_sandbox/stats` names it.
pub const ORDERS: &str = "GET /crm/rest/v1/orders";
/// Poll interval of every test (`event.poller.refresh_interval_seconds`).
pub const INTERVAL_SECS: u64 = 1;
/// Upper bound on any single wait for the poller.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub const COMMITTED: &str = "Poll committed.";
pub const FETCH_FAILED: &str = "Fetch failed; the window will be retried.";
pub const RETRYING: &str = "Request failed; retrying.";
pub const THROTTLED: &str = "Throttled (HTTP 429); waiting.";
pub const WINDOW_FAILED: &str = "Window fetch failed.";

#[derive(Default)]
pub struct Setup {
    /// `pageSize` of the orders resource.
    pub page_size: Option<u32>,
    /// Provider clock offset, set before the poller starts.
    pub clock_offset: i64,
    /// Entries merged into the instance's `configuration`.
    pub config: Option<Value>,
    /// Extra environment of the poller.
    pub env: Vec<(&'static str, String)>,
    /// The sandbox (default: [`e2e::oauth_sandbox`]).
    pub sandbox: Option<SandboxConfig>,
    /// Faults switched on just before the poller starts.
    pub faults: Option<Value>,
}

/// One poller against one sandbox, with the change-log positions that
/// delimit the job.
pub struct Run {
    pub sb: RunningSandbox,
    pub base: String,
    pub names: Names,
    pub poller: Poller,
    /// Changes `[..before_job]` were made before the poller started.
    pub before_job: usize,
    /// Changes `[job_started..]` were made after the job's first commit.
    pub job_started: usize,
    /// When the latest round changed data.
    pub last_change: Option<Instant>,
    /// When the test began (for the timing printed at the end).
    pub began: Instant,
    // Holds the instance directory (and the poller's log) until the end.
    pub files: Instances,
}

pub fn interval() -> Duration {
    Duration::from_secs(INTERVAL_SECS)
}

/// Starts a sandbox with three orders dated a minute before the job (on
/// the provider's clock, so never events), then the poller, and waits for
/// the job's first commit: its starting point.
pub async fn start(setup: Setup) -> Run {
    start_with(setup, |_| {}).await
}

/// Like [`start`], with a last change to the instance document.
pub async fn start_with(setup: Setup, edit: impl FnOnce(&mut Value)) -> Run {
    let began = Instant::now();
    let sb = sandbox::start(setup.sandbox.unwrap_or_else(e2e::oauth_sandbox))
        .await
        .expect("sandbox");
    let base = sb.base_url();
    let clock = |offset: i64| json!({ "offset_seconds": offset });
    control(
        &base,
        Method::PUT,
        "/_sandbox/clock",
        clock(setup.clock_offset - 60),
    )
    .await;
    control(&base, Method::POST, "/_sandbox/orders", json!({"count": 3})).await;
    control(
        &base,
        Method::PUT,
        "/_sandbox/clock",
        clock(setup.clock_offset),
    )
    .await;
    let before_job = e2e::changes(&base).await.len();

    let mut instance = e2e::instance(
        "shop",
        &format!("{base}/crm/rest"),
        INTERVAL_SECS,
        setup.config.unwrap_or_else(|| json!({})),
    );
    if let Some(size) = setup.page_size {
        instance["configuration"]["event.poller.configuration"]["orders"]["pageSize"] = json!(size);
    }
    edit(&mut instance);
    if let Some(faults) = setup.faults {
        control(&base, Method::PUT, "/_sandbox/faults", faults).await;
    }
    let names = Names::new();
    let files = Instances::new(&[("shop.json", instance.to_string())]);
    let env: Vec<(&str, &str)> = setup.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let poller = spawn_poller(&names, &files, &env);
    e2e::await_any_checkpoint(&names, &poller).await;
    let job_started = e2e::changes(&base).await.len();
    assert_eq!(
        job_started, before_job,
        "nothing changes while the job starts"
    );
    Run {
        sb,
        base,
        names,
        poller,
        before_job,
        job_started,
        last_change: None,
        began,
        files,
    }
}

impl Run {
    /// Spaces rounds in time: waits until one poll interval plus a second
    /// has passed since the previous round's changes, so that two changes
    /// of one order are dated more than an interval apart (dates have whole
    /// seconds). A sleep by design: the scenario needs that spacing. It is
    /// usually zero, since awaiting the previous round takes longer.
    pub async fn space(&self) {
        if let Some(at) = self.last_change {
            let need = interval() + Duration::from_secs(1);
            tokio::time::sleep(need.saturating_sub(at.elapsed())).await;
        }
    }

    /// Creates `create` orders and touches `touch`; returns the new ids.
    pub async fn change(&mut self, create: usize, touch: &[String]) -> Vec<String> {
        self.space().await;
        let mut ids = Vec::new();
        if create > 0 {
            let created = control(
                &self.base,
                Method::POST,
                "/_sandbox/orders",
                json!({ "count": create }),
            )
            .await;
            ids = created["ids"]
                .as_array()
                .expect("ids")
                .iter()
                .map(Value::to_string)
                .collect();
        }
        for id in touch {
            let path = format!("/_sandbox/orders/{id}/touch");
            control(&self.base, Method::POST, &path, json!({})).await;
        }
        self.last_change = Some(Instant::now());
        ids
    }

    /// Waits until every creation and update of the job so far is in Kafka.
    pub async fn await_published(&self) {
        let log = e2e::changes(&self.base).await;
        let want: HashSet<(String, String)> = log[self.job_started..]
            .iter()
            .filter(|c| c.1 != "deleted")
            .map(|c| (c.0.clone(), c.2.clone()))
            .collect();
        e2e::await_events(&self.names.events, PATIENCE, Some(&self.poller), |s| {
            let got = e2e::counts(s);
            want.iter().all(|k| got.contains_key(k))
        })
        .await;
    }

    /// One round: change, then wait for all of it in Kafka.
    pub async fn round(&mut self, create: usize, touch: &[String]) -> Vec<String> {
        let ids = self.change(create, touch).await;
        self.await_published().await;
        ids
    }

    /// Waits for `n` more committed polls: windows that re-read everything
    /// already published (the overlap reaches minutes back), where a broken
    /// dedupe would publish again.
    pub async fn settle(&self, n: usize) {
        let now = self.poller.logged(COMMITTED).len();
        self.poller
            .await_log(PATIENCE, |lines| {
                lines.iter().filter(|l| l["message"] == COMMITTED).count() >= now + n
            })
            .await;
    }

    /// Stops the poller (SIGTERM, clean exit) and starts a new one on the
    /// same topics, instances and sandbox with `env`.
    pub fn restart(&mut self, env: &[(&str, &str)]) {
        assert_eq!(self.poller.terminate(), Some(0), "clean exit on SIGTERM");
        self.poller = spawn_poller(&self.names, &self.files, env);
    }

    /// What an operator does for a stranded instance: a fresh
    /// authorization code in the instance file's `providerData.code`
    /// (picked up at the next start).
    pub async fn authorize_again(&self) {
        let code = control(&self.base, Method::POST, "/_sandbox/codes", json!({})).await;
        let path = self.files.dir.path().join("shop.json");
        let text = std::fs::read_to_string(&path).expect("instance file");
        let mut doc: Value = serde_json::from_str(&text).expect("instance JSON");
        doc["providerData"]["code"] = code["code"].clone();
        std::fs::write(&path, doc.to_string()).expect("write instance file");
    }

    pub async fn faults(&self, body: Value) -> Value {
        control(&self.base, Method::PUT, "/_sandbox/faults", body).await
    }

    pub async fn clear_faults(&self) {
        control(&self.base, Method::DELETE, "/_sandbox/faults", json!({})).await;
    }

    /// The common check on everything published, and that the test was not
    /// vacuous: every change of the job was required (rounds are spaced).
    pub async fn check(&self) -> ExactlyOnce {
        let seen = e2e::events(&self.names.events).await;
        let log = e2e::changes(&self.base).await;
        let summary =
            e2e::assert_exactly_once(&seen, &log, self.before_job, self.job_started, interval());
        assert_eq!(summary.exempt, 0, "rounds are spaced: {summary:?}");
        assert_eq!(
            summary.published, summary.required,
            "published exactly the job's changes: {summary:?}"
        );
        assert!(summary.required > 0, "{summary:?}");
        let dead = e2e::events(&self.names.dlq).await;
        assert!(dead.is_empty(), "no dead letters expected: {dead:?}");
        summary
    }

    /// Three rounds of changes (creations, updates, both), each awaited.
    pub async fn three_rounds(&mut self) {
        let a = self.round(6, &[]).await;
        self.round(0, &a[..3]).await;
        self.round(2, &a[..1]).await;
    }

    pub async fn stop(self) {
        let name = std::thread::current().name().unwrap_or_default().to_owned();
        eprintln!("{name}: {:.1} s", self.began.elapsed().as_secs_f64());
        drop(self.poller);
        self.sb.stop().await.expect("sandbox stop");
    }
}

/// The string field `name` of a log line.
pub fn text<'a>(line: &'a Value, name: &str) -> &'a str {
    line[name].as_str().unwrap_or_default()
}

/// Log lines with `message` whose `field` contains `needle`.
pub fn logged_with(poller: &Poller, message: &str, field: &str, needle: &str) -> Vec<Value> {
    poller
        .logged(message)
        .into_iter()
        .filter(|l| text(l, field).contains(needle))
        .collect()
}
