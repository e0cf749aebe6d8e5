//! The librdkafka configuration of every client the service creates, in
//! one place: the operator's base (bootstrap servers, security and other
//! pass-through properties), the tuning the settings name, and the
//! properties exactly-once depends on, which the operator cannot override
//! ([`MANAGED_PROPERTIES`]). Plus small helpers the Kafka readers share.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Properties the service sets itself, and why: passing them through would
/// silently break a guarantee, or would be a second spelling of a setting.
pub const MANAGED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "set KAFKA_BOOTSTRAP_SERVERS instead"),
    (
        "transactional.id",
        "each worker derives its transactional ids from the state-topic partitions it owns",
    ),
    (
        "enable.idempotence",
        "transactions require the idempotent producer",
    ),
    (
        "isolation.level",
        "checkpoints must be restored with read_committed",
    ),
    (
        "enable.auto.commit",
        "offsets are never auto-committed by the service",
    ),
    ("group.id", "set WORKER_GROUP_ID instead"),
    ("group.instance.id", "set WORKER_ID instead"),
    (
        "partition.assignment.strategy",
        "set KAFKA_GROUP_PROTOCOL instead; the worker's revocation handling relies on incremental (cooperative) rebalancing",
    ),
    ("group.protocol", "set KAFKA_GROUP_PROTOCOL instead"),
    (
        "group.remote.assignor",
        "the broker's default (sticky) assignor keeps partitions where they are",
    ),
    (
        "transaction.timeout.ms",
        "set KAFKA_TRANSACTION_TIMEOUT_MS instead",
    ),
    (
        "partitioner",
        "events are partitioned like Java clients do (murmur2_random), so one objectId stays on one partition",
    ),
    ("session.timeout.ms", "set KAFKA_SESSION_TIMEOUT_MS instead"),
    (
        "heartbeat.interval.ms",
        "set KAFKA_HEARTBEAT_INTERVAL_MS instead",
    ),
    ("linger.ms", "set KAFKA_LINGER_MS instead"),
    ("queue.buffering.max.ms", "set KAFKA_LINGER_MS instead"),
    (
        "auto.offset.reset",
        "state readers always start at the earliest record",
    ),
    (
        "enable.partition.eof",
        "readers ask for partition ends where they need them",
    ),
    (
        "fetch.wait.max.ms",
        "restores must see a partition's end at once, not after the broker's long-poll wait",
    ),
];

/// What every client is made from.
#[derive(Clone)]
pub struct KafkaClients {
    /// Bootstrap servers and the operator's pass-through properties.
    base: ClientConfig,
    tuning: Tuning,
}

/// The librdkafka tuning the settings name (see `crate::settings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// `session.timeout.ms` of the worker group.
    pub session_timeout: Duration,
    /// `heartbeat.interval.ms` of the worker group.
    pub heartbeat_interval: Duration,
    /// `linger.ms` of the transactional producers.
    pub linger: Duration,
    /// How the worker group assigns partitions.
    pub group_protocol: GroupProtocol,
    /// `transaction.timeout.ms` of the transactional producers: how long
    /// the coordinator keeps a transaction open before aborting it.
    pub transaction_timeout: Duration,
}

impl Default for Tuning {
    /// The settings' defaults.
    fn default() -> Self {
        Self {
            session_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(2),
            linger: Duration::from_millis(5),
            group_protocol: GroupProtocol::Classic,
            transaction_timeout: Duration::from_secs(60),
        }
    }
}

/// `KAFKA_GROUP_PROTOCOL`. Both rebalance incrementally: a partition that
/// stays with its worker is never revoked. `docs/operations.md` has the
/// measurements behind the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupProtocol {
    /// The classic protocol with the `cooperative-sticky` assignor; the
    /// session timeout is the worker's (`KAFKA_SESSION_TIMEOUT_MS`).
    #[default]
    Classic,
    /// KIP-848 (`group.protocol=consumer`, Kafka 4.0+): the broker assigns
    /// and its `group.consumer.session.timeout.ms` (45 s by default, and no
    /// lower than its `group.consumer.min.session.timeout.ms`) replaces
    /// `KAFKA_SESSION_TIMEOUT_MS` and `KAFKA_HEARTBEAT_INTERVAL_MS`.
    Consumer,
}

impl std::fmt::Debug for KafkaClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Pass-through values may be credentials: names only.
        let names: Vec<&str> = self.base.config_map().into_keys().collect();
        f.debug_struct("KafkaClients")
            .field("base", &names)
            .field("tuning", &self.tuning)
            .finish()
    }
}

fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}

impl KafkaClients {
    pub fn new(base: ClientConfig, tuning: Tuning) -> Self {
        Self { base, tuning }
    }

    /// The operator's base configuration alone (admin clients, metadata).
    pub fn base(&self) -> ClientConfig {
        self.base.clone()
    }

    /// The worker's member of the consumer group on the state topic. It
    /// never reads or commits; it exists for partition assignment.
    pub fn group_member(&self, group: &str, static_id: Option<&str>) -> ClientConfig {
        let mut config = self.base();
        if let Some(id) = static_id {
            config.set("group.instance.id", id);
        }
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false");
        match self.tuning.group_protocol {
            GroupProtocol::Classic => {
                config
                    // Incremental: a rebalance revokes only the partitions
                    // that move; the others keep polling throughout.
                    .set("partition.assignment.strategy", "cooperative-sticky")
                    // A worker that stops polling (or dies) loses its
                    // partitions after this long; others then take its jobs.
                    .set("session.timeout.ms", millis(self.tuning.session_timeout))
                    .set(
                        "heartbeat.interval.ms",
                        millis(self.tuning.heartbeat_interval),
                    );
            }
            GroupProtocol::Consumer => {
                config.set("group.protocol", "consumer");
            }
        }
        config
    }

    /// A transactional producer with `transactional_id`.
    pub fn producer(&self, transactional_id: &str) -> ClientConfig {
        let mut config = self.base();
        config
            .set("transactional.id", transactional_id)
            .set("enable.idempotence", "true")
            // Java's default partitioner, so events of one objectId land on
            // the partition any Java client would choose too.
            .set("partitioner", "murmur2_random")
            .set("linger.ms", millis(self.tuning.linger))
            .set(
                "transaction.timeout.ms",
                millis(self.tuning.transaction_timeout),
            );
        config
    }

    /// A reader of committed records only, from the beginning of what it is
    /// assigned, reporting each partition's end. `group` is never joined
    /// (partitions are assigned by hand) but librdkafka wants one.
    pub fn committed_reader(&self, group: &str, report_end: bool) -> ClientConfig {
        let mut config = self.base();
        config
            .set("group.id", group)
            .set("isolation.level", "read_committed")
            .set(
                "enable.partition.eof",
                if report_end { "true" } else { "false" },
            )
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest");
        if report_end {
            // At the end of a partition the broker holds a fetch this long
            // before answering "nothing new"; a takeover waits for that
            // answer (twice, by measurement: ~1 s of every handover at the
            // default 500 ms).
            config.set("fetch.wait.max.ms", "10");
        }
        config
    }
}

/// A client context for readers that ask for end-of-partition events:
/// librdkafka also reports each one through the global error callback,
/// which the default context logs at ERROR. Everything else is logged as
/// usual.
pub struct EofAware;

impl rdkafka::ClientContext for EofAware {
    fn error(&self, error: KafkaError, reason: &str) {
        if !is_end_of_partition(&error) {
            tracing::error!(message = "librdkafka error.", %error, reason);
        }
    }
}

/// The error callback reports the end of a partition as a global error
/// (`Global error: PartitionEOF`), the message stream as its own kind.
fn is_end_of_partition(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
    )
}

impl rdkafka::consumer::ConsumerContext for EofAware {}

/// What the brokers refused before any request could be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// SASL: the credentials (librdkafka's reason).
    Credentials(String),
    /// TLS: the handshake, usually a CA that does not sign the broker's
    /// certificate (librdkafka's reason).
    Tls(String),
}

/// The refusal librdkafka's error reports, if it is one, rather than a
/// broker that is away.
fn refusal(error: &KafkaError, reason: &str) -> Option<Refusal> {
    match error {
        KafkaError::Global(
            RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed,
        ) => Some(Refusal::Credentials(reason.to_owned())),
        KafkaError::Global(RDKafkaErrorCode::SSL) => Some(Refusal::Tls(reason.to_owned())),
        _ => None,
    }
}

/// Remembers librdkafka's reason for the first refusal. Every other
/// error, and every log line, is left to the client doing the real work:
/// this one only probes, and its finding is returned, not logged
/// (librdkafka would log the same failure again, and on every retry).
#[derive(Default)]
struct RefusalWatch {
    found: std::sync::Mutex<Option<Refusal>>,
}

