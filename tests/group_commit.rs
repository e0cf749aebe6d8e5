//! Group commit under crashes: many jobs share one state partition, so the
//! polls that are ready while a transaction runs commit together in the
//! next one. The worker is killed with SIGKILL inside such shared
//! transactions (held open for testing) again and again while the shop
//! changes; after the last restart a `read_committed` reader sees every
//! change of every instance exactly once.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::e2e::{self, Names, Poller};
use common::group;
use keap_sandbox as sandbox;

/// Kills, each inside a transaction shared by several polls.
const KILLS: usize = 5;
const INSTANCES: usize = 12;

/// Held-open transactions whose `batches` field says several polls share
/// them.
fn shared_holds(p: &Poller) -> usize {
    p.logged("Transaction held open for testing.")
        .iter()
        .filter(|l| l["batches"].as_u64().is_some_and(|n| n >= 2))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_inside_shared_transactions_nothing_is_lost_or_published_twice() {
    let sb = sandbox::start(group::oauth_sandbox(INSTANCES))
        .await
        .expect("sandbox");
    let base = sb.base_url();
    let names = Names::new();
    let files = group::instances(&base, INSTANCES, 1);
    // One state partition: all 12 jobs share one lane. Each transaction is
    // held 400 ms, so the polls of the other jobs queue behind it and the
    // next transaction carries several of them.
    let env = [
        ("TOPIC_PARTITIONS", "1"),
        ("TEST_HOLD_TRANSACTION_MS", "400"),
        ("WORKER_ID", "group-commit-worker"),
    ];
    let mut p = group::worker(&names, &files, None, &env);
    p.await_log(Duration::from_secs(90), |l| {
        l.iter()
            .filter(|x| x["message"] == group::COMMITTED)
            .count()
            >= INSTANCES
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let generator = group::start_generator(base.clone(), stop.clone());
    let mut old: Vec<Poller> = Vec::new();
    let mut inside_shared = 0;
    for _ in 0..KILLS {
        let before = shared_holds(&p);
        let deadline = Instant::now() + Duration::from_secs(60);
        while shared_holds(&p) <= before {
            assert!(p.is_running(), "worker died:\n{}", p.log_text());
            assert!(
                Instant::now() < deadline,
                "no shared transaction within 60 s:\n{}",
                p.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        inside_shared += 1;
        p.kill();
        let next = group::worker(&names, &files, None, &env);
        old.push(std::mem::replace(&mut p, next));
    }
    assert_eq!(inside_shared, KILLS);
    // The last worker commits shared transactions too, then the shop stops.
    let before = shared_holds(&p);
    let deadline = Instant::now() + Duration::from_secs(60);
    while shared_holds(&p) <= before + 2 {
        assert!(Instant::now() < deadline, "{}", p.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    generator.await.expect("generator");

    let truth = e2e::changes(&base).await;
    let instances: Vec<String> = (0..INSTANCES).map(|i| format!("shop-{i}")).collect();
    let seen = e2e::await_events(&names.events, Duration::from_secs(120), Some(&p), |s| {
        group::check_exactly_once(s, &truth, &instances).0.lost == 0
    })
    .await;
    let (tally, problems) = group::check_exactly_once(&seen, &truth, &instances);
    assert!(problems.is_empty(), "{problems:#?}");
    eprintln!("group commit under kills: {tally:?}");
    assert_eq!(p.terminate(), Some(0));
    sb.stop().await.expect("sandbox stop");
}
