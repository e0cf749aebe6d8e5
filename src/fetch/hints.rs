//! What a response says about time: the provider's clock (`Date`) and how
//! long it asks us to wait (`Retry-After` in both forms, and the element's
//! own quota headers, [`ThrottleHint`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{DATE, HeaderMap, RETRY_AFTER};

use crate::element::ThrottleHint;

/// The provider's `Date` header: the provider's clock, for clock-skew
/// handling and for reading `Retry-After` dates relative to it.
pub fn provider_date(headers: &HeaderMap) -> Option<DateTime<Utc>> {
    headers
        .get(DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date)
}

/// An HTTP-date in any of the three forms RFC 9110 §5.6.7 says a recipient
/// must accept: IMF-fixdate, RFC 850 and asctime.
pub fn parse_http_date(text: &str) -> Option<DateTime<Utc>> {
    httpdate::parse_http_date(text.trim())
        .ok()
        .map(DateTime::<Utc>::from)
}

/// The wait a `Retry-After` value asks for: delay-seconds, or an HTTP-date
/// measured against `reference` (the response's own `Date` when it has one,
/// so that a provider clock off by minutes does not turn "in 1 s" into "in
/// 5 min" or "now"). A date in the past means "now"; garbage means no hint.
pub fn parse_retry_after(value: &str, reference: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly long digit strings saturate rather than fail.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = parse_http_date(value)?;
    Some((at - reference).to_std().unwrap_or(Duration::ZERO))
}

/// Where a throttle wait came from, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HintSource {
    RetryAfter,
    /// A [`ThrottleHint::QuotaReset`].
    QuotaReset,
    /// A [`ThrottleHint::Window`].
    Window,
}

impl HintSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RetryAfter => "retry-after",
            Self::QuotaReset => "quota-reset",
            Self::Window => "throttle-window",
        }
    }
}

/// How long the response's headers say to wait, if they say: `Retry-After`
/// first, then the element's `hints`. `now` is the local clock, used only
/// when the response has no `Date`.
pub fn wait_hint(
    headers: &HeaderMap,
    hints: &[ThrottleHint],
    now: DateTime<Utc>,
) -> Option<(Duration, HintSource)> {
    let reference = provider_date(headers).unwrap_or(now);
    if let Some(wait) = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, reference))
    {
        return Some((wait, HintSource::RetryAfter));
    }
    quota_hint(headers, hints, reference)
}

/// The longest wait any exhausted quota or throttle asks for. A used-up
/// quota with a reset time wins outright: it is the longer wait by nature.
/// Headers that cannot be understood give no hint, and the caller falls
/// back to backoff.
fn quota_hint(
    headers: &HeaderMap,
    hints: &[ThrottleHint],
    reference: DateTime<Utc>,
) -> Option<(Duration, HintSource)> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let exhausted = |name: &str| get(name).and_then(|v| v.parse::<i64>().ok()) == Some(0);

    for hint in hints {
        if let ThrottleHint::QuotaReset { available, reset } = hint
            && exhausted(available)
            && let Some(at) = get(reset).and_then(parse_epoch_or_date)
        {
            let wait = (at - reference).to_std().unwrap_or(Duration::ZERO);
            return Some((wait, HintSource::QuotaReset));
        }
    }
    let mut wait: Option<Duration> = None;
    for hint in hints {
        let ThrottleHint::Window {
            available,
            time_unit,
            interval,
        } = hint
        else {
            continue;
        };
        if !exhausted(available) {
            continue;
        }
        let Some(unit) = get(time_unit).and_then(unit_seconds) else {
            continue;
        };
        let interval = get(interval)
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(1);
        let window = unit.saturating_mul(interval);
        let into = reference.timestamp().rem_euclid(window);
        let w = Duration::from_secs(u64::try_from(window - into).unwrap_or(1));
        wait = Some(wait.map_or(w, |have| have.max(w)));
    }
    wait.map(|w| (w, HintSource::Window))
}

fn unit_seconds(unit: &str) -> Option<i64> {
    match unit.to_ascii_lowercase().trim_end_matches('s') {
        "second" => Some(1),
        "minute" => Some(60),
        "hour" => Some(3600),
        "day" => Some(86_400),
        _ => None,
    }
}

