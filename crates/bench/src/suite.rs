//! `poller-bench all`: every benchmark in an order that fits the time
//! budget, each figure with its baseline from the same run.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::backfill;
use crate::env::Env;
use crate::jobs;
use crate::latency;
use crate::limit;
use crate::machine;
use crate::peer;
use crate::results::{BackfillSet, Results};

/// What one mode runs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: &'static str,
    pub limit_records: usize,
    pub limit_runs: usize,
    /// Backfill size and runs, measured first (its event size sizes the
    /// limit runs).
    pub backfill: (usize, usize),
    /// A larger backfill run last, as many times (up to the second field)
    /// as the budget allows.
    pub big_backfill: Option<(usize, usize)>,
    pub jobs: Vec<usize>,
    pub jobs_interval: u64,
    pub jobs_measure: Duration,
    pub latency_seconds: u64,
    /// The whole run should end within this.
    pub budget: Duration,
}

impl Plan {
    pub fn full() -> Self {
        Self {
            mode: "full",
            limit_records: 200_000,
            limit_runs: 3,
            backfill: (200_000, 3),
            big_backfill: Some((1_000_000, 3)),
            jobs: vec![1_000, 5_000, 10_000],
            jobs_interval: 60,
            jobs_measure: Duration::from_secs(60),
            latency_seconds: 60,
            budget: Duration::from_secs(17 * 60),
        }
    }

    pub fn quick() -> Self {
        Self {
            mode: "quick",
            limit_records: 50_000,
            limit_runs: 1,
            backfill: (20_000, 1),
            big_backfill: None,
            jobs: vec![200],
            jobs_interval: 10,
            jobs_measure: Duration::from_secs(10),
            latency_seconds: 15,
            budget: Duration::from_secs(3 * 60),
        }
    }
}

/// Mean event size assumed when no backfill measured one.
const FALLBACK_VALUE_BYTES: usize = 1_000;

/// Time a backfill run costs besides publishing: start, group join,
/// topic creation, stop.
const RUN_OVERHEAD: Duration = Duration::from_secs(15);

/// Runs the plan; failures are collected in `errors`, the other sections
/// still run.
pub async fn run(env: &Env, plan: &Plan) -> Results {
    let started = Instant::now();
    let mut r = Results {
        mode: plan.mode.into(),
        machine: machine::describe(),
        wall_seconds: 0.0,
        sections: Vec::new(),
        limit: Vec::new(),
        backfill: Vec::new(),
        jobs: Vec::new(),
        latency: None,
        peer: peer::status(),
        notes: Vec::new(),
        errors: Vec::new(),
    };

    // Backfill first: its mean event size is the limit runs' value size.
    let (n, runs) = plan.backfill;
    let set = section(&mut r, &format!("backfill {n}"), async {
        backfill_set(env, n, runs, None).await
    })
    .await;
    let value_bytes = set
        .as_ref()
        .and_then(|s| s.median_of(|x| x.mean_value_bytes))
        .map_or(FALLBACK_VALUE_BYTES, |b| b.round() as usize);
    let small_rate = set
        .as_ref()
        .and_then(|s| s.median_of(|x| x.events_per_second_from_start));
    let small_seed = set.as_ref().and_then(|s| s.seed_seconds);
    if let Some(s) = set {
        r.backfill.push(s);
    }

    for transactional in [false, true] {
        for i in 0..plan.limit_runs {
            let name = format!(
                "limit {} #{}",
                if transactional {
                    "transactional"
                } else {
                    "plain"
                },
                i + 1
            );
            let records = plan.limit_records;
            if let Some(run) = section(&mut r, &name, async {
                limit::run(env, records, value_bytes, 6, transactional, &[]).await
            })
            .await
            {
                r.limit.push(run);
            }
        }
    }

    for &n in &plan.jobs {
        let name = format!("jobs {n}");
        if let Some(run) = section(&mut r, &name, async {
            jobs::run(env, n, plan.jobs_interval, plan.jobs_measure).await
        })
        .await
        {
            r.jobs.push(run);
        }
    }

    let latency = section(&mut r, "latency", async {
        latency::run(env, 1, plan.latency_seconds).await
    })
    .await;
    r.latency = latency;

    if let Some((big, wanted)) = plan.big_backfill {
        let left = plan.budget.saturating_sub(started.elapsed());
        let (runs, note) = big_backfill_runs(big, wanted, left, small_rate, small_seed, n);
        if let Some(note) = note {
            r.notes.push(note);
        }
        if runs > 0 {
            let deadline = started + plan.budget;
            if let Some(s) = section(&mut r, &format!("backfill {big}"), async {
                backfill_set(env, big, runs, Some(deadline)).await
            })
            .await
            {
                if s.runs.len() < runs {
                    r.notes.push(format!(
                        "Backfill of {big}: {} of {runs} planned runs, because seeding took {:.0} s and the time budget ran out.",
                        s.runs.len(),
                        s.seed_seconds.unwrap_or(0.0)
                    ));
                }
                r.backfill.push(s);
            }
        }
    }

    r.wall_seconds = started.elapsed().as_secs_f64();
    r
}

