//! TEMPORARY stand-in for the Java date pattern module.
//!
//! It has the agreed public API so that dependants compile, and supports just
//! enough (`yyyy yy MM dd HH mm ss S… X XX XXX`, quoted literals, `''`) for
//! their tests. The real implementation replaces this file at merge.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, Offset, TimeZone, Timelike, Utc};

/// A time zone: UTC, a fixed offset, or an IANA zone with its rules.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Zone {
    #[default]
    Utc,
    Fixed(FixedOffset),
    Named(chrono_tz::Tz),
}

#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    #[error("unknown time zone `{0}`")]
    Unknown(String),
}

#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    #[error("unsupported pattern letter `{letter}` at position {position}")]
    UnsupportedLetter { letter: char, position: usize },
    #[error("unterminated quoted literal starting at position {0}")]
    UnterminatedQuote(usize),
    #[error("empty pattern")]
    Empty,
}

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("`{text}` does not match pattern `{pattern}`")]
    Mismatch { text: String, pattern: String },
}

impl Zone {
    /// # Errors
    /// When `s` is neither UTC/GMT/Z, an offset nor an IANA zone id.
    pub fn parse(s: &str) -> Result<Zone, ZoneError> {
        let t = s.trim();
        if matches!(t, "UTC" | "GMT" | "Z" | "UT") {
            return Ok(Zone::Utc);
        }
        let off = t
            .strip_prefix("GMT")
            .or_else(|| t.strip_prefix("UTC"))
            .unwrap_or(t);
        if let Some(o) = parse_offset(off) {
            return Ok(Zone::Fixed(o));
        }
        t.parse::<chrono_tz::Tz>()
            .map(Zone::Named)
            .map_err(|_| ZoneError::Unknown(t.to_owned()))
    }

    pub fn offset_at(&self, instant: DateTime<Utc>) -> FixedOffset {
        match self {
            Zone::Utc => Utc.fix(),
            Zone::Fixed(o) => *o,
            Zone::Named(tz) => tz.offset_from_utc_datetime(&instant.naive_utc()).fix(),
        }
    }
}

fn parse_offset(s: &str) -> Option<FixedOffset> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let (h, m) = match digits.len() {
        1 | 2 => (digits.parse::<i32>().ok()?, 0),
        4 => (digits[..2].parse().ok()?, digits[2..].parse().ok()?),
        _ => return None,
    };
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

impl FromStr for Zone {
    type Err = ZoneError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Zone::parse(s)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Utc => f.write_str("UTC"),
            Zone::Fixed(o) => write!(f, "{o}"),
            Zone::Named(tz) => write!(f, "{}", tz.name()),
        }
    }
}

#[derive(Clone, Debug)]
enum Token {
    Lit(String),
    Year4,
    Year2,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Fraction(usize),
    Offset(usize),
}

/// A compiled Java date pattern (stub subset).
#[derive(Clone, Debug)]
pub struct JavaDateFormat {
    pattern: String,
    tokens: Vec<Token>,
}

