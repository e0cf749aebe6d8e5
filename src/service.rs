//! Assembles the running service from settings and instances: the ops
//! endpoint, the HTTP sources, the poll settings and the worker.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::instance::Instance;
use crate::ops::{OpsState, Readiness};
use crate::provider::HttpSources;
use crate::settings::Settings;
use crate::source::SourceError;
use crate::telemetry::metrics::Metrics;
use crate::worker::{WorkerConfig, WorkerError};

/// How often recorded histogram samples are folded into their buckets when
/// nobody scrapes `/metrics`: often enough that a busy worker keeps few.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// How long the ops endpoint may take to finish its requests once the
/// worker stopped; a scraper holding a request open must not delay exit.
const OPS_DRAIN: Duration = Duration::from_secs(5);

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(
        "STATE_ENCRYPTION_KEY is not set, but instance {instance} ({file}) uses OAuth: its tokens are \
         kept sealed in the state topic (set a base64 32-byte key, e.g. `openssl rand -base64 32`)"
    )]
    NoSealingKey { instance: String, file: String },
    #[error("OPS_LISTEN={address}: cannot listen")]
    OpsListen {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP sources")]
    Sources(#[source] SourceError),
    #[error(transparent)]
    Worker(#[from] WorkerError),
}

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
) -> Result<(), ServiceError> {
    // Fail at start-up, not at every poll: an OAuth instance cannot keep its
    // rotating refresh token without the sealing key.
    if settings.state_encryption_key.is_none()
        && let Some(i) = instances
            .iter()
            .find(|i| i.is_polled() && matches!(i.connection, crate::instance::Connection::Direct))
    {
        return Err(ServiceError::NoSealingKey {
            instance: i.id.clone(),
            file: i.source.display().to_string(),
        });
    }
    let ops_listen = |source| ServiceError::OpsListen {
        address: settings.ops_listen,
        source,
    };
    let listener = TcpListener::bind(settings.ops_listen)
        .await
        .map_err(ops_listen)?;
    let ops_address = listener.local_addr().map_err(ops_listen)?;
    info!(message = "Ops endpoint listening.", address = %ops_address);
    let ops = OpsState {
        metrics: Metrics::install(),
        readiness: Arc::new(Readiness::new()),
    };
    let upkeep = ops.metrics.clone();
    let upkeep_stop = shutdown.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(METRICS_UPKEEP);
        loop {
            tokio::select! {
                () = upkeep_stop.cancelled() => return,
                _ = every.tick() => upkeep.run_upkeep(),
            }
        }
    });
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
) -> Result<(), ServiceError> {
    let factory = HttpSources::new(settings.fetch_limits()).map_err(ServiceError::Sources)?;
    crate::worker::run(
        WorkerConfig::new(&settings),
        instances,
        Arc::new(factory),
        ops.readiness.clone(),
        shutdown,
    )
    .await?;
    Ok(())
}