/// Epoch milliseconds (Keap), epoch seconds (small numbers), RFC 3339 or an
/// HTTP-date.
fn parse_epoch_or_date(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(n) = text.parse::<i64>() {
        // Epoch seconds stay below 10^11 until the year 5138.
        return if n.abs() >= 100_000_000_000 {
            DateTime::from_timestamp_millis(n)
        } else {
            DateTime::from_timestamp(n, 0)
        };
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| parse_http_date(text))
}

/// `d` as whole milliseconds, for log fields.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;
    use crate::element::{ConnectionMode, element};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn keap_hints() -> Vec<ThrottleHint> {
        element("infusionsoftecommerce", ConnectionMode::Direct)
            .unwrap()
            .throttle_hints
    }

    #[test]
    fn retry_after_seconds() {
        let now = Utc::now();
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn retry_after_http_date_in_all_three_forms() {
        let reference = at("1994-11-06T08:49:30Z");
        for text in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                parse_retry_after(text, reference),
                Some(Duration::from_secs(7)),
                "{text}"
            );
        }
        // In the past: go now.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", reference),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_garbage_is_no_hint() {
        let now = Utc::now();
        for text in [
            "",
            "soon",
            "-5",
            "1.5",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "1e3",
        ] {
            assert_eq!(parse_retry_after(text, now), None, "{text:?}");
        }
    }

    #[test]
    fn retry_after_date_is_read_against_the_providers_clock() {
        // The provider's clock runs 5 minutes ahead of ours: "at 10:05:02"
        // with "Date: 10:05:00" means two seconds, not five minutes.
        let mut h = HeaderMap::new();
        h.insert(
            DATE,
            HeaderValue::from_static("Tue, 01 Oct 2024 10:05:00 GMT"),
        );
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Tue, 01 Oct 2024 10:05:02 GMT"),
        );
        let local = at("2024-10-01T10:00:00Z");
        assert_eq!(
            wait_hint(&h, &[], local),
            Some((Duration::from_secs(2), HintSource::RetryAfter))
        );
    }

    #[test]
    fn keap_throttle_waits_for_the_next_window() {
        let mut h = HeaderMap::new();
        h.insert(
            DATE,
            HeaderValue::from_static("Tue, 01 Oct 2024 10:05:45 GMT"),
        );
        h.insert(
            "x-keap-product-throttle-available",
            HeaderValue::from_static("0"),
        );
        h.insert(
            "x-keap-product-throttle-time-unit",
            HeaderValue::from_static("minute"),
        );
        h.insert(
            "x-keap-product-throttle-interval",
            HeaderValue::from_static("1"),
        );
        h.insert(
            "x-keap-tenant-throttle-available",
            HeaderValue::from_static("12"),
        );
        assert_eq!(
            wait_hint(&h, &keap_hints(), Utc::now()),
            Some((Duration::from_secs(15), HintSource::Window))
        );
        // An element without these hints does not read Keap's headers.
        assert_eq!(wait_hint(&h, &[], Utc::now()), None);
        // Unknown unit: no hint, plain backoff.
        h.insert(
            "x-keap-product-throttle-time-unit",
            HeaderValue::from_static("fortnight"),
        );
        assert_eq!(wait_hint(&h, &keap_hints(), Utc::now()), None);
    }

    #[test]
    fn keap_daily_quota_waits_for_expiry() {
        let mut h = HeaderMap::new();
        h.insert(
            DATE,
            HeaderValue::from_static("Tue, 01 Oct 2024 23:59:00 GMT"),
        );
        h.insert(
            "x-keap-product-quota-available",
            HeaderValue::from_static("0"),
        );
        let midnight = at("2024-10-02T00:00:00Z").timestamp_millis().to_string();
        h.insert(
            "x-keap-product-quota-expiry-time",
            HeaderValue::from_str(&midnight).unwrap(),
        );
        assert_eq!(
            wait_hint(&h, &keap_hints(), Utc::now()),
            Some((Duration::from_secs(60), HintSource::QuotaReset))
        );
    }
}
