//! The broker restarts (keeping its data) while a poll's transaction is
//! held open: the commit's outcome is unknown for as long as the broker is
//! away. The worker resumes the commit, or replaces its producer and
//! restores the partition (the restore tells whether the commit landed);
//! either way commits resume within 30 s of the broker's return, nothing
//! is published twice and nothing is lost. The only test in this binary:
//! no other test may see the broker go away.

mod common;

use std::time::{Duration, Instant};

use chrono::Utc;
use common::e2e::{self, Names, control};
use common::group::{self, COMMITTED};
use keap_sandbox as sandbox;
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn commits_resume_after_a_broker_restart_during_a_held_open_commit() {
    let sb = sandbox::start(group::oauth_sandbox(2))
        .await
        .expect("sandbox");
    let base = sb.base_url();
    let names = Names::new();
    let files = group::instances(&base, 2, 1);
    let poller = group::worker(
        &names,
        &files,
        Some("restart"),
        &[
            ("TEST_HOLD_TRANSACTION_MS", "2000"),
            // Shorter than the broker's absence: the outcome of the held
            // commit stays unknown past it.
            ("KAFKA_COMMIT_TIMEOUT_MS", "3000"),
        ],
    );
    poller
        .await_log(Duration::from_secs(60), |l| {
            l.iter().filter(|x| x["message"] == COMMITTED).count() >= 2
        })
        .await;
    for _ in 0..3 {
        control(&base, Method::POST, "/_sandbox/orders", json!({"count": 2})).await;
    }
    let held = poller.logged("Transaction held open for testing.").len();
    poller
        .await_log(Duration::from_secs(30), |l| {
            l.iter()
                .filter(|x| x["message"] == "Transaction held open for testing.")
                .count()
                > held
        })
        .await;
    common::kafka_script("stop");
    // Away longer than the commit timeout.
    let away = Instant::now();
    while away.elapsed() < Duration::from_secs(5) {
        control(&base, Method::POST, "/_sandbox/orders", json!({"count": 1})).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    common::kafka_script("start");
    let back = Utc::now();
    let back_at = Instant::now();
    poller
        .await_log(Duration::from_secs(30), |l| {
            l.iter()
                .any(|x| x["message"] == COMMITTED && group::timestamp(x).is_some_and(|t| t > back))
        })
        .await;
    let resumed = back_at.elapsed();
    for _ in 0..2 {
        control(&base, Method::POST, "/_sandbox/orders", json!({"count": 1})).await;
    }
    let truth = e2e::changes(&base).await;
    let instances = vec!["shop-0".to_string(), "shop-1".to_string()];
    let seen = e2e::await_events(&names.events, Duration::from_secs(60), Some(&poller), |s| {
        group::check_exactly_once(s, &truth, &instances).0.lost == 0
    })
    .await;
    let (tally, problems) = group::check_exactly_once(&seen, &truth, &instances);
    assert!(problems.is_empty(), "{problems:#?}");
    let (status, body) = poller.ops_get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    // The held commit met the outage: resumed, or given up and redone.
    let resumed_commits = poller
        .logged("Commit not confirmed yet; resuming it.")
        .len();
    let replaced = poller
        .logged("Producer fenced or broken; the partition's jobs stop.")
        .len();
    let aborted = poller
        .logged("Transaction aborted; the window will be redone.")
        .len();
    assert!(
        resumed_commits + replaced + aborted > 0,
        "the held commit never noticed the broker's absence"
    );
    eprintln!(
        "broker restart: commits resumed {resumed:?} after the broker was back; {tally:?}; \
         {resumed_commits} commit retries, {replaced} producers replaced, {aborted} aborted"
    );
    let mut poller = poller;
    assert_eq!(poller.terminate(), Some(0));
    sb.stop().await.expect("sandbox stop");
}