impl rdkafka::ClientContext for RefusalWatch {
    fn log(&self, _: rdkafka::config::RDKafkaLogLevel, _: &str, _: &str) {}

    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(r) = refusal(&error, reason)
            && let Ok(mut found) = self.found.lock()
        {
            found.get_or_insert(r);
        }
    }
}

impl rdkafka::producer::ProducerContext for RefusalWatch {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// Blocks until the brokers of `base` answer (`None`), or refuse the
/// client's credentials or TLS handshake (librdkafka's reason: it names
/// the broker and the mechanism, never the password), or until `stop` is
/// set (`None`).
///
/// librdkafka does not fail requests when authentication or the handshake
/// fails: it reports the failure on the client's main queue and keeps
/// reconnecting, so an admin request just times out. And an admin
/// client's main queue is never served, so nobody sees the report. This
/// client's is, between metadata requests.
pub fn refused(base: &ClientConfig, stop: &std::sync::atomic::AtomicBool) -> Option<Refusal> {
    use rdkafka::producer::{BaseProducer, Producer};
    use std::sync::atomic::Ordering;
    // Not creatable: the caller's own client will report why.
    let client: BaseProducer<RefusalWatch> =
        base.create_with_context(RefusalWatch::default()).ok()?;
    while !stop.load(Ordering::Relaxed) {
        // All topics: asking for one would let a producer auto-create it.
        if client
            .client()
            .fetch_metadata(None, Duration::from_millis(500))
            .is_ok()
        {
            return None;
        }
        // A window, not zero: one poll call serves all queued events only
        // until its deadline, and the report may queue behind log events.
        client.poll(Duration::from_millis(100));
        if let Some(found) = client.context().found.lock().ok()?.take() {
            return Some(found);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_a_partition_is_not_an_error_in_either_form() {
        assert!(is_end_of_partition(&KafkaError::PartitionEOF(3)));
        assert!(is_end_of_partition(&KafkaError::Global(
            RDKafkaErrorCode::PartitionEOF
        )));
        assert!(!is_end_of_partition(&KafkaError::Global(
            RDKafkaErrorCode::BrokerTransportFailure
        )));
    }

    #[test]
    fn only_refused_credentials_and_handshakes_are_refusals() {
        let r = |code| refusal(&KafkaError::Global(code), "why");
        assert_eq!(
            r(RDKafkaErrorCode::Authentication),
            Some(Refusal::Credentials("why".into()))
        );
        assert_eq!(
            r(RDKafkaErrorCode::SaslAuthenticationFailed),
            Some(Refusal::Credentials("why".into()))
        );
        assert_eq!(r(RDKafkaErrorCode::SSL), Some(Refusal::Tls("why".into())));
        assert_eq!(r(RDKafkaErrorCode::AllBrokersDown), None);
    }

    #[test]
    fn roles_set_what_exactly_once_needs_over_the_base() {
        let mut base = ClientConfig::new();
        base.set("bootstrap.servers", "b:1")
            .set("sasl.password", "hunter2");
        let clients = KafkaClients::new(
            base,
            Tuning {
                linger: Duration::from_millis(0),
                ..Tuning::default()
            },
        );
        let p = clients.producer("g.state.3");
        assert_eq!(p.get("transactional.id"), Some("g.state.3"));
        assert_eq!(p.get("enable.idempotence"), Some("true"));
        assert_eq!(p.get("linger.ms"), Some("0"));
        assert_eq!(p.get("sasl.password"), Some("hunter2"));
        let r = clients.committed_reader("restore.x.0", true);
        assert_eq!(r.get("isolation.level"), Some("read_committed"));
        assert_eq!(r.get("enable.partition.eof"), Some("true"));
        let m = clients.group_member("workers", Some("pod-0"));
        assert_eq!(m.get("group.instance.id"), Some("pod-0"));
        assert_eq!(m.get("session.timeout.ms"), Some("10000"));
        assert_eq!(m.get("heartbeat.interval.ms"), Some("2000"));
        // Every property a role sets is one the operator cannot pass.
        for config in [p, r, m] {
            for name in config.config_map().keys() {
                if *name != "sasl.password" {
                    assert!(
                        MANAGED_PROPERTIES.iter().any(|(n, _)| n == name),
                        "{name} is set by a role but can be passed through"
                    );
                }
            }
        }
        assert!(!format!("{clients:?}").contains("hunter2"));
    }
}
