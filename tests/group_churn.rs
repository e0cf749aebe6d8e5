//! Several workers under churn, against the real broker and the sandbox:
//! a worker joining takes a share while the others keep committing; a
//! duplicate `WORKER_ID` leaves exactly one worker polling; a worker paused
//! past the session timeout inside a transaction is fenced and rejoins; a
//! killed or stopped worker's partitions commit again elsewhere within the
//! failover targets.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use common::e2e::{self, Names, Poller};
use common::group::{self, COMMITTED};
use keap_sandbox::{self as sandbox, SandboxConfig};

/// The tests of this file run one at a time: each starts several workers,
/// and the failover figures are timings that a second test's workers on
/// the same two cores would distort.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Every instance polls each second.
const INTERVAL: Duration = Duration::from_secs(1);
/// `KAFKA_SESSION_TIMEOUT_MS` of every worker here.
const SESSION: Duration = Duration::from_secs(6);
const ENV: &[(&str, &str)] = &[
    ("TOPIC_PARTITIONS", "6"),
    ("KAFKA_SESSION_TIMEOUT_MS", "6000"),
    ("KAFKA_HEARTBEAT_INTERVAL_MS", "1000"),
];

async fn shop() -> sandbox::RunningSandbox {
    // No orders before the jobs start: every change is one they must see.
    sandbox::start(SandboxConfig {
        ..group::oauth_sandbox(12)
    })
    .await
    .expect("sandbox")
}

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("shop-{i}")).collect()
}

