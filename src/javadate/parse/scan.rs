//! Reading one field at the cursor: numbers, names, offsets.

use std::fmt::Display;

use super::{Cursor, ParseError};
use crate::javadate::names::match_name;
use crate::javadate::pattern::Width;

/// A numeric field: its name in messages, what to say when its digits are
/// missing, and its valid range.
pub(super) struct NumericField {
    name: &'static str,
    one: &'static str,
    two: &'static str,
    low: u32,
    high: u32,
    range: &'static str,
}

pub(super) const MONTH: NumericField = NumericField {
    name: "month",
    one: "month (M)",
    two: "two-digit month (MM)",
    low: 1,
    high: 12,
    range: "1..=12",
};
pub(super) const DAY: NumericField = NumericField {
    name: "day",
    one: "day (d)",
    two: "two-digit day (dd)",
    low: 1,
    high: 31,
    range: "1..=31",
};
pub(super) const HOUR24: NumericField = NumericField {
    name: "hour",
    one: "hour (H)",
    two: "two-digit hour (HH)",
    low: 0,
    high: 23,
    range: "0..=23",
};
pub(super) const HOUR12: NumericField = NumericField {
    name: "clock hour",
    one: "clock hour (h)",
    two: "two-digit clock hour (hh)",
    low: 1,
    high: 12,
    range: "1..=12",
};
pub(super) const MINUTE: NumericField = NumericField {
    name: "minute",
    one: "minute (m)",
    two: "two-digit minute (mm)",
    low: 0,
    high: 59,
    range: "0..=59",
};
pub(super) const SECOND: NumericField = NumericField {
    name: "second",
    one: "second (s)",
    two: "two-digit second (ss)",
    low: 0,
    high: 59,
    range: "0..=59",
};

const MAX_OFFSET_SECONDS: u32 = 18 * 3600;
const OFFSET: &str = "offset (Z, +hh, +hhmm or +hh:mm)";

