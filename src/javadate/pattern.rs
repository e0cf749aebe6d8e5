//! Compiling a pattern string into tokens, once.

use super::letters;

/// One element of a compiled pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Token {
    /// Text printed and matched as is (unquoted punctuation, quoted text, `''`).
    Literal(Box<str>),
    /// `yy`: the last two digits of the year-of-era; parsed as 2000..=2099 (Java's base year).
    YearTwoDigits,
    /// `y`, `yyy`, `yyyy`: the year-of-era padded with zeros to `min_width`.
    /// `yyyy` prints a `+` before a year above 9999 (Java's `EXCEEDS_PAD`).
    Year {
        min_width: u8,
    },
    MonthNumber(Width),
    MonthText(TextStyle),
    Day(Width),
    Hour24(Width),
    /// `h`, `hh`: clock hour of am/pm, 1..=12.
    Hour12(Width),
    Minute(Width),
    /// `s`, `ss`. `optional_fraction`: the parser also takes `.123…` here
    /// (set when an offset, a literal starting with `Z`, or the end follows).
    Second {
        width: Width,
        optional_fraction: bool,
    },
    /// `S`…`SSSSSSSSS`: fraction of second, truncated to `digits` when formatting.
    /// `separator` is the `.` or `,` written just before it in the pattern,
    /// held here so that the parser can treat `.fraction` as one optional group.
    Fraction {
        digits: u8,
        separator: Option<u8>,
    },
    AmPm,
    Weekday(TextStyle),
    Offset(OffsetStyle),
}

/// How many digits a numeric field takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Width {
    /// One letter: no padding when formatting; one or more digits when parsing.
    Variable,
    /// Two letters: exactly two digits.
    Two,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TextStyle {
    Short,
    Full,
}

/// Java's `appendOffset(pattern, noOffsetText)` variants used by `X`, `x` and `Z`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct OffsetStyle {
    /// `+05:30` rather than `+0530`.
    pub colon: bool,
    /// Print minutes even when zero (`+05:00`, not `+05`).
    pub always_minutes: bool,
    /// Print seconds when non-zero (`ZZZZZ`).
    pub seconds: bool,
    /// Print `Z` for a zero offset.
    pub z_for_zero: bool,
}

impl Token {
    /// Width of a numeric token that always takes the same number of digits
    /// when parsing, for Java's "adjacent value parsing" (`yyyyMMdd`).
    pub(super) fn fixed_width(&self) -> Option<usize> {
        match self {
            Token::YearTwoDigits => Some(2),
            Token::MonthNumber(Width::Two)
            | Token::Day(Width::Two)
            | Token::Hour24(Width::Two)
            | Token::Hour12(Width::Two)
            | Token::Minute(Width::Two)
            | Token::Second {
                width: Width::Two, ..
            } => Some(2),
            Token::Fraction {
                digits,
                separator: None,
            } => Some(usize::from(*digits)),
            _ => None,
        }
    }

    /// Whether the token starts with a digit in the text.
    pub(super) fn is_numeric(&self) -> bool {
        self.fixed_width().is_some()
            || matches!(
                self,
                Token::Year { .. }
                    | Token::MonthNumber(_)
                    | Token::Day(_)
                    | Token::Hour24(_)
                    | Token::Hour12(_)
                    | Token::Minute(_)
                    | Token::Second { .. }
            )
    }

    /// Upper bound of the formatted length, to size the output once.
    fn max_len(&self) -> usize {
        match self {
            Token::Literal(text) => text.len(),
            Token::Year { .. } => 7,
            Token::MonthText(_) | Token::Weekday(_) => 9,
            Token::Fraction { digits, .. } => usize::from(*digits) + 1,
            Token::Offset(_) => 9,
            _ => 2,
        }
    }
}

/// A pattern that cannot be compiled. Positions count characters from 0.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error(
        "unknown pattern letter '{letter}' at position {position} in {pattern:?}; \
         quote literal text, e.g. 'T'"
    )]
    UnknownLetter {
        letter: char,
        position: usize,
        pattern: String,
    },
    #[error(
        "pattern letter '{letter}' ({meaning}) at position {position} in {pattern:?} is not supported"
    )]
    UnsupportedLetter {
        letter: char,
        meaning: &'static str,
        position: usize,
        pattern: String,
    },
    #[error(
        "{count} × '{letter}' at position {position} in {pattern:?} is not supported; \
         '{letter}' takes {supported}"
    )]
    UnsupportedCount {
        letter: char,
        count: usize,
        supported: &'static str,
        position: usize,
        pattern: String,
    },
    #[error("quote at position {position} in {pattern:?} is never closed")]
    UnterminatedQuote { position: usize, pattern: String },
    #[error(
        "'{character}' at position {position} in {pattern:?} is reserved by Java \
         (optional sections and padding are not supported); quote it to print it"
    )]
    ReservedCharacter {
        character: char,
        position: usize,
        pattern: String,
    },
}

