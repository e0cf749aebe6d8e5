//! The state topic's layout: the partition count its records were written
//! under. A job lives in partition `murmur2(instance) % count`; adding
//! partitions moves most jobs to partitions that hold nothing for them, and
//! a worker would start them over there. So the count is recorded in the
//! topic itself (`meta/layout`, partition 0) when the topic is first used,
//! and a worker refuses to start on a topic whose count differs.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};

use super::checkpoint::StateKey;
use super::restore::{RestoreError, restore_partition};
use crate::kafka::KafkaClients;

#[derive(Serialize, Deserialize)]
struct Layout {
    partitions: i32,
}

pub(super) fn decode(bytes: &[u8]) -> Option<i32> {
    serde_json::from_slice::<Layout>(bytes)
        .ok()
        .map(|l| l.partitions)
}

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error(
        "state topic {topic} now has {now} partitions, but its checkpoints and tokens were written \
         under {recorded} partitions: most jobs would move to partitions that hold nothing for \
         them and start over. Refusing to run. Kafka cannot remove partitions: see README \
         \"Scaling\" for how to grow beyond {recorded} state partitions."
    )]
    Changed {
        topic: String,
        recorded: i32,
        now: i32,
    },
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error("recording the layout of state topic {topic}: {source}")]
    Write {
        topic: String,
        source: rdkafka::error::KafkaError,
    },
}

/// Checks the recorded partition count of `topic` against `partitions`,
/// recording it when the topic has none yet.
///
/// # Errors
/// [`LayoutError::Changed`] when they differ; Kafka errors.
pub async fn check(
    clients: &KafkaClients,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<(), LayoutError> {
    let restored = restore_partition(clients, topic, 0, timeout).await?;
    match restored.layout {
        Some(recorded) if recorded != partitions => Err(LayoutError::Changed {
            topic: topic.to_string(),
            recorded,
            now: partitions,
        }),
        Some(_) => Ok(()),
        None => record(clients, topic, partitions).await,
    }
}

/// Writes the layout record. Not transactional: every worker that finds
/// none writes the same value, and a compacted topic keeps one.
async fn record(clients: &KafkaClients, topic: &str, partitions: i32) -> Result<(), LayoutError> {
    let write = |source| LayoutError::Write {
        topic: topic.to_string(),
        source,
    };
    let producer: FutureProducer = clients.base().create().map_err(write)?;
    let value = serde_json::to_vec(&Layout { partitions }).unwrap_or_default();
    let key = StateKey::Layout.encode();
    producer
        .send(
            FutureRecord::to(topic)
                .key(&key)
                .payload(&value)
                .partition(0),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| write(e))?;
    tracing::info!(message = "State topic layout recorded.", topic, partitions);
    Ok(())
}
