//! Time zones as Java's `ZoneId.of(id, ZoneId.SHORT_IDS)` understands them.

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc,
};
use chrono_tz::Tz;

/// The zone a date is rendered in, or in which an offset-less date is read.
///
/// Parsed from the configuration with [`Zone::parse`]; `Display` prints a
/// string that parses back to an equal `Zone`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Zone {
    /// UTC (also what `GMT`, `UT` and `Z` mean).
    #[default]
    Utc,
    /// A fixed offset such as `+05:30` (also `EST`, `MST`, `HST`, `GMT+5`).
    Fixed(FixedOffset),
    /// An IANA region with its daylight-saving rules, such as `America/New_York`.
    Named(Tz),
}

/// A zone id that [`Zone::parse`] does not understand.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    #[error(
        "unknown time zone {input:?}: expected UTC, an IANA id such as Europe/Paris, \
         an offset such as +05:30 or GMT+5, or a Java short id such as PST"
    )]
    Unknown { input: String },
    #[error("invalid offset in time zone {input:?}: {reason}")]
    InvalidOffset { input: String, reason: &'static str },
}

/// Java's `ZoneId.SHORT_IDS`, complete. Three of them are fixed offsets in
/// Java (not the IANA zones of the same name), so `EST` never observes DST.
const SHORT_IDS: [(&str, ShortId); 28] = [
    ("ACT", ShortId::Region("Australia/Darwin")),
    ("AET", ShortId::Region("Australia/Sydney")),
    ("AGT", ShortId::Region("America/Argentina/Buenos_Aires")),
    ("ART", ShortId::Region("Africa/Cairo")),
    ("AST", ShortId::Region("America/Anchorage")),
    ("BET", ShortId::Region("America/Sao_Paulo")),
    ("BST", ShortId::Region("Asia/Dhaka")),
    ("CAT", ShortId::Region("Africa/Harare")),
    ("CNT", ShortId::Region("America/St_Johns")),
    ("CST", ShortId::Region("America/Chicago")),
    ("CTT", ShortId::Region("Asia/Shanghai")),
    ("EAT", ShortId::Region("Africa/Addis_Ababa")),
    ("ECT", ShortId::Region("Europe/Paris")),
    ("EST", ShortId::Offset(-5 * 3600)),
    ("HST", ShortId::Offset(-10 * 3600)),
    ("IET", ShortId::Region("America/Indiana/Indianapolis")),
    ("IST", ShortId::Region("Asia/Kolkata")),
    ("JST", ShortId::Region("Asia/Tokyo")),
    ("MIT", ShortId::Region("Pacific/Apia")),
    ("MST", ShortId::Offset(-7 * 3600)),
    ("NET", ShortId::Region("Asia/Yerevan")),
    ("NST", ShortId::Region("Pacific/Auckland")),
    ("PLT", ShortId::Region("Asia/Karachi")),
    ("PNT", ShortId::Region("America/Phoenix")),
    ("PRT", ShortId::Region("America/Puerto_Rico")),
    ("PST", ShortId::Region("America/Los_Angeles")),
    ("SST", ShortId::Region("Pacific/Guadalcanal")),
    ("VST", ShortId::Region("Asia/Ho_Chi_Minh")),
];

#[derive(Clone, Copy)]
enum ShortId {
    Region(&'static str),
    Offset(i32),
}

/// Java's largest offset, ±18:00.
const MAX_OFFSET_SECONDS: i32 = 18 * 3600;

impl Zone {
    /// Parses a zone id the way Java's `ZoneId.of(id, ZoneId.SHORT_IDS)` does.
    ///
    /// Accepted, case-sensitive as in Java: `UTC`, `GMT`, `UT`, `Z`; offsets
    /// `+h`, `+hh`, `+hhmm`, `+hh:mm`, `+hhmmss`, `+hh:mm:ss` (up to ±18:00),
    /// alone or after `UTC`, `GMT` or `UT` (`GMT+5`, `UTC-03:30`); the short
    /// ids of `ZoneId.SHORT_IDS` (`EST` is -05:00, `PST` is
    /// America/Los_Angeles); IANA ids (`Asia/Kolkata`).
    pub fn parse(s: &str) -> Result<Zone, ZoneError> {
        if matches!(s, "UTC" | "GMT" | "UT" | "Z") {
            return Ok(Zone::Utc);
        }
        if s.starts_with(['+', '-']) {
            return parse_offset_id(s, s).map(Zone::Fixed);
        }
        for prefix in ["UTC", "GMT", "UT"] {
            if let Some(rest) = s.strip_prefix(prefix)
                && rest.starts_with(['+', '-'])
            {
                return parse_offset_id(rest, s).map(Zone::Fixed);
            }
        }
        if let Some((_, short)) = SHORT_IDS.iter().find(|(id, _)| *id == s) {
            return match *short {
                ShortId::Region(name) => {
                    name.parse::<Tz>().map(Zone::Named).map_err(|_| unknown(s))
                }
                ShortId::Offset(seconds) => FixedOffset::east_opt(seconds)
                    .map(Zone::Fixed)
                    .ok_or_else(|| unknown(s)),
            };
        }
        s.parse::<Tz>().map(Zone::Named).map_err(|_| unknown(s))
    }

