//! Several workers of one group on one sandbox: many instances (all on the
//! same shop), a live generator, commits per state partition read from the
//! workers' logs, and the exactly-once check per instance.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::RngExt;
use reqwest::Method;
use serde_json::{Value, json};

use super::e2e::{self, Instances, Names, Poller, Seen, control, spawn_poller};

pub const COMMITTED: &str = "Poll committed.";

/// The one-time authorization code of instance `shop-i`.
pub fn code(i: usize) -> String {
    format!("code-{i}")
}

/// A sandbox for [`instances`]`(n)`: OAuth, one authorization code each.
pub fn oauth_sandbox(n: usize) -> keap_sandbox::SandboxConfig {
    keap_sandbox::SandboxConfig {
        authorization_codes: (0..n).map(code).collect(),
        ..e2e::oauth_sandbox()
    }
}

/// `n` instances `shop-0` … polling `base` every `interval_secs`.
pub fn instances(base: &str, n: usize, interval_secs: u64) -> Instances {
    let files: Vec<(String, String)> = (0..n)
        .map(|i| {
            let mut v = e2e::instance(
                &format!("shop-{i}"),
                &format!("{base}/crm/rest"),
                interval_secs,
                json!({}),
            );
            v["providerData"]["code"] = json!(code(i));
            (format!("shop-{i}.json"), v.to_string())
        })
        .collect();
    let refs: Vec<(&str, String)> = files.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    Instances::new(&refs)
}

/// Starts a worker of the group with static id `id` (or none). A
/// `KAFKA_GROUP_PROTOCOL` in the test's environment is passed on, so the
/// same tests measure either protocol.
pub fn worker(names: &Names, files: &Instances, id: Option<&str>, env: &[(&str, &str)]) -> Poller {
    let mut all: Vec<(&str, &str)> = env.to_vec();
    if let Some(id) = id {
        all.push(("WORKER_ID", id));
    }
    let protocol = std::env::var("KAFKA_GROUP_PROTOCOL").unwrap_or_default();
    if !protocol.is_empty() {
        all.push(("KAFKA_GROUP_PROTOCOL", &protocol));
    }
    spawn_poller(names, files, &all)
}

/// A committed poll as a worker logged it.
#[derive(Debug, Clone)]
pub struct Commit {
    pub at: DateTime<Utc>,
    pub partition: i64,
}

/// The state partition a log line was written under (its span).
pub fn partition_of(line: &Value) -> Option<i64> {
    line["spans"]
        .as_array()?
        .iter()
        .find_map(|s| s["partition"].as_i64())
}

pub fn timestamp(line: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(line["timestamp"].as_str()?)
        .ok()
        .map(|d| d.to_utc())
}

/// Every poll `p` committed, in log order.
pub fn commits(p: &Poller) -> Vec<Commit> {
    p.logged(COMMITTED)
        .iter()
        .filter_map(|l| {
            Some(Commit {
                at: timestamp(l)?,
                partition: partition_of(l)?,
            })
        })
        .collect()
}

/// Partitions `p` committed in at or after `since`.
pub fn partitions_committed(p: &Poller, since: DateTime<Utc>) -> HashSet<i64> {
    commits(p)
        .into_iter()
        .filter(|c| c.at >= since)
        .map(|c| c.partition)
        .collect()
}

/// The partitions `p` owns once the group has settled: the same non-empty
/// set committed in two consecutive 3 s spans (a rebalance moves some
/// partitions while workers join). Panics after `timeout`.
pub async fn settled_partitions(p: &Poller, timeout: Duration) -> HashSet<i64> {
    const SPAN: chrono::TimeDelta = chrono::TimeDelta::seconds(3);
    let deadline = std::time::Instant::now() + timeout;
    let mut last: HashSet<i64> = HashSet::new();
    loop {
        let now = Utc::now();
        let recent: HashSet<i64> = commits(p)
            .into_iter()
            .filter(|c| c.at >= now - SPAN)
            .map(|c| c.partition)
            .collect();
        if !recent.is_empty() && recent == last {
            return recent;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker's partitions did not settle within {timeout:?} (last {last:?}, now {recent:?})"
        );
        last = recent;
        tokio::time::sleep(SPAN.to_std().unwrap_or_default()).await;
    }
}

/// Partitions that have jobs: those some worker committed in.
pub fn all_committed(workers: &[&Poller]) -> HashSet<i64> {
    workers
        .iter()
        .flat_map(|p| partitions_committed(p, DateTime::<Utc>::MIN_UTC))
        .collect()
}