impl JavaDateFormat {
    /// # Errors
    /// On letters outside the stub subset and unterminated quotes.
    pub fn compile(pattern: &str) -> Result<Self, PatternError> {
        if pattern.is_empty() {
            return Err(PatternError::Empty);
        }
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' {
                if chars.get(i + 1) == Some(&'\'') {
                    tokens.push(Token::Lit("'".into()));
                    i += 2;
                    continue;
                }
                let start = i;
                let mut lit = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(PatternError::UnterminatedQuote(start)),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            lit.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            lit.push(*ch);
                            i += 1;
                        }
                    }
                }
                tokens.push(Token::Lit(lit));
                continue;
            }
            if c.is_ascii_alphabetic() {
                let mut n = 1;
                while chars.get(i + n) == Some(&c) {
                    n += 1;
                }
                let tok = match (c, n) {
                    ('y', 2) => Token::Year2,
                    ('y', _) => Token::Year4,
                    ('M', 2) => Token::Month,
                    ('d', 2) => Token::Day,
                    ('H', 2) => Token::Hour,
                    ('m', 2) => Token::Minute,
                    ('s', 2) => Token::Second,
                    ('S', n) => Token::Fraction(n.min(9)),
                    ('X', n @ 1..=3) => Token::Offset(n),
                    _ => {
                        return Err(PatternError::UnsupportedLetter {
                            letter: c,
                            position: i,
                        });
                    }
                };
                tokens.push(tok);
                i += n;
                continue;
            }
            tokens.push(Token::Lit(c.to_string()));
            i += 1;
        }
        Ok(Self {
            pattern: pattern.to_owned(),
            tokens,
        })
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    pub fn has_offset(&self) -> bool {
        self.tokens.iter().any(|t| matches!(t, Token::Offset(_)))
    }

    pub fn format(&self, instant: DateTime<Utc>, zone: &Zone) -> String {
        let offset = zone.offset_at(instant);
        let local = instant.with_timezone(&offset);
        let mut out = String::new();
        for t in &self.tokens {
            match t {
                Token::Lit(s) => out.push_str(s),
                Token::Year4 => out.push_str(&format!("{:04}", local.year())),
                Token::Year2 => out.push_str(&format!("{:02}", local.year().rem_euclid(100))),
                Token::Month => out.push_str(&format!("{:02}", local.month())),
                Token::Day => out.push_str(&format!("{:02}", local.day())),
                Token::Hour => out.push_str(&format!("{:02}", local.hour())),
                Token::Minute => out.push_str(&format!("{:02}", local.minute())),
                Token::Second => out.push_str(&format!("{:02}", local.second())),
                Token::Fraction(n) => {
                    let nanos = format!("{:09}", local.nanosecond() % 1_000_000_000);
                    out.push_str(&nanos[..*n]);
                }
                Token::Offset(n) => {
                    let secs = offset.local_minus_utc();
                    if secs == 0 {
                        out.push('Z');
                    } else {
                        let sign = if secs < 0 { '-' } else { '+' };
                        let (h, m) = (secs.abs() / 3600, secs.abs() % 3600 / 60);
                        match n {
                            1 if m == 0 => out.push_str(&format!("{sign}{h:02}")),
                            1 | 2 => out.push_str(&format!("{sign}{h:02}{m:02}")),
                            _ => out.push_str(&format!("{sign}{h:02}:{m:02}")),
                        }
                    }
                }
            }
        }
        out
    }

    /// # Errors
    /// When `text` does not match the pattern.
    pub fn parse(
        &self,
        text: &str,
        default_zone: &Zone,
    ) -> Result<DateTime<FixedOffset>, ParseError> {
        let mismatch = || ParseError::Mismatch {
            text: text.to_owned(),
            pattern: self.pattern.clone(),
        };
        let mut rest = text;
        let (mut y, mut mo, mut d, mut h, mut mi, mut s, mut ns) = (1970, 1, 1, 0, 0, 0, 0);
        let mut offset = None;
        let num = |rest: &mut &str, n: usize| -> Option<u32> {
            let head = rest.get(..n)?;
            if !head.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *rest = &rest[n..];
            head.parse().ok()
        };
        for t in &self.tokens {
            let v = match t {
                Token::Lit(l) => {
                    rest = rest.strip_prefix(l.as_str()).ok_or_else(mismatch)?;
                    continue;
                }
                Token::Offset(_) => {
                    if let Some(r) = rest.strip_prefix('Z') {
                        rest = r;
                        offset = Some(Utc.fix());
                    } else {
                        let end = rest
                            .char_indices()
                            .find(|(i, c)| *i > 0 && !(c.is_ascii_digit() || *c == ':'))
                            .map_or(rest.len(), |(i, _)| i);
                        offset = Some(parse_offset(&rest[..end]).ok_or_else(mismatch)?);
                        rest = &rest[end..];
                    }
                    continue;
                }
                Token::Year4 => num(&mut rest, 4),
                Token::Year2 => num(&mut rest, 2).map(|v| v + 2000),
                Token::Fraction(n) => num(&mut rest, *n),
                _ => num(&mut rest, 2),
            }
            .ok_or_else(mismatch)?;
            match t {
                Token::Year4 | Token::Year2 => y = v as i32,
                Token::Month => mo = v,
                Token::Day => d = v,
                Token::Hour => h = v,
                Token::Minute => mi = v,
                Token::Second => s = v,
                Token::Fraction(n) => ns = v * 10u32.pow(9 - *n as u32),
                _ => {}
            }
        }
        if !rest.is_empty() {
            return Err(mismatch());
        }
        let naive = NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|date| date.and_hms_nano_opt(h, mi, s, ns))
            .ok_or_else(mismatch)?;
        let offset = match offset {
            Some(o) => o,
            None => match default_zone {
                Zone::Utc => Utc.fix(),
                Zone::Fixed(o) => *o,
                Zone::Named(tz) => tz
                    .offset_from_local_datetime(&naive)
                    .earliest()
                    .ok_or_else(mismatch)?
                    .fix(),
            },
        };
        offset
            .from_local_datetime(&naive)
            .single()
            .ok_or_else(mismatch)
    }
}