/// A compiled pattern: tokens plus what the formatter and parser need to
/// know about them, computed once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Compiled {
    pub tokens: Box<[Token]>,
    /// For each token, the digits that the fixed-width numeric tokens right
    /// after it take: a variable-width number leaves them (`yyyyMMdd`).
    pub reserve: Box<[usize]>,
    pub has_offset: bool,
    pub max_len: usize,
}

pub(super) fn compile(pattern: &str) -> Result<Compiled, PatternError> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut literal = String::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if c == '\'' {
            i = read_quoted(&chars, i, &mut literal, pattern)?;
        } else if c.is_ascii_alphabetic() {
            let count = chars
                .get(i..)
                .unwrap_or_default()
                .iter()
                .take_while(|&&d| d == c)
                .count();
            let token = letters::token(c, count, i, pattern)?;
            push_field(&mut tokens, &mut literal, token);
            i += count;
        } else if matches!(c, '[' | ']' | '{' | '}' | '#') {
            return Err(PatternError::ReservedCharacter {
                character: c,
                position: i,
                pattern: pattern.to_owned(),
            });
        } else {
            literal.push(c);
            i += 1;
        }
    }
    if !literal.is_empty() {
        tokens.push(Token::Literal(literal.into_boxed_str()));
    }
    mark_optional_fractions(&mut tokens);
    let reserve = (0..tokens.len())
        .map(|i| {
            tokens
                .get(i + 1..)
                .unwrap_or_default()
                .iter()
                .map_while(Token::fixed_width)
                .sum::<usize>()
        })
        .collect();
    Ok(Compiled {
        has_offset: tokens.iter().any(|t| matches!(t, Token::Offset(_))),
        max_len: tokens.iter().map(Token::max_len).sum(),
        tokens: tokens.into_boxed_slice(),
        reserve,
    })
}

/// Reads a quoted section starting at `start` into `literal` and returns the
/// index after it. `''` is a quote, inside or outside a quoted section.
fn read_quoted(
    chars: &[char],
    start: usize,
    literal: &mut String,
    pattern: &str,
) -> Result<usize, PatternError> {
    let mut i = start + 1;
    if chars.get(i) == Some(&'\'') {
        literal.push('\'');
        return Ok(i + 1);
    }
    loop {
        match chars.get(i) {
            None => {
                return Err(PatternError::UnterminatedQuote {
                    position: start,
                    pattern: pattern.to_owned(),
                });
            }
            Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                literal.push('\'');
                i += 2;
            }
            Some('\'') => return Ok(i + 1),
            Some(&c) => {
                literal.push(c);
                i += 1;
            }
        }
    }
}

/// Appends a field token, flushing the pending literal first. A `.` or `,`
/// right before a fraction moves into the fraction token as its separator.
fn push_field(tokens: &mut Vec<Token>, literal: &mut String, mut token: Token) {
    if let Token::Fraction { separator, .. } = &mut token
        && let Some(last @ ('.' | ',')) = literal.chars().last()
    {
        literal.pop();
        *separator = Some(last as u8);
    }
    if !literal.is_empty() {
        tokens.push(Token::Literal(std::mem::take(literal).into_boxed_str()));
    }
    tokens.push(token);
}

/// Seconds followed by an offset, a literal starting with `Z` (`'Z'`) or the
/// end of the pattern may carry a fraction the pattern does not mention
/// (`…:10.000+0000` for `…:ssXXX`); nothing else can start with `.` there.
fn mark_optional_fractions(tokens: &mut [Token]) {
    for i in 0..tokens.len() {
        let next_allows = match tokens.get(i + 1) {
            None | Some(Token::Offset(_)) => true,
            Some(Token::Literal(text)) => text.starts_with(['Z', 'z']),
            Some(_) => false,
        };
        if let Some(Token::Second {
            optional_fraction, ..
        }) = tokens.get_mut(i)
        {
            *optional_fraction = next_allows;
        }
    }
}
