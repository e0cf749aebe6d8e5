//! Crash safety: the poller is killed with SIGKILL again and again (half of
//! the kills inside an open transaction) while orders keep changing and its
//! OAuth tokens keep rotating. After the last restart a `read_committed`
//! reader sees every observable change exactly once, in order per key, and
//! the poller never lost access to the provider.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::e2e::{self, Instances, Names, Poller, spawn_poller};
use keap_sandbox::{self as sandbox, SandboxConfig};
use rand::RngExt;
use serde_json::{Value, json};

const KILLS: usize = 12;
/// Access tokens live 4 s: the poller refreshes (and the sandbox rotates
/// the refresh token) about every 2 s, across every restart.
const TOKEN_TTL_SECONDS: u64 = 4;

fn count_messages(poller: &Poller, message: &str) -> usize {
    poller
        .log_lines()
        .iter()
        .filter(|l| l["message"] == message)
        .count()
}

/// Waits until the poller's log shows a transaction being held open (or
/// gives up after `timeout`, returning false).
async fn await_open_transaction(poller: &mut Poller, after: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if count_messages(poller, "Transaction held open for testing.") > after {
            return true;
        }
        assert!(poller.is_running(), "poller died:\n{}", poller.log_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn parse_keap(date: &str) -> DateTime<Utc> {
    DateTime::parse_from_str(date, "%Y-%m-%dT%H:%M:%S%.3f%z")
        .map(|d| d.to_utc())
        .unwrap_or_else(|e| panic!("sandbox date {date:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_at_random_points_nothing_is_lost_or_published_twice() {
    let sb = sandbox::start(SandboxConfig {
        access_token_ttl_seconds: TOKEN_TTL_SECONDS,
        // The old refresh token dies when the new pair is first used: a
        // poller that used a new access token before storing its refresh
        // token would be stranded by a kill; ours stores first (see
        // docs/decisions.md for providers that void it at once).
        refresh_reuse: sandbox::oauth::RefreshReuse::UntilFirstUse,
        ..e2e::oauth_sandbox()
    })
    .await
    .expect("sandbox");
    let base = sb.base_url();
    let names = Names::new();
    let files = Instances::new(&[(
        "shop.json",
        e2e::instance("shop", &format!("{base}/crm/rest"), 1, json!({})).to_string(),
    )]);
    // A stable worker id: each restart takes the partitions back at once
    // (static group membership) instead of after the session timeout.
    let hold = [
        ("TEST_HOLD_TRANSACTION_MS", "300"),
        ("WORKER_ID", "crash-test-worker"),
    ];

    // The job's starting point is committed before anything changes.
    let mut p = spawn_poller(&names, &files, &hold);
    e2e::await_any_checkpoint(&names, &p).await;

    let stop = Arc::new(AtomicBool::new(false));
    let generator = common::group::start_generator(base.clone(), stop.clone());
    let mut logs: Vec<Poller> = Vec::new();
    let mut inside_txn_kills = 0;
    for i in 0..KILLS {
        if i % 2 == 0 {
            // Kill while a transaction is held open: its records must never
            // become visible, and the next owner must redo the window.
            let before = count_messages(&p, "Transaction held open for testing.");
            let t = Instant::now();
            if await_open_transaction(&mut p, before, Duration::from_secs(30)).await {
                inside_txn_kills += 1;
            } else {
                let log = p.log_text();
                let tail: Vec<&str> = log.lines().filter(|l| !l.contains("rdkafka")).collect();
                eprintln!(
                    "round {i}: no held transaction within {:?}; log:\n{}",
                    t.elapsed(),
                    tail[tail.len().saturating_sub(12)..].join("\n")
                );
            }
        } else {
            let ms = rand::rng().random_range(300..4000);
            // The kill point itself is what is random here.
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        p.kill();
        let next = spawn_poller(&names, &files, &hold);
        logs.push(std::mem::replace(&mut p, next));
    }
    let mut last = p;
    // Let the last poller see changes for a while, then stop the shop.
    e2e::await_events(&names.state, Duration::from_secs(60), Some(&last), |_| {
        count_messages(&last, "Poll committed.") >= 3
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let ops = generator.await.expect("generator");

    let truth = e2e::changes(&base).await;
    let mut final_state: HashMap<String, String> = HashMap::new();
    for (id, _, date) in &truth {
        final_state.insert(id.clone(), date.clone());
    }
    let seen = e2e::await_events(&names.events, Duration::from_secs(120), Some(&last), |s| {
        let got: HashSet<(String, String)> = s
            .iter()
            .map(|e| (e.object_id().to_string(), e.modification_date().to_string()))
            .collect();
        final_state
            .iter()
            .all(|(id, d)| got.contains(&(id.clone(), d.clone())))
    })
    .await;
    assert_eq!(last.terminate(), Some(0), "SIGTERM exits cleanly");
    logs.push(last);

    // 1. Nothing twice.
    let counts = e2e::counts(&seen);
    let dups: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "published twice: {dups:?}");
    // 2. Only states the sandbox served.
    let served: HashSet<(String, String)> = truth
        .iter()
        .map(|(id, _, d)| (id.clone(), d.clone()))
        .collect();
    for key in counts.keys() {
        assert!(
            served.contains(key),
            "published a state never served: {key:?}"
        );
    }
    // 3. Per-key order.
    let mut by_key: BTreeMap<&str, Vec<DateTime<Utc>>> = BTreeMap::new();
    for e in &seen {
        assert_eq!(e.key, e.object_id());
        by_key
            .entry(&e.key)
            .or_default()
            .push(parse_keap(e.modification_date()));
    }
    for (key, dates) in &by_key {
        assert!(
            dates.windows(2).all(|w| w[0] < w[1]),
            "order of {key}: {dates:?}"
        );
    }
    // 4. Every change that some committed poll could observe is published:
    //    a change at t1 (whole seconds) followed by the next change of the
    //    same order at t2 was observable if a poll that later committed
    //    fetched at p with t1 + 1 s <= p <= t2 - 1.5 s (date precision and
    //    fetch latency).
    let polls: Vec<DateTime<Utc>> = logs
        .iter()
        .flat_map(Poller::log_lines)
        .filter(|l| l["message"] == "Poll committed.")
        .filter_map(|l| {
            l["poll_start"]
                .as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        })
        .map(|d| d.to_utc())
        .collect();
    let mut per_order: HashMap<&str, Vec<DateTime<Utc>>> = HashMap::new();
    for (id, _, d) in &truth {
        per_order.entry(id).or_default().push(parse_keap(d));
    }
    let mut required = 0;
    for (id, dates) in &per_order {
        for (i, t1) in dates.iter().enumerate() {
            let observable = match dates.get(i + 1) {
                None => true,
                Some(t2) => polls.iter().any(|p| {
                    *p >= *t1 + chrono::TimeDelta::seconds(1)
                        && *p <= *t2 - chrono::TimeDelta::milliseconds(1500)
                }),
            };
            if observable {
                required += 1;
                let key = (id.to_string(), e2e_date(&truth, id, *t1));
                assert!(
                    counts.contains_key(&key),
                    "observable change not published: {key:?}"
                );
            }
        }
    }
    // 5. The kills really happened inside open transactions: aborted
    //    records sit in the log, visible only to read_uncommitted.
    let uncommitted = common::read_values(&names.events, "read_uncommitted").await;
    assert!(
        inside_txn_kills >= 3,
        "only {inside_txn_kills} kills inside transactions"
    );
    assert!(
        uncommitted.len() > seen.len(),
        "no aborted records: {} uncommitted vs {} committed",
        uncommitted.len(),
        seen.len()
    );
    // 6. Tokens rotated across the restarts and access was never lost:
    //    the last poller committed polls after the last rotation, and the
    //    sandbox refreshed many times.
    let stats: Value = reqwest::get(format!("{base}/_sandbox/stats"))
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    let token_ok = stats["requests"]["POST /token"]["200"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        token_ok >= 10,
        "token endpoint answered 200 only {token_ok} times: {stats}"
    );
    let unauthorized = stats["requests"]["GET /crm/rest/v1/orders"]["401"]
        .as_u64()
        .unwrap_or(0);
    eprintln!(
        "crash test: {ops} shop operations, {} changes, {} events, {required} required, {} committed polls, \
         {inside_txn_kills} kills inside transactions, {} aborted records, {token_ok} token grants, {unauthorized} API 401s",
        truth.len(),
        seen.len(),
        polls.len(),
        uncommitted.len() - seen.len()
    );
    sb.stop().await.expect("sandbox stop");
}

/// The sandbox's own spelling of a change's date (events carry it as is).
fn e2e_date(truth: &[(String, String, String)], id: &str, t: DateTime<Utc>) -> String {
    truth
        .iter()
        .find(|(i, _, d)| i == id && parse_keap(d) == t)
        .map(|(_, _, d)| d.clone())
        .unwrap_or_default()
}
