//! `poll-once`: one window of one job, through the job loop's own poll
//! (fetch, detect, events, dead letters), with a commit that also prints
//! what it publishes. `--dry-run` swaps the commit for one that only
//! prints, starts from `--since` instead of the checkpoint and keeps tokens
//! in memory: no Kafka at all.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::fetch::MemoryTokenStore;
use crate::instance::load_file;
use crate::ops::Readiness;
use crate::provider::HttpSources;
use crate::publish::{Batch, PublishError};
use crate::settings::Settings;
use crate::source::{CredentialStore, Pause, SourceFactory};
use crate::state::{Checkpoint, partition_for};
use crate::worker::clock::SystemClock;
use crate::worker::jobs::Job;
use crate::worker::lane::Commit;
use crate::worker::poll::{JobRunner, PollOutcome};
use crate::worker::prefetch::Prefetch;
use crate::worker::tokens::TokenVault;
use crate::worker::topics::partition_count;

use super::fenced::FencedPartition;
use super::{AdminError, worker_config};

pub struct PollOnceOptions {
    pub instance: PathBuf,
    pub resource: String,
    /// Dry runs only: where the window starts (default: the instance's
    /// backfill start, else one interval ago).
    pub since: Option<DateTime<Utc>>,
    pub dry_run: bool,
}

/// What one run printed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub events: usize,
    pub dead_letters: usize,
    /// Polls of the window (more than one when it was cut in parts).
    pub parts: usize,
}

/// The values of what was committed, until printed.
#[derive(Default)]
struct Printed {
    events: Vec<Vec<u8>>,
    dead_letters: Vec<Vec<u8>>,
}

/// Collects each batch's values once it is committed (by `inner`, or by
/// nobody in a dry run).
struct Printing {
    inner: Option<Arc<dyn Commit>>,
    printed: Mutex<Printed>,
}

