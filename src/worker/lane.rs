//! One state partition's transactional producer, shared by its jobs and its
//! token store. A producer has at most one open transaction, so commits
//! take turns; fetching (the slow part) happens outside the lane.

use tokio::sync::Mutex;

use crate::publish::{Batch, PartitionProducer, PublishError};

pub struct Lane {
    producer: PartitionProducer,
    turn: Mutex<()>,
}

impl Lane {
    pub fn new(producer: PartitionProducer) -> Self {
        Self {
            producer,
            turn: Mutex::new(()),
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
        self.producer.commit(batch).await
    }
}
