//! Small librdkafka helpers shared by the service's Kafka readers.

use rdkafka::error::KafkaError;

/// A client context for readers that ask for end-of-partition events:
/// librdkafka also reports each one through the global error callback,
/// which the default context logs at ERROR. Everything else is logged as
/// usual.
pub struct EofAware;

impl rdkafka::ClientContext for EofAware {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::PartitionEOF(_)) {
            tracing::error!(message = "librdkafka error.", %error, reason);
        }
    }
}

impl rdkafka::consumer::ConsumerContext for EofAware {}
