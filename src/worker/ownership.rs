//! The life of one owned state partition: **fence** (init the partition's
//! transactional producer, aborting whatever a previous owner left open),
//! **then restore** its checkpoints and tokens with `read_committed`, **then
//! schedule** its jobs. Restoring before fencing would let a zombie commit
//! after the restore and cause duplicates.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::ops::{Attention, Readiness};
use crate::publish::{Batch, PartitionProducer, PublishError, Topics};
use crate::state::restore::released_after;
use crate::state::restore_partition;
use crate::state::{Checkpoint, StateKey};
use crate::telemetry::events::CheckpointUnreadable;

use crate::source::{Source, SourceFactory};

use super::WorkerConfig;
use super::clock::Clock;
use super::jobs::Job;
use super::lane::{Commit, Lane};
use super::poll::{JobRunner, PollSettings};
use super::prefetch::Prefetch;
use super::tokens::TokenVault;

/// How long an ending period waits for token rotations in flight.
const TOKEN_SETTLE: Duration = Duration::from_secs(10);

/// What every partition task of a worker shares.
pub struct PartitionDeps {
    pub config: WorkerConfig,
    pub topics: Arc<Topics>,
    pub poll: Arc<PollSettings>,
    pub permits: Arc<Semaphore>,
    pub factory: Arc<dyn SourceFactory>,
    /// Told when a partition is taken over, scheduled and released.
    pub readiness: Arc<Readiness>,
    pub clock: Arc<dyn Clock>,
    /// Sources (and so OAuth token managers) and token vaults live as long
    /// as the process, not one ownership period: a rotated token waiting
    /// to be saved survives a handover and is saved when the partition
    /// comes back.
    pub sources: Mutex<HashMap<String, Arc<dyn Source>>>,
    pub vaults: Mutex<HashMap<i32, Arc<TokenVault>>>,
}

impl PartitionDeps {
    fn vault(&self, partition: i32) -> Arc<TokenVault> {
        let mut vaults = self.vaults.lock().unwrap_or_else(|e| e.into_inner());
        vaults
            .entry(partition)
            .or_insert_with(|| Arc::new(TokenVault::new(self.config.encryption_key.clone())))
            .clone()
    }

    /// The instance's source, built once per process.
    fn source(
        &self,
        job: &Job,
        vault: &Arc<TokenVault>,
    ) -> Result<Arc<dyn Source>, crate::source::SourceError> {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = sources.get(&job.instance.id) {
            return Ok(s.clone());
        }
        let s = self.factory.source(&job.instance, vault.clone())?;
        sources.insert(job.instance.id.clone(), s.clone());
        Ok(s)
    }
}

/// Why an ownership period ended before its partition was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handback {
    /// A newer owner fenced the producer: wait for the group to move the
    /// partition rather than fence back.
    Fenced,
    /// The producer broke (or a commit's outcome stayed unknown): fence
    /// and restore again at once.
    Broken,
}

/// Ends an ownership period: cancelled from outside (revocation, shutdown)
/// or by a job that found the producer unusable, saying why.
#[derive(Clone, Default)]
pub struct Stop {
    token: CancellationToken,
    why: Arc<Mutex<Option<Handback>>>,
}

impl Stop {
    /// A stop that also fires when `parent` is cancelled.
    pub fn under(parent: &CancellationToken) -> Self {
        Self {
            token: parent.child_token(),
            why: Arc::default(),
        }
    }

