//! What each pattern letter and count means, as `DateTimeFormatter.ofPattern` reads them.

use super::pattern::{OffsetStyle, PatternError, TextStyle, Token, Width};

/// The token for `count` repetitions of `letter` at `position`.
pub(super) fn token(
    letter: char,
    count: usize,
    position: usize,
    pattern: &str,
) -> Result<Token, PatternError> {
    let bad_count = |supported| PatternError::UnsupportedCount {
        letter,
        count,
        supported,
        position,
        pattern: pattern.to_owned(),
    };
    let width = |supported| match count {
        1 => Ok(Width::Variable),
        2 => Ok(Width::Two),
        _ => Err(bad_count(supported)),
    };
    let offset = |colon, always_minutes, z_for_zero| {
        Token::Offset(OffsetStyle {
            colon,
            always_minutes,
            seconds: false,
            z_for_zero,
        })
    };
    Ok(match letter {
        'y' => match count {
            2 => Token::YearTwoDigits,
            1 | 3 | 4 => Token::Year {
                min_width: count as u8,
            },
            _ => return Err(bad_count("y, yy, yyy or yyyy")),
        },
        'M' => match count {
            3 => Token::MonthText(TextStyle::Short),
            4 => Token::MonthText(TextStyle::Full),
            _ => Token::MonthNumber(width("M, MM, MMM or MMMM")?),
        },
        'd' => Token::Day(width("d or dd")?),
        'H' => Token::Hour24(width("H or HH")?),
        'h' => Token::Hour12(width("h or hh")?),
        'm' => Token::Minute(width("m or mm")?),
        's' => Token::Second {
            width: width("s or ss")?,
            optional_fraction: false,
        },
        'S' if count <= 9 => Token::Fraction {
            digits: count as u8,
            separator: None,
        },
        'S' => return Err(bad_count("1 to 9 letters (S to SSSSSSSSS)")),
        'a' if count == 1 => Token::AmPm,
        'a' => return Err(bad_count("a")),
        'E' => match count {
            1..=3 => Token::Weekday(TextStyle::Short),
            4 => Token::Weekday(TextStyle::Full),
            _ => return Err(bad_count("E, EE, EEE or EEEE")),
        },
        'X' | 'x' => {
            let z_for_zero = letter == 'X';
            match count {
                1 => offset(false, false, z_for_zero),
                2 => offset(false, true, z_for_zero),
                3 => offset(true, true, z_for_zero),
                _ if z_for_zero => return Err(bad_count("X, XX or XXX")),
                _ => return Err(bad_count("x, xx or xxx")),
            }
        }
        'Z' => match count {
            1..=3 => offset(false, true, false),
            5 => Token::Offset(OffsetStyle {
                colon: true,
                always_minutes: true,
                seconds: true,
                z_for_zero: true,
            }),
            _ => return Err(bad_count("Z, ZZ, ZZZ or ZZZZZ")),
        },
        _ => {
            return Err(match java_meaning(letter) {
                Some(meaning) => PatternError::UnsupportedLetter {
                    letter,
                    meaning,
                    position,
                    pattern: pattern.to_owned(),
                },
                None => PatternError::UnknownLetter {
                    letter,
                    position,
                    pattern: pattern.to_owned(),
                },
            });
        }
    })
}

/// What the letters we do not support mean to Java's `DateTimeFormatter`,
/// so that the error says why rather than just "unknown".
fn java_meaning(letter: char) -> Option<&'static str> {
    Some(match letter {
        'G' => "era",
        'u' => "year in DateTimeFormatter but day-of-week number in SimpleDateFormat; use y",
        'D' => "day-of-year",
        'L' => "stand-alone month",
        'Q' | 'q' => "quarter-of-year",
        'Y' => "week-based year; use y",
        'w' => "week-of-week-based-year",
        'W' => "week-of-month",
        'e' | 'c' => "localized day-of-week",
        'F' => "aligned week of month",
        'K' => "hour of am/pm 0-11; use h",
        'k' => "clock hour of day 1-24; use H",
        'A' => "milli-of-day",
        'n' => "nano-of-second; use S",
        'N' => "nano-of-day",
        'V' => "time-zone id",
        'v' => "generic time-zone name",
        'z' => "time-zone name",
        'O' => "localized zone offset",
        'p' => "pad next",
        'B' => "period of day",
        'g' => "modified Julian day",
        _ => return None,
    })
}
