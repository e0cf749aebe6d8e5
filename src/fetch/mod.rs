//! HTTP: one poll window = every page of one resource URL, fetched with
//! authentication, paging, retries, rate-limit waits and size limits, and
//! returned whole or not at all.
//!
//! The caller (a poll job, through [`crate::source::Source`]) hands
//! [`Fetcher::fetch_window`] the rendered resource URL. Either it gets every
//! record of the window, each kept as the provider's exact JSON, or a
//! [`FetchError`]; a window is never returned partially, so a broken page
//! can never move a watermark past records nobody saw. A window that hits
//! [`FetchLimits`] comes back `truncated`, with the link to continue from.
//!
//! - [`request`]: one request with retries, shared with the token endpoint;
//! - [`paging`]: where the next page is (pure);
//! - [`page`]: bodies within a size limit, records kept as raw JSON;
//! - [`hints`]: `Date`, `Retry-After` and the element's quota headers;
//! - [`links`]: same-origin checks and query parameters;
//! - [`oauth`]: OAuth2 tokens with rotation-safe persistence.
//!
//! Per request: transport errors, timeouts, 5xx and bodies cut off
//! mid-stream are retried with backoff; 429 waits as long as `Retry-After`
//! or the element's quota headers say (capped); 401 refreshes the OAuth2
//! token once; other 4xx fail at once.

mod error;
mod hints;
mod links;
pub mod oauth;
mod page;
mod paging;
mod quota;
mod request;

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Url;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use serde_json::value::RawValue;

pub use error::FetchError;
pub use hints::{parse_http_date, parse_retry_after};
pub use links::same_origin;
pub use oauth::{MemoryTokenStore, OAuth2Client, TokenManager, TokenSet};
pub use quota::{ClientQuota, ClientQuotas};

use crate::backoff::Backoff;
use crate::element::{AuthKind, ElementDef};
use crate::instance::{DateField, HubCredentials};
use crate::secret::Secret;
use crate::source::{FetchRequest, FetchStats, Fetched, Pause};
use error::status_is_transient;
use hints::{HintSource, provider_date, wait_hint};
use links::{label, origin_text, query_param, set_query_param};
use page::{BodyError, PageError, describe, excerpt, parse_page, read_body};
use paging::{PageSeen, Pager};
use request::{Answer, Step};

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
    /// 5 000: also the most events one transaction carries. Measured (200k
    /// backfill, docs/performance.md): as fast as 10 000 now that a
    /// transaction costs milliseconds, at ~35 % less peak RSS; 2 000 costs
    /// ~15 % of the speed for another ~35 %.
    pub max_records_per_poll: usize,
    /// Bytes of records per window before it comes back `truncated`,
    /// checked between pages like the record limit. Default 8 MiB (5 000
    /// Keap orders of ~1.5 KB): with the body limit, a window holds at most
    /// 40 MiB of records.
    pub max_bytes_per_poll: u64,
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
            max_records_per_poll: 5_000,
            max_bytes_per_poll: 8 * 1024 * 1024,
            max_attempts: 5,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            max_throttle_wait: Duration::from_secs(300),
            max_throttle_waits: 10,
        }
    }
}

impl FetchLimits {
    /// # Errors
    /// [`FetchError::Config`] naming the limit that cannot work.
    pub fn validate(&self) -> Result<(), FetchError> {
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

    /// The retry policy of every request.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.backoff_base, self.backoff_max)
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
        .map_err(|e| FetchError::Config(format!("HTTP client: {}", describe(e))))
}

/// How the fetcher authenticates; must match the element's [`AuthKind`].
#[derive(Clone, Debug)]
pub enum Auth {
    None,
    /// Open Connectors: the `User U, Organization O, Element E` header,
    /// built once (see [`Auth::hub`]).
    Hub(HubHeader),
    OAuth2(TokenManager),
}

/// The hub's `Authorization` value, flagged sensitive so that HTTP-layer
/// logging and debug output never show it.
#[derive(Clone)]
pub struct HubHeader(HeaderValue);

impl std::fmt::Debug for HubHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HubHeader(***)")
    }
}

