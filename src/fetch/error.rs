//! Why a window (or a token request) failed, and whether trying later helps.

use std::time::Duration;

use crate::element::TranslateError;
use crate::source::{FailureKind, SourceError, StoreError};

/// A failed fetch. Messages name the request as `METHOD /path` (never the
/// query, which may carry provider secrets, and never a header) and the
/// HTTP status when there is one.
///
/// The caller's rule is simple: any error fails the whole window and
/// nothing of it is published; [`FetchError::is_retriable`] says whether
/// polling again later can succeed by itself or an operator must act.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The fetcher was set up wrong (base URL, limits, auth kind).
    #[error("fetch configuration: {0}")]
    Config(String),

    /// The resource URL cannot be expressed for this provider.
    #[error("resource URL {url}: {source}")]
    Translate {
        url: String,
        #[source]
        source: TranslateError,
    },

    /// The resource URL is not a usable URL.
    #[error("resource URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },

    /// A resource URL or a provider `next` link points at another origin
    /// than the API root: refused so that a provider (or a bad instance
    /// file) cannot make the poller send its credentials elsewhere (SSRF).
    #[error("refused {what} to another origin: {origin} (the API root is {expected})")]
    CrossOrigin {
        what: &'static str,
        origin: String,
        expected: String,
    },

    /// No HTTP response: timeout, refused or reset connection, DNS.
    #[error("{request}: {message} (after {attempts} attempts)")]
    Transport {
        request: String,
        message: String,
        attempts: u32,
    },

    /// An HTTP error status. 4xx other than 401/429 are not retried.
    #[error("{request}: HTTP {status} (after {attempts} attempts): {excerpt}")]
    Status {
        request: String,
        status: u16,
        attempts: u32,
        /// The start of the response body, whitespace collapsed, with any
        /// credential we sent blanked out.
        excerpt: String,
    },

    /// HTTP 429 more times than `FetchLimits::max_throttle_waits`.
    #[error("{request}: still throttled (HTTP 429) after waiting {waits} times")]
    Throttled {
        request: String,
        waits: u32,
        /// What the last answer asked for, when it said.
        retry_after: Option<Duration>,
    },

    /// HTTP 401. With OAuth2 it means the token was refreshed once and the
    /// provider still refuses it (revoked grant, missing scope).
    #[error("{request}: unauthorized (HTTP 401){}", if *.refreshed { " even with a freshly refreshed access token" } else { "" })]
    Unauthorized { request: String, refreshed: bool },

    /// The connection broke while the body was read (a body shorter than
    /// its `Content-Length`, a reset mid-stream).
    #[error(
        "{request}: body cut off after {received} bytes (after {attempts} attempts): {message}"
    )]
    Truncated {
        request: String,
        received: u64,
        message: String,
        attempts: u32,
    },

    /// A body over `FetchLimits::max_body_bytes`, refused while streaming.
    #[error(
        "{request}: response body exceeds the {limit}-byte limit (lower pageSize or raise max_body_bytes)"
    )]
    BodyTooLarge { request: String, limit: u64 },

    /// A 2xx page that is not JSON (cut short, garbage).
    #[error("{request}: malformed JSON page: {message}")]
    Malformed { request: String, message: String },

    /// Valid JSON, but not a page of this element: the records field is
    /// missing or not an array, `next` is not a string.
    #[error("{request}: unexpected page: {message}")]
    Shape { request: String, message: String },

    /// The provider's paging went wrong (a page linking to itself).
    #[error("{request}: {message}")]
    Paging { request: String, message: String },

    /// The OAuth2 token endpoint refused a grant, e.g. `invalid_grant` for a
    /// used authorization code or a refresh token that was rotated away.
    #[error(
        "OAuth2 {grant} grant refused by {endpoint}: {}{error}{}",
        status.map(|s| format!("HTTP {s} ")).unwrap_or_default(),
        description.as_ref().map(|d| format!(" ({d})")).unwrap_or_default()
    )]
    Auth {
        grant: &'static str,
        endpoint: String,
        status: Option<u16>,
        /// The RFC 6749 error code (`invalid_grant`), or `http_<status>`
        /// when the body had none.
        error: String,
        description: Option<String>,
    },

    /// The instance has neither a stored token nor an authorization code.
    #[error(
        "instance {instance}: no stored OAuth2 token and no authorization code (providerData.code) to exchange"
    )]
    NoCredentials { instance: String },

    /// The token store failed. After a refresh this means the new tokens
    /// are not durable yet and are deliberately not used.
    #[error("token store for instance {instance}: {source}")]
    Store {
        instance: String,
        #[source]
        source: StoreError,
    },

    /// A background task failed to complete (runtime shutting down).
    #[error("internal: {0}")]
    Internal(String),
}

