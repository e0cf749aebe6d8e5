//! Many jobs: N OAuth instances (idle shops on one sandbox whose quota
//! headers are raised, since Keap's limits apply per tenant) on one worker;
//! once every job has polled, the schedule is measured over a window.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::env::Env;
use crate::instances::{self, Shape};
use crate::metrics::{self, Scrape};
use crate::sandbox::{self, Sandbox};
use crate::worker::{Names, Worker};

const ORDERS_ENDPOINT: &str = "GET /crm/rest/v1/orders";
const TOKEN_ENDPOINT: &str = "POST /token";

/// What one run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobsRun {
    pub instances: usize,
    pub interval_seconds: u64,
    pub measure_seconds: f64,
    /// Worker start until every job had committed a poll.
    pub all_polled_seconds: f64,
    pub polls_per_second: f64,
    /// What the schedule asks for: instances / interval.
    pub required_polls_per_second: f64,
    pub polls_failed: f64,
    pub lateness_p50_seconds: Option<f64>,
    pub lateness_p99_seconds: Option<f64>,
    /// Upper bound of the highest non-empty lateness bucket.
    pub lateness_max_bound_seconds: Option<f64>,
    pub peak_rss_mib: f64,
    /// CPU time over the window / window length, in % of one core.
    pub cpu_percent: f64,
    pub threads: u64,
    pub transactions_per_second: f64,
    pub transactions_aborted: f64,
    /// Provider requests (orders pages) per poll, counted by the sandbox.
    pub http_requests_per_poll: f64,
    /// The same from the worker's side (`event_poller_http_responses_total`).
    pub worker_responses_per_poll: f64,
    /// Token requests in the window (refreshes).
    pub token_requests: u64,
    /// The sandbox's CPU over the window, % of one core.
    pub sandbox_cpu_percent: f64,
    pub throttle_waits: f64,
    pub exit_code: Option<i32>,
}

/// One run: `n` instances polling every `interval`, measured for `measure`
/// after each has polled once.
pub async fn run(env: &Env, n: usize, interval: u64, measure: Duration) -> Result<JobsRun> {
    let dir = env.subdir(&format!("jobs-{n}"))?;
    let codes: Vec<String> = (0..n).map(|i| format!("code-{i}")).collect();
    let opts = sandbox::Options {
        codes: codes.clone(),
        unlimited: true,
        ..sandbox::Options::default()
    };
    let sandbox = Sandbox::start(env, &opts, &dir.join("sandbox.log")).await?;
    let shape = Shape {
        interval_seconds: interval,
        ..Shape::default()
    };
    let docs: Vec<(String, serde_json::Value)> = codes
        .iter()
        .enumerate()
        .map(|(i, code)| {
            let name = format!("shop-{i}");
            let doc = instances::instance(&name, &sandbox.base, code, &shape);
            (name, doc)
        })
        .collect();
    let instance_dir = dir.join("instances");
    instances::write(&instance_dir, &docs)?;
    let names = Names::new(env, &format!("jobs-{n}"));
    let mut worker = Worker::start(env, &names, &instance_dir, &dir.join("worker.log"), &[])?;
    worker.await_ops(Duration::from_secs(60)).await?;

    // Every job polled once: each `job` label has a committed poll.
    let warmup = Duration::from_secs(120 + interval + (n / 20) as u64);
    let deadline = worker.started + warmup;
    loop {
        worker.check_alive()?;
        let scrape = worker.metrics(&[metrics::POLLS]).await?;
        let polled = scrape.count_at_least(metrics::POLLS, &[("outcome", "committed")], 1.0);
        if polled >= n {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "only {polled} of {n} jobs polled within {warmup:?}; worker log {}",
                worker.log.display()
            );
        }
        // A scrape of thousands of jobs is megabytes: ask less often.
        tokio::time::sleep(Duration::from_millis(500.max(n as u64 / 5))).await;
    }
    let all_polled = worker.started.elapsed();
    // One more interval before measuring: the second round of polls still
    // carries the start-up backlog (thousands of code exchanges and token
    // saves); the window below is the steady state, and the start-up is
    // the "all polled" figure.
    let settled = Instant::now() + Duration::from_secs(interval);
    while Instant::now() < settled {
        worker.check_alive()?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let sb0 = sandbox.sample()?.cpu_seconds;
    let (m0, p0, s0, t0) = snapshot(&worker, &sandbox).await?;
    let end = t0 + measure;
    while Instant::now() < end {
        worker.check_alive()?;
        tokio::time::sleep(Duration::from_millis(500).min(end - Instant::now())).await;
    }
    let (m1, p1, s1, t1) = snapshot(&worker, &sandbox).await?;
    let sb1 = sandbox.sample()?.cpu_seconds;
    let exit_code = worker.stop().await?;

    let dt = t1.duration_since(t0).as_secs_f64();
    let delta = |name: &str, filter: &[(&str, &str)]| m1.sum(name, filter) - m0.sum(name, filter);
    let committed = delta(metrics::POLLS, &[("outcome", "committed")]);
    let polls = delta(metrics::POLLS, &[]);
    let lateness = m1
        .histogram(metrics::SCHEDULE_LATENESS)?
        .since(&m0.histogram(metrics::SCHEDULE_LATENESS)?);
    let served = |endpoint: &str| {
        sandbox::served(&s1, endpoint).saturating_sub(sandbox::served(&s0, endpoint))
    };
    let (orders, tokens) = (served(ORDERS_ENDPOINT), served(TOKEN_ENDPOINT));
    Ok(JobsRun {
        instances: n,
        interval_seconds: interval,
        measure_seconds: dt,
        all_polled_seconds: all_polled.as_secs_f64(),
        polls_per_second: committed / dt,
        required_polls_per_second: n as f64 / interval as f64,
        polls_failed: polls - committed,
        lateness_p50_seconds: lateness.quantile(0.5),
        lateness_p99_seconds: lateness.quantile(0.99),
        lateness_max_bound_seconds: lateness.max_bound(),
        peak_rss_mib: p1.peak_rss_mib(),
        cpu_percent: (p1.cpu_seconds - p0.cpu_seconds) / dt * 100.0,
        threads: p1.threads,
        transactions_per_second: delta(metrics::TRANSACTIONS, &[("result", "committed")]) / dt,
        transactions_aborted: delta(metrics::TRANSACTIONS, &[("result", "aborted")]),
        http_requests_per_poll: orders as f64 / polls.max(1.0),
        worker_responses_per_poll: delta(metrics::HTTP_RESPONSES, &[]) / polls.max(1.0),
        token_requests: tokens,
        sandbox_cpu_percent: (sb1 - sb0) / dt * 100.0,
        throttle_waits: delta(metrics::THROTTLE_WAITS, &[]),
        exit_code,
    })
}

async fn snapshot(
    worker: &Worker,
    sandbox: &Sandbox,
) -> Result<(
    Scrape,
    crate::procfs::ProcSample,
    serde_json::Value,
    Instant,
)> {
    let t = Instant::now();
    let proc = worker.sample()?;
    let scrape = worker
        .metrics(&[
            metrics::POLLS,
            metrics::TRANSACTIONS,
            metrics::HTTP_RESPONSES,
            metrics::THROTTLE_WAITS,
            metrics::SCHEDULE_LATENESS,
        ])
        .await
        .context("scrape the worker")?;
    let stats = sandbox.stats().await?;
    Ok((scrape, proc, stats, t))
}
