//! HTTP: one poll window = every page of one resource URL, fetched with
//! authentication, paging, retries, rate-limit waits and size limits, and
//! returned whole or not at all.
//!
//! The caller (a poll job) hands [`Fetcher::fetch_window`] the rendered
//! resource URL. Either it gets every record of the window, each kept as the
//! provider's exact JSON, or a [`FetchError`]; a window is never returned
//! partially, so a broken page can never move a watermark past records
//! nobody saw. A window that hits [`FetchLimits`] comes back `truncated`,
//! with the link to continue from.
//!
//! Per request: transport errors, timeouts, 5xx and bodies cut off
//! mid-stream are retried with exponential backoff and full jitter; 429
//! waits as long as `Retry-After` or Keap's quota headers say (capped);
//! 401 refreshes the OAuth2 token once; other 4xx fail at once.

mod error;
mod links;
pub mod oauth;
mod page;
mod retry;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Url;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::value::RawValue;

pub use error::FetchError;
pub use links::same_origin;
pub use oauth::{MemoryTokenStore, OAuth2Client, StoreError, TokenManager, TokenSet, TokenStore};
pub use retry::{backoff, backoff_ceiling, parse_http_date, parse_retry_after};

use crate::element::{AuthKind, ElementDef, PagingKind};
use crate::secret::Secret;
use links::{label, origin_text, query_param, resolve_next, set_query_param};
use page::{BodyError, PageError, describe, excerpt, parse_page, read_body};
use retry::{HintSource, millis, provider_date, wait_hint};

/// Bounds on one window's work. The defaults suit Keap (1000 orders a
/// page, 1500 requests a minute) and keep one poll's memory bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchLimits {
    /// Whole request, from sending to the last body byte. Default 30 s: a
    /// 1000-order Keap page is a few MB and takes a second or two.
    pub request_timeout: Duration,
    /// TCP + TLS connect. Default 10 s.
    pub connect_timeout: Duration,
    /// Largest body read, enforced while streaming (nothing beyond it is
    /// buffered). Default 32 MiB: about six times a full Keap page of
    /// large orders.
    pub max_body_bytes: u64,
    /// Pages per window before it comes back `truncated`. Default 100.
    pub max_pages_per_poll: u32,
    /// Records per window before it comes back `truncated`, checked between
    /// pages (so a window holds at most this plus one page). Default
    /// 100 000, together with the body limit a bound on a poll's memory.
    pub max_records_per_poll: usize,
    /// Tries per request for transient failures (5xx, timeouts, connection
    /// and body errors), the first included. Default 5.
    pub max_attempts: u32,
    /// First backoff ceiling; doubles per retry. Default 500 ms.
    pub backoff_base: Duration,
    /// Largest backoff ceiling. Default 30 s.
    pub backoff_max: Duration,
    /// Longest single wait a 429 (or a 503's `Retry-After`) can impose.
    /// Default 5 min: a provider asking for more is down for our purposes,
    /// and a poll blocked for longer delays every other job on the worker.
    pub max_throttle_wait: Duration,
    /// 429 answers per request before giving up. Default 10. Throttling is
    /// counted apart from `max_attempts` because waiting as asked is
    /// correct behaviour, not a failure.
    pub max_throttle_waits: u32,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_body_bytes: 32 * 1024 * 1024,
            max_pages_per_poll: 100,
            max_records_per_poll: 100_000,
            max_attempts: 5,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            max_throttle_wait: Duration::from_secs(300),
            max_throttle_waits: 10,
        }
    }
}

impl FetchLimits {
    fn validate(&self) -> Result<(), FetchError> {
        let bad = |what: &str| Err(FetchError::Config(format!("fetch limits: {what}")));
        if self.max_attempts == 0 {
            return bad("max_attempts must be at least 1");
        }
        if self.max_pages_per_poll == 0 || self.max_records_per_poll == 0 {
            return bad("max_pages_per_poll and max_records_per_poll must be at least 1");
        }
        if self.max_body_bytes == 0 {
            return bad("max_body_bytes must be at least 1");
        }
        if self.request_timeout.is_zero() {
            return bad("request_timeout must be positive");
        }
        Ok(())
    }
}