impl Auth {
    /// Hub authentication from the instance's `hub.user.secret`,
    /// `hub.organization.secret` and `hub.element.token`.
    ///
    /// # Errors
    /// [`FetchError::Config`] naming a missing key, or credentials that
    /// cannot be sent in a header.
    /// The hub secrets this auth sends (nothing for the other kinds).
    fn hub_secrets(&self) -> Vec<String> {
        let Self::Hub(header) = self else {
            return Vec::new();
        };
        let text = header.0.to_str().unwrap_or_default();
        text.split(", ")
            .filter_map(|part| part.split_once(' ').map(|(_, secret)| secret.to_owned()))
            .filter(|secret| !secret.is_empty())
            .collect()
    }

    pub fn hub(credentials: &HubCredentials) -> Result<Self, FetchError> {
        fn need<'a>(s: &'a Option<Secret>, key: &str) -> Result<&'a str, FetchError> {
            s.as_ref().map(Secret::expose).ok_or_else(|| {
                FetchError::Config(format!("hub mode needs configuration key {key}"))
            })
        }
        let text = format!(
            "User {}, Organization {}, Element {}",
            need(&credentials.user_secret, "hub.user.secret")?,
            need(&credentials.organization_secret, "hub.organization.secret")?,
            need(&credentials.element_token, "hub.element.token")?
        );
        Ok(Self::Hub(HubHeader(sensitive(&text, "hub credentials")?)))
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
    /// The quota this instance shares with the other instances of its
    /// OAuth client.
    quota: Option<ClientQuota>,
}

