//! Assembles the running service from settings and instances: the HTTP
//! sources, the poll settings and the worker.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::fetch::FetchLimits;
use crate::instance::Instance;
use crate::provider::HttpSources;
use crate::publish::Topics;
use crate::settings::Settings;
use crate::worker::job::PollSettings;
use crate::worker::partition::PartitionDeps;

/// How long restoring one state partition may take before the takeover is
/// retried.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the poll worker until `shutdown`.
///
/// # Errors
/// Start-up failures: unusable settings, topics, group.
pub async fn run(
    settings: Settings,
    instances: Vec<Arc<Instance>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Fail at start-up, not at every poll: an OAuth instance cannot keep its
    // rotating refresh token without the sealing key.
    if settings.state_encryption_key.is_none()
        && let Some(i) = instances.iter().find(|i| {
            i.is_polled() && matches!(i.connection_mode, crate::instance::ConnectionMode::Direct)
        })
    {
        anyhow::bail!(
            "STATE_ENCRYPTION_KEY is not set, but instance {} ({}) uses OAuth: its tokens are kept \
             sealed in the state topic (set a base64 32-byte key, e.g. `openssl rand -base64 32`)",
            i.id,
            i.source.display()
        );
    }
    let factory = HttpSources::new(FetchLimits::default())
        .map_err(|e| anyhow::anyhow!("HTTP client: {e}"))?;
    let deps = PartitionDeps {
        kafka: settings.kafka_config(),
        group: settings.worker_group_id.clone(),
        topics: Arc::new(Topics {
            events: settings.events_topic.clone(),
            dead_letters: settings.dlq_topic.clone(),
            state: settings.state_topic.clone(),
        }),
        permits: Arc::new(Semaphore::new(settings.max_concurrent_polls)),
        poll: Arc::new(PollSettings {
            overlap: TimeDelta::from_std(settings.safety_overlap).unwrap_or(TimeDelta::MAX),
            service_zone: settings.service_timezone,
            retry_min: Duration::from_secs(1),
        }),
        factory: Arc::new(factory),
        encryption_key: settings.state_encryption_key.clone(),
        restore_timeout: RESTORE_TIMEOUT,
        hold_transactions_open: settings.test_hold_transaction,
    };
    crate::worker::run(&settings, instances, deps, shutdown).await?;
    Ok(())
}
