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
    read_records(topic, isolation)
        .await
        .into_iter()
        .map(|r| (r.key.unwrap_or_default(), r.text))
        .collect()
}

/// Every `(key, value)` of partition 0 of `topic`, read with `config` (its
/// broker, its isolation level) from the start until the consumer reports
/// the partition's end (for `read_committed`, the last stable offset): an
/// awaited condition, not a timed guess.
pub fn read_partition_0(mut config: ClientConfig, topic: &str) -> Vec<(String, String)> {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::error::KafkaError;
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    const TIMEOUT: Duration = Duration::from_secs(30);
    let consumer: BaseConsumer = config
        .set("group.id", unique("reader"))
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("partition");
    consumer.assign(&tpl).expect("assign");
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut out = Vec::new();
    while std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => return out,
            Some(Err(e)) => panic!("consume {topic}: {e}"),
            Some(Ok(m)) => out.push((
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            )),
        }
    }
    panic!("no end of partition for {topic} within {TIMEOUT:?}; read {out:?}");
}

/// One record as a consumer sees it, headers included.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: Option<String>,
    /// The value exactly as stored (UTF-8).
    pub text: String,
    /// The value parsed as JSON (`Null` if it is not JSON).
    pub value: serde_json::Value,
    pub headers: Vec<(String, String)>,
    pub partition: i32,
    pub offset: i64,
}

impl Record {
    /// Every value of header `name`, in record order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The one value of header `name`; panics if it is absent or repeated.
    pub fn header(&self, name: &str) -> &str {
        match self.header_values(name).as_slice() {
            [one] => one,
            other => panic!(
                "header {name}: expected exactly one, got {other:?} on {}",
                self.text
            ),
        }
    }
}

/// Every record of every partition of `topic` visible at `isolation`
/// (keys, values and headers), read until each partition reports its end.
pub async fn read_records(topic: &str, isolation: &'static str) -> Vec<Record> {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::error::KafkaError;
    use rdkafka::message::Headers;
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
                Some(Ok(m)) => {
                    let text =
                        String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                    let headers = m
                        .headers()
                        .map(|hs| {
                            hs.iter()
                                .map(|h| {
                                    (
                                        h.key.to_string(),
                                        String::from_utf8_lossy(h.value.unwrap_or_default())
                                            .into_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    out.push(Record {
                        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                        value: serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
                        text,
                        headers,
                        partition: m.partition(),
                        offset: m.offset(),
                    });
                }
            }
        }
        out
    })
    .await
    .expect("reader")
}
/// `deploy/kafka/kafka.sh <command>` (`stop`, `start`, `restart`: the
/// data survives) for the broker the tests use.
pub fn kafka_script(command: &str) {
    let port = bootstrap().rsplit(':').next().unwrap_or("9092").to_string();
    let status = std::process::Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/kafka/kafka.sh"
    ))
    .arg(command)
    .env("KAFKA_PORT", port)
    .status()
    .expect("kafka.sh");
    assert!(status.success(), "kafka.sh {command}");
}

pub mod e2e;
pub mod group;
pub mod rounds;
