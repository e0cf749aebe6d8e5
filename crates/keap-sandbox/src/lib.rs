//! `keap-sandbox`: an in-memory store that behaves like Keap (Infusionsoft)
//! e-commerce orders as seen through Keap REST v1 and through the Open
//! Connectors hub, faults included. The poller's tests, the demo and the
//! benchmarks poll it instead of a real Keap account.
//!
//! # Endpoints
//!
//! Provider API (what a poller talks to):
//!
//! | method & path | module | what |
//! |---|---|---|
//! | `GET /crm/rest/v1/orders` (also `…/orders/`) | [`keap_api`] | Keap REST v1 list: `since`, `until`, `limit`, `offset`, `order`, `order_direction`, `paid`, `contact_id`, `product_id`; `{"orders","count","next","previous"}`; bearer token |
//! | `GET /elements/api-v2/hubs/ecommerce/orders` | [`hub_api`] | Open Connectors hub: CEQL `where`, `pageSize`, cursor `nextPage` / `elements-next-page-token`; `User …, Organization …, Element …` auth |
//! | `POST /token` | [`oauth`] | OAuth2 `authorization_code` (one-time codes) and `refresh_token` (rotating) |
//!
//! Control API (tests and demos; no auth, no faults), see [`control`]:
//!
//! | method & path | body → answer |
//! |---|---|
//! | `POST /_sandbox/orders` | `{"count": N}` → `{"ids": [...]}` |
//! | `POST /_sandbox/orders/{id}/touch` | → the updated order |
//! | `DELETE /_sandbox/orders/{id}` | → 204 |
//! | `POST /_sandbox/codes` | → `{"code": "..."}` (a fresh one-time authorization code) |
//! | `POST /_sandbox/revoke` | → 204; every access and refresh token is void (the app was disconnected) |
//! | `GET`/`PUT`/`DELETE /_sandbox/faults` | any subset of the [`faults::FaultSettings`] keys → all settings |
//! | `GET`/`PUT /_sandbox/clock` | `{"offset_seconds": N}` → `{"offset_seconds", "now"}` |
//! | `GET /_sandbox/changes` | → `{"changes": [{"id", "change", "modification_date"}]}` |
//! | `GET /_sandbox/stats` | → `{"requests": {"GET /crm/rest/v1/orders": {"200": n}}}` |
//!
//! # Decisions worth knowing
//!
//! - Dates are written like Keap's Java service writes them,
//!   `2019-10-25T18:53:10.000+0000`, at whole-second precision by default
//!   ([`clock::format_keap`], [`clock::Precision`]).
//! - `since`/`until` select on `modification_date`, half-open
//!   (`since <= d < until`); results sort by `modification_date`, then `id`.
//! - Offset paging is recomputed per request, so records shift when data
//!   changes between pages, like the real API ([`store::Store::list`]).
//! - Without `--client-id` the Keap API is open (no token needed) and
//!   `/token` serves any client; without `--hub-user` the hub is open
//!   ([`oauth`]).
//! - The store, its indexes and the change log change under one lock, so
//!   `GET /_sandbox/changes` is exact even under the live generator.
//! - Same seed and same operations give the same data; only dates follow the
//!   clock, which tests can freeze ([`SandboxConfig::frozen_clock`]).
//!
//! # Layout
//!
//! [`clock`] (time and date formats) → [`orders`] (records and the seeded
//! generator) → [`store`] (orders, indexes, change log) → [`faults`],
//! [`oauth`] → [`keap_api`], [`hub_api`], [`control`], [`stats`] (HTTP, with
//! shared helpers in [`respond`]) →
//! [`live`] (the background generator) → [`serve`] / [`start`] here.

pub mod clock;
pub mod control;
pub mod faults;
pub mod hub_api;
pub mod keap_api;
pub mod live;
pub mod oauth;
pub mod orders;
pub mod respond;
mod secret;
pub mod stats;
pub mod store;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::Response;
use axum::routing::{delete, get, post};
use chrono::{DateTime, Utc};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use clock::Precision;
pub use faults::{FaultSettings, RetryAfter};
pub use secret::Secret;

/// Keap's access-token lifetime: 24 hours.
pub const DEFAULT_ACCESS_TOKEN_TTL_SECONDS: u64 = 86_400;

