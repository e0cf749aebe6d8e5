//! Parse errors, and the cursor methods that build them.

use std::fmt::Display;

use chrono::NaiveDateTime;

use super::Cursor;

/// Text that does not match a pattern, or names a time that does not exist.
///
/// Every variant carries the text (clipped to 100 characters) and the
/// pattern; positions count characters from 0.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error(
        "cannot parse {text:?} with pattern {pattern:?}: expected {expected} \
         at position {position}, found {found}"
    )]
    Expected {
        text: String,
        pattern: String,
        position: usize,
        expected: String,
        found: String,
    },
    #[error(
        "cannot parse {text:?} with pattern {pattern:?}: {field} {value} \
         at position {position} is out of range {range}"
    )]
    OutOfRange {
        text: String,
        pattern: String,
        position: usize,
        field: &'static str,
        value: String,
        range: &'static str,
    },
    #[error(
        "cannot parse {text:?} with pattern {pattern:?}: unexpected {found} \
         at position {position} after the end of the pattern"
    )]
    TrailingText {
        text: String,
        pattern: String,
        position: usize,
        found: String,
    },
    #[error("cannot parse {text:?} with pattern {pattern:?}: {date} is not a valid date")]
    InvalidDate {
        text: String,
        pattern: String,
        date: String,
    },
    #[error("cannot parse {text:?} with pattern {pattern:?}: {detail}")]
    Conflict {
        text: String,
        pattern: String,
        detail: String,
    },
    #[error("cannot parse {text:?} with pattern {pattern:?}: the pattern has no {missing}")]
    Incomplete {
        text: String,
        pattern: String,
        missing: &'static str,
    },
    #[error(
        "cannot parse {text:?} with pattern {pattern:?}: local time {local} does not exist \
         in {zone} (skipped by a daylight-saving change)"
    )]
    NonexistentLocalTime {
        text: String,
        pattern: String,
        local: NaiveDateTime,
        zone: String,
    },
}

impl Cursor<'_> {
    pub(super) fn char_position(&self) -> usize {
        self.text
            .get(..self.pos)
            .map_or(self.pos, |head| head.chars().count())
    }

    /// Up to 12 characters of the text at the cursor, quoted, or "end of text".
    pub(super) fn found(&self) -> String {
        match self.text.get(self.pos..) {
            Some("") | None => "end of text".to_owned(),
            Some(rest) => {
                let head: String = rest.chars().take(12).collect();
                if head.len() < rest.len() {
                    format!("{:?}", format!("{head}…"))
                } else {
                    format!("{head:?}")
                }
            }
        }
    }

    pub(super) fn expected(&self, expected: &str) -> ParseError {
        ParseError::Expected {
            text: clip(self.text),
            pattern: self.pattern.to_owned(),
            position: self.char_position(),
            expected: expected.to_owned(),
            found: self.found(),
        }
    }

    pub(super) fn out_of_range(
        &self,
        field: &'static str,
        value: impl Display,
        range: &'static str,
    ) -> ParseError {
        ParseError::OutOfRange {
            text: clip(self.text),
            pattern: self.pattern.to_owned(),
            position: self.char_position(),
            field,
            value: value.to_string(),
            range,
        }
    }

    pub(super) fn conflict(&self, detail: String) -> ParseError {
        ParseError::Conflict {
            text: clip(self.text),
            pattern: self.pattern.to_owned(),
            detail,
        }
    }

    pub(super) fn incomplete(&self, missing: &'static str) -> ParseError {
        ParseError::Incomplete {
            text: clip(self.text),
            pattern: self.pattern.to_owned(),
            missing,
        }
    }
}

/// The text as quoted in errors: at most 100 characters, so that a huge
/// garbage value cannot flood a log line.
pub(super) fn clip(text: &str) -> String {
    match text.char_indices().nth(100) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}…", text.get(..end).unwrap_or_default()),
    }
}
