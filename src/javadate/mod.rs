//! Java date patterns (`yyyy-MM-dd'T'HH:mm:ssXXX`), compiled once into a
//! formatter and parser with the semantics of Java's `DateTimeFormatter`
//! (`DateTimeFormatter.ofPattern(p, Locale.ENGLISH)`).
//!
//! Element definitions and instance files carry Java patterns, so we read
//! them the way Java does instead of translating them to strftime: the same
//! pattern must print the same text the Java connector printed, and must read
//! what providers send.
//!
//! # Supported letters
//!
//! | letters | meaning | formats as |
//! |---|---|---|
//! | `yyyy` | year-of-era, at least 4 digits | `2024`, `0005`, `+12345` |
//! | `yy` | last two digits of the year-of-era; parsed as 2000..=2099 | `24` |
//! | `y`, `yyy` | year-of-era, at least 1 / 3 digits | `2024`, `005` |
//! | `MM`, `M` | month, 2 digits / no padding | `01`, `1` |
//! | `MMM`, `MMMM` | English month name | `Jan`, `January` |
//! | `dd`, `d` | day of month | `05`, `5` |
//! | `HH`, `H` | hour of day 0–23 | `07`, `7` |
//! | `hh`, `h` | clock hour of am/pm 1–12 | `12`, `7` |
//! | `a` | am/pm | `AM`, `PM` |
//! | `mm`, `m` | minute | `03`, `3` |
//! | `ss`, `s` | second | `09`, `9` |
//! | `S`…`SSSSSSSSS` | fraction of second, 1 to 9 digits, truncated | `123` |
//! | `E`, `EE`, `EEE`, `EEEE` | English day name | `Mon`, `Monday` |
//! | `X`, `XX`, `XXX` | offset, `Z` at zero | `+0530`/`+05`, `+0530`, `+05:30` |
//! | `x`, `xx`, `xxx` | offset | `+00`, `+0000`, `+00:00` |
//! | `Z`, `ZZ`, `ZZZ` | offset | `+0000`, `+0530` |
//! | `ZZZZZ` | offset, `Z` at zero, seconds if any | `+05:30` |
//! | `'text'`, `''` | literal text, a single quote | `T`, `'` |
//!
//! Any other character except `[ ] { } #` (Java's optional sections and
//! reserved characters) is a literal. Every other ASCII letter, and any other
//! count of a supported letter (`MMMMM`, `XXXX`, `ddd`, `aa`), is a
//! [`PatternError`] naming the letter and its position, as Java refuses them
//! too; letters Java knows but we do not support (`u`, `G`, `k`, `VV`, …) say
//! what they mean to Java.
//!
//! # DateTimeFormatter, not SimpleDateFormat
//!
//! Patterns follow `DateTimeFormatter`. Where `SimpleDateFormat` differs:
//! `S` is a fraction here (SimpleDateFormat: a millisecond count, so `SSSSSS`
//! would print `000123`); `X` prints `+0530` for a half-hour offset
//! (SimpleDateFormat: `+05`); `x` and `ZZZZZ` do not exist there; `yy` parses
//! as 2000..=2099 (SimpleDateFormat: within 80 years before / 20 after now);
//! `aa` is an error (SimpleDateFormat accepts it). `u` means year to
//! DateTimeFormatter but day-of-week number to SimpleDateFormat, so it is
//! refused rather than guessed.
//!
//! # Parsing
//!
//! One pass over the bytes, no regex and no allocation unless it fails.
//! Lenient where providers disagree with their own documentation:
//!
//! - any offset letter accepts any offset form: `Z` (or `z`), `+hh`, `+hhmm`,
//!   `+hh:mm`, `+hhmmss`, `+hh:mm:ss`, up to ±18:00;
//! - `ss` followed by an offset letter, a literal starting with `Z` (`'Z'`)
//!   or the end of the pattern also takes an optional `.` and 1–9 fraction
//!   digits (`…:10.000+0000` for `…:ssXXX`);
//! - a fraction written `.S…` (or `,S…`) is optional as a whole, and takes 1–9
//!   digits whatever its letter count, unless another number follows directly
//!   (`ssSSSHH`), where the exact count is needed to find the boundary;
//! - month, day and am/pm names match ASCII case-insensitively (`jan`, `pm`).
//!
//! Strict everywhere else, as Java's `ResolverStyle.STRICT`: a day that does
//! not exist (April 31, February 29 of a common year; Java's default resolver
//! would silently move it to the month's last day), hour 24, second 60,
//! month 13, a day name that does not match the date, `HH` and `a` that
//! disagree, trailing text: all errors. `hh` needs `a`. Time fields missing at
//! the end are zero (`yyyy-MM-dd HH` → minute 0; `yyyy-MM-dd` → midnight),
//! a gap (minutes without hours) is an error; year, month and day are required.
//!
//! Without an offset letter (a quoted `'Z'` is only text) the local time is
//! read in the `default_zone` given to [`JavaDateFormat::parse`]:
//!
//! - in a daylight-saving *overlap* (a local time that happens twice) the
//!   earlier offset wins, i.e. the earlier instant, as in Java;
//! - in a daylight-saving *gap* (a local time that never happens) parsing
//!   fails with [`ParseError::NonexistentLocalTime`]. Java would shift the
//!   time forward by the gap; we refuse because such a time can only come from
//!   a wrong zone setting or a broken provider, and a shifted time would be a
//!   silently wrong event time.
//!
//! # Zones
//!
//! [`Zone::parse`] reads ids as Java's `ZoneId.of(id, ZoneId.SHORT_IDS)`.
//! chrono-tz tabulates daylight-saving transitions only up to 2099; from 2100
//! on we apply the rules of an equivalent year (see `zone.rs`), so offsets
//! keep following the zone's rules as in Java instead of freezing. Instants
//! within a day of chrono's limits (year ±262143) whose local time cannot be
//! represented are formatted in UTC.

