//! The local broker does what exactly-once delivery relies on: topics made
//! through the admin API, transactions whose aborted records stay invisible
//! to `read_committed` readers, and compaction that keeps the latest value
//! per key (the state topic's contract).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, ResourceSpecifier};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

const TIMEOUT: Duration = Duration::from_secs(30);

fn transactional_producer() -> ThreadedProducer<DefaultProducerContext> {
    let producer: ThreadedProducer<DefaultProducerContext> = common::client_config()
        .set("transactional.id", common::unique("txn"))
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    producer
        .init_transactions(TIMEOUT)
        .expect("init_transactions");
    producer
}

fn send(producer: &ThreadedProducer<DefaultProducerContext>, topic: &str, key: &str, value: &str) {
    producer
        .send(BaseRecord::to(topic).key(key).payload(value))
        .map_err(|(e, _)| e)
        .expect("enqueue");
}

/// Every record of partition 0 visible at `isolation`.
fn read_all(topic: &str, isolation: &str) -> Vec<(String, String)> {
    let mut config = common::client_config();
    config.set("isolation.level", isolation);
    common::read_partition_0(config, topic)
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_creates_topics_with_the_requested_configuration() {
    let plain = common::unique("plain");
    let compacted = common::unique("compacted");
    common::create_topics(&[
        common::topic(&plain, 3),
        common::topic(&compacted, 1).set("cleanup.policy", "compact"),
    ])
    .await;

    let admin = common::admin();
    let configs = admin
        .describe_configs(
            &[ResourceSpecifier::Topic(&compacted)],
            &AdminOptions::new(),
        )
        .await
        .expect("describe_configs");
    let resource = configs
        .into_iter()
        .next()
        .expect("one resource")
        .expect("described");
    let policy = resource.get("cleanup.policy").and_then(|e| e.value.clone());
    assert_eq!(policy.as_deref(), Some("compact"));

    let metadata = admin
        .inner()
        .fetch_metadata(Some(&plain), TIMEOUT)
        .expect("metadata");
    assert_eq!(metadata.topics()[0].partitions().len(), 3);

    // Creating an existing topic is refused with a recognisable code: the
    // service relies on this to treat "already exists" as success.
    let again = admin
        .create_topics(&[common::topic(&plain, 3)], &AdminOptions::new())
        .await
        .expect("create_topics call");
    assert_eq!(
        again[0].as_ref().err().map(|(_, code)| *code),
        Some(RDKafkaErrorCode::TopicAlreadyExists)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn committed_transactions_are_visible_and_aborted_ones_are_not() {
    let topic = common::unique("txn-topic");
    common::create_topics(&[common::topic(&topic, 1)]).await;

    tokio::task::spawn_blocking(move || {
        let producer = transactional_producer();
        producer.begin_transaction().expect("begin");
        for i in 0..5 {
            send(
                &producer,
                &topic,
                &format!("order-{i}"),
                &format!("committed-{i}"),
            );
        }
        producer.commit_transaction(TIMEOUT).expect("commit");

        producer.begin_transaction().expect("begin");
        for i in 0..3 {
            send(
                &producer,
                &topic,
                &format!("order-{i}"),
                &format!("aborted-{i}"),
            );
        }
        producer.flush(TIMEOUT).expect("flush");
        producer.abort_transaction(TIMEOUT).expect("abort");

        producer.begin_transaction().expect("begin");
        send(&producer, &topic, "order-9", "committed-9");
        producer.commit_transaction(TIMEOUT).expect("commit");

        let committed = read_all(&topic, "read_committed");
        let expected: Vec<(String, String)> = (0..5)
            .map(|i| (format!("order-{i}"), format!("committed-{i}")))
            .chain([("order-9".to_string(), "committed-9".to_string())])
            .collect();
        assert_eq!(
            committed, expected,
            "read_committed sees exactly the committed records, in order"
        );

        // The aborted records did reach the log: a read_uncommitted reader
        // sees them, so their absence above is the broker's filtering.
        let uncommitted = read_all(&topic, "read_uncommitted");
        assert_eq!(uncommitted.len(), 9, "{uncommitted:?}");
        assert!(uncommitted.iter().any(|(_, v)| v == "aborted-0"));
    })
    .await
    .expect("test body");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compacted_topic_keeps_the_latest_value_per_key() {
    let topic = common::unique("compact-topic");
    // A segment is compacted only once it is no longer the active one; a
    // short segment.ms makes the next append roll it.
    common::create_topics(&[common::topic(&topic, 1)
        .set("cleanup.policy", "compact")
        .set("segment.ms", "100")
        .set("min.cleanable.dirty.ratio", "0.01")
        .set("min.compaction.lag.ms", "0")
        .set("delete.retention.ms", "100")])
    .await;

    tokio::task::spawn_blocking(move || {
        let producer = transactional_producer();
        let mut latest = BTreeMap::new();
        for round in 1..=3 {
            producer.begin_transaction().expect("begin");
            for k in 0..10 {
                if round == 3 && k >= 5 {
                    continue;
                }
                let (key, value) = (format!("job-{k}"), format!("checkpoint-{round}"));
                send(&producer, &topic, &key, &value);
                latest.insert(key, value);
            }
            producer.commit_transaction(TIMEOUT).expect("commit");
        }
        // 25 committed job records went in (the cleaner may already be at
        // work, so their count is not read back here).

        // Keep appending a record of a separate key so segments roll, until
        // the cleaner has run: the awaited condition is "one record per job
        // key, and it is the latest".
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut filler = 0;
        loop {
            producer.begin_transaction().expect("begin");
            filler += 1;
            send(&producer, &topic, "roll", &format!("filler-{filler}"));
            producer.commit_transaction(TIMEOUT).expect("commit");

            let now = read_all(&topic, "read_committed");
            let jobs: Vec<&(String, String)> =
                now.iter().filter(|(k, _)| k.starts_with("job-")).collect();
            if jobs.len() == latest.len() {
                let seen: BTreeMap<String, String> = jobs.into_iter().cloned().collect();
                assert_eq!(
                    seen, latest,
                    "compaction kept the latest value of every key"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not compacted within 90 s: {} job records remain",
                jobs.len()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    })
    .await
    .expect("test body");
}