/// Waits until every partition of `want` committed at or after `since` on
/// one of `workers`; returns when each did first.
pub async fn await_partitions_commit(
    workers: &[&Poller],
    want: &HashSet<i64>,
    since: DateTime<Utc>,
    timeout: Duration,
) -> HashMap<i64, DateTime<Utc>> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let mut first: HashMap<i64, DateTime<Utc>> = HashMap::new();
        for p in workers {
            for c in commits(p) {
                if c.at >= since && want.contains(&c.partition) {
                    let e = first.entry(c.partition).or_insert(c.at);
                    *e = (*e).min(c.at);
                }
            }
        }
        if first.len() == want.len() {
            return first;
        }
        if std::time::Instant::now() > deadline {
            let tails: Vec<String> = workers
                .iter()
                .map(|p| {
                    let log = p.log_text();
                    let lines: Vec<&str> = log.lines().rev().take(15).collect();
                    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
                })
                .collect();
            panic!(
                "partitions {want:?} did not all commit within {timeout:?} (got {:?}); logs:\n{}",
                first.keys().collect::<Vec<_>>(),
                tails.join("\n----\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The longest stretch in `[from, to]` during which partition `partition`
/// saw no commit in `cs` (from `from` to its first commit, between commits,
/// from its last commit to `to`).
pub fn longest_gap(
    cs: &[Commit],
    partition: i64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Duration {
    let mut times: Vec<DateTime<Utc>> = cs
        .iter()
        .filter(|c| c.partition == partition && c.at >= from && c.at <= to)
        .map(|c| c.at)
        .collect();
    times.sort();
    let mut edges = vec![from];
    edges.extend(times);
    edges.push(to);
    edges
        .windows(2)
        .map(|w| (w[1] - w[0]).to_std().unwrap_or_default())
        .max()
        .unwrap_or_default()
}

/// Touches or creates orders at random moments until stopped.
pub fn start_generator(base: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut ids: Vec<String> = Vec::new();
        let mut ops = 0;
        while !stop.load(Ordering::Relaxed) {
            let (create, pause, pick) = {
                let mut rng = rand::rng();
                (
                    ids.len() < 5 || rng.random_bool(0.2),
                    rng.random_range(150..500),
                    rng.random_range(0..ids.len().max(1)),
                )
            };
            if create {
                let v = control(&base, Method::POST, "/_sandbox/orders", json!({"count": 1})).await;
                ids.extend(
                    v["ids"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|x| x.to_string()),
                );
            } else {
                control(
                    &base,
                    Method::POST,
                    &format!("/_sandbox/orders/{}/touch", ids[pick]),
                    json!({}),
                )
                .await;
            }
            ops += 1;
            // Pacing of the simulated shop, not synchronisation.
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        ops
    })
}

/// `(instanceId, objectId, modification_date)` of an event.
pub fn change_of(e: &Seen) -> (String, String, String) {
    (
        e.value["instanceId"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        e.object_id().to_string(),
        e.modification_date().to_string(),
    )
}

/// What [`check_exactly_once`] counted.
#[derive(Debug)]
pub struct Tally {
    pub events: usize,
    pub duplicated: usize,
    pub lost: usize,
}

/// Per instance: nothing twice, only states the sandbox served, per-key
/// order, and the final state of every order. `truth` is the sandbox's
/// change log; `instances` the instance ids. Returns the tally; the caller
/// asserts on it (a chaos run reports before it fails).
pub fn check_exactly_once(
    seen: &[Seen],
    truth: &e2e::ChangeLog,
    instances: &[String],
) -> (Tally, Vec<String>) {
    let mut problems = Vec::new();
    let mut count: HashMap<(String, String, String), usize> = HashMap::new();
    for e in seen {
        if e.key != e.object_id() {
            problems.push(format!("key {} is not objectId {}", e.key, e.object_id()));
        }
        *count.entry(change_of(e)).or_default() += 1;
    }
    let duplicated = count.values().filter(|n| **n > 1).count();
    if duplicated > 0 {
        let mut twice: Vec<_> = count
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(k, _)| k)
            .collect();
        twice.sort();
        twice.truncate(5);
        problems.push(format!(
            "{duplicated} changes published twice, e.g. {twice:?}"
        ));
    }
    let served: HashSet<(&str, &str)> = truth
        .iter()
        .map(|(id, _, d)| (id.as_str(), d.as_str()))
        .collect();
    for (_, id, d) in count.keys() {
        if !served.contains(&(id.as_str(), d.as_str())) {
            problems.push(format!("published a state never served: {id} @ {d}"));
        }
    }
    let mut final_state: BTreeMap<&str, &str> = BTreeMap::new();
    for (id, change, d) in truth {
        if change != "deleted" {
            final_state.insert(id, d);
        }
    }
    let mut lost = 0;
    for instance in instances {
        for (id, d) in &final_state {
            if !count.contains_key(&(instance.clone(), id.to_string(), d.to_string())) {
                lost += 1;
                if lost <= 5 {
                    problems.push(format!(
                        "final state of {id} ({d}) not published for {instance}"
                    ));
                }
            }
        }
    }
    let mut by_key: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for e in seen {
        let (i, id, d) = change_of(e);
        by_key.entry((i, id)).or_default().push(d);
    }
    for (key, dates) in &by_key {
        let parsed: Vec<_> = dates
            .iter()
            .filter_map(|d| e2e::parse_keap_date(d))
            .collect();
        if !parsed.windows(2).all(|w| w[0] < w[1]) {
            problems.push(format!("out of order for {key:?}: {dates:?}"));
        }
    }
    (
        Tally {
            events: seen.len(),
            duplicated,
            lost,
        },
        problems,
    )
}

/// `kill -<signal> pid`.
pub fn signal(p: &Poller, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &p.pid().to_string()])
        .status()
        .expect("kill(1)");
    assert!(status.success(), "kill -{signal} {}", p.pid());
}

/// Median and maximum of `xs`.
pub fn median_max(xs: &[Duration]) -> (Duration, Duration) {
    let mut v = xs.to_vec();
    v.sort();
    (v[v.len() / 2], *v.last().unwrap_or(&Duration::ZERO))
}