mod format;
mod letters;
mod names;
mod parse;
mod pattern;
mod zone;

#[cfg(test)]
mod tests;

use std::fmt;

use chrono::{DateTime, FixedOffset, Utc};

pub use parse::ParseError;
pub use pattern::PatternError;
pub use zone::{Zone, ZoneError};

/// A Java date pattern compiled once; format and parse as often as needed.
#[derive(Clone, PartialEq, Eq)]
pub struct JavaDateFormat {
    pattern: Box<str>,
    compiled: pattern::Compiled,
}

impl JavaDateFormat {
    /// Compiles `pattern`, refusing letters and counts we do not support
    /// (see the module documentation) rather than printing something else.
    pub fn compile(pattern: &str) -> Result<Self, PatternError> {
        Ok(JavaDateFormat {
            compiled: pattern::compile(pattern)?,
            pattern: pattern.into(),
        })
    }

    /// The pattern as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether the pattern has an offset letter (`X`, `x` or `Z`). Without
    /// one, [`parse`](Self::parse) reads local times in the default zone.
    pub fn has_offset(&self) -> bool {
        self.compiled.has_offset
    }

    /// `instant` as seen in `zone`, printed like Java's
    /// `DateTimeFormatter.ofPattern(pattern, Locale.ENGLISH).withZone(zone)`.
    /// Allocates only the returned string.
    pub fn format(&self, instant: DateTime<Utc>, zone: &Zone) -> String {
        format::format(&self.compiled.tokens, self.compiled.max_len, instant, zone)
    }

    /// Reads `text` (see the module documentation for what is accepted).
    /// The result carries the offset from the text, or the offset of
    /// `default_zone` at that local time when the pattern has none.
    pub fn parse(
        &self,
        text: &str,
        default_zone: &Zone,
    ) -> Result<DateTime<FixedOffset>, ParseError> {
        parse::parse(&self.compiled, &self.pattern, text, default_zone)
    }
}

impl fmt::Debug for JavaDateFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JavaDateFormat")
            .field(&self.pattern)
            .finish()
    }
}