/// Waits until every partition with jobs has committed at least once on
/// one of `workers`, and returns those partitions.
async fn await_all_committing(workers: &[&Poller], expected: usize) -> HashSet<i64> {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let got = group::all_committed(workers);
        if got.len() >= expected {
            return got;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only partitions {got:?} committed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many of the 6 partitions hold jobs of `instances` instances.
fn partitions_with_jobs(n: usize) -> usize {
    let files: Vec<_> = ids(n);
    let parts: HashSet<i32> = files
        .iter()
        .map(|id| event_poller::state::partition_for(id, 6))
        .collect();
    parts.len()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fourth_worker_takes_a_share_while_the_others_keep_committing() {
    let _serial = SERIAL.lock().await;
    let sb = shop().await;
    let base = sb.base_url();
    let names = Names::new();
    let files = group::instances(&base, 12, INTERVAL.as_secs());
    let expected = partitions_with_jobs(12);
    let mut workers: Vec<Poller> = (1..=3)
        .map(|i| group::worker(&names, &files, Some(&format!("w{i}")), ENV))
        .collect();
    let refs: Vec<&Poller> = workers.iter().collect();
    await_all_committing(&refs, expected).await;
    // Settle: every worker has its share (the group may rebalance while the
    // three join).
    for w in &workers {
        w.await_log(Duration::from_secs(60), |l| {
            l.iter().filter(|x| x["message"] == COMMITTED).count() >= 3
        })
        .await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let generator = group::start_generator(base.clone(), stop.clone());

    let joined_at = Utc::now();
    let fourth = group::worker(&names, &files, Some("w4"), ENV);
    fourth
        .await_log(Duration::from_secs(60), |l| {
            l.iter().any(|x| x["message"] == COMMITTED)
        })
        .await;
    // Let the group settle after the hand-over, then look at the survivors.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let until = Utc::now();
    let took = group::partitions_committed(&fourth, joined_at);
    let mut worst = Duration::ZERO;
    for w in &workers {
        let cs = group::commits(w);
        // The partitions it kept: it committed them before and after.
        let before = group::partitions_committed(w, joined_at - chrono::TimeDelta::seconds(3));
        let after = group::partitions_committed(w, until - chrono::TimeDelta::seconds(2));
        for p in before.intersection(&after) {
            let gap = group::longest_gap(&cs, *p, joined_at, until);
            worst = worst.max(gap);
            assert!(
                gap <= INTERVAL * 3,
                "partition {p} stopped committing on a survivor for {gap:?} while a worker joined"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    generator.await.expect("generator");
    eprintln!(
        "fourth worker took partitions {took:?}; longest survivor gap {worst:?} (interval {INTERVAL:?})"
    );
    assert!(!took.is_empty(), "the fourth worker took no partition");
    workers.push(fourth);
    for w in &mut workers {
        assert_eq!(w.terminate(), Some(0));
    }
    sb.stop().await.expect("sandbox stop");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_with_one_worker_id_leave_exactly_one_polling() {
    let _serial = SERIAL.lock().await;
    let sb = shop().await;
    let base = sb.base_url();
    let names = Names::new();
    let files = group::instances(&base, 4, INTERVAL.as_secs());
    let mut first = group::worker(&names, &files, Some("same"), ENV);
    first
        .await_log(Duration::from_secs(60), |l| {
            l.iter().filter(|x| x["message"] == COMMITTED).count() >= 2
        })
        .await;
    let mut second = group::worker(&names, &files, Some("same"), ENV);
    // One of them is told by the group that it is not the member any more,
    // and ends non-zero; the other keeps polling.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (mut gone, mut kept) = loop {
        if !first.is_running() {
            break (first, second);
        }
        if !second.is_running() {
            break (second, first);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "both processes with one WORKER_ID still run; first:\n{}\nsecond:\n{}",
            first.log_text(),
            second.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let code = gone.await_exit(Duration::from_secs(5)).await;
    assert!(matches!(code, Some(c) if c != 0), "exit code {code:?}");
    let log = gone.log_text();
    assert!(
        log.contains("same WORKER_ID"),
        "the exit names the cause:\n{log}"
    );
    assert!(!gone.logged("Group membership lost for good.").is_empty());
    // The other one keeps (or takes over) every partition and commits.
    let after = Utc::now();
    let all: HashSet<i64> = (0..6)
        .filter(|p| {
            ids(4)
                .iter()
                .any(|id| event_poller::state::partition_for(id, 6) == *p as i32)
        })
        .collect();
    group::await_partitions_commit(&[&kept], &all, after, Duration::from_secs(60)).await;
    let (status, body) = kept.ops_get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(kept.terminate(), Some(0));
    sb.stop().await.expect("sandbox stop");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_paused_past_the_session_timeout_is_fenced_and_rejoins() {
    let _serial = SERIAL.lock().await;
    let sb = shop().await;
    let base = sb.base_url();
    let names = Names::new();
    let files = group::instances(&base, 8, INTERVAL.as_secs());
    let expected = partitions_with_jobs(8);
    let mut held = ENV.to_vec();
    held.push(("TEST_HOLD_TRANSACTION_MS", "1500"));
    let mut a = group::worker(&names, &files, Some("a"), &held);
    let mut b = group::worker(&names, &files, Some("b"), ENV);
    await_all_committing(&[&a, &b], expected).await;
    let stop = Arc::new(AtomicBool::new(false));
    let generator = group::start_generator(base.clone(), stop.clone());
    // The group has settled: a's partitions are what it keeps committing.
    let a_parts = group::settled_partitions(&a, Duration::from_secs(60)).await;

    // Pause a inside an open (held) transaction.
    let held_before = a.logged("Transaction held open for testing.").len();
    a.await_log(Duration::from_secs(30), |l| {
        l.iter()
            .filter(|x| x["message"] == "Transaction held open for testing.")
            .count()
            > held_before
    })
    .await;
    group::signal(&a, "STOP");
    let paused = Utc::now();
    // b takes a's partitions once a's session times out.
    group::await_partitions_commit(&[&b], &a_parts, paused, SESSION * 4).await;
    group::signal(&a, "CONT");
    let resumed = Utc::now();
    // a's held commit is refused (fenced), and a rejoins and commits again.
    a.await_log(Duration::from_secs(60), |l| {
        l.iter().any(|x| {
            x["message"] == "Producer fenced or broken; the partition's jobs stop."
                || x["message"] == "Transaction aborted; the window will be redone."
        })
    })
    .await;
    a.await_log(Duration::from_secs(90), |l| {
        l.iter().any(|x| {
            x["message"] == COMMITTED
                && group::timestamp(x).is_some_and(|t| t > resumed + chrono::TimeDelta::seconds(1))
        })
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    generator.await.expect("generator");
    // Quiescence: the final state of every order, for every instance.
    let truth = e2e::changes(&base).await;
    let instances = ids(8);
    let seen = e2e::await_events(&names.events, Duration::from_secs(60), Some(&b), |s| {
        group::check_exactly_once(s, &truth, &instances).0.lost == 0
    })
    .await;
    let (tally, problems) = group::check_exactly_once(&seen, &truth, &instances);
    assert!(problems.is_empty(), "{problems:#?}");
    eprintln!("paused worker: {tally:?}");
    assert_eq!(a.terminate(), Some(0));
    assert_eq!(b.terminate(), Some(0));
    sb.stop().await.expect("sandbox stop");
}

/// Kills (`KILL`) or stops (`TERM`) one of three workers five times and
/// measures how long its partitions go without a commit: from the signal
/// until each of them commits on another worker.
async fn failover(signal: &str) -> Vec<Duration> {
    let sb = shop().await;
    let base = sb.base_url();
    let names = Names::new();
    let files = group::instances(&base, 12, INTERVAL.as_secs());
    let expected = partitions_with_jobs(12);
    let ids = ["f1", "f2", "f3"];
    let mut workers: Vec<Poller> = ids
        .iter()
        .map(|id| group::worker(&names, &files, Some(id), ENV))
        .collect();
    let mut figures = Vec::new();
    for trial in 0..5 {
        let refs: Vec<&Poller> = workers.iter().collect();
        await_all_committing(&refs, expected).await;
        // The victim's current partitions: what it committed lately, once
        // every partition with jobs commits somewhere.
        let victim = trial % 3;
        let now = Utc::now();
        group::await_partitions_commit(
            &refs,
            &group::all_committed(&refs),
            now,
            Duration::from_secs(60),
        )
        .await;
        let mine = group::partitions_committed(&workers[victim], now);
        if mine.is_empty() {
            continue;
        }
        let t0 = Utc::now();
        if signal == "KILL" {
            workers[victim].kill();
        } else {
            group::signal(&workers[victim], "TERM");
        }
        let others: Vec<&Poller> = workers
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != victim)
            .map(|(_, w)| w)
            .collect();
        let first =
            group::await_partitions_commit(&others, &mine, t0, Duration::from_secs(60)).await;
        let worst = first
            .values()
            .map(|t| (*t - t0).to_std().unwrap_or_default())
            .max()
            .unwrap_or_default();
        figures.push(worst);
        if std::env::var_os("FAILOVER_TRACE").is_some() {
            trace(&workers, t0, worst);
        }
        if signal == "TERM" {
            assert_eq!(
                workers[victim].await_exit(Duration::from_secs(30)).await,
                Some(0)
            );
        }
        workers[victim] = group::worker(&names, &files, Some(ids[victim]), ENV);
    }
    for w in &mut workers {
        w.terminate();
    }
    sb.stop().await.expect("sandbox stop");
    figures
}

/// What each worker logged about ownership from `t0` for `span`: where a
/// failover spends its time.
fn trace(workers: &[Poller], t0: chrono::DateTime<Utc>, span: Duration) {
    const STEPS: &[&str] = &[
        "Worker stopping: finishing in-flight polls.",
        "State partitions revoked.",
        "State partitions assigned.",
        "State partition restored.",
        "Worker stopped.",
        COMMITTED,
    ];
    let end = t0 + chrono::TimeDelta::from_std(span).unwrap_or_default();
    for (i, w) in workers.iter().enumerate() {
        for l in w.log_lines() {
            let Some(t) = group::timestamp(&l) else {
                continue;
            };
            let message = l["message"].as_str().unwrap_or_default();
            if t >= t0 && t <= end && STEPS.contains(&message) {
                let part = group::partition_of(&l)
                    .or_else(|| l["partition"].as_i64())
                    .map(|p| format!("p{p}"))
                    .unwrap_or_else(|| l["partitions"].to_string());
                let took = match (l["fenced_ms"].as_u64(), l["restored_ms"].as_u64()) {
                    (Some(f), Some(r)) => format!(" (fenced in {f} ms, restored in {r} ms)"),
                    _ => String::new(),
                };
                eprintln!(
                    "  +{:>6} ms worker {i} {message} {part}{took}",
                    (t - t0).num_milliseconds()
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failover_after_kill_9_is_within_the_session_timeout_and_one_interval() {
    let _serial = SERIAL.lock().await;
    let killed = failover("KILL").await;
    let (median, max) = group::median_max(&killed);
    eprintln!(
        "failover after kill -9: median {median:?}, max {max:?} ({} trials; session timeout {SESSION:?}, interval {INTERVAL:?})",
        killed.len()
    );
    assert!(killed.len() >= 3);
    // Target: session timeout + one interval; a second of slack for the
    // log's own timing.
    assert!(
        max <= SESSION + INTERVAL + Duration::from_secs(1),
        "kill -9 failover {killed:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failover_after_sigterm_is_within_two_seconds_and_one_interval() {
    let _serial = SERIAL.lock().await;
    let stopped = failover("TERM").await;
    let (median, max) = group::median_max(&stopped);
    eprintln!(
        "failover after SIGTERM: median {median:?}, max {max:?} ({} trials; interval {INTERVAL:?})",
        stopped.len()
    );
    assert!(stopped.len() >= 3);
    assert!(
        max <= Duration::from_secs(2) + INTERVAL + Duration::from_secs(1),
        "SIGTERM failover {stopped:?}"
    );
}
