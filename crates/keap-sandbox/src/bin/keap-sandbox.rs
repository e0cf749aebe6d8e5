//! `keap-sandbox`: a Keap-compatible orders API in memory, faults included.
//!
//! Prints `listening on http://ADDR` as its first stdout line (so scripts
//! and tests can start it on port 0 and read the port), logs to stderr, and
//! exits 0 on SIGINT or SIGTERM after finishing in-flight requests.
//! See the `keap_sandbox` library for the endpoints.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use keap_sandbox::Secret;
use keap_sandbox::faults::{DEFAULT_QUOTA_PER_DAY, DEFAULT_THROTTLE_PER_MINUTE};
use keap_sandbox::{self as sandbox, DEFAULT_ACCESS_TOKEN_TTL_SECONDS, Precision, SandboxConfig};

#[derive(Debug, Parser)]
#[command(
    name = "keap-sandbox",
    version,
    about = "In-memory Keap (Infusionsoft) orders API with OAuth2, an Open Connectors hub view, \
             a change log and injectable faults"
)]
struct Cli {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, env = "KEAP_SANDBOX_LISTEN")]
    listen: SocketAddr,
    /// Seed for generated data: same seed and operations give the same data.
    #[arg(long, env = "KEAP_SANDBOX_SEED", default_value_t = 0)]
    seed: u64,
    /// Orders to pre-create, spread over the time before start.
    #[arg(long, env = "KEAP_SANDBOX_ORDERS", default_value_t = 0)]
    orders: usize,
    /// New orders per second created by the live generator.
    #[arg(long, env = "KEAP_SANDBOX_CREATE_RATE", default_value_t = 0.0)]
    create_rate: f64,
    /// Updates of existing orders per second by the live generator.
    #[arg(long, env = "KEAP_SANDBOX_UPDATE_RATE", default_value_t = 0.0)]
    update_rate: f64,
    /// OAuth client id; without it the Keap API needs no bearer token.
    #[arg(long, env = "KEAP_SANDBOX_CLIENT_ID", requires = "client_secret")]
    client_id: Option<String>,
    /// OAuth client secret (prefer the environment variable).
    #[arg(
        long,
        env = "KEAP_SANDBOX_CLIENT_SECRET",
        requires = "client_id",
        hide_env_values = true
    )]
    client_secret: Option<String>,
    /// A one-time authorization code; repeat for several instances.
    #[arg(long = "authorization-code", value_name = "CODE")]
    authorization_codes: Vec<String>,
    /// Access-token lifetime in seconds (Keap: 86400).
    #[arg(long, env = "KEAP_SANDBOX_ACCESS_TOKEN_TTL", default_value_t = DEFAULT_ACCESS_TOKEN_TTL_SECONDS)]
    access_token_ttl: u64,
    /// When a rotated-out refresh token stops working: `never` (at the
    /// refresh that replaced it) or `until-first-use` (when the new pair is
    /// first used).
    #[arg(long, value_enum, default_value = "never")]
    refresh_reuse: keap_sandbox::oauth::RefreshReuse,
    /// Hub `User` secret; without it the hub needs no Authorization header.
    #[arg(long, env = "KEAP_SANDBOX_HUB_USER", requires = "hub_organization")]
    hub_user: Option<String>,
    /// Hub `Organization` secret.
    #[arg(
        long,
        env = "KEAP_SANDBOX_HUB_ORGANIZATION",
        requires = "hub_user",
        hide_env_values = true
    )]
    hub_organization: Option<String>,
    /// Store millisecond dates instead of Keap's whole seconds.
    #[arg(long)]
    timestamp_millis: bool,
    /// Requests a minute the `x-keap-product-throttle-*` headers report
    /// (Keap: 1500 per client). Raise it when many tenants share this one
    /// sandbox: a client that honours the headers would wait on a limit
    /// that really applies per tenant.
    #[arg(long, env = "KEAP_SANDBOX_THROTTLE_PER_MINUTE", default_value_t = DEFAULT_THROTTLE_PER_MINUTE)]
    throttle_per_minute: u64,
    /// Requests a day the `x-keap-product-quota-*` headers report (Keap:
    /// 150,000 per client).
    #[arg(long, env = "KEAP_SANDBOX_QUOTA_PER_DAY", default_value_t = DEFAULT_QUOTA_PER_DAY)]
    quota_per_day: u64,
}

impl Cli {
    fn config(self) -> SandboxConfig {
        SandboxConfig {
            seed: self.seed,
            orders: self.orders,
            create_rate: self.create_rate,
            update_rate: self.update_rate,
            client_id: self.client_id,
            client_secret: self.client_secret.map(Secret::new),
            authorization_codes: self.authorization_codes,
            access_token_ttl_seconds: self.access_token_ttl,
            refresh_reuse: self.refresh_reuse,
            hub_user: self.hub_user,
            hub_organization: self.hub_organization,
            frozen_clock: None,
            timestamp_precision: if self.timestamp_millis {
                Precision::Millis
            } else {
                Precision::Seconds
            },
            throttle_per_minute: self.throttle_per_minute,
            quota_per_day: self.quota_per_day,
        }
    }
}

/// Completes on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!(message = "Shutdown requested; finishing in-flight requests.");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let listen = cli.listen;
    let config = cli.config();
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
    }
    tracing::info!(
        message = "keap-sandbox started.",
        %addr,
        seed = config.seed,
        orders = config.orders,
        oauth = config.client_id.is_some(),
        hub_auth = config.hub_user.is_some(),
    );
    sandbox::serve(listener, config, shutdown_signal()).await?;
    tracing::info!(message = "keap-sandbox stopped.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn codes_repeat_and_defaults_follow_keap() {
        let cli = Cli::try_parse_from([
            "keap-sandbox",
            "--listen",
            "127.0.0.1:0",
            "--authorization-code",
            "a",
            "--authorization-code",
            "b",
        ])
        .unwrap();
        let config = cli.config();
        assert_eq!(config.authorization_codes, ["a", "b"]);
        assert_eq!(config.access_token_ttl_seconds, 86_400);
        assert_eq!(config.timestamp_precision, Precision::Seconds);
        assert!(config.client_id.is_none());
        assert_eq!(config.throttle_per_minute, 1500);
        assert_eq!(config.quota_per_day, 150_000);
    }

    #[test]
    fn limits_reported_in_the_headers_can_be_raised() {
        let cli = Cli::try_parse_from([
            "keap-sandbox",
            "--listen",
            "127.0.0.1:0",
            "--throttle-per-minute",
            "100000000",
            "--quota-per-day",
            "2000000000",
        ])
        .unwrap();
        let config = cli.config();
        assert_eq!(config.throttle_per_minute, 100_000_000);
        assert_eq!(config.quota_per_day, 2_000_000_000);
        config.validate().unwrap();
        let zero = SandboxConfig {
            throttle_per_minute: 0,
            ..SandboxConfig::default()
        };
        assert!(zero.validate().is_err());
    }
}
