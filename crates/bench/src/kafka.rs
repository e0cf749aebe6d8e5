//! Kafka clients of the benchmarks: topic creation and the
//! `read_committed` reader that sees what a downstream consumer sees.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// Creates `topic` with `partitions` partitions (one replica).
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap)
        .create()
        .with_context(|| format!("admin client for {bootstrap}"))?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = admin
        .create_topics([&new], &opts)
        .await
        .with_context(|| format!("create topic {topic} on {bootstrap}"))?;
    for r in results {
        if let Err((name, code)) = r {
            bail!("create topic {name}: {code}");
        }
    }
    Ok(())
}

/// Waits until `topic` exists with partitions that all have a leader;
/// returns the partition count.
pub async fn await_topic(bootstrap: &str, topic: &str, timeout: Duration) -> Result<i32> {
    let deadline = Instant::now() + timeout;
    let consumer: BaseConsumer = client_config(bootstrap)
        .create()
        .with_context(|| format!("metadata client for {bootstrap}"))?;
    loop {
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(5));
        if let Ok(md) = md
            && let Some(t) = md.topics().iter().find(|t| t.name() == topic)
            && t.error().is_none()
            && !t.partitions().is_empty()
            && t.partitions().iter().all(|p| p.leader() >= 0)
        {
            return i32::try_from(t.partitions().len()).context("partition count");
        }
        if Instant::now() > deadline {
            bail!("topic {topic} did not appear within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A `read_committed` consumer assigned every partition of `topic` from
/// the beginning (no group membership; `group.id` is never joined).
/// `fetch_wait` bounds how long the broker holds a fetch with nothing new.
pub fn committed_reader(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
    fetch_wait: Duration,
) -> Result<StreamConsumer> {
    let consumer: StreamConsumer = client_config(bootstrap)
        .set("group.id", group)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", fetch_wait.as_millis().to_string())
        .create()
        .with_context(|| format!("consumer for {topic}"))?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .with_context(|| format!("assign {topic}/{p}"))?;
    }
    consumer
        .assign(&tpl)
        .with_context(|| format!("assign {topic}"))?;
    Ok(consumer)
}
