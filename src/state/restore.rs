//! Reading one state partition back: the latest checkpoint of each job and
//! the latest (encrypted) token set of each instance.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::checkpoint::{Checkpoint, JobId, SeenSet, StateKey};
use crate::kafka::{EofAware, KafkaClients};

/// The state of one partition as of its last stable offset.
#[derive(Debug, Default)]
pub struct Restored {
    pub checkpoints: HashMap<JobId, Checkpoint>,
    /// Encrypted token sets by instance id.
    pub tokens: HashMap<String, Vec<u8>>,
    /// Jobs whose latest checkpoint could not be read (a newer format, a
    /// rollback, corruption), with the reason. They are blocked, never
    /// started over: a fresh checkpoint would lose (or replay) everything
    /// since the unreadable one.
    pub unreadable: HashMap<JobId, String>,
    /// Other records that could not be read, with the reason; skipped: one
    /// bad record must not stop every job of the partition.
    pub problems: Vec<String>,
    /// The partition count recorded in `meta/layout` (partition 0 only).
    pub layout: Option<i32>,
    pub records: u64,
    /// When each job's latest checkpoint record was written (its Kafka
    /// timestamp): the last commit of the job.
    pub written_at: HashMap<JobId, chrono::DateTime<chrono::Utc>>,
    /// Offset of the latest release marker ([`StateKey::Released`]).
    pub released: Option<i64>,
    /// One past the highest dedupe-set part number each job has live in
    /// the partition, joined or not (what deleting the job must delete).
    pub part_ends: HashMap<JobId, u32>,
    /// Dedupe-set parts by job and part number, until joined.
    parts: HashMap<JobId, BTreeMap<u32, Vec<u8>>>,
}

impl Restored {
    /// Puts each checkpoint's dedupe-set parts back into it. A part that
    /// is missing or does not decode makes the checkpoint unreadable (its
    /// job blocked): without it, changes would be published twice.
    fn join_parts(&mut self) {
        let mut parts = std::mem::take(&mut self.parts);
        self.part_ends = parts
            .iter()
            .filter_map(|(job, p)| Some((job.clone(), p.keys().next_back()?.saturating_add(1))))
            .collect();
        let mut broken = Vec::new();
        for (job, checkpoint) in &mut self.checkpoints {
            let mut mine = parts.remove(job).unwrap_or_default();
            for part in 0..checkpoint.seen_parts {
                let joined = mine
                    .remove(&part)
                    .ok_or_else(|| format!("dedupe-set part {part} is missing"))
                    .and_then(|bytes| {
                        SeenSet::decode_part(&bytes)
                            .map_err(|e| format!("dedupe-set part {part}: {e}"))
                    });
                match joined {
                    Ok(piece) => checkpoint.seen.merge(piece),
                    Err(why) => {
                        broken.push((job.clone(), why));
                        break;
                    }
                }
            }
        }
        for (job, why) in broken {
            self.checkpoints.remove(&job);
            self.unreadable.insert(job, why);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("restoring state partition {partition}: {source}")]
    Kafka { partition: i32, source: KafkaError },
    #[error("restoring state partition {partition}: no end of partition within {timeout:?}")]
    Timeout { partition: i32, timeout: Duration },
}

/// Reads `partition` of `topic` with `read_committed` from the beginning to
/// its end. Call it only after fencing the partition: then no earlier owner
/// can commit behind the point read here.
///
/// # Errors
/// Kafka errors, or the end not reached within `timeout`.
pub async fn restore_partition(
    clients: &KafkaClients,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<Restored, RestoreError> {
    let config = clients.committed_reader(&format!("restore.{topic}.{partition}"), true);
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || read(&config, &topic, partition, timeout))
        .await
        .map_err(|_| RestoreError::Kafka {
            partition,
            source: KafkaError::Canceled,
        })?
}

/// Records at the end of a partition looked at by [`released_after`]: an
/// operator's release is the last record when nobody wrote after it.
const TAIL: i64 = 16;

/// Whether the last committed record of `partition` is a release marker
/// written after offset `after` (the one a restore saw): an operator's
/// command fenced the owner, committed its change, handed the partition
/// back, and nobody has written since.
///
/// # Errors
/// Kafka errors, or the end not reached within `timeout`.
pub async fn released_after(
    clients: &KafkaClients,
    topic: &str,
    partition: i32,
    after: Option<i64>,
    timeout: Duration,
) -> Result<bool, RestoreError> {
    let config = clients.committed_reader(&format!("restore.{topic}.{partition}"), true);
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let kafka = |source| RestoreError::Kafka { partition, source };
        let consumer: BaseConsumer<EofAware> =
            config.create_with_context(EofAware).map_err(kafka)?;
        let (low, high) = consumer
            .fetch_watermarks(&topic, partition, timeout)
            .map_err(kafka)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, partition, Offset::Offset(low.max(high - TAIL)))
            .map_err(kafka)?;
        consumer.assign(&tpl).map_err(kafka)?;
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                None => continue,
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    return Ok(last.is_some_and(|(key, offset)| {
                        key == Some(StateKey::Released) && after.is_none_or(|a| offset > a)
                    }));
                }
                Some(Err(e)) => return Err(kafka(e)),
                Some(Ok(m)) => last = Some((m.key().and_then(StateKey::decode), m.offset())),
            }
        }
        Err(RestoreError::Timeout { partition, timeout })
    })
    .await
    .map_err(|_| RestoreError::Kafka {
        partition,
        source: KafkaError::Canceled,
    })?
}

