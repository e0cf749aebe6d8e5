//! Membership in the workers' consumer group on the state topic: Kafka
//! decides which worker owns which state partition (and so which jobs).
//!
//! The group consumer never reads records (its partitions are paused as
//! soon as they are assigned; checkpoints are restored by a separate
//! reader); it exists for assignment. It runs on its own thread because
//! librdkafka calls the rebalance callbacks on the polling thread, and the
//! revoke callback *waits* there until the partitions' jobs have stopped:
//! only then may the group hand them to another worker.
//!
//! Rebalancing is incremental (cooperative-sticky, or KIP-848's consumer
//! protocol): the callbacks name only the partitions that move, so the
//! others keep polling through a membership change.
//!
//! A fatal group error (another process joined with this `WORKER_ID`)
//! means librdkafka has dropped the assignment without calling the
//! rebalance callback: the member reports [`Ownership::Lost`] and stops,
//! and the worker must stop every partition and end the process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc as std_mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::kafka::KafkaClients;

/// How long a revocation may wait for the partition's jobs to stop (an
/// in-flight commit finishes or aborts). Beyond this, fencing still
/// protects the data; the wait only avoids needless aborts.
const REVOKE_WAIT: Duration = Duration::from_secs(90);

/// How long leaving may take (the revocation callback, then the leave).
const LEAVE_WAIT: Duration = Duration::from_secs(5);

/// What the group told this worker.
#[derive(Debug)]
pub enum Ownership {
    Assigned(Vec<i32>),
    /// Stop these partitions' jobs, then send on `done`.
    Revoked(Vec<i32>, std_mpsc::Sender<()>),
    /// The member cannot go on (librdkafka's fatal error, in its words);
    /// every partition is lost.
    Lost(String),
}

struct GroupContext {
    topic: String,
    events: mpsc::UnboundedSender<Ownership>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let parts = partitions(tpl, &self.topic);
            if parts.is_empty() {
                return;
            }
            info!(message = "State partitions revoked.", partitions = ?parts);
            let (done, wait) = std_mpsc::channel();
            if self.events.send(Ownership::Revoked(parts, done)).is_ok()
                && wait.recv_timeout(REVOKE_WAIT).is_err()
            {
                warn!(
                    message = "Jobs did not stop before the revoke deadline; fencing protects the handover."
                );
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            // Nothing is read through the group consumer.
            if let Err(e) = consumer.pause(tpl) {
                warn!(message = "Could not pause assigned partitions.", error = %e);
            }
            let parts = partitions(tpl, &self.topic);
            info!(message = "State partitions assigned.", partitions = ?parts);
            // A closed channel means the worker is stopping: nobody to tell.
            let _ = self.events.send(Ownership::Assigned(parts));
        }
    }
}

fn partitions(tpl: &rdkafka::TopicPartitionList, topic: &str) -> Vec<i32> {
    let mut v: Vec<i32> = tpl
        .elements()
        .iter()
        .filter(|e| e.topic() == topic)
        .map(|e| e.partition())
        .collect();
    v.sort_unstable();
    v
}

/// The running group member. Dropping it without [`Membership::leave`]
/// also leaves the group (on the thread), but `leave` waits for it.
pub struct Membership {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Membership {
    /// Joins `group` on `topic`; ownership changes arrive on the returned
    /// channel.
    ///
    /// # Errors
    /// The consumer cannot be created or cannot subscribe.
    pub fn join(
        clients: &KafkaClients,
        group: &str,
        topic: &str,
        static_id: Option<&str>,
    ) -> KafkaResult<(Self, mpsc::UnboundedReceiver<Ownership>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let context = GroupContext {
            topic: topic.to_string(),
            events: tx,
        };
        let consumer: BaseConsumer<GroupContext> = clients
            .group_member(group, static_id)
            .create_with_context(context)?;
        consumer.subscribe(&[topic])?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("group-member".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
                        if let Some((code, reason)) = consumer.client().fatal_error() {
                            error!(message = "Group membership lost for good.", %code, %reason);
                            let _ = consumer
                                .context()
                                .events
                                .send(Ownership::Lost(format!("{code}: {reason}")));
                            return;
                        }
                        warn!(message = "Group consumer error.", error = %e);
                    }
                }
                // Leaving revokes every partition through the callback,
                // then tells the group, which hands the partitions to the
                // others at once. A static member (`WORKER_ID`) that only
                // closed would not tell it: its partitions would wait out
                // the session timeout. So the member polls until the
                // revocation is through and the leave has gone out.
                consumer.unsubscribe();
                let deadline = std::time::Instant::now() + LEAVE_WAIT;
                while std::time::Instant::now() < deadline {
                    let _ = consumer.poll(Duration::from_millis(50));
                    if consumer.assignment().is_ok_and(|a| a.count() == 0) {
                        break;
                    }
                }
                let _ = consumer.poll(Duration::from_millis(100));
            })
            .map_err(|_| rdkafka::error::KafkaError::Canceled)?;
        Ok((
            Self {
                stop,
                thread: Some(thread),
            },
            rx,
        ))
    }

    /// Leaves the group and waits for the member thread to end.
    pub async fn leave(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