    /// The offset from UTC in effect in this zone at `instant`.
    pub fn offset_at(&self, instant: DateTime<Utc>) -> FixedOffset {
        match self {
            Zone::Utc => Utc.fix(),
            Zone::Fixed(offset) => *offset,
            Zone::Named(tz) => {
                let utc = same_rules_year(instant.naive_utc());
                tz.offset_from_utc_datetime(&utc).fix()
            }
        }
    }

    /// The offsets this zone uses at a local date-time: one, two in a
    /// daylight-saving overlap (earlier instant first), none in a gap.
    pub(super) fn offsets_at_local(&self, local: NaiveDateTime) -> LocalResult<FixedOffset> {
        match self {
            Zone::Utc => LocalResult::Single(Utc.fix()),
            Zone::Fixed(offset) => LocalResult::Single(*offset),
            Zone::Named(tz) => tz
                .offset_from_local_datetime(&same_rules_year(local))
                .map(|offset| offset.fix()),
        }
    }
}

/// chrono-tz tabulates transitions only up to 2099 and then keeps the last
/// offset forever (New York would stay on standard time), whereas Java
/// applies the zone's recurring rule. So for 2100 onwards we look the
/// offset up on the same date and time of a year in 2072..=2099 that has the
/// same calendar (leap or not, same weekday on January 1): "second Sunday in
/// March" falls on the same date in both, so the recurring rule gives the
/// same offset.
fn same_rules_year(at: NaiveDateTime) -> NaiveDateTime {
    const LAST_TABULATED_YEAR: i32 = 2099;
    let year = at.year();
    if year <= LAST_TABULATED_YEAR {
        return at;
    }
    let calendar =
        |y: i32| NaiveDate::from_ymd_opt(y, 1, 1).map(|jan1| (jan1.leap_year(), jan1.weekday()));
    let wanted = calendar(year);
    // 28 consecutive years without a skipped leap day hold every calendar.
    (LAST_TABULATED_YEAR - 27..=LAST_TABULATED_YEAR)
        .find(|&y| calendar(y) == wanted)
        .and_then(|y| at.with_year(y))
        .unwrap_or(at)
}

fn unknown(input: &str) -> ZoneError {
    ZoneError::Unknown {
        input: input.to_owned(),
    }
}

/// Parses the signed part of an offset id (`+5`, `-08:00`, `+053000`) with
/// the lengths `java.time.ZoneOffset.of` accepts. `input` is the whole id,
/// for the error message.
fn parse_offset_id(signed: &str, input: &str) -> Result<FixedOffset, ZoneError> {
    let invalid = |reason| ZoneError::InvalidOffset {
        input: input.to_owned(),
        reason,
    };
    let bytes = signed.as_bytes();
    let negative = bytes.first() == Some(&b'-');
    let body = bytes.get(1..).unwrap_or_default();
    let field = |at: usize| -> Option<i32> {
        match body.get(at..at + 2)? {
            [a @ b'0'..=b'9', b @ b'0'..=b'9'] => {
                Some(i32::from(a - b'0') * 10 + i32::from(b - b'0'))
            }
            _ => None,
        }
    };
    let parts = match body {
        [h @ b'0'..=b'9'] => Some((i32::from(h - b'0'), 0, 0)),
        [_, _] => field(0).map(|h| (h, 0, 0)),
        [_, _, _, _] => field(0).zip(field(2)).map(|(h, m)| (h, m, 0)),
        [_, _, b':', _, _] => field(0).zip(field(3)).map(|(h, m)| (h, m, 0)),
        [_, _, _, _, _, _] => field(0)
            .zip(field(2))
            .zip(field(4))
            .map(|((h, m), s)| (h, m, s)),
        [_, _, b':', _, _, b':', _, _] => field(0)
            .zip(field(3))
            .zip(field(6))
            .map(|((h, m), s)| (h, m, s)),
        _ => None,
    };
    let (hours, minutes, seconds) =
        parts.ok_or_else(|| invalid("expected +h, +hh, +hhmm, +hh:mm, +hhmmss or +hh:mm:ss"))?;
    if minutes > 59 || seconds > 59 {
        return Err(invalid("minutes and seconds must be below 60"));
    }
    let total = hours * 3600 + minutes * 60 + seconds;
    if total > MAX_OFFSET_SECONDS {
        return Err(invalid("offsets are limited to ±18:00"));
    }
    let total = if negative { -total } else { total };
    FixedOffset::east_opt(total).ok_or_else(|| invalid("offsets are limited to ±18:00"))
}

impl FromStr for Zone {
    type Err = ZoneError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Zone::parse(s)
    }
}

impl fmt::Display for Zone {
    /// `UTC`, `+05:30` (`+05:30:15` with seconds), or the IANA id; each
    /// parses back to an equal `Zone`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Utc => f.write_str("UTC"),
            Zone::Named(tz) => f.write_str(tz.name()),
            Zone::Fixed(offset) => {
                let total = offset.local_minus_utc();
                let sign = if total < 0 { '-' } else { '+' };
                let abs = total.unsigned_abs();
                write!(f, "{sign}{:02}:{:02}", abs / 3600, abs / 60 % 60)?;
                if abs % 60 != 0 {
                    write!(f, ":{:02}", abs % 60)?;
                }
                Ok(())
            }
        }
    }
}
