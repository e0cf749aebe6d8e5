//! Backfill: one worker reads N orders already in the sandbox, in pages
//! of 1000, and publishes one event each; a `read_committed` reader counts
//! them as they become visible.

use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::Message;
use serde::{Deserialize, Serialize};

use crate::env::Env;
use crate::instances::{self, Shape};
use crate::metrics;
use crate::sandbox::{self, Sandbox};
use crate::worker::{Names, Worker};

/// A sandbox holding `orders` orders, reused by every run of one size.
pub struct Seeded {
    pub sandbox: Sandbox,
    pub orders: usize,
    pub seed_seconds: f64,
}

/// Starts a sandbox and creates `orders` orders spread over the last hour.
pub async fn seed(env: &Env, orders: usize) -> Result<Seeded> {
    let log = env.dir.join(format!("sandbox-backfill-{orders}.log"));
    let sandbox = Sandbox::start(env, &sandbox::Options::default(), &log).await?;
    let took = sandbox
        .seed_orders(orders)
        .await
        .with_context(|| format!("seed {orders} orders"))?;
    Ok(Seeded {
        sandbox,
        orders,
        seed_seconds: took.as_secs_f64(),
    })
}

/// What one backfill run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackfillRun {
    pub orders: usize,
    pub run: usize,
    /// Worker start until the first event was visible.
    pub first_event_seconds: f64,
    /// Worker start until the last of the N events was visible.
    pub total_seconds: f64,
    /// N / (last event seen − first event seen).
    pub events_per_second: f64,
    /// N / (worker start → last event seen).
    pub events_per_second_from_start: f64,
    pub cpu_seconds: f64,
    pub cpu_seconds_per_100k: f64,
    /// CPU the sandbox spent serving the run (it shares the cores).
    pub sandbox_cpu_seconds: f64,
    pub peak_rss_mib: f64,
    pub threads: u64,
    pub mean_value_bytes: f64,
    pub events_seen: u64,
    pub distinct: u64,
    /// Events seen more than once (same objectId, eventType and raw
    /// modification date).
    pub duplicates: u64,
    /// `event_poller_events_total` when the last event was seen.
    pub worker_events_total: f64,
    pub transactions_committed: f64,
    pub polls_committed: f64,
    pub exit_code: Option<i32>,
}

/// The part of an event that identifies the change.
#[derive(Deserialize)]
struct Change<'a> {
    #[serde(rename = "objectId", borrow)]
    object_id: Cow<'a, str>,
    #[serde(rename = "eventType", borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    raw: Raw<'a>,
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow, default)]
    modification_date: Option<Cow<'a, str>>,
}

/// A 64-bit digest of an event's change (objectId, eventType, raw
/// modification date).
fn change_digest(payload: &[u8]) -> Result<u64> {
    let c: Change<'_> = serde_json::from_slice(payload).context("event value")?;
    let mut h = DefaultHasher::new();
    (
        c.object_id.as_ref(),
        c.event_type.as_ref(),
        c.raw.modification_date.as_deref().unwrap_or(""),
    )
        .hash(&mut h);
    Ok(h.finish())
}

/// How long a backfill of `orders` may take before it is an error: a
/// generous bound, several times the rates measured.
pub fn timeout_for(orders: usize) -> Duration {
    Duration::from_secs(90 + (orders / 1000) as u64)
}