/// The HTTP client the fetcher expects: redirects are **not** followed (a
/// redirect could lead credentials or the poller elsewhere; the provider's
/// API does not redirect), connect timeout and user agent set. Share one
/// per process: it pools connections.
///
/// # Errors
/// [`FetchError::Config`] if the TLS backend cannot be initialised.
pub fn http_client(limits: &FetchLimits) -> Result<reqwest::Client, FetchError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(limits.connect_timeout)
        .user_agent(concat!("event-poller/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| FetchError::Config(format!("HTTP client: {}", describe(&e))))
}

/// Open Connectors credentials: `Authorization: User U, Organization O,
/// Element E` (`hub.user.secret`, `hub.organization.secret`,
/// `hub.element.token`).
#[derive(Clone, Debug)]
pub struct HubCredentials {
    pub user: Secret,
    pub organization: Secret,
    pub element: Secret,
}

/// How the fetcher authenticates; must match the element's [`AuthKind`].
#[derive(Clone, Debug)]
pub enum Auth {
    None,
    Hub(HubCredentials),
    OAuth2(TokenManager),
}

/// One window to fetch.
#[derive(Debug, Clone)]
pub struct WindowRequest {
    /// The rendered resource URL, relative to the API root
    /// (`/hubs/ecommerce/orders?where=since='…'`), or a `resume_url` from a
    /// truncated [`Window`] (absolute, same origin).
    pub relative_url: String,
    /// The resource's `pageSize`; else the URL's page-size parameter, else
    /// the element default. Capped at the element's maximum.
    pub page_size: Option<u32>,
    /// How to read a record's updated time, for keyset paging (see
    /// [`Keyset`]); `None` follows the provider's `next` links.
    pub keyset: Option<Keyset>,
}

/// Keyset paging for elements whose offset pager has a `since` parameter
/// ([`PagingKind::OffsetNext::since_param`]).
///
/// Offset paging shifts when data changes between page requests: a record
/// updated on page 1 moves to the end and every later record moves one
/// place up, so the first record of page 2 is never served. That record is
/// *unchanged*, possibly old, and a watermark moved past it loses it for
/// good. Asking for each next page as "since the newest date seen so far,
/// skipping the records already seen at exactly that date" cannot skip an
/// unchanged record: changed records only move to dates after the bound.
#[derive(Clone)]
pub struct Keyset {
    /// A record's updated time; records it cannot read do not move the bound.
    pub position: Position,
}

/// Reads a record's updated time.
pub type Position = Arc<dyn Fn(&RawValue) -> Option<DateTime<Utc>> + Send + Sync>;

impl fmt::Debug for Keyset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keyset")
    }
}

/// The lower bound of a keyset page, as Keap reads `since`.
fn keyset_bound(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Counters of one window (or, from [`Fetcher::totals`], of a fetcher's
/// life), for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchStats {
    /// HTTP requests sent to the API (token requests not included).
    pub requests: u64,
    /// Requests repeated after a transient failure.
    pub retries: u64,
    /// 429 answers waited out.
    pub throttled_waits: u64,
    /// Total time slept in retries and throttle waits.
    pub waited: Duration,
    /// Responses by HTTP status.
    pub status_counts: BTreeMap<u16, u64>,
}

impl FetchStats {
    fn add(&mut self, other: &FetchStats) {
        self.requests += other.requests;
        self.retries += other.retries;
        self.throttled_waits += other.throttled_waits;
        self.waited = self.waited.saturating_add(other.waited);
        for (status, n) in &other.status_counts {
            *self.status_counts.entry(*status).or_default() += n;
        }
    }
}

/// Every record of one window.
pub struct Window {
    /// The provider's records, each its exact JSON text, in page order.
    pub records: Vec<Box<RawValue>>,
    /// Pages fetched.
    pub pages: u32,
    /// A page or record limit was hit before the last page. The caller
    /// should publish this part and continue at once from `resume_url`.
    pub truncated: bool,
    /// Where the next page starts when `truncated` (absolute URL on the
    /// API root's origin; pass it back as `WindowRequest::relative_url`).
    pub resume_url: Option<String>,
    /// The `Date` header of the first page: the provider's clock, for
    /// clock-skew handling (a window bound on our clock may be minutes off
    /// on theirs).
    pub provider_date: Option<DateTime<Utc>>,
    pub stats: FetchStats,
}

impl fmt::Debug for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Records are customer data: counted, not printed.
        f.debug_struct("Window")
            .field("records", &self.records.len())
            .field("pages", &self.pages)
            .field("truncated", &self.truncated)
            .field("resume_url", &self.resume_url.is_some())
            .field("provider_date", &self.provider_date)
            .field("stats", &self.stats)
            .finish()
    }
}

