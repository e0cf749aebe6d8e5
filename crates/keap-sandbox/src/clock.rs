//! The provider's clock and the provider's date formats.
//!
//! Every timestamp the sandbox writes (order dates, token expiry, the
//! `Date` header on throttled responses) comes from one [`Clock`]: real time,
//! or a frozen instant for reproducible tests, plus an offset that
//! `PUT /_sandbox/clock` changes. A positive offset is a provider whose clock
//! runs ahead of ours, which is exactly the skew a poller must survive.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, NaiveDate, SubsecRound, TimeDelta, Utc};

/// Real time (or a frozen instant) shifted by an adjustable offset.
#[derive(Debug)]
pub struct Clock {
    /// `Some` pins "real time" to this instant so tests get identical dates.
    frozen: Option<DateTime<Utc>>,
    /// Seconds added to real time; atomic because control requests change it
    /// while data requests read it.
    offset_seconds: AtomicI64,
}

impl Clock {
    pub fn new(frozen: Option<DateTime<Utc>>) -> Self {
        Self {
            frozen,
            offset_seconds: AtomicI64::new(0),
        }
    }

    /// The provider's "now".
    pub fn now(&self) -> DateTime<Utc> {
        let base = self.frozen.unwrap_or_else(Utc::now);
        let offset = self.offset_seconds.load(Ordering::Relaxed);
        base.checked_add_signed(TimeDelta::seconds(offset))
            .unwrap_or(base)
    }

    pub fn offset_seconds(&self) -> i64 {
        self.offset_seconds.load(Ordering::Relaxed)
    }

    pub fn set_offset_seconds(&self, offset: i64) {
        self.offset_seconds.store(offset, Ordering::Relaxed);
    }
}

/// How finely the store records modification dates.
///
/// Keap keeps order dates in whole seconds (its JSON always shows `.000`),
/// so orders written within one second share a `modification_date`. That is
/// the faithful default; `Millis` exists for demos that want every change to
/// carry a distinct date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    Seconds,
    Millis,
}

impl Precision {
    pub fn apply(self, t: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Precision::Seconds => t.trunc_subsecs(0),
            Precision::Millis => t.trunc_subsecs(3),
        }
    }
}

/// Formats a timestamp the way Keap REST v1 returns order dates:
/// `2019-10-25T18:53:10.000+0000`.
///
/// Keap's REST service is a Java application whose JSON comes from Jackson;
/// Jackson's classic default (`StdDateFormat`) writes
/// `yyyy-MM-dd'T'HH:mm:ss.SSSZ`: milliseconds (always `.000`, the database
/// keeps seconds) and an offset without a colon, in UTC. Keap's published
/// OpenAPI shows only placeholder dates and its query examples use
/// `2017-01-01T22:17:59.039Z`, so this exact output form could not be checked
/// against a live account; it is the form integrators report. A poller must
/// accept `+0000` as well as `Z` and `+00:00` anyway.
pub fn format_keap(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) for `Retry-After` and
/// `Date` headers.
pub fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Parses a date given by a client (`since`, `until`, CEQL literals).
///
/// Accepted: RFC 3339 with or without fractional seconds (`Z`, `+00:00`),
/// the Keap/Jackson form with a colon-less offset (`+0000`), and a bare date
/// (`2019-10-25`, midnight UTC). A `+` that arrived unencoded in a query
/// string has become a space by now; that is rejected, like the real
/// provider rejects it, so clients must percent-encode.
///
/// # Errors
/// A human-readable reason when the text is none of the forms above.
pub fn parse_client_date(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for pattern in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z"] {
        if let Ok(t) = DateTime::parse_from_str(text, pattern) {
            return Ok(t.with_timezone(&Utc));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(t.and_utc());
    }
    Err(format!(
        "'{text}' is not a date; use e.g. 2019-10-25T18:53:10.000Z, \
         2019-10-25T18:53:10+00:00 or 2019-10-25T18:53:10.000+0000 (percent-encode '+')"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn keap_format_has_millis_and_colonless_offset() {
        let t = Utc.with_ymd_and_hms(2019, 10, 25, 18, 53, 10).unwrap();
        assert_eq!(format_keap(t), "2019-10-25T18:53:10.000+0000");
    }

    #[test]
    fn client_dates_in_every_common_form() {
        let want = Utc.with_ymd_and_hms(2019, 10, 25, 18, 53, 10).unwrap();
        for text in [
            "2019-10-25T18:53:10Z",
            "2019-10-25T18:53:10.000Z",
            "2019-10-25T18:53:10+00:00",
            "2019-10-25T18:53:10.000+0000",
            "2019-10-25T18:53:10+0000",
            "2019-10-25T20:53:10+02:00",
        ] {
            assert_eq!(parse_client_date(text), Ok(want), "{text}");
        }
        assert_eq!(
            parse_client_date("2019-10-25"),
            Ok(Utc.with_ymd_and_hms(2019, 10, 25, 0, 0, 0).unwrap())
        );
    }

    #[test]
    fn garbage_and_unencoded_plus_are_rejected() {
        for text in ["", "yesterday", "2019-10-25T18:53:10 00:00", "2019-13-01"] {
            assert!(parse_client_date(text).is_err(), "{text}");
        }
    }

    #[test]
    fn frozen_clock_moves_only_with_the_offset() {
        let t = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap();
        let clock = Clock::new(Some(t));
        assert_eq!(clock.now(), t);
        clock.set_offset_seconds(-60);
        assert_eq!(clock.now(), t - TimeDelta::seconds(60));
    }

    #[test]
    fn http_date_is_imf_fixdate() {
        let t = Utc.with_ymd_and_hms(1994, 11, 6, 8, 49, 37).unwrap();
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
