//! Latency: a shop changing all the time (the sandbox's live generator),
//! one instance polling it every second, and a `read_committed` reader:
//! the time from an order's modification until its event is readable.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use rdkafka::Message;
use serde::{Deserialize, Serialize};

use crate::env::Env;
use crate::instances::{self, Shape};
use crate::sandbox::{self, Sandbox};
use crate::stats;
use crate::worker::{Names, Worker};

/// Events received this long after the first one are not measured: the
/// job starts, the reader catches up.
pub const SKIP: Duration = Duration::from_secs(5);

/// Changes per second the live generator makes (new orders, updates).
pub const CREATE_RATE: f64 = 5.0;
pub const UPDATE_RATE: f64 = 5.0;

/// How long the reader's fetch waits at the broker with nothing new.
pub const READER_FETCH_WAIT: Duration = Duration::from_millis(50);

/// What one run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencyRun {
    pub interval_seconds: u64,
    pub seconds: u64,
    pub events: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The poll interval plus 250 ms: what a poll-based pipeline can
    /// promise at best with some room for fetch and commit.
    pub target_ms: f64,
    pub peak_rss_mib: f64,
    pub cpu_percent: f64,
}

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow)]
    raw: Raw<'a>,
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow)]
    modification_date: Cow<'a, str>,
}

/// The order's modification time inside an event (`raw.modification_date`,
/// Keap's `2019-10-25T18:53:10.123+0000`).
fn modified_at(payload: &[u8]) -> Result<DateTime<Utc>> {
    let e: Event<'_> = serde_json::from_slice(payload).context("event value")?;
    let text = e.raw.modification_date.as_ref();
    DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| DateTime::parse_from_rfc3339(text))
        .map(|t| t.to_utc())
        .with_context(|| format!("modification_date {text:?}"))
}

pub async fn run(env: &Env, interval: u64, seconds: u64) -> Result<LatencyRun> {
    let dir = env.subdir("latency")?;
    let opts = sandbox::Options {
        codes: vec!["bench-code".into()],
        create_rate: CREATE_RATE,
        update_rate: UPDATE_RATE,
        // Keap's whole seconds would add up to a second to every figure.
        timestamp_millis: true,
        ..sandbox::Options::default()
    };
    let sandbox = Sandbox::start(env, &opts, &dir.join("sandbox.log")).await?;
    let shape = Shape {
        interval_seconds: interval,
        millis: true,
        ..Shape::default()
    };
    let doc = instances::instance("bench", &sandbox.base, "bench-code", &shape);
    let instance_dir = dir.join("instances");
    instances::write(&instance_dir, &[("bench".into(), doc)])?;
    let names = Names::new(env, "latency");
    let mut worker = Worker::start(env, &names, &instance_dir, &dir.join("worker.log"), &[])?;
    let startup = Duration::from_secs(90);
    let consumer = worker
        .events_reader(env, &names, startup, READER_FETCH_WAIT)
        .await?;

    let mut first: Option<Instant> = None;
    let mut samples: Vec<f64> = Vec::new();
    let mut cpu_start = None;
    let give_up = worker.started + startup;
    let mut checked = Instant::now();
    loop {
        let now = Instant::now();
        if let Some(f) = first {
            if now >= f + SKIP + Duration::from_secs(seconds) {
                break;
            }
            if cpu_start.is_none() && now >= f + SKIP {
                cpu_start = Some((now, worker.sample()?.cpu_seconds));
            }
        } else if now > give_up {
            bail!(
                "no event within {startup:?}; worker log {}",
                worker.log.display()
            );
        }
        if checked.elapsed() > Duration::from_secs(1) {
            checked = Instant::now();
            worker.check_alive()?;
        }
        let Ok(received) = tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await
        else {
            continue;
        };
        let m = received.with_context(|| format!("consume {}", names.events))?;
        let at = Utc::now();
        let now = Instant::now();
        let f = *first.get_or_insert(now);
        if now < f + SKIP {
            continue;
        }
        let modified = modified_at(m.payload().unwrap_or_default())
            .with_context(|| format!("event at {}/{}", m.partition(), m.offset()))?;
        samples.push((at - modified).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0);
    }
    let proc = worker.sample()?;
    let cpu_percent = cpu_start.map_or(0.0, |(t, cpu)| {
        (proc.cpu_seconds - cpu) / t.elapsed().as_secs_f64().max(f64::EPSILON) * 100.0
    });
    worker.stop().await?;
    drop(sandbox);

    samples.sort_by(f64::total_cmp);
    let pick = |q: f64| stats::percentile(&samples, q).context("no event measured");
    Ok(LatencyRun {
        interval_seconds: interval,
        seconds,
        events: samples.len(),
        p50_ms: pick(0.5)?,
        p99_ms: pick(0.99)?,
        max_ms: pick(1.0)?,
        target_ms: interval as f64 * 1000.0 + 250.0,
        peak_rss_mib: proc.peak_rss_mib(),
        cpu_percent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modification_time_of_an_event() {
        let v =
            br#"{"eventId":"x","raw":{"id":1,"modification_date":"2024-05-01T12:00:00.250+0000"}}"#;
        let t = modified_at(v).unwrap();
        assert_eq!(t.timestamp_millis() % 1000, 250);
        assert!(modified_at(br#"{"raw":{}}"#).is_err());
        assert!(modified_at(br#"{"raw":{"modification_date":"soon"}}"#).is_err());
    }
}