fn read(
    config: &ClientConfig,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<Restored, RestoreError> {
    let kafka = |source| RestoreError::Kafka { partition, source };
    let consumer: BaseConsumer<EofAware> = config.create_with_context(EofAware).map_err(kafka)?;
    let mut tpl = TopicPartitionList::new();
    // Offset 0, not `Beginning`: librdkafka looks `Beginning` up first,
    // which costs ~500 ms of every takeover (measured), while a compacted
    // topic starts at 0 anyway; were it ever truncated, `earliest`
    // (auto.offset.reset) still starts at its first record.
    tpl.add_partition_offset(topic, partition, Offset::Offset(0))
        .map_err(kafka)?;
    consumer.assign(&tpl).map_err(kafka)?;
    let deadline = Instant::now() + timeout;
    let mut out = Restored::default();
    let mut ended = false;
    while Instant::now() < deadline {
        let msg = match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => {
                ended = true;
                break;
            }
            Some(Err(e)) => return Err(kafka(e)),
            Some(Ok(m)) => m,
        };
        out.records += 1;
        let Some(key) = msg.key().and_then(StateKey::decode) else {
            out.problems
                .push(format!("offset {}: unknown state key", msg.offset()));
            continue;
        };
        match (key, msg.payload()) {
            (StateKey::Job(job), None) => {
                out.checkpoints.remove(&job);
                out.unreadable.remove(&job);
            }
            (StateKey::Job(job), Some(bytes)) => {
                let key_text = StateKey::Job(job.clone()).encode();
                match Checkpoint::decode(&key_text, bytes) {
                    Ok(c) => {
                        out.unreadable.remove(&job);
                        if let Some(at) = msg
                            .timestamp()
                            .to_millis()
                            .and_then(chrono::DateTime::from_timestamp_millis)
                        {
                            out.written_at.insert(job.clone(), at);
                        }
                        out.checkpoints.insert(job, c);
                    }
                    Err(e) => {
                        out.checkpoints.remove(&job);
                        out.unreadable
                            .insert(job, format!("offset {}: {e}", msg.offset()));
                    }
                }
            }
            (StateKey::SeenPart { job, part }, None) => {
                if let Some(parts) = out.parts.get_mut(&job) {
                    parts.remove(&part);
                }
            }
            (StateKey::SeenPart { job, part }, Some(bytes)) => {
                out.parts
                    .entry(job)
                    .or_default()
                    .insert(part, bytes.to_vec());
            }
            (StateKey::Released, _) => out.released = Some(msg.offset()),
            (StateKey::Layout, None) => out.layout = None,
            (StateKey::Layout, Some(bytes)) => match super::layout::decode(bytes) {
                Some(n) => out.layout = Some(n),
                None => out
                    .problems
                    .push(format!("offset {}: unreadable layout record", msg.offset())),
            },
            (StateKey::Token { instance }, None) => {
                out.tokens.remove(&instance);
            }
            (StateKey::Token { instance }, Some(bytes)) => {
                out.tokens.insert(instance, bytes.to_vec());
            }
        }
    }
    // Closing the reader takes ~100 ms (measured); the takeover need not
    // wait for it. Should no thread start, it closes here.
    let _ = std::thread::Builder::new()
        .name("restore-close".into())
        .spawn(move || drop(consumer));
    if ended {
        out.join_parts();
        return Ok(out);
    }
    Err(RestoreError::Timeout { partition, timeout })
}
