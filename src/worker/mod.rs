//! The worker: topics, group membership, and one task per owned state
//! partition, each running its jobs.
//!
//! - [`topics`]: create the topics at start-up.
//! - [`membership`]: the consumer group that assigns state partitions.
//! - [`ownership`]: fence → restore → schedule, per owned partition.
//! - [`jobs`]: instances → jobs, by partition.
//! - [`poll`]: one job's poll loop (fetch → detect → one transaction).
//! - [`prefetch`]: a long window's next part, fetched while one commits.
//! - [`permit`]: the poll permits that bound a worker's polls in flight.
//! - [`lane`]: the partition's transactional producer, taken in turns.
//! - [`clock`]: wall-clock time, behind a seam for tests.
//! - [`tokens`]: OAuth tokens sealed in the state partition.

pub mod clock;
pub mod jobs;
pub mod lane;
pub mod membership;
pub mod ownership;
pub mod permit;
pub mod poll;
pub mod prefetch;
pub mod tokens;
pub mod topics;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use tokio::sync::Semaphore;
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span};

use crate::crypto::SealingKey;
use crate::instance::Instance;
use crate::kafka::KafkaClients;
use crate::ops::Readiness;
use crate::publish::{Topics, TxnTimeouts};
use crate::settings::Settings;
use crate::source::SourceFactory;

use self::membership::{Membership, Ownership};
use self::ownership::{PartitionDeps, run_partition};
use self::poll::PollSettings;
use self::topics::TopicLayout;

/// Shortest wait after a failed poll; see [`PollSettings::retry_min`].
const RETRY_MIN: Duration = Duration::from_secs(1);
/// New jobs start within the first minute (or interval): 10,000 jobs at
/// 60 s arrive at ~167 a second from the start instead of all at once.
const FIRST_POLL_SPREAD: Duration = Duration::from_secs(60);

/// What the worker takes from the settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub kafka: KafkaClients,
    /// `WORKER_GROUP_ID`.
    pub group: String,
    /// `WORKER_ID`.
    pub worker_id: Option<String>,
    pub topics: Topics,
    /// Of the topics the worker creates.
    pub layout: TopicLayout,
    pub max_concurrent_polls: usize,
    pub poll: PollSettings,
    pub encryption_key: Option<SealingKey>,
    pub restore_timeout: Duration,
    pub txn: TxnTimeouts,
    /// How long a fenced partition waits for the group to move it before
    /// taking it over again: two session timeouts.
    pub fenced_wait: Duration,
    /// Testing only: `TEST_HOLD_TRANSACTION_MS`.
    pub hold_transactions_open: Duration,
}

