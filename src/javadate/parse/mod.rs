//! Parsing text with compiled tokens: one left-to-right pass over the bytes
//! (no regex, no allocation unless it fails), then a strict resolve step.

mod error;
mod resolve;
mod scan;

use chrono::{DateTime, FixedOffset, Weekday};

use super::names::{AM_PM, DAYS_FULL, DAYS_SHORT, MONTHS_FULL, MONTHS_SHORT};
use super::pattern::{Compiled, TextStyle, Token};
use super::zone::Zone;
use scan::{DAY, HOUR12, HOUR24, MINUTE, MONTH, SECOND};

pub use error::ParseError;

/// Fields read from the text, before they are checked against each other.
#[derive(Default)]
struct Fields {
    year: Option<i32>,
    month: Option<u32>,
    day: Option<u32>,
    hour24: Option<u32>,
    hour12: Option<u32>,
    am_pm: Option<&'static str>,
    minute: Option<u32>,
    second: Option<u32>,
    nano: Option<u32>,
    weekday: Option<Weekday>,
    offset_seconds: Option<i32>,
}

/// The text, the pattern and the position; builds errors that name all three.
struct Cursor<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pattern: &'a str,
    pos: usize,
}

pub(super) fn parse(
    compiled: &Compiled,
    pattern: &str,
    text: &str,
    zone: &Zone,
) -> Result<DateTime<FixedOffset>, ParseError> {
    let mut cur = Cursor {
        text,
        bytes: text.as_bytes(),
        pattern,
        pos: 0,
    };
    let mut fields = Fields::default();
    let tokens = &compiled.tokens;
    for (i, token) in tokens.iter().enumerate() {
        let reserve = compiled.reserve.get(i).copied().unwrap_or(0);
        let next_is_numeric = tokens.get(i + 1).is_some_and(Token::is_numeric);
        cur.token(token, reserve, next_is_numeric, &mut fields)?;
    }
    if cur.pos < cur.bytes.len() {
        return Err(ParseError::TrailingText {
            text: error::clip(text),
            pattern: pattern.to_owned(),
            position: cur.char_position(),
            found: cur.found(),
        });
    }
    cur.resolve(&fields, zone)
}

impl Cursor<'_> {
    fn token(
        &mut self,
        token: &Token,
        reserve: usize,
        next_is_numeric: bool,
        f: &mut Fields,
    ) -> Result<(), ParseError> {
        match token {
            Token::Literal(literal) => {
                if !self.rest().starts_with(literal.as_bytes()) {
                    return Err(self.expected(&format!("{literal:?}")));
                }
                self.pos += literal.len();
            }
            Token::YearTwoDigits => {
                let year = self.number(2, Some(2), 0, "two-digit year (yy)")?;
                self.set(&mut f.year, 2000 + year as i32, "year")?;
            }
            Token::Year { min_width } => {
                let year = self.year(usize::from(*min_width), reserve)?;
                self.set(&mut f.year, year, "year")?;
            }
            Token::MonthNumber(width) => {
                let month = self.field(&MONTH, *width, reserve)?;
                self.set(&mut f.month, month, "month")?;
            }
            Token::MonthText(style) => {
                let month = match style {
                    TextStyle::Short => {
                        self.name(&MONTHS_SHORT, "month abbreviation (Jan..Dec)")?
                    }
                    TextStyle::Full => self.name(&MONTHS_FULL, "month name (January..December)")?,
                };
                self.set(&mut f.month, month as u32 + 1, "month")?;
            }
            Token::Day(width) => {
                let day = self.field(&DAY, *width, reserve)?;
                self.set(&mut f.day, day, "day")?;
            }
            Token::Hour24(width) => {
                let hour = self.field(&HOUR24, *width, reserve)?;
                self.set(&mut f.hour24, hour, "hour")?;
            }
            Token::Hour12(width) => {
                let hour = self.field(&HOUR12, *width, reserve)?;
                self.set(&mut f.hour12, hour, "clock hour")?;
            }
            Token::Minute(width) => {
                let minute = self.field(&MINUTE, *width, reserve)?;
                self.set(&mut f.minute, minute, "minute")?;
            }
            Token::Second {
                width,
                optional_fraction,
            } => {
                let second = self.field(&SECOND, *width, reserve)?;
                self.set(&mut f.second, second, "second")?;
                if *optional_fraction && self.rest().first() == Some(&b'.') {
                    self.pos += 1;
                    let nano = self.fraction(1, 9)?;
                    self.set(&mut f.nano, nano, "fraction of second")?;
                }
            }
            Token::Fraction { digits, separator } => {
                if let Some(separator) = separator {
                    if self.rest().first() != Some(separator) {
                        // `.SSS` is optional as a whole: no separator, no fraction.
                        return Ok(());
                    }
                    self.pos += 1;
                }
                // Lenient about the number of digits unless another number
                // follows directly and needs the exact width to find its start.
                let nano = if next_is_numeric {
                    self.fraction(usize::from(*digits), usize::from(*digits))?
                } else {
                    self.fraction(1, 9)?
                };
                self.set(&mut f.nano, nano, "fraction of second")?;
            }
            Token::AmPm => {
                let index = self.name(&AM_PM, "AM or PM")?;
                let name = AM_PM.get(index).copied().unwrap_or_default();
                self.set(&mut f.am_pm, name, "AM/PM")?;
            }
            Token::Weekday(style) => {
                let index = match style {
                    TextStyle::Short => self.name(&DAYS_SHORT, "day abbreviation (Mon..Sun)")?,
                    TextStyle::Full => self.name(&DAYS_FULL, "day name (Monday..Sunday)")?,
                };
                let weekday = Weekday::try_from(index as u8).unwrap_or(Weekday::Mon);
                self.set(&mut f.weekday, weekday, "day of week")?;
            }
            Token::Offset(_) => {
                let offset = self.offset()?;
                self.set(&mut f.offset_seconds, offset, "offset in seconds")?;
            }
        }
        Ok(())
    }
}