/// Everything `keap-sandbox` can be told on its command line, plus what only
/// in-process tests need.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Seed of the data generator: same seed + same operations = same data.
    pub seed: u64,
    /// Orders pre-created at start, spread over the time before start.
    pub orders: usize,
    /// Live generator: new orders per second (0 = off).
    pub create_rate: f64,
    /// Live generator: updates of existing orders per second (0 = off).
    pub update_rate: f64,
    /// OAuth client id; `None` leaves the Keap API open (no token needed).
    pub client_id: Option<String>,
    /// OAuth client secret; required with `client_id`.
    pub client_secret: Option<Secret>,
    /// One-time authorization codes accepted by `/token`.
    pub authorization_codes: Vec<String>,
    /// Access-token lifetime in seconds (default 24 h, as Keap).
    pub access_token_ttl_seconds: u64,
    /// Hub `User` secret; `None` leaves the hub open.
    pub hub_user: Option<String>,
    /// Hub `Organization` secret; required with `hub_user`.
    pub hub_organization: Option<String>,
    /// Pins real time to this instant (the clock offset still applies), so
    /// that tests get identical dates run after run.
    pub frozen_clock: Option<DateTime<Utc>>,
    /// Precision of stored dates (Keap: whole seconds).
    pub timestamp_precision: Precision,
    /// When a rotated-out refresh token stops working (default: at once).
    pub refresh_reuse: oauth::RefreshReuse,
    /// Requests a minute the throttle headers report (Keap: 1500 per
    /// client). Informational: the sandbox never throttles on its own.
    pub throttle_per_minute: u64,
    /// Requests a day the quota headers report (Keap: 150,000 per client).
    pub quota_per_day: u64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            orders: 0,
            create_rate: 0.0,
            update_rate: 0.0,
            client_id: None,
            client_secret: None,
            authorization_codes: Vec::new(),
            access_token_ttl_seconds: DEFAULT_ACCESS_TOKEN_TTL_SECONDS,
            hub_user: None,
            hub_organization: None,
            frozen_clock: None,
            timestamp_precision: Precision::Seconds,
            refresh_reuse: oauth::RefreshReuse::Never,
            throttle_per_minute: faults::DEFAULT_THROTTLE_PER_MINUTE,
            quota_per_day: faults::DEFAULT_QUOTA_PER_DAY,
        }
    }
}

/// Why the sandbox could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("invalid sandbox configuration: {0}")]
    Config(String),
    #[error("sandbox I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("sandbox task failed: {0}")]
    Task(String),
}

/// The most orders `--orders` may pre-create (memory stays well under 1 GB).
const MAX_ORDERS: usize = 1_000_000;

impl SandboxConfig {
    /// Checks the options that depend on each other.
    ///
    /// # Errors
    /// [`SandboxError::Config`] naming the option to fix.
    pub fn validate(&self) -> Result<(), SandboxError> {
        let err = |m: &str| Err(SandboxError::Config(m.to_owned()));
        if self.client_id.is_some() != self.client_secret.is_some() {
            return err("--client-id and --client-secret must be given together");
        }
        if self.hub_user.is_some() != self.hub_organization.is_some() {
            return err("--hub-user and --hub-organization must be given together");
        }
        for (name, rate) in [
            ("--create-rate", self.create_rate),
            ("--update-rate", self.update_rate),
        ] {
            if !(0.0..=1_000_000.0).contains(&rate) {
                return Err(SandboxError::Config(format!(
                    "{name} must be between 0 and 1000000 per second"
                )));
            }
        }
        if self.access_token_ttl_seconds == 0 || self.access_token_ttl_seconds > 10 * 366 * 86_400 {
            return err("--access-token-ttl must be between 1 second and 10 years");
        }
        if self.throttle_per_minute == 0 || self.quota_per_day == 0 {
            return err("--throttle-per-minute and --quota-per-day must be at least 1");
        }
        if self.orders > MAX_ORDERS {
            return Err(SandboxError::Config(format!(
                "--orders must be at most {MAX_ORDERS}"
            )));
        }
        Ok(())
    }
}

/// The sandbox's shared state; cheap to clone (one `Arc`).
#[derive(Debug, Clone)]
pub struct Sandbox(Arc<Shared>);

/// Each part has its own lock; none is ever held across an `.await`.
#[derive(Debug)]
struct Shared {
    config: SandboxConfig,
    clock: Arc<clock::Clock>,
    /// Orders, indexes and change log: one lock, see [`store`].
    store: Mutex<store::Store>,
    tokens: Mutex<oauth::Tokens>,
    faults: faults::Faults,
    quota: faults::Quota,
    stats: stats::Stats,
    /// `(user, organization)` when hub auth is enforced.
    hub: Option<(String, String)>,
    /// Fallback origin for `next` links when a request has no `Host`.
    local_addr: SocketAddr,
}

impl Sandbox {
    /// Builds the state and pre-creates `config.orders` orders.
    ///
    /// # Errors
    /// [`SandboxError::Config`] when the configuration is inconsistent.
    pub fn new(config: SandboxConfig, local_addr: SocketAddr) -> Result<Self, SandboxError> {
        config.validate()?;
        let clock = Arc::new(clock::Clock::new(config.frozen_clock));
        let mut store =
            store::Store::new(config.seed, Arc::clone(&clock), config.timestamp_precision);
        store.seed_history(config.orders);
        let client = config.client_id.clone().zip(config.client_secret.clone());
        let ttl = i64::try_from(config.access_token_ttl_seconds).unwrap_or(i64::MAX);
        let tokens = oauth::Tokens::new(client, config.authorization_codes.clone(), ttl)
            .with_reuse(config.refresh_reuse);
        let hub = config.hub_user.clone().zip(config.hub_organization.clone());
        Ok(Self(Arc::new(Shared {
            clock,
            store: Mutex::new(store),
            tokens: Mutex::new(tokens),
            faults: faults::Faults::new(config.seed),
            quota: faults::Quota::new(config.throttle_per_minute, config.quota_per_day),
            stats: stats::Stats::default(),
            hub,
            local_addr,
            config,
        })))
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.0.config
    }
}

