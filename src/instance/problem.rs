//! Configuration problems: file, JSON path, reason.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One thing wrong with an instance file. Displayed as
/// `FILE: JSON_PATH: REASON`, one line, so that an operator can go straight
/// to the key, e.g.
/// `orders.json: $.configuration["event.poller.configuration"].orders.idField: missing …`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {json_path}: {reason}", file.display())]
pub struct ConfigProblem {
    pub file: PathBuf,
    /// `$` for the whole document; `.key` for identifier-like keys,
    /// `["key"]` for the others. Paths continue inside
    /// `event.poller.configuration` when it is a string holding JSON.
    pub json_path: String,
    pub reason: String,
}

/// A JSON path under construction.
#[derive(Debug, Clone)]
pub(crate) struct JsonPath(String);

impl JsonPath {
    pub(crate) fn root() -> Self {
        JsonPath("$".to_owned())
    }

    pub(crate) fn key(&self, key: &str) -> Self {
        let mut path = self.0.clone();
        let mut chars = key.chars();
        let plain = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if plain {
            path.push('.');
            path.push_str(key);
        } else {
            // Writing to a String cannot fail.
            let _ = write!(path, "[{}]", quoted(key));
        }
        JsonPath(path)
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// `s` as a JSON string literal (quotes and escapes), for paths and messages.
pub(crate) fn quoted(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// A value from the document quoted for a message, cut to a readable length.
/// Never call it with a secret.
pub(crate) fn shown(s: &str) -> String {
    const MAX_CHARS: usize = 60;
    match s.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", quoted(&s[..cut])),
        None => quoted(s),
    }
}

/// Collects every problem of one file.
pub(crate) struct Problems<'a> {
    file: &'a Path,
    list: Vec<ConfigProblem>,
}

impl<'a> Problems<'a> {
    pub(crate) fn new(file: &'a Path) -> Self {
        Problems {
            file,
            list: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, path: &JsonPath, reason: impl Into<String>) {
        self.list.push(ConfigProblem {
            file: self.file.to_owned(),
            json_path: path.as_str().to_owned(),
            reason: reason.into(),
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Records a failed read; an absent value is simply absent.
    pub(crate) fn optional<T>(
        &mut self,
        path: &JsonPath,
        read: Result<Option<T>, String>,
    ) -> Option<T> {
        read.unwrap_or_else(|reason| {
            self.add(path, reason);
            None
        })
    }

    /// Records a failed read, or `missing` when the value is absent.
    pub(crate) fn required<T>(
        &mut self,
        path: &JsonPath,
        read: Result<Option<T>, String>,
        missing: &str,
    ) -> Option<T> {
        match read {
            Ok(Some(value)) => Some(value),
            Ok(None) => {
                self.add(path, format!("missing: {missing}"));
                None
            }
            Err(reason) => {
                self.add(path, reason);
                None
            }
        }
    }

    pub(crate) fn into_vec(self) -> Vec<ConfigProblem> {
        self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_quote_keys_that_are_not_identifiers() {
        let path = JsonPath::root()
            .key("configuration")
            .key("event.poller.configuration")
            .key("orders")
            .key("my \"odd\" key");
        assert_eq!(
            path.as_str(),
            r#"$.configuration["event.poller.configuration"].orders["my \"odd\" key"]"#
        );
        assert_eq!(JsonPath::root().key("").as_str(), r#"$[""]"#);
    }

    #[test]
    fn display_is_file_path_reason() {
        let problem = ConfigProblem {
            file: PathBuf::from("instances/a.json"),
            json_path: "$.element.key".into(),
            reason: "missing".into(),
        };
        assert_eq!(
            problem.to_string(),
            "instances/a.json: $.element.key: missing"
        );
    }

    #[test]
    fn shown_values_are_quoted_and_cut() {
        assert_eq!(shown("yes"), "\"yes\"");
        let long = "é".repeat(100);
        assert_eq!(shown(&long).chars().count(), 63);
    }
}