impl FetchError {
    /// Whether polling again later can succeed without anyone changing
    /// anything: transient network and server trouble, throttling, broken
    /// pages, an unavailable token store. Configuration errors, refused
    /// grants and client errors need an operator.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Transport { .. }
            | Self::Truncated { .. }
            | Self::Malformed { .. }
            | Self::Throttled { .. }
            | Self::Store { .. }
            | Self::Internal(_) => true,
            Self::Status { status, .. } => status_is_transient(*status),
            Self::Auth { status, error, .. } => {
                matches!(error.as_str(), "temporarily_unavailable" | "server_error")
                    || status.is_some_and(status_is_transient)
            }
            Self::Config(_)
            | Self::Translate { .. }
            | Self::InvalidUrl { .. }
            | Self::CrossOrigin { .. }
            | Self::Unauthorized { .. }
            | Self::BodyTooLarge { .. }
            | Self::Shape { .. }
            | Self::Paging { .. }
            | Self::NoCredentials { .. } => false,
        }
    }

    /// The class the job loop acts on: [`FailureKind::Reauthorize`] for a
    /// refused grant or a token the provider keeps refusing, `Throttled`
    /// for 429s, then retriable or permanent as [`FetchError::is_retriable`]
    /// says.
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::Throttled { retry_after, .. } => FailureKind::Throttled {
                retry_after: *retry_after,
            },
            _ if self.is_retriable() => FailureKind::Retriable,
            Self::Auth { .. } | Self::NoCredentials { .. } | Self::Unauthorized { .. } => {
                FailureKind::Reauthorize
            }
            _ => FailureKind::Permanent,
        }
    }

    /// The HTTP status behind the error, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            Self::Throttled { .. } => Some(429),
            Self::Unauthorized { .. } => Some(401),
            Self::Auth { status, .. } => *status,
            _ => None,
        }
    }
}

impl From<FetchError> for SourceError {
    fn from(error: FetchError) -> Self {
        SourceError::new(error.kind(), error)
    }
}

/// Statuses worth repeating the same request for: request timeout,
/// throttling and server errors except "not implemented" and "version not
/// supported", which will not change by themselves.
pub(crate) fn status_is_transient(status: u16) -> bool {
    matches!(status, 408 | 429) || (status >= 500 && !matches!(status, 501 | 505))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let status = |s| FetchError::Status {
            request: "GET /v1/orders".into(),
            status: s,
            attempts: 1,
            excerpt: String::new(),
        };
        assert!(status(503).is_retriable());
        assert!(status(500).is_retriable());
        assert!(!status(501).is_retriable());
        assert!(!status(404).is_retriable());
        assert!(!status(400).is_retriable());
        let auth = |error: &str, status| FetchError::Auth {
            grant: "refresh_token",
            endpoint: "POST /token".into(),
            status,
            error: error.into(),
            description: Some("Invalid refresh token".into()),
        };
        let refused = auth("invalid_grant", Some(400));
        assert!(!refused.is_retriable());
        assert_eq!(
            refused.to_string(),
            "OAuth2 refresh_token grant refused by POST /token: HTTP 400 invalid_grant (Invalid refresh token)"
        );
        assert_eq!(refused.kind(), FailureKind::Reauthorize);
        assert_eq!(status(404).kind(), FailureKind::Permanent);
        assert_eq!(status(503).kind(), FailureKind::Retriable);
        let throttled = FetchError::Throttled {
            request: "GET /v1/orders".into(),
            waits: 10,
            retry_after: Some(Duration::from_secs(30)),
        };
        assert_eq!(
            throttled.kind(),
            FailureKind::Throttled {
                retry_after: Some(Duration::from_secs(30))
            }
        );
        assert!(auth("http_503", Some(503)).is_retriable());
        assert!(auth("temporarily_unavailable", Some(400)).is_retriable());
        assert_eq!(status(418).status(), Some(418));
    }
}
