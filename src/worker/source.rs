//! The boundary between the job loop and a provider: "fetch this window".
//! The HTTP implementation lives in `fetch`; the loop, detection,
//! transactions and metrics never branch on the provider.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use crate::fetch::FetchStats;

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
    /// The window's HTTP traffic, for metrics.
    pub stats: FetchStats,
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
    fn fetch(&self, relative_url: String, page_size: Option<u32>) -> SourceFuture<'_>;
}
