//! `event-poller tail`: prints committed events as they arrive, in a
//! readable line or as the raw JSON value. A `read_committed` reader, like
//! any downstream consumer should be.

use std::io::Write;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::kafka::EofAware;
use crate::settings::Settings;

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("reading the topic: {0}")]
    Kafka(#[from] KafkaError),
    #[error("topic {0} does not exist")]
    NoTopic(String),
    #[error("writing: {0}")]
    Write(#[from] std::io::Error),
}

#[derive(Debug, Clone)]
pub struct TailOptions {
    pub topic: String,
    /// Start from the first retained event instead of new ones.
    pub from_beginning: bool,
    /// Print the JSON value instead of a summary line.
    pub json: bool,
    /// Stop after this many events.
    pub max: Option<u64>,
    /// Stop when every partition has been read to its end.
    pub exit_at_end: bool,
}

/// # Errors
/// Kafka errors, or the topic does not exist.
pub async fn run(
    settings: &Settings,
    opts: &TailOptions,
    out: &mut (impl Write + Send),
    shutdown: CancellationToken,
) -> Result<u64, TailError> {
    let group = format!("event-poller-tail-{}", uuid::Uuid::new_v4().simple());
    let consumer: StreamConsumer<EofAware> = settings
        .kafka_clients()
        .committed_reader(&group, opts.exit_at_end)
        .create_with_context(EofAware)?;
    let md = consumer.fetch_metadata(Some(&opts.topic), Duration::from_secs(10))?;
    let parts = md
        .topics()
        .iter()
        .find(|t| t.name() == opts.topic && t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<i32>>())
        .filter(|ids| !ids.is_empty())
        .ok_or_else(|| TailError::NoTopic(opts.topic.clone()))?;
    let start = if opts.from_beginning {
        Offset::Beginning
    } else {
        Offset::End
    };
    let mut tpl = TopicPartitionList::new();
    for p in &parts {
        tpl.add_partition_offset(&opts.topic, *p, start)?;
    }
    consumer.assign(&tpl)?;
    let mut printed = 0u64;
    let mut ended = std::collections::HashSet::new();
    loop {
        if opts.max.is_some_and(|m| printed >= m)
            || (opts.exit_at_end && ended.len() >= parts.len())
        {
            return Ok(printed);
        }
        let msg = tokio::select! {
            () = shutdown.cancelled() => return Ok(printed),
            m = consumer.recv() => m,
        };
        match msg {
            Err(KafkaError::PartitionEOF(p)) => {
                ended.insert(p);
            }
            Err(e) => return Err(e.into()),
            Ok(m) => {
                ended.remove(&m.partition());
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                let value = m.payload().unwrap_or_default();
                if opts.json {
                    out.write_all(value)?;
                    writeln!(out)?;
                } else {
                    writeln!(out, "{}", summary(&key, value))?;
                }
                out.flush()?;
                printed += 1;
            }
        }
    }
}

/// `2024-05-01T12:00:00Z  CREATED  orders/123  instance=shop  total=9.90`
fn summary(key: &str, value: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(value) else {
        return format!("{key}  (not JSON: {} bytes)", value.len());
    };
    let s = |name: &str| {
        v.get(name)
            .and_then(|x| x.as_str())
            .unwrap_or("-")
            .to_string()
    };
    let mut line = format!(
        "{}  {:<7}  {}/{}  instance={}",
        s("eventDate"),
        s("eventType"),
        s("objectType"),
        s("objectId"),
        s("instanceId")
    );
    if let Some(reason) = v.get("reason").and_then(|r| r.as_str()) {
        line = format!("{key}  DEAD-LETTER  {reason}");
    }
    if let Some(raw) = v.get("raw") {
        for field in ["status", "total", "title"] {
            if let Some(x) = raw.get(field).filter(|x| !x.is_null()) {
                line.push_str(&format!("  {field}={x}"));
            }
        }
    }
    if s("objectId") != key && v.get("reason").is_none() {
        line.push_str(&format!("  key={key}"));
    }
    line
}
