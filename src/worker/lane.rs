//! One state partition's transactional producer, shared by its jobs and its
//! token store. A producer has at most one open transaction, so commits
//! take turns; fetching (the slow part) happens outside the lane.
//!
//! Group commit: the batches that arrive while a transaction is running
//! wait together, and the next turn commits all of them in one transaction
//! (all visible or none, like one poll's batch alone). At thousands of jobs
//! per worker a turn per poll was the bottleneck: every poll paid a whole
//! transaction (begin, flush, EndTxn, markers on every partition touched)
//! behind the others; now a turn's cost is shared by whatever was ready.
//! Nothing waits for company: a lone batch commits at once.
//!
//! The jobs and the token store see it as a [`Commit`], the output side of
//! the job loop, so the loop is unit-tested without a broker.

use std::sync::Mutex as SyncMutex;
use std::time::Instant;

use futures::future::BoxFuture;
use tokio::sync::{Mutex, oneshot};

use crate::publish::{Batch, PartitionProducer, PublishError};
use crate::telemetry::events::{LaneTurn, TransactionFinished};
use crate::telemetry::metrics::TxnResult;

/// Commits one batch as one transaction.
pub trait Commit: Send + Sync {
    /// Returns once the batch is committed, or with the classified error
    /// after it was aborted (nothing of it visible to `read_committed`).
    fn commit(&self, batch: Batch) -> BoxFuture<'_, Result<(), PublishError>>;
}

/// Where a lane's transactions go: the partition's producer, or a fake in
/// the unit tests below.
pub trait Transactions: Send + Sync + 'static {
    /// Commits every batch of `group` in one transaction and hands them
    /// back.
    fn commit_group(
        &self,
        group: Vec<Batch>,
    ) -> BoxFuture<'_, (Vec<Batch>, Result<(), PublishError>)>;
}

impl Transactions for PartitionProducer {
    fn commit_group(
        &self,
        group: Vec<Batch>,
    ) -> BoxFuture<'_, (Vec<Batch>, Result<(), PublishError>)> {
        Box::pin(PartitionProducer::commit_group(self, group))
    }
}

/// A batch waiting for its turn, and where its outcome goes.
struct Waiting {
    batch: Batch,
    queued: Instant,
    outcome: oneshot::Sender<Result<(), PublishError>>,
}

pub struct Lane<T = PartitionProducer> {
    producer: T,
    waiting: SyncMutex<Vec<Waiting>>,
    turn: Mutex<()>,
}

impl<T: Transactions> Lane<T> {
    pub fn new(producer: T) -> Self {
        Self {
            producer,
            waiting: SyncMutex::new(Vec::new()),
            turn: Mutex::new(()),
        }
    }

    /// Queues `batch` and returns its outcome: committed by whichever
    /// caller's turn came first, together with the others then waiting.
    async fn commit_in_turn(&self, batch: Batch) -> Result<(), PublishError> {
        let (outcome, mut answer) = oneshot::channel();
        self.lock_waiting().push(Waiting {
            batch,
            queued: Instant::now(),
            outcome,
        });
        let _turn = tokio::select! {
            biased;
            // Committed (or failed) in someone else's turn.
            r = &mut answer => return r.unwrap_or_else(|_| Err(cancelled())),
            t = self.turn.lock() => t,
        };
        // A turn sends every outcome of its group before it ends, so a
        // batch not waiting any more has its answer.
        let group = std::mem::take(&mut *self.lock_waiting());
        if !group.is_empty() {
            self.run_turn(group).await;
        }
        answer.await.unwrap_or_else(|_| Err(cancelled()))
    }

    /// Commits `group` in one transaction. If that fails and the group has
    /// more than one batch, each is tried again alone: one poll whose
    /// records the broker refuses must not fail its neighbours' polls
    /// every time.
    async fn run_turn(&self, group: Vec<Waiting>) {
        let began = Instant::now();
        for w in &group {
            LaneTurn {
                waited: began.duration_since(w.queued),
            }
            .emit();
        }
        let (outcomes, batches): (Vec<_>, Vec<_>) =
            group.into_iter().map(|w| (w.outcome, w.batch)).unzip();
        let alone = batches.len() == 1;
        let (batches, result) = self.transaction(batches).await;
        match result {
            Ok(()) => outcomes.into_iter().for_each(|o| {
                let _ = o.send(Ok(()));
            }),
            // A producer that cannot be used again fails them all.
            Err(e) if alone || e.is_fatal() => {
                for o in outcomes {
                    let _ = o.send(Err(e.clone()));
                }
            }
            Err(_) => {
                let mut broken: Option<PublishError> = None;
                for (batch, o) in batches.into_iter().zip(outcomes) {
                    // Once the producer is unusable the rest fail with it
                    // at once instead of each waiting out its own try.
                    if let Some(e) = &broken {
                        let _ = o.send(Err(e.clone()));
                        continue;
                    }
                    let (_, result) = self.transaction(vec![batch]).await;
                    if let Err(e) = &result
                        && e.is_fatal()
                    {
                        broken = Some(e.clone());
                    }
                    let _ = o.send(result);
                }
            }
        }
    }

