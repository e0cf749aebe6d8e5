//! The transaction boundary and the fencing that exactly-once rests on, on
//! the real broker: a poll's events and checkpoint commit together; a newer
//! owner of a state partition fences the old one, whose open transaction is
//! aborted and whose later commits fail; restore reads back what committed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use event_poller::event::OutRecord;
use event_poller::kafka::{KafkaClients, Tuning};
use event_poller::publish::{Batch, PartitionProducer, PublishError, Topics, TxnTimeouts};
use event_poller::state::{Checkpoint, JobId, StateKey, restore_partition};

fn record(key: &str, value: &str) -> OutRecord {
    OutRecord {
        key: Some(key.into()),
        value: value.as_bytes().to_vec(),
        headers: vec![("ce_id", format!("id-{key}"))],
    }
}

fn checkpoint(job: &JobId, events: u64) -> (String, Option<Vec<u8>>) {
    let mut c = Checkpoint::starting(job.clone(), Utc::now());
    c.events = events;
    (StateKey::Job(job.clone()).encode(), Some(c.encode()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_owner_fences_the_old_one_and_restores_only_committed_state() {
    let topics = Arc::new(Topics {
        events: common::unique("events"),
        dead_letters: common::unique("dlq"),
        state: common::unique("state"),
    });
    common::create_topics(&[
        common::topic(&topics.events, 3),
        common::topic(&topics.dead_letters, 1),
        common::topic(&topics.state, 2).set("cleanup.policy", "compact"),
    ])
    .await;
    let group = common::unique("group");
    let config = KafkaClients::new(common::client_config(), Tuning::default());
    let job = JobId::new("shop", "orders");

    let old = PartitionProducer::fence(&config, &group, topics.clone(), 1, TxnTimeouts::default())
        .await
        .expect("first owner");
    old.commit(Batch {
        events: vec![record("1", "a"), record("2", "b")],
        dead_letters: vec![record("3", "bad")],
        state: vec![checkpoint(&job, 2)],
    })
    .await
    .expect("first commit");

    // A second worker takes partition 1 over.
    let new = PartitionProducer::fence(&config, &group, topics.clone(), 1, TxnTimeouts::default())
        .await
        .expect("second owner");

    // The old owner is a zombie now: its commit must fail fatally and
    // publish nothing.
    let zombie = old
        .commit(Batch {
            events: vec![record("9", "zombie")],
            dead_letters: vec![],
            state: vec![checkpoint(&job, 99)],
        })
        .await;
    // Classified as fenced (stop and wait for the group), not as broken
    // (fence back at once), which would steal the partition back.
    assert!(
        matches!(&zombie, Err(PublishError::Fenced(_))),
        "zombie commit must be fenced, got {zombie:?}"
    );

    let restored = restore_partition(&config, &topics.state, 1, Duration::from_secs(30))
        .await
        .expect("restore");
    assert_eq!(
        restored.checkpoints[&job].events, 2,
        "only the committed checkpoint"
    );
    assert!(restored.problems.is_empty(), "{:?}", restored.problems);

    new.commit(Batch {
        events: vec![record("4", "c")],
        dead_letters: vec![],
        state: vec![checkpoint(&job, 3)],
    })
    .await
    .expect("new owner commits");
    let restored = restore_partition(&config, &topics.state, 1, Duration::from_secs(30))
        .await
        .expect("restore");
    assert_eq!(restored.checkpoints[&job].events, 3);

    // Other partitions are untouched; an empty partition restores empty.
    let empty = restore_partition(&config, &topics.state, 0, Duration::from_secs(30))
        .await
        .expect("restore empty");
    assert!(empty.checkpoints.is_empty() && empty.records == 0);

    let events = common::read_committed_values(&topics.events).await;
    let mut values: Vec<String> = events.into_iter().map(|(_, v)| v).collect();
    values.sort();
    assert_eq!(
        values,
        ["a", "b", "c"],
        "zombie's event never became visible"
    );
}