/// A response with a 2xx status and its complete body.
struct Response {
    body: Vec<u8>,
    headers: reqwest::header::HeaderMap,
    /// When the request that was answered was sent, by our clock: the
    /// provider's `Date` minus this is its clock skew, unaffected by the
    /// retries and throttle waits before it.
    sent_at: DateTime<Utc>,
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
            quota: None,
        })
    }

    /// Shares the provider's quota with the other instances of one OAuth
    /// client: see [`ClientQuota`].
    pub fn with_client_quota(mut self, quota: ClientQuota) -> Self {
        self.quota = Some(quota);
        self
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
            return self.on_root_origin(url);
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
        self.on_root_origin(url)
    }

    /// `url` if it is on the API root's origin: credentials go nowhere else.
    fn on_root_origin(&self, url: Url) -> Result<Url, FetchError> {
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
    /// one that changed. With [`FetchRequest::keyset`] (elements that have
    /// a `since` parameter) pages after the first are requested by position
    /// instead, which cannot skip (see [`paging`]); callers still
    /// deduplicate on `(id, updatedAt)`.
    ///
    /// # Errors
    /// Any [`FetchError`]: the window then failed as a whole.
    pub async fn fetch_window(&self, request: FetchRequest) -> Result<Fetched, FetchError> {
        self.fetch_window_counted(request).await.0
    }

    /// Like [`Fetcher::fetch_window`], and also returns the window's
    /// [`FetchStats`] when it failed (on success they are in
    /// [`Fetched::stats`] too).
    pub async fn fetch_window_counted(
        &self,
        request: FetchRequest,
    ) -> (Result<Fetched, FetchError>, FetchStats) {
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
                    message = "Window fetch failed.",
                    element = %self.element.key,
                    error = %e,
                    kind = e.kind().as_str(),
                    requests = stats.requests,
                );
                (Err(e), stats)
            }
        }
    }

    async fn window(
        &self,
        request: &FetchRequest,
        stats: &mut FetchStats,
    ) -> Result<Fetched, FetchError> {
        let paging = &self.element.paging;
        let mut url = self.resolve(&request.url)?;
        let size_param = paging.page_size_param();
        let page_size = request
            .page_size
            .or_else(|| query_param(&url, size_param).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(self.element.default_page_size)
            .clamp(1, paging.max_page_size().max(1));
        set_query_param(&mut url, size_param, &page_size.to_string());

        let mut pager = Pager::new(
            paging,
            &self.root,
            page_size,
            request.keyset.is_some(),
            &url,
        );
        // The order is asked for on the resources the element knows (Keap:
        // orders); other paths are sent as written.
        if pager.wants_dates() && self.element.url_translation.is_rule_path(url.path()) {
            if let Some((name, value, want)) = paging.conflicting_sort(url.as_str()) {
                return Err(FetchError::Config(format!(
                    "the resource URL sets {name}={value}, but keyset paging needs {name}={want}"
                )));
            }
            for sort in paging.keyset_sort() {
                set_query_param(&mut url, &sort.name, &sort.value);
            }
        }
        let mut window = Fetched::default();
        let mut bytes: u64 = 0;
        loop {
            if window.pages >= self.limits.max_pages_per_poll
                || window.records.len() >= self.limits.max_records_per_poll
                || bytes >= self.limits.max_bytes_per_poll
            {
                window.truncated = true;
                window.resume_url = Some(url.to_string());
                tracing::info!(
                    message = "Window truncated at the page or record limit; continuing from the next page.",
                    element = %self.element.key,
                    path = %url.path(),
                    pages = window.pages,
                    records = window.records.len(),
                );
                break;
            }
            let response = self.get(&url, stats, &request.pause).await?;
            if let Some(date) = provider_date(&response.headers) {
                // The latest answer's clock: no record it served can
                // honestly be dated after it.
                window.provider_date = Some(date);
                window.provider_skew = Some(date - response.sent_at);
            }
            window.pages += 1;
            let page = parse_page(
                &response.body,
                &self.element.records_path,
                pager.next_field(),
            )
            .map_err(|e| {
                let request = label("GET", &url);
                match e {
                    PageError::Malformed(message) => FetchError::Malformed { request, message },
                    PageError::Shape(message) => FetchError::Shape { request, message },
                }
            })?;
            if let (true, Some(field)) = (pager.wants_dates(), &request.keyset) {
                for r in &page.records {
                    pager.record(record_date(field, r), r.get());
                }
            }
            let count = page.records.len();
            tracing::debug!(
                message = "Page fetched.",
                element = %self.element.key,
                path = %url.path(),
                page = window.pages,
                records = count,
            );
            let next = pager.next(&PageSeen {
                url: &url,
                count,
                next_link: page.next.as_deref(),
                headers: &response.headers,
            })?;
            bytes += page
                .records
                .iter()
                .map(|r| r.get().len() as u64)
                .sum::<u64>();
            window.records.extend(page.records);
            match next {
                Some(next) => url = next,
                None => break,
            }
        }
        tracing::debug!(
            message = "Window fetched.",
            element = %self.element.key,
            pages = window.pages,
            records = window.records.len(),
            truncated = window.truncated,
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
            Auth::Hub(header) => Ok((Some(header.0.clone()), None)),
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

    /// One page request with retries ([`request::send`]): a 2xx response's
    /// complete body, or the error that ends the window.
    async fn get(
        &self,
        url: &Url,
        stats: &mut FetchStats,
        pause: &Pause,
    ) -> Result<Response, FetchError> {
        let request = label("GET", url);
        request::send(
            &self.limits,
            &request,
            stats,
            pause,
            Credential::default(),
            |credential, attempts| self.attempt(url, &request, credential, attempts),
        )
        .await
    }

    /// One try of [`Fetcher::get`].
    async fn attempt(
        &self,
        url: &Url,
        request: &str,
        mut credential: Credential,
        attempts: u32,
    ) -> (Credential, Answer<Response>) {
        let limits = &self.limits;
        // Another instance of this client was told the quota is used up:
        // wait for the reset without spending a request to be told again.
        if let Some(wait) = self.quota.as_ref().and_then(|q| q.wait(Utc::now())) {
            return (
                credential,
                Answer::unsent(Step::Throttled {
                    hint: Some((wait, HintSource::QuotaReset)),
                }),
            );
        }
        let (auth, sent_token) = match self.authorization(credential.bearer.take()).await {
            Ok(auth) => auth,
            Err(e) => return (credential, Answer::new(None, Step::Fail(e))),
        };
        let mut builder = self
            .client
            .get(url.clone())
            .header(ACCEPT, "application/json")
            .timeout(limits.request_timeout);
        if let Some(auth) = auth {
            builder = builder.header(AUTHORIZATION, auth);
        }
        let sent_at = Utc::now();
        let mut response = match builder.send().await {
            Ok(response) => response,
            Err(e) => return (credential, request::no_answer(request, e, attempts)),
        };
        let status = response.status().as_u16();
        let step = if response.status().is_success() {
            match read_body(&mut response, limits.max_body_bytes).await {
                Ok(body) => Step::Done(Response {
                    body,
                    headers: response.headers().clone(),
                    sent_at,
                }),
                Err(BodyError::TooLarge) => Step::Fail(FetchError::BodyTooLarge {
                    request: request.to_owned(),
                    limit: limits.max_body_bytes,
                }),
                Err(BodyError::Read { received, message }) => {
                    request::cut_off(request, received, message, attempts)
                }
            }
        } else if status == 401 {
            match (&self.auth, sent_token) {
                (Auth::OAuth2(tokens), Some(rejected)) if !credential.refreshed => {
                    credential.refreshed = true;
                    tracing::info!(
                        message = "HTTP 401: refreshing the access token once.",
                        element = %self.element.key,
                        path = %url.path(),
                    );
                    match tokens.refresh_after_unauthorized(&rejected).await {
                        Ok(token) => {
                            credential.bearer = Some(token);
                            Step::Resend
                        }
                        Err(e) => Step::Fail(e),
                    }
                }
                _ => Step::Fail(FetchError::Unauthorized {
                    request: request.to_owned(),
                    refreshed: credential.refreshed,
                }),
            }
        } else if status == 429 {
            let hint = wait_hint(response.headers(), &self.element.throttle_hints, Utc::now());
            // The element's quota headers describe the client's quota;
            // `Retry-After` may be about this request alone.
            if let (Some(quota), Some((wait, HintSource::QuotaReset | HintSource::Window))) =
                (&self.quota, hint)
            {
                quota.exhausted(Utc::now(), wait);
            }
            Step::Throttled { hint }
        } else {
            let hint = wait_hint(response.headers(), &[], Utc::now())
                .filter(|(_, s)| *s == HintSource::RetryAfter)
                .map(|(d, _)| d);
            // A provider or hub may echo the request's credentials in an
            // error body: none of them may reach a log line.
            let hub_secrets = self.auth.hub_secrets();
            let redact: Vec<&str> = sent_token
                .iter()
                .map(Secret::expose)
                .chain(hub_secrets.iter().map(String::as_str))
                .collect();
            let error = FetchError::Status {
                request: request.to_owned(),
                status,
                attempts,
                excerpt: excerpt(&mut response, &redact).await,
            };
            if status_is_transient(status) {
                Step::Retry { error, hint }
            } else {
                Step::Fail(error)
            }
        };
        (credential, Answer::new(Some(status), step))
    }
}

/// What one page attempt hands the next: the access token that replaced
/// one the provider refused, and whether that refresh was already spent.
#[derive(Default)]
struct Credential {
    bearer: Option<Secret>,
    refreshed: bool,
}

/// A record's date as `field` reads it, for keyset paging; `None` when it
/// cannot be read (detection dead-letters such records later).
fn record_date(field: &DateField, raw: &RawValue) -> Option<DateTime<Utc>> {
    let value = crate::record::Fields::read(raw).ok()?.get(&field.path)?;
    let t = field.format.parse(value.as_str()?, &field.zone).ok()?;
    Some(t.with_timezone(&Utc))
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
