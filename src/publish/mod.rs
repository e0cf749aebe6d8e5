//! Transactional publishing: one producer per owned state-topic partition.
//!
//! Each poll is one Kafka transaction holding its events, its dead letters
//! and the job's new checkpoint. The producer's `transactional.id` is derived
//! from the state partition, so whoever takes the partition over calls
//! `init_transactions` with the same id and the broker fences the previous
//! owner (aborting its open transaction): a paused zombie can never commit
//! for a job it no longer owns.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use crate::event::OutRecord;
use crate::kafka::KafkaClients;

/// How long one call of `init/commit/abort_transaction` may block, and how
/// long a commit whose outcome is unknown is retried before the producer is
/// given up (`COMMIT_TIMEOUT_MS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnTimeouts {
    /// One transactional API call.
    pub call: Duration,
    /// All calls of one commit together: beyond it the outcome is unknown.
    pub commit: Duration,
}

impl Default for TxnTimeouts {
    fn default() -> Self {
        Self {
            call: Duration::from_secs(10),
            commit: Duration::from_secs(60),
        }
    }
}

/// Kafka errors in the classes the job loop acts on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    /// Try the same transaction again later (e.g. coordinator moving).
    #[error("retriable Kafka error: {0}")]
    Retriable(KafkaError),
    /// The transaction was aborted; the window will be redone.
    #[error("transaction aborted: {0}")]
    MustAbort(KafkaError),
    /// A newer owner of the partition fenced this producer: the partition is
    /// someone else's now (or will be once the group says so). Fencing back
    /// would steal it and start a tug of war.
    #[error("producer fenced by a newer owner: {0}")]
    Fenced(KafkaError),
    /// The producer is unusable (a fatal idempotence error, or a commit
    /// whose outcome stayed unknown): drop it, fence and restore again (the
    /// restore tells whether the commit landed).
    #[error("fatal producer error: {0}")]
    Fatal(KafkaError),
}

impl PublishError {
    fn classify(e: KafkaError) -> Self {
        match &e {
            KafkaError::Transaction(rd)
                if matches!(
                    rd.code(),
                    RDKafkaErrorCode::Fenced
                        | RDKafkaErrorCode::ProducerFenced
                        | RDKafkaErrorCode::InvalidProducerEpoch
                ) =>
            {
                PublishError::Fenced(e)
            }
            KafkaError::Transaction(rd) if rd.is_fatal() => PublishError::Fatal(e),
            KafkaError::Transaction(rd) if rd.txn_requires_abort() => PublishError::MustAbort(e),
            KafkaError::Transaction(rd) if rd.is_retriable() => PublishError::Retriable(e),
            _ => PublishError::MustAbort(e),
        }
    }

    /// The producer cannot be used again (fenced or broken).
    pub fn is_fatal(&self) -> bool {
        matches!(self, PublishError::Fatal(_) | PublishError::Fenced(_))
    }
}

/// Where each kind of record goes.
#[derive(Debug, Clone)]
pub struct Topics {
    pub events: String,
    pub dead_letters: String,
    pub state: String,
}

/// What one transaction writes.
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<OutRecord>,
    pub dead_letters: Vec<OutRecord>,
    /// `(key, value)` for the owned state partition; `None` deletes the key
    /// (a compaction tombstone).
    pub state: Vec<(String, Option<Vec<u8>>)>,
}