    async fn transaction(&self, group: Vec<Batch>) -> (Vec<Batch>, Result<(), PublishError>) {
        let began = Instant::now();
        let batches = group.len();
        let (group, result) = self.producer.commit_group(group).await;
        // Counts every transaction of the partition (polls, tokens, starts).
        TransactionFinished {
            result: match result {
                Ok(()) => TxnResult::Committed,
                Err(_) => TxnResult::Aborted,
            },
            elapsed: began.elapsed(),
            batches,
        }
        .emit();
        (group, result)
    }

    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The turn that held a batch ended without answering (its task was
/// dropped mid-commit, e.g. at shutdown): treat it as aborted; the restore
/// of the partition tells the truth.
fn cancelled() -> PublishError {
    PublishError::MustAbort(rdkafka::error::KafkaError::Canceled)
}

impl<T: Transactions> Commit for Lane<T> {
    fn commit(&self, batch: Batch) -> BoxFuture<'_, Result<(), PublishError>> {
        Box::pin(self.commit_in_turn(batch))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use rdkafka::error::KafkaError;

    use super::*;

    /// Records each transaction's batches (by their first state key) and
    /// answers as scripted; each transaction takes 10 ms.
    #[derive(Default)]
    struct Fake {
        transactions: SyncMutex<Vec<Vec<String>>>,
        /// Keys whose presence fails the transaction.
        poison: Vec<String>,
        fatal: bool,
        /// After the first aborted transaction, every one is fenced.
        fence_after_abort: bool,
        aborted: std::sync::atomic::AtomicBool,
    }

    impl Transactions for Arc<Fake> {
        fn commit_group(
            &self,
            group: Vec<Batch>,
        ) -> BoxFuture<'_, (Vec<Batch>, Result<(), PublishError>)> {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let keys: Vec<String> = group.iter().map(|b| b.state[0].0.clone()).collect();
                let failed = keys.iter().any(|k| self.poison.contains(k));
                self.transactions.lock().unwrap().push(keys);
                let fenced = self.fence_after_abort
                    && self
                        .aborted
                        .swap(failed, std::sync::atomic::Ordering::SeqCst);
                if fenced {
                    return (group, Err(PublishError::Fenced(KafkaError::Canceled)));
                }
                let result = match (failed, self.fatal) {
                    (false, _) => Ok(()),
                    (true, false) => Err(PublishError::MustAbort(KafkaError::Canceled)),
                    (true, true) => Err(PublishError::Fenced(KafkaError::Canceled)),
                };
                (group, result)
            })
        }
    }

    fn batch(key: &str) -> Batch {
        Batch {
            state: vec![(key.to_string(), Some(b"x".to_vec()))],
            ..Batch::default()
        }
    }

    async fn commit_all(lane: Arc<Lane<Arc<Fake>>>, keys: &[&str]) -> Vec<Result<(), String>> {
        let tasks: Vec<_> = keys
            .iter()
            .map(|k| {
                let (lane, b) = (lane.clone(), batch(k));
                tokio::spawn(async move { lane.commit(b).await.map_err(|e| e.to_string()) })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn batches_that_wait_together_share_one_transaction() {
        let fake = Arc::new(Fake::default());
        let lane = Arc::new(Lane::new(fake.clone()));
        let keys: Vec<String> = (0..20).map(|i| format!("job/{i}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let results = commit_all(lane, &refs).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let txns = fake.transactions.lock().unwrap();
        // The first commits alone (nobody waits for company); the 19 that
        // queued behind it share the next turn.
        assert_eq!(txns.len(), 2, "{txns:?}");
        assert_eq!(txns[0].len(), 1);
        assert_eq!(txns[1].len(), 19);
        let mut all: Vec<&String> = txns.iter().flatten().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 20, "each batch committed exactly once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_batch_fails_alone_after_its_group_is_retried_apart() {
        let fake = Arc::new(Fake {
            poison: vec!["job/bad".into()],
            ..Fake::default()
        });
        let lane = Arc::new(Lane::new(fake.clone()));
        let results = commit_all(lane, &["job/first", "job/a", "job/bad", "job/b"]).await;
        assert!(results[0].is_ok() && results[1].is_ok() && results[3].is_ok());
        assert!(results[2].is_err(), "{results:?}");
        let txns = fake.transactions.lock().unwrap();
        // first alone; a+bad+b together (aborted); then each alone.
        assert_eq!(txns.len(), 5, "{txns:?}");
        assert_eq!(txns[1].len(), 3);
        assert!(txns[2..].iter().all(|t| t.len() == 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_producer_broken_while_retrying_apart_fails_the_rest_at_once() {
        // The group aborts; the first batch retried alone finds the
        // producer fenced: the remaining two are not tried.
        let fake = Arc::new(Fake {
            poison: vec!["job/bad".into()],
            fence_after_abort: true,
            ..Fake::default()
        });
        let lane = Arc::new(Lane::new(fake.clone()));
        let results = commit_all(lane, &["job/first", "job/bad", "job/a", "job/b"]).await;
        assert!(results[0].is_ok());
        assert!(results[1..].iter().all(Result::is_err), "{results:?}");
        // first; the group of three; "job/bad" alone (fenced); no more.
        assert_eq!(fake.transactions.lock().unwrap().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fenced_producer_fails_the_whole_group_without_retrying() {
        let fake = Arc::new(Fake {
            poison: vec!["job/bad".into()],
            fatal: true,
            ..Fake::default()
        });
        let lane = Arc::new(Lane::new(fake.clone()));
        let results = commit_all(lane, &["job/first", "job/a", "job/bad"]).await;
        assert!(results[0].is_ok());
        assert!(results[1].is_err() && results[2].is_err(), "{results:?}");
        assert_eq!(fake.transactions.lock().unwrap().len(), 2);
    }
}
