//! Formatting an instant with compiled tokens, writing straight into the
//! output string (no other allocation).

use chrono::{DateTime, Datelike, Offset, Timelike, Utc};

use super::names::{AM_PM, DAYS_FULL, DAYS_SHORT, MONTHS_FULL, MONTHS_SHORT};
use super::pattern::{OffsetStyle, TextStyle, Token, Width};
use super::zone::Zone;

pub(super) fn format(
    tokens: &[Token],
    max_len: usize,
    instant: DateTime<Utc>,
    zone: &Zone,
) -> String {
    let mut offset = zone.offset_at(instant);
    // Within a day of chrono's limits the local time may not exist; show
    // the same instant in UTC rather than panic or print a wrong instant.
    let local = match instant.naive_utc().checked_add_offset(offset) {
        Some(local) => local,
        None => {
            offset = Utc.fix();
            instant.naive_utc()
        }
    };
    let year = local.year();
    // Java prints the year-of-era: 1 BC (year 0) is 1, 2 BC is 2.
    let year_of_era = if year >= 1 {
        year.unsigned_abs()
    } else {
        1 + year.unsigned_abs()
    };
    let month0 = local.month0() as usize;
    let hour = local.hour();
    // chrono keeps a leap second as nanoseconds >= 1e9; Java has no leap
    // seconds, so print the last representable instant of that second.
    let nanos = local.nanosecond().min(999_999_999);

    let mut out = String::with_capacity(max_len);
    for token in tokens {
        match token {
            Token::Literal(text) => out.push_str(text),
            Token::YearTwoDigits => push_number(&mut out, year_of_era % 100, 2),
            Token::Year { min_width } => {
                if *min_width == 4 && year_of_era > 9999 {
                    out.push('+');
                }
                push_number(&mut out, year_of_era, usize::from(*min_width));
            }
            Token::MonthNumber(width) => push_field(&mut out, local.month(), *width),
            Token::MonthText(style) => {
                out.push_str(text(style, &MONTHS_SHORT, &MONTHS_FULL, month0))
            }
            Token::Day(width) => push_field(&mut out, local.day(), *width),
            Token::Hour24(width) => push_field(&mut out, hour, *width),
            Token::Hour12(width) => {
                let clock = if hour % 12 == 0 { 12 } else { hour % 12 };
                push_field(&mut out, clock, *width);
            }
            Token::Minute(width) => push_field(&mut out, local.minute(), *width),
            Token::Second { width, .. } => push_field(&mut out, local.second(), *width),
            Token::Fraction { digits, separator } => {
                if let Some(separator) = separator {
                    out.push(char::from(*separator));
                }
                let digits = u32::from(*digits);
                push_number(&mut out, nanos / 10u32.pow(9 - digits), digits as usize);
            }
            Token::AmPm => out.push_str(AM_PM[usize::from(hour >= 12)]),
            Token::Weekday(style) => {
                let day = local.weekday().num_days_from_monday() as usize;
                out.push_str(text(style, &DAYS_SHORT, &DAYS_FULL, day));
            }
            Token::Offset(style) => push_offset(&mut out, offset.local_minus_utc(), *style),
        }
    }
    out
}

fn text<'a, const N: usize>(
    style: &TextStyle,
    short: &[&'a str; N],
    full: &[&'a str; N],
    index: usize,
) -> &'a str {
    let names = match style {
        TextStyle::Short => short,
        TextStyle::Full => full,
    };
    names.get(index).copied().unwrap_or_default()
}

fn push_field(out: &mut String, value: u32, width: Width) {
    let width = match width {
        Width::Variable => 1,
        Width::Two => 2,
    };
    push_number(out, value, width);
}

/// Decimal digits of `value`, left-padded with zeros to `width`.
fn push_number(out: &mut String, value: u32, width: usize) {
    let mut digits = [0u8; 10];
    let mut len = 0;
    let mut rest = value;
    loop {
        digits[len] = b'0' + (rest % 10) as u8;
        len += 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for _ in len..width {
        out.push('0');
    }
    for digit in digits[..len].iter().rev() {
        out.push(char::from(*digit));
    }
}

/// Java's `appendOffset`: seconds of the offset are dropped unless the style
/// prints them; the sign comes from the whole offset (`-00:30`).
fn push_offset(out: &mut String, total_seconds: i32, style: OffsetStyle) {
    if total_seconds == 0 && style.z_for_zero {
        out.push('Z');
        return;
    }
    out.push(if total_seconds < 0 { '-' } else { '+' });
    let abs = total_seconds.unsigned_abs();
    let (hours, minutes, seconds) = (abs / 3600, abs / 60 % 60, abs % 60);
    push_number(out, hours, 2);
    if style.always_minutes || minutes != 0 {
        if style.colon {
            out.push(':');
        }
        push_number(out, minutes, 2);
    }
    if style.seconds && seconds != 0 {
        out.push(':');
        push_number(out, seconds, 2);
    }
}