impl Cursor<'_> {
    pub(super) fn rest(&self) -> &[u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }

    pub(super) fn digit_count(&self) -> usize {
        self.rest()
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    }

    /// Reads `min..=max` ASCII digits (`max` `None`: all there are, less the
    /// `reserve` digits that the fixed-width fields right after need).
    pub(super) fn number(
        &mut self,
        min: usize,
        max: Option<usize>,
        reserve: usize,
        what: &str,
    ) -> Result<u32, ParseError> {
        let available = self.digit_count();
        let take = match max {
            Some(max) => available.min(max),
            None => available.saturating_sub(reserve),
        };
        if take < min {
            return Err(self.expected(what));
        }
        if take > 9 {
            return Err(self.expected(&format!("{what} of at most 9 digits")));
        }
        let value = self
            .rest()
            .iter()
            .take(take)
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
        self.pos += take;
        Ok(value)
    }

    /// A numeric field, checked against its range.
    pub(super) fn field(
        &mut self,
        field: &NumericField,
        width: Width,
        reserve: usize,
    ) -> Result<u32, ParseError> {
        let start = self.pos;
        let value = match width {
            Width::Two => self.number(2, Some(2), 0, field.two)?,
            Width::Variable => self.number(1, None, reserve, field.one)?,
        };
        if !(field.low..=field.high).contains(&value) {
            self.pos = start;
            return Err(self.out_of_range(field.name, value, field.range));
        }
        Ok(value)
    }

    /// `y` and `yyy` take at least that many digits; `yyyy` takes exactly
    /// four, or a `+` and more than four (Java's `EXCEEDS_PAD`).
    pub(super) fn year(&mut self, min_width: usize, reserve: usize) -> Result<i32, ParseError> {
        let start = self.pos;
        let year = if min_width != 4 {
            self.number(min_width, None, reserve, "year (y)")?
        } else if self.rest().first() == Some(&b'+') {
            self.pos += 1;
            self.number(5, None, reserve, "more than 4 year digits after +")?
        } else if self.digit_count().saturating_sub(reserve) > 4 {
            return Err(self.expected("four-digit year (a longer year needs a leading +)"));
        } else {
            self.number(4, Some(4), 0, "four-digit year (yyyy)")?
        };
        if year == 0 {
            self.pos = start;
            return Err(self.out_of_range("year", year, "1..=262142"));
        }
        Ok(year as i32)
    }

    /// `min..=max` fraction digits, as nanoseconds.
    pub(super) fn fraction(&mut self, min: usize, max: usize) -> Result<u32, ParseError> {
        let available = self.digit_count();
        if available < min || (min != max && available > max) {
            let what = if min == max {
                format!("{min} fraction digits")
            } else {
                format!("{min} to {max} fraction digits")
            };
            return Err(self.expected(&what));
        }
        let take = available.min(max);
        let value = self.number(take, Some(take), 0, "fraction digits")?;
        Ok(value * 10u32.pow(9 - take as u32))
    }

    /// One of `names`, ASCII case-insensitively; returns its index.
    pub(super) fn name(&mut self, names: &[&str], what: &str) -> Result<usize, ParseError> {
        let (index, len) = match_name(self.rest(), names).ok_or_else(|| self.expected(what))?;
        self.pos += len;
        Ok(index)
    }

    /// Any offset form, whatever the pattern letter: `Z`, `+hh`, `+hhmm`,
    /// `+hh:mm`, `+hhmmss`, `+hh:mm:ss`, up to ±18:00.
    pub(super) fn offset(&mut self) -> Result<i32, ParseError> {
        let start = self.pos;
        let negative = match self.rest().first() {
            Some(b'Z' | b'z') => {
                self.pos += 1;
                return Ok(0);
            }
            Some(b'+') => false,
            Some(b'-') => true,
            _ => return Err(self.expected(OFFSET)),
        };
        self.pos += 1;
        let hours = match self.number(2, Some(2), 0, OFFSET) {
            Ok(hours) => hours,
            Err(_) => {
                self.pos = start;
                return Err(self.expected(OFFSET));
            }
        };
        let colon = self.rest().first() == Some(&b':');
        let minutes = self.offset_part(colon)?;
        let seconds = match minutes {
            Some(_) => self.offset_part(colon)?,
            None => None,
        };
        let (minutes, seconds) = (minutes.unwrap_or(0), seconds.unwrap_or(0));
        let total = hours * 3600 + minutes * 60 + seconds;
        if minutes > 59 || seconds > 59 || total > MAX_OFFSET_SECONDS {
            let shown = self.bytes.get(start..self.pos).unwrap_or_default();
            let shown = String::from_utf8_lossy(shown).into_owned();
            self.pos = start;
            return Err(self.out_of_range("offset", shown, "-18:00..=+18:00"));
        }
        let total = total as i32;
        Ok(if negative { -total } else { total })
    }

    /// Two more digits of an offset (after a `:` when the offset uses
    /// colons), or `None` when they are not there.
    pub(super) fn offset_part(&mut self, colon: bool) -> Result<Option<u32>, ParseError> {
        let skip = usize::from(colon);
        let rest = self.rest();
        if colon && rest.first() != Some(&b':') {
            return Ok(None);
        }
        let digits = rest
            .iter()
            .skip(skip)
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits < 2 {
            return Ok(None);
        }
        self.pos += skip;
        self.number(2, Some(2), 0, OFFSET).map(Some)
    }

    /// Stores a field, refusing a second, different value (`yyyy … yyyy`).
    pub(super) fn set<T: PartialEq + Display>(
        &self,
        slot: &mut Option<T>,
        value: T,
        field: &str,
    ) -> Result<(), ParseError> {
        match slot {
            Some(old) if *old != value => Err(self.conflict(format!(
                "{field} {value} differs from {field} {old} read earlier"
            ))),
            _ => {
                *slot = Some(value);
                Ok(())
            }
        }
    }
}
