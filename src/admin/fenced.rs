//! A state partition taken over for one change: fenced through its own
//! transactional id, then read back, then written, as a worker taking it
//! over does (see `worker::ownership`). Reading after fencing is what
//! makes the change safe: no earlier owner can commit behind what was read.
//! Releasing it when done lets the fenced owner take it back at once.

use std::sync::Arc;

use crate::publish::{Batch, PartitionProducer, PublishError};
use crate::state::{Restored, StateKey};
use crate::worker::WorkerConfig;
use crate::worker::lane::{Commit, Lane};

use super::{AdminError, read_partition};

pub struct FencedPartition {
    pub partition: i32,
    /// The partition as of the fence.
    pub restored: Restored,
    lane: Arc<Lane>,
}

impl FencedPartition {
    /// Fences the partition's owner and reads the partition to its end.
    ///
    /// # Errors
    /// The producer cannot fence (broker away, not authorized) or the
    /// partition cannot be read.
    pub async fn take(config: &WorkerConfig, partition: i32) -> Result<Self, AdminError> {
        let producer = PartitionProducer::fence(
            &config.kafka,
            &config.group,
            Arc::new(config.topics.clone()),
            partition,
            config.txn,
        )
        .await
        .map_err(|source| AdminError::Publish { partition, source })?;
        let restored = read_partition(config, partition).await?;
        Ok(Self {
            partition,
            restored,
            lane: Arc::new(Lane::new(producer)),
        })
    }

    /// The partition's transactions, for code that commits as a job does.
    pub fn lane(&self) -> Arc<dyn Commit> {
        self.lane.clone()
    }

    /// Commits `batch` in one transaction.
    ///
    /// # Errors
    /// [`AdminError::Raced`] when the owner fenced back first.
    pub async fn commit(&self, batch: Batch) -> Result<(), AdminError> {
        self.lane
            .commit(batch)
            .await
            .map_err(|e| classify(self.partition, e))
    }
}

impl FencedPartition {
    /// Hands the partition back: a last transaction whose only record is
    /// the release marker, which tells the fenced owner it may take the
    /// partition back at once rather than wait for its group. Best
    /// effort: the change is committed already, and without the marker
    /// the owner takes the partition back after its usual wait.
    pub async fn release(self, command: &str) {
        let marker = serde_json::json!({ "command": command, "at": chrono::Utc::now() });
        let batch = Batch {
            state: vec![(
                StateKey::Released.encode(),
                Some(marker.to_string().into_bytes()),
            )],
            ..Batch::default()
        };
        if let Err(error) = self.lane.commit(batch).await {
            tracing::warn!(
                message = "Could not hand the state partition back; its owner takes it back after its usual wait.",
                partition = self.partition,
                %error
            );
        }
    }
}

/// A fenced producer means the live owner took the partition back.
pub fn classify(partition: i32, e: PublishError) -> AdminError {
    match e {
        PublishError::Fenced(_) => AdminError::Raced { partition },
        source => AdminError::Publish { partition, source },
    }
}
