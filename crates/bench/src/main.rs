//! `poller-bench`: end-to-end benchmarks of `event-poller` against the Keap
//! sandbox and a local Kafka, each figure set against a baseline measured
//! in the same run. `make bench` runs `poller-bench all` and writes
//! `docs/benchmarks.md`.
//!
//! Every run starts its own processes (release binaries) with fresh topic
//! and group names, and kills them if it fails or is interrupted.

mod backfill;
mod env;
mod instances;
mod jobs;
mod kafka;
mod latency;
mod limit;
mod machine;
mod metrics;
mod peer;
mod procfs;
mod report;
mod results;
mod sandbox;
mod stats;
mod suite;
mod worker;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(
    name = "poller-bench",
    version,
    about = "End-to-end benchmarks of event-poller against the Keap sandbox and a local Kafka"
)]
struct Cli {
    /// The worker binary under test.
    #[arg(
        long,
        env = "POLLER_BIN",
        default_value = "target/release/event-poller"
    )]
    poller_bin: PathBuf,
    /// The sandbox binary.
    #[arg(
        long,
        env = "SANDBOX_BIN",
        default_value = "target/release/keap-sandbox"
    )]
    sandbox_bin: PathBuf,
    /// Kafka bootstrap servers.
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    bootstrap: String,
    /// Logs, instance files and results go here.
    #[arg(long, default_value = ".cache/bench")]
    work_dir: PathBuf,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Baseline: a plain producer configured like the worker's.
    Limit {
        #[arg(long, default_value_t = 200_000)]
        records: usize,
        #[arg(long, default_value_t = 1_000)]
        value_bytes: usize,
        #[arg(long, default_value_t = 6)]
        partitions: i32,
        /// One transaction per 1000 records.
        #[arg(long)]
        transactional: bool,
        /// A librdkafka property on top of the worker-like ones
        /// (KEY=VALUE, repeatable), to see what a setting changes.
        #[arg(long = "producer-property", value_name = "KEY=VALUE", value_parser = limit::parse_property)]
        producer_properties: Vec<(String, String)>,
    },
    /// One worker backfilling N orders in pages of 1000.
    Backfill {
        #[arg(long, default_value_t = 200_000)]
        orders: usize,
        /// Runs on the same seeded sandbox, each with new topics.
        #[arg(long, default_value_t = 1)]
        runs: usize,
    },
    /// N OAuth instances on one worker: schedule, CPU, memory.
    Jobs {
        #[arg(long, default_value_t = 1_000)]
        instances: usize,
        /// Poll interval, seconds.
        #[arg(long, default_value_t = 60)]
        interval: u64,
        /// Measurement window after every job polled once, seconds.
        #[arg(long, default_value_t = 60)]
        measure: u64,
    },
    /// Change-to-event latency with a live generator.
    Latency {
        /// Poll interval, seconds.
        #[arg(long, default_value_t = 1)]
        interval: u64,
        /// Measured seconds (after 5 s of warm-up).
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// The peer comparison (castorm/kafka-connect-http; needs PEER_CASTORM_SRC).
    Peer,
    /// Writes the report again from a saved results.json (no run).
    Report {
        /// Results of an earlier `all` (default: WORK_DIR/results.json).
        #[arg(long)]
        json: Option<PathBuf>,
        #[arg(long, default_value = "docs/benchmarks.md")]
        out: PathBuf,
    },
    /// Everything; writes the report and results.json.
    All {
        /// CI smoke: small sizes, one run each (under 3 minutes).
        #[arg(long)]
        quick: bool,
        /// The markdown report.
        #[arg(long, default_value = "docs/benchmarks.md")]
        out: PathBuf,
        /// Machine-readable results (default: WORK_DIR/results.json, or
        /// results-quick.json with --quick, so a smoke run never replaces
        /// the numbers behind a full report).
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    // Dropping the run on a signal drops its process guards, which kill
    // every child.
    tokio::select! {
        r = run(cli) => r,
        s = interrupted() => bail!("interrupted by {s}; children stopped"),
    }
}

async fn interrupted() -> &'static str {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

async fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Cmd::Peer => {
            println!("{}", peer::status().message);
            return Ok(());
        }
        Cmd::Report { json, out } => {
            let json = json
                .clone()
                .unwrap_or_else(|| cli.work_dir.join("results.json"));
            let text = std::fs::read_to_string(&json)
                .with_context(|| format!("read {}", json.display()))?;
            let results: results::Results =
                serde_json::from_str(&text).with_context(|| format!("parse {}", json.display()))?;
            std::fs::write(out, report::markdown(&results))
                .with_context(|| format!("write {}", out.display()))?;
            return Ok(());
        }
        _ => {}
    }
    if matches!(cli.command, Cmd::All { .. }) {
        env::clear_runs(&cli.work_dir)?;
    }
    let env = env::Env::new(
        cli.poller_bin.clone(),
        cli.sandbox_bin.clone(),
        cli.bootstrap.clone(),
        &cli.work_dir,
    )?;
    match cli.command {
        Cmd::Limit {
            records,
            value_bytes,
            partitions,
            transactional,
            producer_properties,
        } => print(
            &limit::run(
                &env,
                records,
                value_bytes,
                partitions,
                transactional,
                &producer_properties,
            )
            .await?,
        ),
        Cmd::Backfill { orders, runs } => {
            let seeded = backfill::seed(&env, orders).await?;
            eprintln!("seeded {orders} orders in {:.1} s", seeded.seed_seconds);
            for i in 1..=runs {
                print(&backfill::run(&env, &seeded, i).await?)?;
            }
            Ok(())
        }
        Cmd::Jobs {
            instances,
            interval,
            measure,
        } => print(&jobs::run(&env, instances, interval, Duration::from_secs(measure)).await?),
        Cmd::Latency { interval, seconds } => print(&latency::run(&env, interval, seconds).await?),
        Cmd::Peer | Cmd::Report { .. } => Ok(()),
        Cmd::All { quick, out, json } => {
            let plan = if quick {
                suite::Plan::quick()
            } else {
                suite::Plan::full()
            };
            let results = suite::run(&env, &plan).await;
            let json = json.unwrap_or_else(|| cli.work_dir.join(results::file_name(quick)));
            let text = serde_json::to_string_pretty(&results).context("results as JSON")?;
            std::fs::write(&json, text).with_context(|| format!("write {}", json.display()))?;
            std::fs::write(&out, report::markdown(&results))
                .with_context(|| format!("write {}", out.display()))?;
            eprintln!(
                "poller-bench: wrote {} and {} ({:.0} s)",
                out.display(),
                json.display(),
                results.wall_seconds
            );
            if !results.errors.is_empty() {
                bail!(
                    "{} run(s) failed:\n{}",
                    results.errors.len(),
                    results.errors.join("\n")
                );
            }
            Ok(())
        }
    }
}

/// One result as JSON on stdout.
fn print<T: Serialize>(value: &T) -> Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(value).context("result as JSON")?
    );
    Ok(())
}
