//! One state partition's transactional producer, shared by its jobs and its
//! token store. A producer has at most one open transaction, so commits
//! take turns; fetching (the slow part) happens outside the lane.
//!
//! The jobs and the token store see it as a [`Commit`], the output side of
//! the job loop, so the loop is unit-tested without a broker.

use std::time::Instant;

use futures::future::BoxFuture;
use tokio::sync::Mutex;

use crate::publish::{Batch, PartitionProducer, PublishError};
use crate::telemetry::events::TransactionFinished;
use crate::telemetry::metrics::TxnResult;

/// Commits one batch as one transaction.
pub trait Commit: Send + Sync {
    /// Returns once the batch is committed, or with the classified error
    /// after it was aborted (nothing of it visible to `read_committed`).
    fn commit(&self, batch: Batch) -> BoxFuture<'_, Result<(), PublishError>>;
}

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

    /// Commits `batch` as one transaction, after any commit in progress.
    ///
    /// # Errors
    /// See [`PartitionProducer::commit`].
    async fn commit_in_turn(&self, batch: Batch) -> Result<(), PublishError> {
        let _turn = self.turn.lock().await;
        let began = Instant::now();
        let result = self.producer.commit(batch).await;
        // Counts every transaction of the partition (polls, tokens, starts).
        TransactionFinished {
            result: match result {
                Ok(()) => TxnResult::Committed,
                Err(_) => TxnResult::Aborted,
            },
            elapsed: began.elapsed(),
        }
        .emit();
        result
    }
}

impl Commit for Lane {
    fn commit(&self, batch: Batch) -> BoxFuture<'_, Result<(), PublishError>> {
        Box::pin(self.commit_in_turn(batch))
    }
}
