//! Unit and property tests for the `javadate` module.

mod format_cases;
mod parse_cases;
mod parse_errors;
mod pattern_cases;
mod properties;
mod zone_cases;

use chrono::{DateTime, FixedOffset, Utc};

use super::{JavaDateFormat, Zone};

/// A date-time from RFC 3339 text, or with a year beyond 9999 (`+12345-…`)
/// or an offset with seconds (`+05:30:15`), which RFC 3339 cannot express.
fn at_offset(text: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%::z"))
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%:z"))
        .unwrap_or_else(|e| panic!("bad test date-time {text}: {e}"))
}

/// An instant, written as for [`at_offset`].
fn at(text: &str) -> DateTime<Utc> {
    at_offset(text).with_timezone(&Utc)
}

fn zone(id: &str) -> Zone {
    Zone::parse(id).unwrap_or_else(|e| panic!("bad test zone {id}: {e}"))
}

fn compile(pattern: &str) -> JavaDateFormat {
    JavaDateFormat::compile(pattern).unwrap_or_else(|e| panic!("pattern {pattern:?}: {e}"))
}
