//! Pipelining under crashes: a backfill long enough for many parts, each
//! part one transaction, the next part fetched while the part before it
//! commits. The worker is killed with SIGKILL while a part's transaction is
//! held open (for testing) and the next part's fetch is under way; after the
//! last restart a `read_committed` reader sees every order exactly once.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::e2e::{self, Instances, Names, Poller, spawn_poller};
use keap_sandbox as sandbox;
use serde_json::json;

const KILLS: usize = 4;
/// Orders created before the job starts, backfilled in parts of
/// `MAX_RECORDS_PER_POLL` (300): 20 parts.
const ORDERS: u32 = 6000;

const FETCHING_AHEAD: &str = "Fetching the window's next part while this part commits.";
const HELD_OPEN: &str = "Transaction held open for testing.";

/// The pipeline's messages, in log order.
fn pipeline(p: &Poller) -> Vec<String> {
    p.log_lines()
        .iter()
        .filter_map(|l| l["message"].as_str().map(str::to_owned))
        .filter(|m| m == FETCHING_AHEAD || m == HELD_OPEN || m == "Poll committed.")
        .collect()
}

/// A part's transaction is open while the next part is being fetched: the
/// last two pipeline messages are the fetch ahead and the held transaction.
fn inside_pipelined_commit(messages: &[String]) -> bool {
    matches!(messages, [.., ahead, held] if ahead == FETCHING_AHEAD && held == HELD_OPEN)
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_while_the_next_part_is_fetched_nothing_is_lost_or_published_twice() {
    let sb = sandbox::start(e2e::oauth_sandbox()).await.expect("sandbox");
    let base = sb.base_url();
    // Twelve batches of orders over the last 20 minutes.
    for batch in 0..12 {
        e2e::orders_dated_back(&base, ORDERS / 12, 1200 - batch * 100).await;
    }
    let from = (chrono::Utc::now() - chrono::TimeDelta::hours(1)).to_rfc3339();
    let mut doc = e2e::instance(
        "shop",
        &format!("{base}/crm/rest"),
        60,
        json!({ "event.poller.backfill.from": from }),
    );
    doc["configuration"]["event.poller.configuration"]["orders"]["pageSize"] = json!(100);
    let files = Instances::new(&[("shop.json", doc.to_string())]);
    let names = Names::new();
    let env = [
        ("MAX_RECORDS_PER_POLL", "300"),
        ("TEST_HOLD_TRANSACTION_MS", "300"),
        ("WORKER_ID", "pipeline-crash-worker"),
    ];

    let mut p = spawn_poller(&names, &files, &env);
    let mut old: Vec<Poller> = Vec::new();
    for kill in 0..KILLS {
        let deadline = Instant::now() + Duration::from_secs(60);
        // Each worker first commits a part of its own, so the backfill
        // moves on across the kills.
        while !(inside_pipelined_commit(&pipeline(&p))
            && pipeline(&p).iter().any(|m| m == "Poll committed."))
        {
            assert!(p.is_running(), "worker died:\n{}", p.log_text());
            assert!(
                Instant::now() < deadline,
                "kill {kill}: no commit with the next part fetched ahead within 60 s:\n{}",
                p.log_text()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        p.kill();
        let next = spawn_poller(&names, &files, &env);
        old.push(std::mem::replace(&mut p, next));
    }
    let parts_before_kills = old
        .iter()
        .map(|o| {
            pipeline(o)
                .iter()
                .filter(|m| *m == "Poll committed.")
                .count()
        })
        .sum::<usize>();

    let seen = e2e::await_events(&names.events, Duration::from_secs(120), Some(&p), |s| {
        e2e::counts(s).len() >= ORDERS as usize
    })
    .await;
    let counts = e2e::counts(&seen);
    let mut twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    twice.sort();
    assert!(twice.is_empty(), "published more than once: {twice:?}");
    let mut per_order: HashMap<&str, usize> = HashMap::new();
    for (id, _) in counts.keys() {
        *per_order.entry(id.as_str()).or_default() += 1;
    }
    assert_eq!(per_order.len(), ORDERS as usize, "every order, once");
    assert!(per_order.values().all(|n| *n == 1));
    // The last worker pipelined too (the backfill was not over before it).
    assert!(
        pipeline(&p).iter().any(|m| m == FETCHING_AHEAD),
        "the last worker never fetched ahead"
    );
    eprintln!(
        "pipelining under {KILLS} kills: {} events, {parts_before_kills} parts committed before the last restart",
        seen.len()
    );
    assert_eq!(p.terminate(), Some(0));
    sb.stop().await.expect("sandbox stop");
}
