//! The provider seam: what the job loop asks of a provider ("fetch this
//! window"), what it gets back, and the one thing a provider asks of the
//! worker in return (a durable place for credentials it must not lose).
//!
//! Both sides import this module and nothing of each other: `fetch` and
//! `provider` implement [`Source`] and [`SourceFactory`], the worker calls
//! them, and `service` wires the two together. Detection, transactions and
//! metrics never branch on the provider.
//!
//! Errors keep the fetch layer's classification ([`FailureKind`]), so the
//! job loop can wait out a throttle, retry a 503 soon and back far off from
//! a revoked grant instead of treating them alike.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::BoxFuture;
use serde_json::value::RawValue;

use crate::instance::{DateField, Instance};

/// Any error, boxed: the seam keeps its message and class, not its type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One window to fetch.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    /// The rendered resource URL, relative to the API root
    /// (`/hubs/ecommerce/orders?where=since='…'`), or a `resume_url` from a
    /// truncated [`Fetched`] (absolute, same origin).
    pub url: String,
    /// The resource's `pageSize`; else the URL's page-size parameter, else
    /// the element default. Capped at the element's maximum.
    pub page_size: Option<u32>,
    /// The record date the provider's `since` filters on (the updated
    /// date). With it, an element whose pager has a `since` parameter asks
    /// for pages after the first by position, which data changing between
    /// page requests cannot make skip a record; `None` follows the
    /// provider's `next` links.
    pub keyset: Option<DateField>,
    /// How the fetch sleeps between tries.
    pub pause: Pause,
}

/// How a fetch sleeps out a throttle or a retry backoff. A job hands in one
/// that gives its poll permit back for the sleep, so a tenant the provider
/// throttles does not hold a slot other tenants could poll with.
#[derive(Clone, Default)]
pub struct Pause(Option<Arc<dyn Fn(Duration) -> BoxFuture<'static, ()> + Send + Sync>>);

impl Pause {
    pub fn new(sleep: impl Fn(Duration) -> BoxFuture<'static, ()> + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(sleep)))
    }

    pub async fn sleep(&self, wait: Duration) {
        match &self.0 {
            Some(sleep) => sleep(wait).await,
            None => tokio::time::sleep(wait).await,
        }
    }
}

impl fmt::Debug for Pause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Pause(job)"
        } else {
            "Pause(sleep)"
        })
    }
}

/// Every record of one window, exactly as the provider sent them.
#[derive(Default)]
pub struct Fetched {
    /// The provider's records, each its exact JSON text, in page order.
    pub records: Vec<Box<RawValue>>,
    /// Pages fetched.
    pub pages: u32,
    /// A page or record limit stopped the window early: the job publishes
    /// this part and polls again at once from `resume_url`.
    pub truncated: bool,
    /// With `truncated`: where the rest of the window starts (absolute, on
    /// the API root's origin; pass it back as [`FetchRequest::url`]).
    pub resume_url: Option<String>,
    /// The provider's clock (HTTP `Date`, whole seconds) at the window's
    /// last response, if sent.
    pub provider_date: Option<DateTime<Utc>>,
    /// That response's `Date` minus the time its request was sent, by our
    /// clock: the provider's clock skew (whole seconds, so up to a second
    /// low, plus the request's latency high).
    pub provider_skew: Option<TimeDelta>,
    /// The window's HTTP traffic, for metrics.
    pub stats: FetchStats,
}

impl fmt::Debug for Fetched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Records are customer data: counted, not printed.
        f.debug_struct("Fetched")
            .field("records", &self.records.len())
            .field("pages", &self.pages)
            .field("truncated", &self.truncated)
            .field("resume_url", &self.resume_url.is_some())
            .field("provider_date", &self.provider_date)
            .field("provider_skew", &self.provider_skew)
            .field("stats", &self.stats)
            .finish()
    }
}

/// Counters of one window (or of a fetcher's life), for metrics.
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
    /// Adds `other` to these counters.
    pub fn add(&mut self, other: &FetchStats) {
        self.requests += other.requests;
        self.retries += other.retries;
        self.throttled_waits += other.throttled_waits;
        self.waited = self.waited.saturating_add(other.waited);
        for (status, n) in &other.status_counts {
            *self.status_counts.entry(*status).or_default() += n;
        }
    }
}

