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