/// One run against `seeded`: new topics and group, a new authorization
/// code, backfilling from two hours ago.
pub async fn run(env: &Env, seeded: &Seeded, run: usize) -> Result<BackfillRun> {
    let n = seeded.orders;
    let names = Names::new(env, &format!("backfill-{n}"));
    let code = seeded.sandbox.mint_code().await?;
    let dir = env.subdir(&format!("backfill-{n}-{run}"))?;
    let shape = Shape {
        interval_seconds: 5,
        page_size: Some(1000),
        backfill_from: Some(
            (chrono::Utc::now() - chrono::TimeDelta::hours(2))
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string(),
        ),
        millis: false,
    };
    let doc = instances::instance("bench", &seeded.sandbox.base, &code, &shape);
    let instance_dir = dir.join("instances");
    instances::write(&instance_dir, &[("bench".into(), doc)])?;
    let timeout = timeout_for(n);

    let sandbox_cpu = seeded.sandbox.sample()?.cpu_seconds;
    let mut worker = Worker::start(env, &names, &instance_dir, &dir.join("worker.log"), &[])?;
    let consumer = worker
        .events_reader(env, &names, timeout, Duration::from_millis(100))
        .await?;

    let mut seen = 0u64;
    let mut bytes = 0u64;
    let mut digests: HashSet<u64> = HashSet::with_capacity(n);
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    let mut consume_errors = 0;
    let deadline = worker.started + timeout;
    let mut checked = Instant::now();
    while digests.len() < n {
        match tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await {
            Ok(Ok(m)) => {
                let now = Instant::now();
                first.get_or_insert(now);
                last = now;
                let payload = m.payload().unwrap_or_default();
                seen += 1;
                bytes += payload.len() as u64;
                let digest = change_digest(payload).with_context(|| {
                    format!(
                        "event at {}/{} offset {}",
                        m.topic(),
                        m.partition(),
                        m.offset()
                    )
                })?;
                digests.insert(digest);
            }
            Ok(Err(e)) => {
                consume_errors += 1;
                if consume_errors > 100 {
                    return Err(e).context(format!("consume {}", names.events));
                }
            }
            Err(_) => {}
        }
        if checked.elapsed() > Duration::from_secs(1) {
            checked = Instant::now();
            worker.check_alive()?;
            if checked > deadline {
                bail!(
                    "backfill of {n} orders incomplete after {timeout:?}: {} distinct events of {seen} seen; worker log {}",
                    digests.len(),
                    worker.log.display()
                );
            }
        }
    }
    let proc = worker.sample()?;
    let sandbox_cpu = seeded.sandbox.sample()?.cpu_seconds - sandbox_cpu;
    let scrape = worker
        .metrics(&[metrics::EVENTS, metrics::TRANSACTIONS, metrics::POLLS])
        .await?;
    let started = worker.started;
    let exit_code = worker.stop().await?;

    let first = first.context("no event seen")?;
    let window = last.duration_since(first).as_secs_f64();
    let total = last.duration_since(started).as_secs_f64();
    Ok(BackfillRun {
        orders: n,
        run,
        first_event_seconds: first.duration_since(started).as_secs_f64(),
        total_seconds: total,
        events_per_second: n as f64 / window.max(f64::EPSILON),
        events_per_second_from_start: n as f64 / total.max(f64::EPSILON),
        cpu_seconds: proc.cpu_seconds,
        cpu_seconds_per_100k: proc.cpu_seconds / n as f64 * 100_000.0,
        sandbox_cpu_seconds: sandbox_cpu,
        peak_rss_mib: proc.peak_rss_mib(),
        threads: proc.threads,
        mean_value_bytes: bytes as f64 / seen.max(1) as f64,
        events_seen: seen,
        distinct: digests.len() as u64,
        duplicates: seen - digests.len() as u64,
        worker_events_total: scrape.sum(metrics::EVENTS, &[]),
        transactions_committed: scrape.sum(metrics::TRANSACTIONS, &[("result", "committed")]),
        polls_committed: scrape.sum(metrics::POLLS, &[("outcome", "committed")]),
        exit_code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_the_change_not_the_event() {
        let a = br#"{"eventId":"1","objectId":"7","eventType":"CREATED","raw":{"modification_date":"2024-01-01T00:00:00.000+0000","notes":"a"}}"#;
        let same = br#"{"eventId":"2","objectId":"7","eventType":"CREATED","raw":{"modification_date":"2024-01-01T00:00:00.000+0000","notes":"b"}}"#;
        let later = br#"{"eventId":"3","objectId":"7","eventType":"UPDATED","raw":{"modification_date":"2024-01-01T00:00:01.000+0000"}}"#;
        let d = |v: &[u8]| change_digest(v).unwrap();
        assert_eq!(d(a), d(same));
        assert_ne!(d(a), d(later));
        assert!(change_digest(b"not json").is_err());
    }
}