/// Fetches windows for one element and API root. Holds no per-window
/// state; share it (`Arc`) between the jobs of an instance.
#[derive(Debug)]
pub struct Fetcher {
    client: reqwest::Client,
    element: ElementDef,
    /// API root, without trailing slash, query or fragment.
    root: Url,
    auth: Auth,
    limits: FetchLimits,
    /// Lifetime counters, failed windows included.
    totals: Mutex<FetchStats>,
}

/// A response with a 2xx status and its complete body.
struct Fetched {
    body: Vec<u8>,
    headers: HeaderMap,
}

impl Fetcher {
    /// A fetcher for `element` at `base_url` (the instance's `base.url`;
    /// `None` for the element's default). `client` should come from
    /// [`http_client`].
    ///
    /// # Errors
    /// [`FetchError::Config`] for a base URL that is not an absolute
    /// http(s) URL without query, an `auth` that does not match the
    /// element's auth kind, or unusable limits.
    pub fn new(
        client: reqwest::Client,
        element: ElementDef,
        base_url: Option<&str>,
        auth: Auth,
        limits: FetchLimits,
    ) -> Result<Self, FetchError> {
        limits.validate()?;
        let text = base_url.unwrap_or(&element.default_base_url).trim();
        let mut root =
            Url::parse(text).map_err(|e| FetchError::Config(format!("base URL '{text}': {e}")))?;
        if !matches!(root.scheme(), "http" | "https") || root.host().is_none() {
            return Err(FetchError::Config(format!(
                "base URL '{text}' is not an http(s) URL"
            )));
        }
        if root.query().is_some() || root.fragment().is_some() {
            return Err(FetchError::Config(format!(
                "base URL '{text}' must not have a query or fragment"
            )));
        }
        if !root.username().is_empty() || root.password().is_some() {
            return Err(FetchError::Config(
                "base URL must not carry credentials".into(),
            ));
        }
        let path = root.path().trim_end_matches('/').to_owned();
        root.set_path(&path);
        let matches = matches!(
            (&element.auth, &auth),
            (AuthKind::None, Auth::None)
                | (AuthKind::Hub, Auth::Hub(_))
                | (AuthKind::OAuth2 { .. }, Auth::OAuth2(_))
        );
        if !matches {
            return Err(FetchError::Config(format!(
                "element {} ({}) needs {:?} authentication",
                element.key, element.mode, element.auth
            )));
        }
        Ok(Self {
            client,
            element,
            root,
            auth,
            limits,
            totals: Mutex::new(FetchStats::default()),
        })
    }

    pub fn element(&self) -> &ElementDef {
        &self.element
    }

    /// The API root in use.
    pub fn base_url(&self) -> &Url {
        &self.root
    }