impl Printing {
    fn take(&self) -> Printed {
        std::mem::take(&mut *self.printed.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Commit for Printing {
    fn commit(&self, batch: Batch) -> BoxFuture<'_, Result<(), PublishError>> {
        Box::pin(async move {
            let events: Vec<Vec<u8>> = batch.events.iter().map(|r| r.value.clone()).collect();
            let dead: Vec<Vec<u8>> = batch.dead_letters.iter().map(|r| r.value.clone()).collect();
            if let Some(inner) = &self.inner {
                inner.commit(batch).await?;
            }
            let mut p = self.printed.lock().unwrap_or_else(|e| e.into_inner());
            p.events.extend(events);
            p.dead_letters.extend(dead);
            Ok(())
        })
    }
}

/// Runs one window of the job and writes each event's value as a line to
/// `events` and each dead letter's to `dead_letters`, as published.
///
/// # Errors
/// The instance or resource cannot be used, the window cannot be fetched,
/// or (not a dry run) Kafka.
pub async fn run(
    settings: &Settings,
    opts: &PollOnceOptions,
    events: &mut dyn Write,
    dead_letters: &mut dyn Write,
) -> Result<Summary, AdminError> {
    if opts.since.is_some() && !opts.dry_run {
        return Err(AdminError::Usage(
            "--since needs --dry-run: to publish changes again from a time, use `state rewind`"
                .into(),
        ));
    }
    let config = worker_config(settings);
    let instance = Arc::new(load_file(&opts.instance).map_err(AdminError::Instance)?);
    let job = Job::of(&instance, &opts.resource).ok_or_else(|| AdminError::NoSuchResource {
        file: opts.instance.clone(),
        resource: opts.resource.clone(),
        known: instance
            .resources
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    let sources =
        HttpSources::new(settings.fetch_limits()).map_err(|source| AdminError::Source {
            instance: instance.id.clone(),
            source,
        })?;
    let now = Utc::now();

    // Kept alive for the whole run: the fence, the vault's lease.
    let mut taken = None;
    let vault;
    let _lease;
    let (checkpoint, credentials, inner): (Checkpoint, Arc<dyn CredentialStore>, _) =
        if opts.dry_run {
            let interval = TimeDelta::from_std(instance.refresh_interval).unwrap_or(TimeDelta::MAX);
            let since = opts
                .since
                .or(instance.backfill_from)
                .unwrap_or_else(|| now.checked_sub_signed(interval).unwrap_or(now));
            (
                Checkpoint::starting(job.id.clone(), since),
                Arc::new(MemoryTokenStore::new()),
                None,
            )
        } else {
            let n = partition_count(&config.kafka, &config.topics.state).await?;
            let partition = partition_for(&instance.id, n);
            let t = taken.insert(FencedPartition::take(&config, partition).await?);
            if let Some(why) = t.restored.unreadable.get(&job.id) {
                return Err(AdminError::Unreadable {
                    job: job.id.clone(),
                    detail: why.clone(),
                });
            }
            let checkpoint = t
                .restored
                .checkpoints
                .get(&job.id)
                .cloned()
                .unwrap_or_else(|| {
                    Checkpoint::starting(job.id.clone(), instance.backfill_from.unwrap_or(now))
                });
            vault = Arc::new(TokenVault::new(config.encryption_key.clone()));
            _lease = vault.lease(
                t.lane(),
                CancellationToken::new(),
                t.restored.tokens.clone(),
            );
            (
                checkpoint,
                vault.clone() as Arc<dyn CredentialStore>,
                Some(t.lane()),
            )
        };
    let source = sources
        .source(&instance, credentials)
        .map_err(|source| AdminError::Source {
            instance: instance.id.clone(),
            source,
        })?;
    let printing = Arc::new(Printing {
        inner,
        printed: Mutex::default(),
    });
    let mut runner = JobRunner {
        job: job.clone(),
        checkpoint,
        source,
        commit: printing.clone(),
        // One for the poll, one for the part fetched ahead.
        permits: Arc::new(Semaphore::new(2)),
        settings: Arc::new(config.poll.clone()),
        clock: Arc::new(SystemClock),
        readiness: Arc::new(Readiness::new()),
        partition: taken.as_ref().map_or(0, |t| t.partition),
        prefetch: Prefetch::default(),
    };
    let result = poll_window(&mut runner, &printing, events, dead_letters).await;
    drop(runner);
    if let Some(t) = taken {
        t.release("poll-once").await;
    }
    result
}

/// Polls until the window is done (every part of it), printing each part
/// once it is committed.
async fn poll_window(
    runner: &mut JobRunner,
    printing: &Printing,
    events: &mut dyn Write,
    dead_letters: &mut dyn Write,
) -> Result<Summary, AdminError> {
    let cancel = CancellationToken::new();
    let mut summary = Summary::default();
    loop {
        let next = runner.checkpoint.resume.as_ref().map(|r| r.url.clone());
        runner.prefetch.keep_only(next.as_deref());
        runner.prefetch.settled().await;
        let outcome = runner
            .poll_once(Utc::now(), Duration::ZERO, Pause::default(), &cancel)
            .await;
        let printed = printing.take();
        for v in &printed.events {
            events.write_all(v)?;
            events.write_all(b"\n")?;
        }
        for v in &printed.dead_letters {
            dead_letters.write_all(v)?;
            dead_letters.write_all(b"\n")?;
        }
        events.flush()?;
        summary.events += printed.events.len();
        summary.dead_letters += printed.dead_letters.len();
        summary.parts += 1;
        let reason = match outcome {
            PollOutcome::Committed {
                truncated: true, ..
            } => continue,
            PollOutcome::Committed { .. } => return Ok(summary),
            PollOutcome::FetchFailed(kind) => format!("fetching failed ({kind:?}); see the log"),
            PollOutcome::Aborted => "the transaction was aborted; see the log".into(),
            PollOutcome::Fatal(_) => {
                let partition = runner.partition;
                return Err(AdminError::Raced { partition });
            }
            PollOutcome::Cancelled => "interrupted".into(),
        };
        return Err(AdminError::Poll {
            job: runner.job.id.clone(),
            reason,
        });
    }
}
