//! Logging set-up: `tracing` with JSON or pretty output, level from
//! settings. Secrets never reach it: every secret type redacts its `Debug`.
//!
//! - [`events`]: typed events, each of which writes one log line and
//!   updates its metrics;
//! - [`metrics`]: the Prometheus registry behind `/metrics`.

pub(crate) mod events;
pub(crate) mod metrics;

/// The metric names the worker serves, for checks outside the crate
/// (deployment files must not name a metric that does not exist).
pub use self::metrics::names as metric_names;

use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

/// Installs the global subscriber. Logs go to stderr so that commands which
/// print data (`validate`, `tail`) keep stdout clean.
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}