    /// Counters over every window this fetcher ran, failed ones included.
    pub fn totals(&self) -> FetchStats {
        self.totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The absolute URL a resource URL is fetched from (translation
    /// applied, before paging parameters), e.g. for the `validate` command.
    ///
    /// # Errors
    /// An untranslatable or invalid URL, or one on another origin.
    pub fn resolve(&self, relative_url: &str) -> Result<Url, FetchError> {
        let text = relative_url.trim();
        if !text.starts_with('/') {
            // Absolute: only our own links (resume URLs) are accepted.
            let url = Url::parse(text).map_err(|e| FetchError::InvalidUrl {
                url: text.to_owned(),
                reason: format!("neither a path starting with '/' nor an absolute URL ({e})"),
            })?;
            if !same_origin(&self.root, &url) {
                return Err(FetchError::CrossOrigin {
                    what: "resource URL",
                    origin: origin_text(&url),
                    expected: origin_text(&self.root),
                });
            }
            return Ok(url);
        }
        let native = self
            .element
            .translate(text)
            .map_err(|source| FetchError::Translate {
                url: text.split('?').next().unwrap_or(text).to_owned(),
                source,
            })?;
        let joined = format!("{}{native}", self.root.as_str().trim_end_matches('/'));
        let url = Url::parse(&joined).map_err(|e| FetchError::InvalidUrl {
            url: native.clone(),
            reason: e.to_string(),
        })?;
        // Cannot fail for a path appended to the root; checked anyway
        // because it is the property that matters.
        if !same_origin(&self.root, &url) {
            return Err(FetchError::CrossOrigin {
                what: "resource URL",
                origin: origin_text(&url),
                expected: origin_text(&self.root),
            });
        }
        Ok(url)
    }

    /// Fetches every page of one window.
    ///
    /// Offset paging (`limit`/`offset`/`next`) is evaluated by the
    /// provider per request: a record created, changed or deleted between
    /// two page requests shifts the rest by one, so a record can be served
    /// twice or skipped; a skipped record is an *unchanged* neighbour of the
    /// one that changed. With a [`Keyset`] (elements that have a `since`
    /// parameter) pages after the first are requested by position instead,
    /// which cannot skip; callers still deduplicate on `(id, updatedAt)`.
    ///
    /// # Errors
    /// Any [`FetchError`]: the window then failed as a whole.
    pub async fn fetch_window(&self, request: WindowRequest) -> Result<Window, FetchError> {
        self.fetch_window_counted(request).await.0
    }

    /// Like [`Fetcher::fetch_window`], and also returns the window's
    /// [`FetchStats`] when it failed (on success they are in
    /// [`Window::stats`] too).
    pub async fn fetch_window_counted(
        &self,
        request: WindowRequest,
    ) -> (Result<Window, FetchError>, FetchStats) {
        let mut stats = FetchStats::default();
        let result = self.window(&request, &mut stats).await;
        self.totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(&stats);
        match result {
            Ok(mut window) => {
                window.stats = stats.clone();
                (Ok(window), stats)
            }
            Err(e) => {
                tracing::warn!(
                    element = %self.element.key,
                    error = %e,
                    retriable = e.is_retriable(),
                    requests = stats.requests,
                    "window fetch failed"
                );
                (Err(e), stats)
            }
        }
    }

    async fn window(
        &self,
        request: &WindowRequest,
        stats: &mut FetchStats,
    ) -> Result<Window, FetchError> {
        let paging = &self.element.paging;
        let mut url = self.resolve(&request.relative_url)?;
        let size_param = paging.page_size_param();
        let page_size = request
            .page_size
            .or_else(|| query_param(&url, size_param).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(self.element.default_page_size)
            .clamp(1, paging.max_page_size().max(1));
        set_query_param(&mut url, size_param, &page_size.to_string());

        let mut window = Window {
            records: Vec::new(),
            pages: 0,
            truncated: false,
            resume_url: None,
            provider_date: None,
            stats: FetchStats::default(),
        };
        let mut last_cursor: Option<String> = None;
        // Keyset position: the newest updated time seen and how many records
        // carry exactly that time. A resumed window's URL carries both.
        let mut bound: Option<(DateTime<Utc>, usize)> = match (&request.keyset, paging) {
            (
                Some(_),
                PagingKind::OffsetNext {
                    since_param: Some(since_param),
                    offset_param,
                    ..
                },
            ) => query_param(&url, since_param)
                .and_then(|v| DateTime::parse_from_rfc3339(v.trim()).ok())
                .map(|t| {
                    let seen = query_param(&url, offset_param)
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    (t.with_timezone(&Utc), seen)
                }),
            _ => None,
        };
        loop {
            if window.pages >= self.limits.max_pages_per_poll
                || window.records.len() >= self.limits.max_records_per_poll
            {
                window.truncated = true;
                window.resume_url = Some(url.to_string());
                tracing::info!(
                    element = %self.element.key,
                    path = %url.path(),
                    pages = window.pages,
                    records = window.records.len(),
                    "window truncated at the page/record limit; the caller continues from the next page"
                );
                break;
            }
            let fetched = self.get(&url, stats).await?;
            if window.pages == 0 {
                window.provider_date = provider_date(&fetched.headers);
            }
            window.pages += 1;
            let request_label = || label("GET", &url);
            let next_field = match paging {
                PagingKind::OffsetNext { next_field, .. } => Some(next_field.as_str()),
                PagingKind::CursorHeader { .. } => None,
            };
            let page =
                parse_page(&fetched.body, &self.element.records_path, next_field).map_err(|e| {
                    match e {
                        PageError::Malformed(message) => FetchError::Malformed {
                            request: request_label(),
                            message,
                        },
                        PageError::Shape(message) => FetchError::Shape {
                            request: request_label(),
                            message,
                        },
                    }
                })?;
            let count = page.records.len();
            if let Some(keyset) = &request.keyset {
                for r in &page.records {
                    if let Some(t) = (keyset.position)(r) {
                        bound = match bound {
                            Some((b, n)) if t == b => Some((b, n + 1)),
                            Some((b, n)) if t < b => Some((b, n)),
                            _ => Some((t, 1)),
                        };
                    }
                }
            }
            tracing::debug!(
                element = %self.element.key,
                path = %url.path(),
                page = window.pages,
                records = count,
                "page fetched"
            );
            window.records.extend(page.records);

            let next = match paging {
                PagingKind::OffsetNext {
                    since_param: Some(since_param),
                    offset_param,
                    ..
                } if request.keyset.is_some() => match bound {
                    Some((at, seen_at)) if count >= page_size as usize => {
                        let mut next = url.clone();
                        set_query_param(&mut next, since_param, &keyset_bound(at));
                        set_query_param(&mut next, offset_param, &seen_at.to_string());
                        if next == url {
                            return Err(FetchError::Paging {
                                request: request_label(),
                                message: "keyset paging made no progress".into(),
                            });
                        }
                        Some(next)
                    }
                    _ => None,
                },
                PagingKind::OffsetNext { .. } => {
                    // Keap sends `next` even past the end: a short page is
                    // the last one.
                    match page.next {
                        Some(link) if count >= page_size as usize => {
                            let next = resolve_next(&self.root, &url, &link)?;
                            if next == url {
                                return Err(FetchError::Paging {
                                    request: request_label(),
                                    message: "the next link points at the same page".into(),
                                });
                            }
                            Some(next)
                        }
                        _ => None,
                    }
                }
                PagingKind::CursorHeader { header, param, .. } => {
                    // The hub hands out a cursor even when the next page
                    // is empty: an empty page is the end.
                    let cursor = fetched
                        .headers
                        .get(header.as_str())
                        .and_then(|v| v.to_str().ok())
                        .map(str::trim)
                        .filter(|c| !c.is_empty());
                    match cursor {
                        Some(cursor) if count > 0 => {
                            if last_cursor.as_deref() == Some(cursor) {
                                return Err(FetchError::Paging {
                                    request: request_label(),
                                    message: format!("the hub repeated the same `{header}`"),
                                });
                            }
                            last_cursor = Some(cursor.to_owned());
                            let mut next = url.clone();
                            set_query_param(&mut next, param, cursor);
                            Some(next)
                        }
                        _ => None,
                    }
                }
            };
            match next {
                Some(next) => url = next,
                None => break,
            }
        }
        tracing::debug!(
            element = %self.element.key,
            pages = window.pages,
            records = window.records.len(),
            truncated = window.truncated,
            "window fetched"
        );
        Ok(window)
    }

    /// The `Authorization` header for one attempt, and the bearer token in
    /// it (to refresh precisely that one on 401).
    async fn authorization(
        &self,
        bearer: Option<Secret>,
    ) -> Result<(Option<HeaderValue>, Option<Secret>), FetchError> {
        match &self.auth {
            Auth::None => Ok((None, None)),
            Auth::Hub(c) => {
                let text = format!(
                    "User {}, Organization {}, Element {}",
                    c.user.expose(),
                    c.organization.expose(),
                    c.element.expose()
                );
                Ok((Some(sensitive(&text, "hub credentials")?), None))
            }
            Auth::OAuth2(tokens) => {
                let token = match bearer {
                    Some(t) => t,
                    None => tokens.access_token().await?,
                };
                let value = sensitive(&format!("Bearer {}", token.expose()), "access token")?;
                Ok((Some(value), Some(token)))
            }
        }
    }

    /// One page request with retries: returns a 2xx response's complete
    /// body, or the error that ends the window.
    async fn get(&self, url: &Url, stats: &mut FetchStats) -> Result<Fetched, FetchError> {
        let request = label("GET", url);
        let limits = &self.limits;
        let mut failures: u32 = 0;
        let mut throttles: u32 = 0;
        let mut refreshed = false;
        let mut bearer: Option<Secret> = None;
        loop {
            let (auth, sent_token) = self.authorization(bearer.take()).await?;
            let mut builder = self
                .client
                .get(url.clone())
                .header(ACCEPT, "application/json")
                .timeout(limits.request_timeout);
            if let Some(auth) = auth {
                builder = builder.header(AUTHORIZATION, auth);
            }
            stats.requests += 1;
            let redact: Vec<&str> = sent_token.iter().map(Secret::expose).collect();

            // Either the page, or a transient failure (error, server's wait
            // hint) to retry after a backoff.
            let (error, hint) = match builder.send().await {
                Err(e) => (
                    FetchError::Transport {
                        request: request.clone(),
                        message: describe(&e),
                        attempts: failures + 1,
                    },
                    None,
                ),
                Ok(mut response) => {
                    let status = response.status();
                    *stats.status_counts.entry(status.as_u16()).or_default() += 1;
                    if status.is_success() {
                        match read_body(&mut response, limits.max_body_bytes).await {
                            Ok(body) => {
                                return Ok(Fetched {
                                    body,
                                    headers: response.headers().clone(),
                                });
                            }
                            Err(BodyError::TooLarge) => {
                                return Err(FetchError::BodyTooLarge {
                                    request,
                                    limit: limits.max_body_bytes,
                                });
                            }
                            Err(BodyError::Read { received, message }) => (
                                FetchError::Truncated {
                                    request: request.clone(),
                                    received,
                                    message,
                                    attempts: failures + 1,
                                },
                                None,
                            ),
                        }
                    } else if status.as_u16() == 401 {
                        match (&self.auth, sent_token) {
                            (Auth::OAuth2(tokens), Some(rejected)) if !refreshed => {
                                refreshed = true;
                                tracing::info!(
                                    element = %self.element.key,
                                    path = %url.path(),
                                    "HTTP 401: refreshing the access token once"
                                );
                                bearer = Some(tokens.refresh_after_unauthorized(&rejected).await?);
                                continue;
                            }
                            _ => {
                                return Err(FetchError::Unauthorized { request, refreshed });
                            }
                        }
                    } else if status.as_u16() == 429 {
                        throttles += 1;
                        if throttles > limits.max_throttle_waits {
                            return Err(FetchError::Throttled {
                                request,
                                waits: throttles - 1,
                            });
                        }
                        let (wait, source) = match wait_hint(response.headers(), Utc::now()) {
                            Some((wait, source)) => {
                                (wait.min(limits.max_throttle_wait), source.as_str())
                            }
                            // No hint: back off, but never "retry at once".
                            None => (
                                backoff(throttles, limits.backoff_base, limits.backoff_max)
                                    .max(limits.backoff_base),
                                "backoff",
                            ),
                        };
                        tracing::warn!(
                            element = %self.element.key,
                            path = %url.path(),
                            wait_ms = millis(wait),
                            source,
                            throttles,
                            "throttled (HTTP 429), waiting"
                        );
                        stats.throttled_waits += 1;
                        stats.waited = stats.waited.saturating_add(wait);
                        tokio::time::sleep(wait).await;
                        continue;
                    } else {
                        let hint = wait_hint(response.headers(), Utc::now())
                            .filter(|(_, s)| *s == HintSource::RetryAfter)
                            .map(|(d, _)| d);
                        let excerpt = excerpt(&mut response, &redact).await;
                        let error = FetchError::Status {
                            request: request.clone(),
                            status: status.as_u16(),
                            attempts: failures + 1,
                            excerpt,
                        };
                        if !error::status_is_transient(status.as_u16()) {
                            return Err(error);
                        }
                        (error, hint)
                    }
                }
            };
            failures += 1;
            if failures >= limits.max_attempts {
                return Err(error);
            }
            let wait = match hint {
                Some(h) => h.min(limits.max_throttle_wait),
                None => backoff(failures, limits.backoff_base, limits.backoff_max),
            };
            tracing::warn!(
                element = %self.element.key,
                path = %url.path(),
                attempt = failures,
                wait_ms = millis(wait),
                error = %error,
                "request failed, retrying"
            );
            stats.retries += 1;
            stats.waited = stats.waited.saturating_add(wait);
            tokio::time::sleep(wait).await;
        }
    }
}

/// A header value flagged sensitive, so that HTTP-layer logging and debug
/// output never show it.
fn sensitive(text: &str, what: &str) -> Result<HeaderValue, FetchError> {
    let mut value = HeaderValue::from_str(text).map_err(|_| {
        FetchError::Config(format!(
            "the {what} contain characters not allowed in an HTTP header"
        ))
    })?;
    value.set_sensitive(true);
    Ok(value)
}