    /// Stops every job of the period; the first reason given wins.
    pub fn hand_back(&self, why: Handback) {
        self.why
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(why);
        self.token.cancel();
    }

    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    pub fn why(&self) -> Option<Handback> {
        *self.why.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A commit that ends the period when the producer cannot be used again.
struct HandsBack {
    lane: Arc<dyn Commit>,
    stop: Stop,
}

impl Commit for HandsBack {
    fn commit(&self, batch: Batch) -> futures::future::BoxFuture<'_, Result<(), PublishError>> {
        Box::pin(async move {
            let result = self.lane.commit(batch).await;
            if let Err(e) = &result
                && e.is_fatal()
            {
                self.stop.hand_back(match e {
                    PublishError::Fenced(_) => Handback::Fenced,
                    _ => Handback::Broken,
                });
            }
            result
        })
    }
}

/// Runs `partition` until `cancel`. A broken producer is replaced at once
/// (fence, restore); a fenced one waits for the group first: someone else
/// owns the partition now, and fencing back would start a tug of war. If
/// the group still gives the partition to this worker after
/// `fenced_wait`, it is taken over again (a deliberate fence, e.g. by an
/// operator's tool, is not a rebalance), or as soon as the partition's
/// last record is an operator's release (see [`await_group_or_release`]).
pub async fn run_partition(
    deps: Arc<PartitionDeps>,
    partition: i32,
    jobs: Vec<Job>,
    cancel: CancellationToken,
) {
    let mut failures: u32 = 0;
    // The release marker the last restore saw: a newer one means an
    // operator's command fenced this worker and is done.
    let mut released = None;
    while !cancel.is_cancelled() {
        let wait = match own(&deps, partition, &jobs, &cancel, &mut released).await {
            Ok(None) => return,
            Ok(Some(Handback::Broken)) => {
                failures = 0;
                continue;
            }
            Ok(Some(Handback::Fenced)) => {
                failures = 0;
                warn!(
                    message = "Producer fenced by a newer owner; waiting for the group.",
                    partition,
                    wait = ?deps.config.fenced_wait
                );
                deps.readiness.taking_over(partition);
                if !await_group_or_release(&deps, partition, released, &cancel).await {
                    return;
                }
                continue;
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                // Capped low: the usual cause is a broker or coordinator
                // away for seconds, and the partition's jobs wait on it.
                let wait = Duration::from_millis(500).saturating_mul(1 << failures.min(3));
                warn!(message = "Could not take over the state partition; retrying.", partition, %error, retry_in = ?wait);
                wait
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// How often a fenced partition looks for an operator's release.
const RELEASE_CHECK: Duration = Duration::from_secs(1);

/// Waits `fenced_wait` for the group to move the partition, unless the
/// partition's last record turns out to be an operator's release first
/// (`state rewind`, `auth exchange`, … fence the owner, commit, then hand
/// the partition back): then it is taken back at once instead of pausing
/// its jobs for two session timeouts. `false` if cancelled meanwhile.
async fn await_group_or_release(
    deps: &PartitionDeps,
    partition: i32,
    after: Option<i64>,
    cancel: &CancellationToken,
) -> bool {
    let deadline = std::time::Instant::now() + deps.config.fenced_wait;
    loop {
        let step = RELEASE_CHECK.min(deadline.saturating_duration_since(std::time::Instant::now()));
        if step.is_zero() {
            return true;
        }
        tokio::select! {
            () = cancel.cancelled() => return false,
            () = tokio::time::sleep(step) => {}
        }
        let kafka = &deps.config.kafka;
        match released_after(
            kafka,
            &deps.topics.state,
            partition,
            after,
            RELEASE_CHECK * 5,
        )
        .await
        {
            Ok(true) => {
                info!(
                    message = "State partition handed back by an operator's command; taking it over again.",
                    partition
                );
                return true;
            }
            Ok(false) => {}
            Err(error) => {
                tracing::debug!(message = "Could not look for an operator's release.", partition, %error);
            }
        }
    }
}

/// One ownership period: returns when cancelled (`None`) or when the
/// producer must be replaced (after stopping the jobs); errors before
/// scheduling.
async fn own(
    deps: &Arc<PartitionDeps>,
    partition: i32,
    jobs: &[Job],
    cancel: &CancellationToken,
    released: &mut Option<i64>,
) -> Result<Option<Handback>, Box<dyn std::error::Error + Send + Sync>> {
    deps.readiness.taking_over(partition);
    let config = &deps.config;
    let began = std::time::Instant::now();
    let producer = PartitionProducer::fence(
        &config.kafka,
        &config.group,
        deps.topics.clone(),
        partition,
        config.txn,
    )
    .await?
    .with_hold_open(config.hold_transactions_open);
    let lane: Arc<dyn Commit> = Arc::new(Lane::new(producer));
    let fenced_ms = began.elapsed().as_millis() as u64;
    let restored = restore_partition(
        &config.kafka,
        &deps.topics.state,
        partition,
        config.restore_timeout,
    )
    .await?;
    *released = restored.released;
    for problem in &restored.problems {
        warn!(message = "Unreadable state record skipped.", partition, %problem);
    }
    for (job, problem) in &restored.unreadable {
        CheckpointUnreadable {
            job,
            partition,
            problem,
        }
        .emit();
        deps.readiness.attention(
            partition,
            &job.to_string(),
            Some(Attention::UnreadableCheckpoint {
                detail: problem.clone(),
            }),
        );
    }
    info!(
        message = "State partition restored.",
        partition,
        records = restored.records,
        checkpoints = restored.checkpoints.len(),
        jobs = jobs.len(),
        fenced_ms,
        restored_ms = began.elapsed().as_millis() as u64 - fenced_ms,
    );
    let stop = Stop::under(cancel);
    let vault = deps.vault(partition);
    // Released on every way out of this period, so no token is refreshed
    // or saved for a partition this worker may no longer own. A token
    // commit that finds the producer fenced ends the period as a job's
    // would: an instance whose polls all fail before committing (one
    // waiting for authorization) commits nothing else, and would otherwise
    // never learn that an operator's tool fenced it to store new tokens.
    let token_lane: Arc<dyn Commit> = Arc::new(HandsBack {
        lane: lane.clone(),
        stop: stop.clone(),
    });
    let _lease = vault.lease(token_lane, stop.token().clone(), restored.tokens);

    // A new job's starting point is committed before its first poll, so a
    // crash before that poll cannot move it.
    let mut checkpoints = restored.checkpoints;
    let now = deps.clock.now();
    let mut fresh = Vec::new();
    for job in jobs {
        // A job whose checkpoint cannot be read is blocked: starting it
        // over would lose (or replay) everything since that checkpoint.
        if !checkpoints.contains_key(&job.id) && !restored.unreadable.contains_key(&job.id) {
            let from = job.instance.backfill_from.unwrap_or(now);
            let c = Checkpoint::starting(job.id.clone(), from);
            fresh.push((StateKey::Job(job.id.clone()).encode(), Some(c.encode())));
            checkpoints.insert(job.id.clone(), c);
        }
    }
    if !fresh.is_empty() {
        lane.commit(Batch {
            state: fresh,
            ..Batch::default()
        })
        .await?;
    }

    let mut tasks = JoinSet::new();
    for job in jobs {
        let source = match deps.source(job, &vault) {
            Ok(s) => s,
            Err(error) => {
                warn!(message = "Instance cannot be polled; its jobs are skipped.", job = %job.id, %error);
                continue;
            }
        };
        let Some(checkpoint) = checkpoints.remove(&job.id) else {
            continue;
        };
        let runner = JobRunner {
            job: job.clone(),
            checkpoint,
            source,
            commit: lane.clone(),
            clock: deps.clock.clone(),
            permits: deps.permits.clone(),
            settings: deps.poll.clone(),
            readiness: deps.readiness.clone(),
            partition,
            prefetch: Prefetch::default(),
        };
        let span = info_span!("job", job = %job.id);
        tasks.spawn(runner.run(stop.clone()).instrument(span));
    }
    deps.readiness.scheduled(partition);
    stop.token().cancelled().await;
    while let Some(ended) = tasks.join_next().await {
        if let Err(e) = ended {
            error!(message = "Job task failed.", partition, error = %e);
        }
    }
    // A refresh runs on past its job's cancellation (it must not be cut
    // between the provider's answer and the save); the period lasts until
    // its save is through.
    vault.settle(TOKEN_SETTLE).await;
    Ok(stop.why())
}