/// What kind of failure a [`SourceError`] is: what waiting can and cannot
/// fix, which is what the job loop's backoff is chosen by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Transient trouble (network, 5xx, a broken page, the token store):
    /// polling again soon can succeed by itself.
    Retriable,
    /// The provider is rate-limiting us; `retry_after` is how long it asked
    /// for, when it said.
    Throttled { retry_after: Option<Duration> },
    /// The provider refused the instance's grant (revoked, rotated away):
    /// nothing changes until someone authorizes the instance again.
    Reauthorize,
    /// Configuration or a provider answer that will not change by itself
    /// (a 404, a URL the element cannot express, a refused redirect).
    Permanent,
}

impl FailureKind {
    /// The `kind` label of metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retriable => "retriable",
            Self::Throttled { .. } => "throttled",
            Self::Reauthorize => "reauthorize",
            Self::Permanent => "permanent",
        }
    }
}

/// A window or a source that failed, with its class. `Display` is the
/// underlying error's message, which names the request but never a query,
/// a header or a secret.
#[derive(Debug)]
pub struct SourceError {
    kind: FailureKind,
    error: BoxError,
}

impl SourceError {
    pub fn new(kind: FailureKind, error: impl Into<BoxError>) -> Self {
        Self {
            kind,
            error: error.into(),
        }
    }

    /// A configuration problem found while building a source.
    pub fn permanent(error: impl Into<BoxError>) -> Self {
        Self::new(FailureKind::Permanent, error)
    }

    pub fn kind(&self) -> FailureKind {
        self.kind
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for SourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

/// A window that failed as a whole, with the HTTP traffic it cost (the
/// statuses of a failing window are the ones operators look for).
#[derive(Debug)]
pub struct FetchFailure {
    pub error: SourceError,
    pub stats: FetchStats,
}

/// Fetches windows for the resources of one instance.
pub trait Source: Send + Sync {
    /// All pages of `request.url`. A malformed or truncated page fails the
    /// whole window: nothing partial is returned.
    fn fetch(&self, request: FetchRequest) -> BoxFuture<'_, Result<Fetched, FetchFailure>>;
}

/// Builds the source of an instance.
pub trait SourceFactory: Send + Sync {
    /// `credentials` is where the source keeps what it must not lose
    /// (rotated OAuth tokens): the instance's state partition.
    ///
    /// # Errors
    /// The instance cannot be polled (unknown element, missing
    /// credentials); its jobs are skipped with this reason, the other
    /// instances run.
    fn source(
        &self,
        instance: &Arc<Instance>,
        credentials: Arc<dyn CredentialStore>,
    ) -> Result<Arc<dyn Source>, SourceError>;
}

/// A credential store failure, in the store's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

impl StoreError {
    pub fn new(message: impl fmt::Display) -> Self {
        Self(message.to_string())
    }
}

/// Where a source keeps credentials between restarts, as opaque bytes.
/// `save` must be durable when it returns `Ok` (a committed Kafka
/// transaction): a rotated refresh token saved there is the only one the
/// provider still accepts.
pub trait CredentialStore: Send + Sync {
    /// The stored bytes of an instance, if any.
    fn load<'a>(
        &'a self,
        instance_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>>;

    /// Replaces the stored bytes of an instance, durably.
    fn save<'a>(
        &'a self,
        instance_id: &'a str,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Changes whenever what [`CredentialStore::load`] returns may have
    /// changed behind the caller's back (the worker took the partition
    /// over again: another worker may have refreshed meanwhile).
    fn generation(&self) -> u64 {
        0
    }

    /// Called right before the provider is asked for new tokens (which may
    /// void the current refresh token): fails when a save would be refused
    /// afterwards, so that no rotation starts whose result would be lost.
    fn claim_refresh<'a>(&'a self, _instance_id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }

    /// The rotation a granted claim was for is saved, or failed.
    fn claim_done(&self, _instance_id: &str) {}
}