/// How many runs of the big backfill fit in `left`, estimated from the
/// small one (its rate from worker start, its seeding time scaled), and a
/// note when fewer than `wanted`.
fn big_backfill_runs(
    big: usize,
    wanted: usize,
    left: Duration,
    small_rate: Option<f64>,
    small_seed: Option<f64>,
    small: usize,
) -> (usize, Option<String>) {
    let (Some(rate), Some(seed)) = (small_rate, small_seed) else {
        return (
            0,
            Some(format!(
                "Backfill of {big}: not run, the smaller backfill gave no rate to plan it with."
            )),
        );
    };
    let scale = big as f64 / small.max(1) as f64;
    let seed = seed * scale;
    let per_run = big as f64 / rate.max(1.0) + RUN_OVERHEAD.as_secs_f64();
    let left = left.as_secs_f64();
    let fit = if left > seed {
        ((left - seed) / per_run).floor() as usize
    } else {
        0
    };
    let runs = fit.min(wanted);
    let note = (runs < wanted).then(|| {
        format!(
            "Backfill of {big}: {runs} of {wanted} runs planned; seeding is estimated at {seed:.0} s and one run at {per_run:.0} s, with {left:.0} s of the time budget left."
        )
    });
    (runs, note)
}

/// Seeds one sandbox and runs `runs` backfills on it; stops early (with
/// what it has) when `deadline` would be passed by another run.
async fn backfill_set(
    env: &Env,
    orders: usize,
    runs: usize,
    deadline: Option<Instant>,
) -> Result<BackfillSet> {
    let seeded = backfill::seed(env, orders).await?;
    let mut set = BackfillSet {
        orders,
        planned_runs: runs,
        seed_seconds: Some(seeded.seed_seconds),
        runs: Vec::new(),
    };
    for i in 1..=runs {
        if let (Some(deadline), Some(last)) = (deadline, set.runs.last())
            && Instant::now() + Duration::from_secs_f64(last.total_seconds) + RUN_OVERHEAD
                > deadline
        {
            break;
        }
        let run = backfill::run(env, &seeded, i).await?;
        eprintln!(
            "  backfill {orders} #{i}: {:.0} events/s, {:.1} s, peak RSS {:.1} MiB, {} duplicates",
            run.events_per_second, run.total_seconds, run.peak_rss_mib, run.duplicates
        );
        set.runs.push(run);
    }
    Ok(set)
}

/// Runs one section, timing it; an error is recorded and `None` returned.
async fn section<T>(r: &mut Results, name: &str, f: impl Future<Output = Result<T>>) -> Option<T> {
    eprintln!("poller-bench: {name} …");
    let t = Instant::now();
    let out = f.await;
    let secs = t.elapsed().as_secs_f64();
    r.sections.push((name.to_owned(), secs));
    match out {
        Ok(v) => {
            eprintln!("poller-bench: {name} done in {secs:.1} s");
            Some(v)
        }
        Err(e) => {
            eprintln!("poller-bench: {name} FAILED after {secs:.1} s: {e:#}");
            r.errors.push(format!("{name}: {e:#}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_backfill_fits_the_budget_or_says_why_not() {
        // 200k at 20k/s from start, seeded in 4 s: 1M seeds in 20 s and a
        // run takes 50 + 15 s.
        let (runs, note) = big_backfill_runs(
            1_000_000,
            3,
            Duration::from_secs(300),
            Some(20_000.0),
            Some(4.0),
            200_000,
        );
        assert_eq!((runs, note), (3, None));
        let (runs, note) = big_backfill_runs(
            1_000_000,
            3,
            Duration::from_secs(100),
            Some(20_000.0),
            Some(4.0),
            200_000,
        );
        assert_eq!(runs, 1);
        assert!(note.unwrap().contains("1 of 3"));
        let (runs, note) = big_backfill_runs(1_000_000, 3, Duration::from_secs(100), None, None, 1);
        assert_eq!(runs, 0);
        assert!(note.is_some());
    }
}