/// The HTTP routes over one sandbox state.
pub fn router(sandbox: Sandbox) -> Router {
    Router::new()
        .route("/crm/rest/v1/orders", get(keap_api::list_orders))
        .route("/crm/rest/v1/orders/", get(keap_api::list_orders))
        .route(
            "/elements/api-v2/hubs/ecommerce/orders",
            get(hub_api::list_orders),
        )
        .route("/token", post(oauth::token_endpoint))
        .route("/_sandbox/orders", post(control::create_orders))
        .route("/_sandbox/orders/{id}/touch", post(control::touch_order))
        .route("/_sandbox/orders/{id}", delete(control::delete_order))
        .route("/_sandbox/codes", post(control::mint_code))
        .route("/_sandbox/revoke", post(control::revoke_tokens))
        .route(
            "/_sandbox/faults",
            get(control::get_faults)
                .put(control::put_faults)
                .delete(control::clear_faults),
        )
        .route(
            "/_sandbox/clock",
            get(control::get_clock).put(control::put_clock),
        )
        .route("/_sandbox/changes", get(control::changes))
        .route("/_sandbox/stats", get(control::stats))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            sandbox.clone(),
            stats::count,
        ))
        .layer(middleware::from_fn_with_state(
            sandbox.clone(),
            provider_date,
        ))
        .with_state(sandbox)
}

/// A provider stamps `Date` with its own clock; with a shifted sandbox clock
/// (`PUT /_sandbox/clock`) clients see the skew there too, as they would
/// with a real provider whose clock is off. A `Date` set by a handler (the
/// throttle responses) is kept.
async fn provider_date(
    axum::extract::State(sb): axum::extract::State<Sandbox>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    if !response.headers().contains_key(axum::http::header::DATE)
        && let Ok(v) = axum::http::HeaderValue::from_str(&clock::http_date(sb.0.clock.now()))
    {
        response.headers_mut().insert(axum::http::header::DATE, v);
    }
    response
}

async fn not_found() -> Response {
    respond::message(StatusCode::NOT_FOUND, "No such endpoint")
}

/// Serves a sandbox built from `config` on `listener` until `shutdown`
/// completes, running the live generator alongside.
///
/// # Errors
/// [`SandboxError::Config`] before serving; [`SandboxError::Io`] if the
/// server fails.
pub async fn serve(
    listener: TcpListener,
    config: SandboxConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SandboxError> {
    let sandbox = Sandbox::new(config, listener.local_addr()?)?;
    run(listener, sandbox, shutdown).await
}

async fn run(
    listener: TcpListener,
    sandbox: Sandbox,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SandboxError> {
    let cancel = CancellationToken::new();
    let (create_rate, update_rate) = (sandbox.0.config.create_rate, sandbox.0.config.update_rate);
    let live = tokio::spawn(live::run(
        sandbox.clone(),
        create_rate,
        update_rate,
        cancel.clone(),
    ));
    let served = axum::serve(listener, router(sandbox))
        .with_graceful_shutdown(shutdown)
        .await;
    cancel.cancel();
    // The generator only ends by cancellation; a join error means it
    // panicked, which the served result should not hide.
    let joined = live.await;
    served?;
    joined.map_err(|e| SandboxError::Task(e.to_string()))
}

/// A sandbox serving on `127.0.0.1:<free port>` in the background, for tests
/// and benchmarks. Dropping it stops the server.
#[derive(Debug)]
pub struct RunningSandbox {
    addr: SocketAddr,
    sandbox: Sandbox,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), SandboxError>>>,
}

impl RunningSandbox {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The state being served (for assertions that bypass HTTP).
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Stops serving and waits for the server to finish.
    ///
    /// # Errors
    /// Whatever the server ended with.
    pub async fn stop(mut self) -> Result<(), SandboxError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(|e| SandboxError::Task(e.to_string()))?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningSandbox {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts a sandbox on `127.0.0.1:0` in a background task.
///
/// # Errors
/// [`SandboxError::Config`] or a bind failure.
pub async fn start(config: SandboxConfig) -> Result<RunningSandbox, SandboxError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let sandbox = Sandbox::new(config, addr)?;
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let task = tokio::spawn(run(listener, sandbox.clone(), shutdown));
    Ok(RunningSandbox {
        addr,
        sandbox,
        stop: Some(stop),
        task: Some(task),
    })
}