impl WorkerConfig {
    pub fn new(settings: &Settings) -> Self {
        Self {
            kafka: settings.kafka_clients(),
            group: settings.worker_group_id.clone(),
            worker_id: settings.worker_id.clone(),
            topics: Topics {
                events: settings.events_topic.clone(),
                dead_letters: settings.dlq_topic.clone(),
                state: settings.state_topic.clone(),
            },
            layout: TopicLayout {
                partitions: settings.topic_partitions,
                replication: settings.topic_replication_factor,
            },
            max_concurrent_polls: settings.max_concurrent_polls,
            poll: PollSettings {
                overlap: TimeDelta::from_std(settings.safety_overlap_seconds)
                    .unwrap_or(TimeDelta::MAX),
                service_zone: settings.service_timezone,
                retry_min: RETRY_MIN,
                first_poll_spread: FIRST_POLL_SPREAD,
            },
            encryption_key: settings.state_encryption_key.clone(),
            restore_timeout: settings.state_restore_timeout_seconds,
            txn: settings.txn_timeouts(),
            fenced_wait: settings.kafka_session_timeout_ms.saturating_mul(2),
            hold_transactions_open: settings.test_hold_transaction_ms,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Topics(#[from] topics::TopicError),
    #[error("joining the worker group: {0}")]
    Group(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Layout(#[from] crate::state::layout::LayoutError),
    #[error(
        "the worker group dropped this worker for good ({0}); is another process running with the same WORKER_ID?"
    )]
    GroupLost(String),
}

/// Runs the worker until `shutdown`: then stops taking new polls, lets
/// in-flight polls commit or abort, leaves the group and returns.
///
/// # Errors
/// Start-up failures (topics, group); later failures are retried inside.
pub async fn run(
    config: WorkerConfig,
    instances: Vec<Arc<Instance>>,
    factory: Arc<dyn SourceFactory>,
    readiness: Arc<Readiness>,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    topics::ensure_topics(&config.kafka, &config.topics, config.layout).await?;
    let partitions = topics::partition_count(&config.kafka, &config.topics.state).await?;
    crate::state::layout::check(
        &config.kafka,
        &config.topics.state,
        partitions,
        config.restore_timeout,
    )
    .await?;
    let mut jobs = jobs::jobs_by_partition(&instances, partitions);
    info!(
        message = "Worker starting.",
        instances = instances.len(),
        jobs = jobs.values().map(Vec::len).sum::<usize>(),
        state_partitions = partitions
    );
    let (membership, mut ownership) = Membership::join(
        &config.kafka,
        &config.group,
        &config.topics.state,
        config.worker_id.as_deref(),
    )?;
    let deps = Arc::new(PartitionDeps {
        topics: Arc::new(config.topics.clone()),
        poll: Arc::new(config.poll.clone()),
        permits: Arc::new(Semaphore::new(config.max_concurrent_polls)),
        config,
        factory,
        readiness,
        clock: Arc::new(clock::SystemClock),
        sources: Default::default(),
        vaults: Default::default(),
    });
    let mut running: HashMap<i32, (CancellationToken, JoinHandle<()>)> = HashMap::new();
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => break,
            e = ownership.recv() => e,
        };
        match event {
            None => break,
            Some(Ownership::Assigned(parts)) => {
                deps.readiness.joined();
                for p in parts {
                    let Some(part_jobs) = jobs.get(&p) else {
                        // No jobs: nothing to fence, restore or schedule.
                        deps.readiness.scheduled(p);
                        continue;
                    };
                    if running.contains_key(&p) {
                        continue;
                    }
                    // Before the task starts, so it cannot report
                    // "scheduled" first and be overwritten.
                    deps.readiness.taking_over(p);
                    let cancel = shutdown.child_token();
                    let handle = tokio::spawn(
                        run_partition(deps.clone(), p, part_jobs.clone(), cancel.clone())
                            .instrument(info_span!("partition", partition = p)),
                    );
                    running.insert(p, (cancel, handle));
                }
            }
            Some(Ownership::Revoked(parts, done)) => {
                // All of them stop at once, then are awaited together: a
                // revocation takes as long as its slowest commit, not the
                // sum of them.
                let stopping: Vec<_> = parts
                    .iter()
                    .filter_map(|p| running.remove(p).map(|r| (*p, r)))
                    .collect();
                for (_, (cancel, _)) in &stopping {
                    cancel.cancel();
                }
                for (p, (_, handle)) in stopping {
                    report_end(p, handle.await);
                }
                for p in parts {
                    deps.readiness.released(p);
                }
                // The group thread may have given up waiting; that is fine.
                let _ = done.send(());
            }
            Some(Ownership::Lost(reason)) => {
                // Another member may own our partitions already: stop
                // everything (fencing protects the data meanwhile) and end
                // the process so that its supervisor sees it.
                deps.readiness.failed(&reason);
                stop_all(&mut running).await;
                return Err(WorkerError::GroupLost(reason));
            }
        }
    }
    info!(message = "Worker stopping: finishing in-flight polls.");
    stop_all(&mut running).await;
    // Nobody answers revocations any more: the leave must not wait for us.
    drop(ownership);
    jobs.clear();
    membership.leave().await;
    info!(message = "Worker stopped.");
    Ok(())
}

async fn stop_all(running: &mut HashMap<i32, (CancellationToken, JoinHandle<()>)>) {
    for (cancel, _) in running.values() {
        cancel.cancel();
    }
    for (p, (_, handle)) in running.drain() {
        report_end(p, handle.await);
    }
}

/// A partition task that panicked is a bug: say so, with the partition,
/// rather than dropping the news with the handle.
fn report_end(partition: i32, ended: Result<(), JoinError>) {
    if let Err(e) = ended {
        error!(message = "Partition task failed.", partition, error = %e);
    }
}
