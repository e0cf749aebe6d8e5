//! One request with retries: the loop that page requests and token requests
//! share. The caller says what one attempt does and what its answer means
//! ([`Step`]); this loop counts, waits and gives up by one policy.
//!
//! - Transient failures (transport errors, timeouts, 5xx, bodies cut off
//!   mid-stream) are retried up to `FetchLimits::max_attempts` tries, after
//!   the server's `Retry-After` when it sent one, else after a backoff.
//! - HTTP 429 waits as long as the server's hints say (capped at
//!   `FetchLimits::max_throttle_wait`), else backs off, and does not spend
//!   an attempt: waiting as asked is correct behaviour, not a failure. After
//!   `FetchLimits::max_throttle_waits` waits the request gives up.

use std::future::Future;
use std::time::Duration;

use tracing::warn;

use super::hints::{HintSource, millis};
use super::page::describe;
use super::{FetchError, FetchLimits};
use crate::source::{FetchStats, Pause};

/// What one attempt came to.
pub(crate) enum Step<T> {
    /// The answer; the request is over.
    Done(T),
    /// A transient failure: try again after `hint` (the server's
    /// `Retry-After`) or a backoff, unless the attempts are spent, in which
    /// case `error` is the request's error.
    Retry {
        error: FetchError,
        hint: Option<Duration>,
    },
    /// HTTP 429: wait as the server's hint says (or back off), then send
    /// again.
    Throttled {
        hint: Option<(Duration, HintSource)>,
    },
    /// Send again at once (the credential was replaced after a 401).
    Resend,
    /// A final failure.
    Fail(FetchError),
}

/// One attempt's step, and the HTTP status it got, if any (for the
/// window's status counts).
pub(crate) struct Answer<T> {
    pub status: Option<u16>,
    pub step: Step<T>,
    /// A request went out (so it counts in the stats).
    pub sent: bool,
}

impl<T> Answer<T> {
    pub fn new(status: Option<u16>, step: Step<T>) -> Self {
        Self {
            status,
            step,
            sent: true,
        }
    }

    /// An answer given without sending the request (a known wait).
    pub fn unsent(step: Step<T>) -> Self {
        Self {
            status: None,
            step,
            sent: false,
        }
    }
}

/// A request that got no answer (timeout, refused or reset connection,
/// DNS): worth another try.
pub(crate) fn no_answer<T>(request: &str, error: reqwest::Error, attempts: u32) -> Answer<T> {
    let error = FetchError::Transport {
        request: request.to_owned(),
        message: describe(error),
        attempts,
    };
    Answer::new(None, Step::Retry { error, hint: None })
}

/// A body the connection cut off after `received` bytes: worth another try.
pub(crate) fn cut_off<T>(request: &str, received: u64, message: String, attempts: u32) -> Step<T> {
    Step::Retry {
        error: FetchError::Truncated {
            request: request.to_owned(),
            received,
            message,
            attempts,
        },
        hint: None,
    }
}

/// Runs `attempt` until it is done, fails for good, or the limits are
/// spent. Each attempt gets the 1-based number of the try and `state` (what
/// one attempt hands the next, e.g. a replaced credential), and gives the
/// state back with its answer: threading it through keeps the attempt's
/// future free of borrows of the loop. `request` names the request in
/// errors and logs (`GET /path`, never a query); `stats` counts requests,
/// statuses, retries and waits.
///
/// # Errors
/// The final attempt's error, or [`FetchError::Throttled`] once the
/// throttle waits are spent.
pub(crate) async fn send<T, S, Fut>(
    limits: &FetchLimits,
    request: &str,
    stats: &mut FetchStats,
    pause: &Pause,
    mut state: S,
    mut attempt: impl FnMut(S, u32) -> Fut,
) -> Result<T, FetchError>
where
    Fut: Future<Output = (S, Answer<T>)>,
{
    let backoff = limits.backoff();
    let mut failures: u32 = 0;
    let mut throttles: u32 = 0;
    loop {
        let (next, answer) = attempt(state, failures + 1).await;
        state = next;
        if answer.sent {
            stats.requests += 1;
        }
        if let Some(status) = answer.status {
            *stats.status_counts.entry(status).or_default() += 1;
        }
        let wait = match answer.step {
            Step::Done(value) => return Ok(value),
            Step::Fail(error) => return Err(error),
            Step::Resend => continue,
            Step::Retry { error, hint } => {
                failures += 1;
                if failures >= limits.max_attempts {
                    return Err(error);
                }
                let wait = match hint {
                    Some(h) => h.min(limits.max_throttle_wait),
                    None => backoff.delay(failures),
                };
                warn!(
                    message = "Request failed; retrying.",
                    request,
                    attempt = failures,
                    wait_ms = millis(wait),
                    %error,
                );
                stats.retries += 1;
                wait
            }
            Step::Throttled { hint } => {
                throttles += 1;
                if throttles > limits.max_throttle_waits {
                    return Err(FetchError::Throttled {
                        request: request.to_owned(),
                        waits: throttles - 1,
                        retry_after: hint.map(|(d, _)| d),
                    });
                }
                let (wait, source) = match hint {
                    Some((wait, source)) => (wait.min(limits.max_throttle_wait), source.as_str()),
                    // No hint: back off, but never "retry at once".
                    None => (backoff.delay(throttles).max(backoff.base), "backoff"),
                };
                warn!(
                    message = "Throttled (HTTP 429); waiting.",
                    request,
                    wait_ms = millis(wait),
                    source,
                    throttles,
                );
                stats.throttled_waits += 1;
                wait
            }
        };
        stats.waited = stats.waited.saturating_add(wait);
        pause.sleep(wait).await;
    }
}
