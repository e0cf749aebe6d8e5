//! Shared helpers for integration tests: where the real broker is, and names
//! that never collide between tests or runs.
#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

/// The broker of `make kafka-up`, or `KAFKA_BOOTSTRAP_SERVERS`.
pub fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// A name unique to this test run: `prefix-<uuid>`.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

pub fn client_config() -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap());
    c
}

pub fn admin() -> AdminClient<DefaultClientContext> {
    client_config()
        .create()
        .expect("admin client for the test broker")
}

/// Creates topics and fails the test with the broker's reason if any
/// cannot be created. A missing broker fails here, loudly, not as a skip.
pub async fn create_topics(topics: &[NewTopic<'_>]) {
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin()
        .create_topics(topics, &opts)
        .await
        .unwrap_or_else(|e| panic!("create_topics against {}: {e}", bootstrap()));
    for r in results {
        if let Err((topic, code)) = r {
            panic!("cannot create topic {topic}: {code:?}");
        }
    }
}

pub fn topic(name: &str, partitions: i32) -> NewTopic<'_> {
    NewTopic::new(name, partitions, TopicReplication::Fixed(1))
}

/// Every `(key, value)` of every partition of `topic` visible to a
/// `read_committed` reader, read until each partition reports its end.
pub async fn read_committed_values(topic: &str) -> Vec<(String, String)> {
    read_values(topic, "read_committed").await
}

/// Like [`read_committed_values`] at any isolation level.
pub async fn read_values(topic: &str, isolation: &'static str) -> Vec<(String, String)> {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::error::KafkaError;
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = client_config()
            .set("group.id", unique("reader"))
            .set("isolation.level", isolation)
            .set("enable.partition.eof", "true")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let metadata = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .expect("metadata");
        let partitions = metadata.topics()[0].partitions().len();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(&topic, p as i32, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&tpl).expect("assign");
        let mut ended = std::collections::HashSet::new();
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while ended.len() < partitions {
            assert!(std::time::Instant::now() < deadline, "no end of {topic}");
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    ended.insert(p);
                }
                Some(Err(e)) => panic!("consume {topic}: {e}"),
                Some(Ok(m)) => out.push((
                    String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                )),
            }
        }
        out
    })
    .await
    .expect("reader")
}
pub mod e2e;
