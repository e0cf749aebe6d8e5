//! Creating the service's topics at start-up. "Already exists" is success:
//! every worker runs this, and operators may have created them with their
//! own settings, which are left alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::kafka::KafkaClients;
use crate::publish::Topics;

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("Kafka topics: {0}")]
    Kafka(#[from] KafkaError),
    #[error("cannot create topic {topic}: {code:?}")]
    Refused {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("topic {topic} has no partitions or is missing")]
    Missing { topic: String },
    #[error(
        "state topic {topic} has cleanup.policy={policy}: Kafka would delete checkpoints and \
         tokens after its retention and jobs would start over. The state topic must be compacted: \
         `kafka-configs --alter --entity-type topics --entity-name {topic} --add-config \
         cleanup.policy=compact`"
    )]
    NotCompacted { topic: String, policy: String },
    #[error("describing state topic {topic}: {code:?}")]
    Describe {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error(
        "Kafka refused the credentials (SASL authentication failed; check \
         KAFKA_PROPERTY_SASL_USERNAME, the password and KAFKA_PROPERTY_SASL_MECHANISM): {0}"
    )]
    Authentication(String),
    #[error(
        "the TLS handshake with Kafka failed (check KAFKA_PROPERTY_SSL_CA_LOCATION: it must be \
         the CA that signed the brokers' certificates): {0}"
    )]
    Tls(String),
}

/// How the topics the service creates are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicLayout {
    pub partitions: i32,
    /// -1: the broker's default.
    pub replication: i32,
}

/// Creates the events, dead-letter and (compacted) state topics if missing.
///
/// # Errors
/// A topic the broker refuses to create for any reason but existing; the
/// broker refusing the credentials, as soon as it does (the first Kafka
/// call of a worker is here).
pub async fn ensure_topics(
    kafka: &KafkaClients,
    topics: &Topics,
    layout: TopicLayout,
) -> Result<(), TopicError> {
    unless_refused(kafka, create_topics(kafka, topics, layout)).await
}

/// `work`, unless the brokers refuse the credentials or the TLS handshake
/// first: then that, at once, instead of `work`'s timeout (the first Kafka
/// call of every command goes through here).
async fn unless_refused<T>(
    kafka: &KafkaClients,
    work: impl std::future::Future<Output = Result<T, TopicError>>,
) -> Result<T, TopicError> {
    use crate::kafka::Refusal;
    let stop = Arc::new(AtomicBool::new(false));
    let (base, flag) = (kafka.base(), stop.clone());
    let mut refused = tokio::task::spawn_blocking(move || crate::kafka::refused(&base, &flag));
    let result = tokio::select! {
        result = work => result,
        Ok(Some(why)) = &mut refused => Err(match why {
            Refusal::Credentials(reason) => TopicError::Authentication(reason),
            Refusal::Tls(reason) => TopicError::Tls(reason),
        }),
    };
    stop.store(true, Ordering::Relaxed);
    result
}

async fn create_topics(
    kafka: &KafkaClients,
    topics: &Topics,
    layout: TopicLayout,
) -> Result<(), TopicError> {
    let admin: AdminClient<DefaultClientContext> = kafka.base().create()?;
    let replication = || TopicReplication::Fixed(layout.replication);
    let state = topics.state.as_str();
    let topics = [
        NewTopic::new(&topics.events, layout.partitions, replication()),
        NewTopic::new(&topics.dead_letters, layout.partitions, replication()),
        NewTopic::new(state, layout.partitions, replication()).set("cleanup.policy", "compact"),
    ];
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&topics, &opts).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(TopicError::Refused { topic, code }),
        }
    }
    check_compacted(&admin, state, &opts).await
}

/// An existing state topic (created by an operator, or by hand) must be
/// compacted: with `delete` its records vanish after the retention.
async fn check_compacted(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    opts: &AdminOptions,
) -> Result<(), TopicError> {
    let spec = ResourceSpecifier::Topic(topic);
    let described = admin.describe_configs([&spec], opts).await?;
    for result in described {
        let resource = result.map_err(|code| TopicError::Describe {
            topic: topic.to_string(),
            code,
        })?;
        // A topic created a moment ago may not show its configuration yet:
        // only a policy that is known and lacks `compact` is refused.
        let Some(policy) = resource
            .get("cleanup.policy")
            .and_then(|e| e.value.clone())
            .filter(|p| !p.is_empty())
        else {
            continue;
        };
        if !policy.split(',').any(|p| p.trim() == "compact") {
            return Err(TopicError::NotCompacted {
                topic: topic.to_string(),
                policy,
            });
        }
    }
    Ok(())
}

/// The number of partitions of `topic`, as the broker sees it: ownership is
/// decided from this, never from a setting that could disagree.
///
/// # Errors
/// Metadata cannot be fetched or the topic does not exist.
pub async fn partition_count(kafka: &KafkaClients, topic: &str) -> Result<i32, TopicError> {
    unless_refused(kafka, count_partitions(kafka, topic)).await
}

async fn count_partitions(kafka: &KafkaClients, topic: &str) -> Result<i32, TopicError> {
    let admin: AdminClient<DefaultClientContext> = kafka.base().create()?;
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let md = admin
            .inner()
            .fetch_metadata(Some(&topic), Duration::from_secs(30))?;
        let n = md
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().len())
            .unwrap_or(0);
        if n == 0 {
            return Err(TopicError::Missing { topic });
        }
        Ok(i32::try_from(n).unwrap_or(i32::MAX))
    })
    .await
    .map_err(|_| TopicError::Kafka(KafkaError::Canceled))?
}
