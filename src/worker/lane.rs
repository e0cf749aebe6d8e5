//! One state partition's transactional producer, shared by its jobs and its
//! token store. A producer has at most one open transaction, so commits
//! take turns; fetching (the slow part) happens outside the lane.

use std::sync::Arc;

use tokio::sync::Mutex;

use crate::metrics::{Metrics, TxnResult};
use crate::publish::{Batch, PartitionProducer, PublishError};

pub struct Lane {
    producer: PartitionProducer,
    turn: Mutex<()>,
    /// Counts every transaction of the partition (polls, tokens, starts).
    metrics: Arc<Metrics>,
}

impl Lane {
    pub fn new(producer: PartitionProducer, metrics: Arc<Metrics>) -> Self {
        Self {
            producer,
            turn: Mutex::new(()),
            metrics,
        }
    }

    pub fn partition(&self) -> i32 {
        self.producer.partition()
    }

    /// Commits `batch` as one transaction, after any commit in progress.
    ///
    /// # Errors
    /// See [`PartitionProducer::commit`].
    pub async fn commit(&self, batch: Batch) -> Result<(), PublishError> {
        let _turn = self.turn.lock().await;
        let result = self.producer.commit(batch).await;
        self.metrics.transaction(match result {
            Ok(()) => TxnResult::Committed,
            Err(_) => TxnResult::Aborted,
        });
        result
    }
}
