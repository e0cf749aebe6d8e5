//! The worker: topics, group membership, and one task per owned state
//! partition, each running its jobs.
//!
//! - [`topics`]: create the topics at start-up.
//! - [`membership`]: the consumer group that assigns state partitions.
//! - [`partition`]: fence → restore → schedule, per owned partition.
//! - [`jobs`]: instances → jobs, by partition.
//! - [`job`]: one job's poll loop (fetch → detect → one transaction).
//! - [`lane`]: the partition's transactional producer, taken in turns.
//! - [`tokens`]: OAuth tokens sealed in the state partition.
//! - [`source`]: the provider boundary the loop calls.

pub mod jobs;
pub mod lane;
pub mod membership;
pub mod ownership;
pub mod poll;
pub mod source;
pub mod tokens;
pub mod topics;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::instance::Instance;
use crate::settings::Settings;

use self::membership::{Membership, Ownership};
use self::ownership::{PartitionDeps, run_partition};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Topics(#[from] topics::TopicError),
    #[error("joining the worker group: {0}")]
    Group(#[from] rdkafka::error::KafkaError),
}

/// Runs the worker until `shutdown`: then stops taking new polls, lets
/// in-flight polls commit or abort, leaves the group and returns.
///
/// # Errors
/// Start-up failures (topics, group); later failures are retried inside.
pub async fn run(
    settings: &Settings,
    instances: Vec<Arc<Instance>>,
    deps: PartitionDeps,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    topics::ensure_topics(settings).await?;
    let partitions = topics::partition_count(settings, &settings.state_topic).await?;
    let mut jobs = jobs::jobs_by_partition(&instances, partitions);
    info!(
        message = "Worker starting.",
        instances = instances.len(),
        jobs = jobs.values().map(Vec::len).sum::<usize>(),
        state_partitions = partitions
    );
    let deps = Arc::new(deps);
    let (membership, mut ownership) = Membership::join(
        &settings.kafka_config(),
        &settings.worker_group_id,
        &settings.state_topic,
        settings.worker_id.as_deref(),
    )?;
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
                    let handle = tokio::spawn(run_partition(
                        deps.clone(),
                        p,
                        part_jobs.clone(),
                        cancel.clone(),
                    ));
                    running.insert(p, (cancel, handle));
                }
            }
            Some(Ownership::Revoked(parts, done)) => {
                for p in parts {
                    if let Some((cancel, handle)) = running.remove(&p) {
                        cancel.cancel();
                        let _ = handle.await;
                    }
                    deps.readiness.released(p);
                }
                let _ = done.send(());
            }
        }
    }
    info!(message = "Worker stopping: finishing in-flight polls.");
    for (_, (cancel, _)) in running.iter() {
        cancel.cancel();
    }
    for (_, (_, handle)) in running.drain() {
        let _ = handle.await;
    }
    // Nobody answers revocations any more: the leave must not wait for us.
    drop(ownership);
    jobs.clear();
    membership.leave().await;
    info!(message = "Worker stopped.");
    Ok(())
}
