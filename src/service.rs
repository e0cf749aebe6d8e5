//! Assembles the running service from settings and instances: the ops
//! endpoint, the HTTP sources, the poll settings and the worker.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::TimeDelta;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::fetch::FetchLimits;
use crate::instance::Instance;
use crate::metrics::Metrics;
use crate::ops::{OpsState, Readiness};
use crate::provider::HttpSources;
use crate::publish::Topics;
use crate::settings::Settings;
use crate::worker::ownership::PartitionDeps;
use crate::worker::poll::PollSettings;

/// How long restoring one state partition may take before the takeover is
/// retried.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the ops endpoint may take to finish its requests once the
/// worker stopped; a scraper holding a request open must not delay exit.
const OPS_DRAIN: Duration = Duration::from_secs(5);

/// Runs the poll worker and the ops endpoint until `shutdown`. The ops
/// endpoint answers until the worker has stopped (`/readyz` says 503 from
/// the moment `shutdown` fires).
///
/// # Errors
/// Start-up failures: unusable settings, `OPS_LISTEN` not bindable,
/// topics, group.
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
    let listener = TcpListener::bind(settings.ops_listen)
        .await
        .with_context(|| format!("OPS_LISTEN={}: cannot listen", settings.ops_listen))?;
    let ops_address = listener
        .local_addr()
        .with_context(|| format!("OPS_LISTEN={}: bound address", settings.ops_listen))?;
    info!(message = "Ops endpoint listening.", address = %ops_address);
    let ops = OpsState {
        metrics: Arc::new(Metrics::new()),
        readiness: Arc::new(Readiness::new()),
    };
    let readiness = ops.readiness.clone();
    let on_shutdown = shutdown.clone();
    tokio::spawn(async move {
        on_shutdown.cancelled().await;
        readiness.stopping();
    });
    let ops_stop = CancellationToken::new();
    let ops_server = tokio::spawn(crate::ops::serve(
        listener,
        ops.clone(),
        ops_stop.clone().cancelled_owned(),
    ));

    let result = run_worker(settings, instances, &ops, shutdown).await;

    ops.readiness.stopping();
    ops_stop.cancel();
    match tokio::time::timeout(OPS_DRAIN, ops_server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => warn!(message = "Ops endpoint failed.", %error),
        Ok(Err(error)) => warn!(message = "Ops endpoint task failed.", %error),
        Err(_) => warn!(message = "Ops endpoint did not finish its requests in time."),
    }
    result
}

async fn run_worker(
    settings: Settings,
    instances: Vec<Arc<Instance>>,
    ops: &OpsState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
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
        metrics: ops.metrics.clone(),
        readiness: ops.readiness.clone(),
    };
    crate::worker::run(&settings, instances, deps, shutdown).await?;
    Ok(())
}
