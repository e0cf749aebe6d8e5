//! The life of one owned state partition: **fence** (init the partition's
//! transactional producer, aborting whatever a previous owner left open),
//! **then restore** its checkpoints and tokens with `read_committed`, **then
//! schedule** its jobs. Restoring before fencing would let a zombie commit
//! after the restore and cause duplicates.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::ops::{Attention, Readiness};
use crate::publish::{Batch, PartitionProducer, Topics};
use crate::state::restore_partition;
use crate::state::{Checkpoint, StateKey};
use crate::telemetry::events::CheckpointUnreadable;

use crate::source::{Source, SourceFactory};

use super::WorkerConfig;
use super::clock::Clock;
use super::jobs::Job;
use super::lane::{Commit, Lane};
use super::poll::{JobRunner, PollSettings};
use super::tokens::TokenVault;

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
}

/// Runs `partition` until `cancel`; starts over (fence, restore) whenever
/// the producer is fenced or breaks.
pub async fn run_partition(
    deps: Arc<PartitionDeps>,
    partition: i32,
    jobs: Vec<Job>,
    cancel: CancellationToken,
) {
    let mut failures: u32 = 0;
    while !cancel.is_cancelled() {
        match own(&deps, partition, &jobs, &cancel).await {
            Ok(()) => failures = 0,
            Err(error) => {
                failures = failures.saturating_add(1);
                let wait = Duration::from_millis(500).saturating_mul(1 << failures.min(6));
                warn!(message = "Could not take over the state partition; retrying.", partition, %error, retry_in = ?wait);
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// One ownership period: returns when cancelled (Ok) or when the producer
/// must be replaced (Ok, after stopping the jobs); errors before scheduling.
async fn own(
    deps: &Arc<PartitionDeps>,
    partition: i32,
    jobs: &[Job],
    cancel: &CancellationToken,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    deps.readiness.taking_over(partition);
    let config = &deps.config;
    let producer =
        PartitionProducer::fence(&config.kafka, &config.group, deps.topics.clone(), partition)
            .await?
            .with_hold_open(config.hold_transactions_open);
    let lane: Arc<dyn Commit> = Arc::new(Lane::new(producer));
    let restored = restore_partition(
        &config.kafka,
        &deps.topics.state,
        partition,
        config.restore_timeout,
    )
    .await?;
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
        jobs = jobs.len()
    );
    let vault = Arc::new(TokenVault::new(
        config.encryption_key.clone(),
        lane.clone(),
        restored.tokens,
    ));

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

    let mut sources: HashMap<String, Arc<dyn Source>> = HashMap::new();
    let refence = CancellationToken::new();
    let stop = cancel.child_token();
    let mut tasks = JoinSet::new();
    for job in jobs {
        let source = match sources.get(&job.instance.id) {
            Some(s) => s.clone(),
            None => match deps.factory.source(&job.instance, vault.clone()) {
                Ok(s) => {
                    sources.insert(job.instance.id.clone(), s.clone());
                    s
                }
                Err(error) => {
                    warn!(message = "Instance cannot be polled; its jobs are skipped.", job = %job.id, %error);
                    continue;
                }
            },
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
        };
        let span = info_span!("job", job = %job.id);
        tasks.spawn(runner.run(stop.clone(), refence.clone()).instrument(span));
    }
    deps.readiness.scheduled(partition);
    tokio::select! {
        () = cancel.cancelled() => {}
        () = refence.cancelled() => {}
    }
    stop.cancel();
    while let Some(ended) = tasks.join_next().await {
        if let Err(e) = ended {
            error!(message = "Job task failed.", partition, error = %e);
        }
    }
    Ok(())
}