impl Batch {
    /// Records of every kind.
    pub fn len(&self) -> usize {
        self.events.len() + self.dead_letters.len() + self.state.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The transactional producer of one state partition.
#[derive(Clone)]
pub struct PartitionProducer {
    producer: Arc<ThreadedProducer<DefaultProducerContext>>,
    partition: i32,
    topics: Arc<Topics>,
    timeouts: TxnTimeouts,
    /// Testing only: keep each transaction open this long before
    /// committing, so crash tests can kill a worker inside one.
    hold_open: Duration,
}

/// `<group>.<state topic>.<partition>`: stable across restarts and workers,
/// unique per partition, so ownership and fencing follow the partition.
pub fn transactional_id(group: &str, state_topic: &str, partition: i32) -> String {
    format!("{group}.{state_topic}.{partition}")
}

impl PartitionProducer {
    /// Creates the producer and fences every earlier owner of `partition`.
    /// Blocks (off the async threads) until the broker has aborted any
    /// transaction the previous owner left open.
    ///
    /// # Errors
    /// The producer cannot be created or `init_transactions` fails.
    pub async fn fence(
        clients: &KafkaClients,
        group: &str,
        topics: Arc<Topics>,
        partition: i32,
        timeouts: TxnTimeouts,
    ) -> Result<Self, PublishError> {
        let producer: ThreadedProducer<DefaultProducerContext> = clients
            .producer(&transactional_id(group, &topics.state, partition))
            .create()
            .map_err(PublishError::Fatal)?;
        let producer = Arc::new(producer);
        let p = producer.clone();
        tokio::task::spawn_blocking(move || p.init_transactions(timeouts.commit))
            .await
            .map_err(|_| PublishError::Retriable(KafkaError::Canceled))?
            .map_err(PublishError::classify)?;
        Ok(Self {
            producer,
            partition,
            topics,
            timeouts,
            hold_open: Duration::ZERO,
        })
    }

    /// Testing only: see [`crate::settings::Settings::test_hold_transaction`].
    pub fn with_hold_open(mut self, hold: Duration) -> Self {
        self.hold_open = hold;
        self
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Writes `batch` in one transaction and commits it. On any error the
    /// transaction is aborted before returning (unless the producer is
    /// fatally broken), so nothing of the batch is ever visible to
    /// `read_committed` readers.
    ///
    /// # Errors
    /// The classified Kafka error.
    pub async fn commit(&self, batch: Batch) -> Result<(), PublishError> {
        self.commit_group(vec![batch]).await.1
    }

    /// Writes every batch of `group` in one transaction: all of them become
    /// visible together, or none. The batches come back so that a caller
    /// can retry them apart after a failure.
    ///
    /// # Errors
    /// As [`Self::commit`].
    pub async fn commit_group(&self, group: Vec<Batch>) -> (Vec<Batch>, Result<(), PublishError>) {
        let this = self.clone();
        let shared = Arc::new(group);
        let sent = shared.clone();
        let result = tokio::task::spawn_blocking(move || this.commit_blocking(&sent))
            .await
            .unwrap_or(Err(PublishError::MustAbort(KafkaError::Canceled)));
        // The blocking task has ended (joined above), so the group is ours
        // alone again.
        let group = Arc::try_unwrap(shared).unwrap_or_default();
        (group, result)
    }

    fn commit_blocking(&self, group: &[Batch]) -> Result<(), PublishError> {
        self.producer
            .begin_transaction()
            .map_err(PublishError::classify)?;
        match group
            .iter()
            .try_for_each(|batch| self.send_all(batch))
            .and_then(|()| {
                // Only poll transactions are held: holding a token save would
                // widen the one window a crash can strand an instance in (the
                // provider has rotated the refresh token, we have not stored it).
                let is_poll = group
                    .iter()
                    .any(|b| !b.events.is_empty() || !b.dead_letters.is_empty());
                if is_poll && !self.hold_open.is_zero() {
                    tracing::debug!(
                        message = "Transaction held open for testing.",
                        partition = self.partition,
                        batches = group.len(),
                        records = group.iter().map(Batch::len).sum::<usize>()
                    );
                    std::thread::sleep(self.hold_open);
                }
                self.commit_until_known()
            }) {
            Ok(()) => Ok(()),
            Err(e) if e.is_fatal() => Err(e),
            Err(e) => {
                if let Err(abort) = self.producer.abort_transaction(self.timeouts.call) {
                    return Err(match PublishError::classify(abort) {
                        // An abort that cannot finish leaves the producer
                        // inside a transaction API call: nothing else can
                        // run on it, so it is replaced.
                        PublishError::Retriable(e) => PublishError::Fatal(e),
                        other => other,
                    });
                }
                Err(e)
            }
        }
    }

    /// `commit_transaction`, called again after each retriable error (a
    /// flush or EndTxn that timed out, a coordinator moving): librdkafka
    /// resumes the same commit, and any other transactional call meanwhile
    /// would fail with a conflict. Aborting is right only when librdkafka
    /// says the transaction requires it. If the outcome is still unknown
    /// after the commit timeout, the producer is given up (`Fatal`): the
    /// partition is fenced and restored again, and the restore shows
    /// whether the commit landed.
    fn commit_until_known(&self) -> Result<(), PublishError> {
        let began = std::time::Instant::now();
        await_delivered(&*self.producer, self.timeouts.call);
        loop {
            let call = self
                .timeouts
                .call
                .min(self.timeouts.commit.saturating_sub(began.elapsed()))
                .max(Duration::from_millis(100));
            match self.producer.commit_transaction(call) {
                Ok(()) => return Ok(()),
                Err(e) => match PublishError::classify(e) {
                    PublishError::Retriable(e) => {
                        if began.elapsed() >= self.timeouts.commit {
                            return Err(PublishError::Fatal(e));
                        }
                        tracing::warn!(
                            message = "Commit not confirmed yet; resuming it.",
                            partition = self.partition,
                            error = %e,
                            elapsed_ms = began.elapsed().as_millis() as u64,
                        );
                    }
                    other => return Err(other),
                },
            }
        }
    }

    fn send_all(&self, batch: &Batch) -> Result<(), PublishError> {
        let outputs = [
            (&self.topics.events, &batch.events),
            (&self.topics.dead_letters, &batch.dead_letters),
        ];
        for (topic, records) in outputs {
            for r in records {
                self.send(topic, None, r.key.as_deref(), Some(&r.value), &r.headers)?;
            }
        }
        for (key, value) in &batch.state {
            self.send(
                &self.topics.state,
                Some(self.partition),
                Some(key),
                value.as_deref(),
                &[],
            )?;
        }
        Ok(())
    }

    fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&str>,
        value: Option<&[u8]>,
        headers: &[(&'static str, String)],
    ) -> Result<(), PublishError> {
        let mut hs = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in headers {
            hs = hs.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let mut record: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic).headers(hs);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(v) = value {
            record = record.payload(v);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                // The local queue is full: let the background thread drain
                // it, then try again. Anything else aborts the transaction.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(PublishError::classify(e)),
            }
        }
    }
}

/// Waits (up to `within`) until every record sent is delivered, while the
/// producer's own thread serves the delivery reports.
///
/// rust-rdkafka's `commit_transaction` first flushes, and its flush waits
/// for deliveries in `poll` slices of 100 ms that always run to their end:
/// any transaction with a record still in flight when the commit began
/// cost at least 100 ms (found in librdkafka's `eos` debug log: 100 ms
/// between the last partition registered and `BeginCommit`, in every
/// transaction). Waiting here in short sleeps first lets the commit's
/// flush find nothing outstanding and return at once. If the deliveries
/// take longer than `within`, the commit's own flush waits as before.
pub fn await_delivered(producer: &impl Producer, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    let mut pause = Duration::from_micros(100);
    while producer.in_flight_count() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(2));
    }
}
