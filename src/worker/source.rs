//! The boundary between the job loop and a provider: "fetch this window".
//! The HTTP implementation lives in `fetch`; the loop, detection,
//! transactions and metrics never branch on the provider.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use crate::fetch::FetchStats;
use crate::instance::DateField;

/// Every record of one window, exactly as the provider sent them.
#[derive(Debug, Default)]
pub struct Fetched {
    pub records: Vec<Box<RawValue>>,
    pub pages: u32,
    /// A page or record limit stopped the window early: the job polls again
    /// at once instead of waiting for its interval.
    pub truncated: bool,
    /// The provider's clock (HTTP `Date`) at the first response, if sent.
    pub provider_date: Option<DateTime<Utc>>,
    /// With `truncated`: where the rest of the window starts (pass it back
    /// as the next request's URL).
    pub resume_url: Option<String>,
    /// The window's HTTP traffic, for metrics.
    pub stats: FetchStats,
}

/// One window to fetch.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    /// The rendered resource URL, or a `resume_url`.
    pub url: String,
    pub page_size: Option<u32>,
    /// The resource's updated-date field: lets the source page by position
    /// where the provider allows it, which data changing between page
    /// requests cannot make skip a record.
    pub updated: DateField,
}

/// A window that failed as a whole, with the HTTP traffic it cost (the
/// statuses of a failing window are the ones operators look for).
#[derive(Debug)]
pub struct FetchFailure {
    pub error: SourceError,
    pub stats: FetchStats,
}

pub type SourceError = Box<dyn std::error::Error + Send + Sync>;
pub type SourceFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Fetched, FetchFailure>> + Send + 'a>>;

/// Fetches windows for the resources of one instance.
pub trait Source: Send + Sync {
    /// All pages of `relative_url` (the rendered template). A malformed or
    /// truncated page fails the whole window: nothing partial is returned.
    fn fetch(&self, request: FetchRequest) -> SourceFuture<'_>;
}
