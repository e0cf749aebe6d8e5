//! Hub-form URLs (`/hubs/…?where=<CEQL>`) → provider-native URLs.
//!
//! Only the small part of CEQL (Open Connectors' SQL-like filter language)
//! that a poller writes is understood: conditions `field op value` joined by
//! `and`, values in single quotes (`''` is a quote inside one) or bare
//! (`42`, `true`). Anything else (`or`, parentheses, `like`, `in`) is an
//! error naming the form, because dropping a filter silently would change
//! which records a window sees.

use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::{Deserialize, Serialize};

use super::UrlRule;

/// What a translated query value may keep unencoded: RFC 3986 unreserved
/// characters plus `:`, so dates stay readable (`2024-01-01T00:00:00Z`)
/// while `+` in an offset becomes `%2B` (a bare `+` means space in a query).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':');

/// A CEQL comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CeqlOp {
    #[serde(rename = "=")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
}

impl fmt::Display for CeqlOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Eq => "=",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
        })
    }
}

/// Why a resource URL cannot be expressed for the provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    #[error("hub path {path} has no translation for this element (known: {known})")]
    UnknownHubPath { path: String, known: String },
    #[error("unsupported CEQL in `{param}`: {form} (supported: {supported})")]
    UnsupportedCeql {
        param: String,
        form: String,
        supported: String,
    },
    #[error("malformed CEQL in `{param}`: {reason}")]
    MalformedCeql { param: String, reason: String },
    #[error("query parameter `{param}` has no translation for this element")]
    UnknownParam { param: String },
    #[error("`{param}` is given twice")]
    Duplicate { param: String },
}

/// One parsed condition.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Condition {
    field: String,
    op: CeqlOp,
    value: String,
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} '{}'", self.field, self.op, self.value)
    }
}

/// Translates `url` with the first rule whose `hub_path` is its path.
pub(super) fn translate(
    rules: &[UrlRule],
    limit_param: &str,
    url: &str,
) -> Result<String, TranslateError> {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let bare = path.trim_end_matches('/');
    let Some(rule) = rules
        .iter()
        .find(|r| r.hub_path.trim_end_matches('/') == bare)
    else {
        if path.starts_with("/hubs/") {
            let known = rules
                .iter()
                .map(|r| r.hub_path.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(TranslateError::UnknownHubPath {
                path: path.to_owned(),
                known,
            });
        }
        // Already a native URL (or a resume link from the fetcher).
        return Ok(url.to_owned());
    };

    let mut out: Vec<(String, String)> = Vec::new();
    let push = |out: &mut Vec<(String, String)>, k: &str, v: String| {
        if out.iter().any(|(have, _)| have == k) {
            return Err(TranslateError::Duplicate {
                param: k.to_owned(),
            });
        }
        out.push((k.to_owned(), v));
        Ok(())
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode_plain(raw_key);
        if key == rule.where_param {
            let text = decode_where(raw_value);
            for cond in parse_where(&rule.where_param, &supported(rule), &text)? {
                let Some(mapped) = rule
                    .conditions
                    .iter()
                    .find(|c| c.field == cond.field && c.ops.contains(&cond.op))
                else {
                    return Err(TranslateError::UnsupportedCeql {
                        param: rule.where_param.clone(),
                        form: cond.to_string(),
                        supported: supported(rule),
                    });
                };
                push(&mut out, &mapped.param, cond.value)?;
            }
        } else if key == rule.page_size_param {
            push(&mut out, limit_param, decode_plain(raw_value))?;
        } else if rule.passthrough.contains(&key) {
            push(&mut out, &key, decode_plain(raw_value))?;
        } else {
            return Err(TranslateError::UnknownParam { param: key });
        }
    }
    let mut native = rule.provider_path.clone();
    for (i, (k, v)) in out.iter().enumerate() {
        native.push(if i == 0 { '?' } else { '&' });
        native.extend(utf8_percent_encode(k, QUERY_VALUE));
        native.push('=');
        native.extend(utf8_percent_encode(v, QUERY_VALUE));
    }
    Ok(native)
}

fn supported(rule: &UrlRule) -> String {
    rule.conditions
        .iter()
        .flat_map(|c| c.ops.iter().map(move |op| format!("{} {op} '…'", c.field)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Percent-decodes a plain query key or value (`+` is a space there).
fn decode_plain(raw: &str) -> String {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

/// Percent-decodes a `where` value. A literal `+` outside quotes is a space
/// (form encoding: `since='…'+and+until='…'`), inside quotes it is a plus
/// (an unencoded offset `+05:30`); `%2B` is always a plus.
fn decode_where(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut quoted = false;
    let mut i = 0;
    while i < bytes.len() {
        let (byte, escaped, width) = match bytes[i] {
            b'%' => match bytes.get(i + 1..i + 3).and_then(hex_pair) {
                Some(b) => (b, true, 3),
                None => (b'%', false, 1),
            },
            b => (b, false, 1),
        };
        if byte == b'\'' {
            quoted = !quoted;
        }
        out.push(if byte == b'+' && !escaped && !quoted {
            b' '
        } else {
            byte
        });
        i += width;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_pair(pair: &[u8]) -> Option<u8> {
    let hi = (pair.first()?).to_ascii_lowercase();
    let lo = (pair.get(1)?).to_ascii_lowercase();
    let val = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(val(hi)? << 4 | val(lo)?)
}

/// Parses `cond (and cond)*`.
fn parse_where(param: &str, supported: &str, text: &str) -> Result<Vec<Condition>, TranslateError> {
    let mut p = Parser {
        param,
        supported,
        s: text,
        pos: 0,
    };
    let mut conds = Vec::new();
    p.skip_ws();
    if p.at_end() {
        return Ok(conds);
    }
    loop {
        conds.push(p.condition()?);
        p.skip_ws();
        if p.at_end() {
            return Ok(conds);
        }
        let word = p.word().to_owned();
        if !word.eq_ignore_ascii_case("and") {
            return Err(p.unsupported(if word.is_empty() {
                p.rest().to_owned()
            } else {
                format!("`{word}` between conditions")
            }));
        }
    }
}

struct Parser<'a> {
    param: &'a str,
    /// For error messages: what the element can express.
    supported: &'a str,
    s: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.s[self.pos..]
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    /// An identifier-like word (`since`, `and`, `modification_date`).
    fn word(&mut self) -> &str {
        let start = self.pos;
        let len = self
            .rest()
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(self.rest().len());
        self.pos += len;
        &self.s[start..self.pos]
    }

    fn malformed(&self, reason: impl Into<String>) -> TranslateError {
        TranslateError::MalformedCeql {
            param: self.param.to_owned(),
            reason: reason.into(),
        }
    }

    fn unsupported(&self, form: String) -> TranslateError {
        TranslateError::UnsupportedCeql {
            param: self.param.to_owned(),
            form,
            supported: self.supported.to_owned(),
        }
    }

    fn condition(&mut self) -> Result<Condition, TranslateError> {
        self.skip_ws();
        if self.rest().starts_with('(') {
            return Err(self.unsupported("parentheses".into()));
        }
        let field = self.word().to_owned();
        if field.is_empty() {
            return Err(self.malformed(format!("expected a field name at `{}`", self.rest())));
        }
        self.skip_ws();
        let op = self.op(&field)?;
        self.skip_ws();
        let value = self.value()?;
        Ok(Condition { field, op, value })
    }

    fn op(&mut self, field: &str) -> Result<CeqlOp, TranslateError> {
        const OPS: &[(&str, CeqlOp)] = &[
            (">=", CeqlOp::Ge),
            ("<=", CeqlOp::Le),
            ("!=", CeqlOp::Ne),
            ("<>", CeqlOp::Ne),
            ("=", CeqlOp::Eq),
            ("<", CeqlOp::Lt),
            (">", CeqlOp::Gt),
        ];
        for (text, op) in OPS {
            if self.rest().starts_with(text) {
                self.pos += text.len();
                return Ok(*op);
            }
        }
        let word = self.word().to_owned();
        if word.is_empty() {
            Err(self.malformed(format!("expected an operator after `{field}`")))
        } else {
            Err(self.unsupported(format!("operator `{word}` after `{field}`")))
        }
    }

    fn value(&mut self) -> Result<String, TranslateError> {
        if let Some(after) = self.rest().strip_prefix('\'') {
            let mut value = String::new();
            let mut chars = after.char_indices();
            while let Some((i, c)) = chars.next() {
                if c != '\'' {
                    value.push(c);
                    continue;
                }
                if after[i + 1..].starts_with('\'') {
                    value.push('\'');
                    chars.next();
                    continue;
                }
                self.pos += 1 + i + 1;
                if value.is_empty() {
                    return Err(self.malformed("empty quoted value"));
                }
                return Ok(value);
            }
            return Err(self.malformed("unterminated quoted value"));
        }
        let len = self
            .rest()
            .find(char::is_whitespace)
            .unwrap_or(self.rest().len());
        if len == 0 {
            return Err(self.malformed("missing value"));
        }
        let value = self.rest()[..len].to_owned();
        self.pos += len;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use crate::element::{ConnectionMode, element};

    use super::*;

    fn direct(url: &str) -> Result<String, TranslateError> {
        element("infusionsoftecommerce", ConnectionMode::Direct)
            .unwrap()
            .translate(url)
    }

    #[test]
    fn seed_url_with_utc_z() {
        assert_eq!(
            direct("/hubs/ecommerce/orders?where=since='2024-01-01T00%3A00%3A00Z' ").unwrap(),
            "/v1/orders?since=2024-01-01T00:00:00Z"
        );
        // Unencoded colons and an encoded quote mean the same.
        assert_eq!(
            direct("/hubs/ecommerce/orders?where=since=%272024-01-01T00:00:00Z%27").unwrap(),
            "/v1/orders?since=2024-01-01T00:00:00Z"
        );
    }

    #[test]
    fn offset_keeps_its_plus() {
        assert_eq!(
            direct("/hubs/ecommerce/orders?where=since='2024-01-01T05:30:00%2B05:30'").unwrap(),
            "/v1/orders?since=2024-01-01T05:30:00%2B05:30"
        );
        // A literal `+` inside the quotes is a plus, not a space.
        assert_eq!(
            direct("/hubs/ecommerce/orders?where=since='2024-01-01T05:30:00+05:30'").unwrap(),
            "/v1/orders?since=2024-01-01T05:30:00%2B05:30"
        );
    }

    #[test]
    fn since_and_until_with_page_size() {
        let want = "/v1/orders?since=2024-01-01T00:00:00Z&until=2024-02-01T00:00:00Z&limit=50";
        for url in [
            "/hubs/ecommerce/orders?where=since='2024-01-01T00%3A00%3A00Z' and until='2024-02-01T00%3A00%3A00Z'&pageSize=50",
            "/hubs/ecommerce/orders?where=since%3D%272024-01-01T00%3A00%3A00Z%27%20AND%20until%3D%272024-02-01T00%3A00%3A00Z%27&pageSize=50",
            "/hubs/ecommerce/orders/?where=since='2024-01-01T00:00:00Z'+and+until='2024-02-01T00:00:00Z'&pageSize=50",
        ] {
            assert_eq!(direct(url).unwrap(), want, "{url}");
        }
    }

    #[test]
    fn unknown_ceql_is_named() {
        let err = direct("/hubs/ecommerce/orders?where=status='PAID'").unwrap_err();
        assert!(
            matches!(&err, TranslateError::UnsupportedCeql { form, .. } if form == "status = 'PAID'"),
            "{err}"
        );
        assert!(err.to_string().contains("since = '…'"), "{err}");
        let err = direct("/hubs/ecommerce/orders?where=since>'2024-01-01'").unwrap_err();
        assert!(err.to_string().contains("since > '2024-01-01'"), "{err}");
        let err = direct("/hubs/ecommerce/orders?where=since='2024-01-01' or until='2024-02-01'")
            .unwrap_err();
        assert!(err.to_string().contains("`or`"), "{err}");
        let err = direct("/hubs/ecommerce/orders?where=(since='2024-01-01')").unwrap_err();
        assert!(err.to_string().contains("parentheses"), "{err}");
        let err = direct("/hubs/ecommerce/orders?where=name like 'x%25'").unwrap_err();
        assert!(err.to_string().contains("operator `like`"), "{err}");
    }

    #[test]
    fn malformed_ceql_and_odd_queries() {
        for (url, want) in [
            ("/hubs/ecommerce/orders?where=since='2024", "unterminated"),
            ("/hubs/ecommerce/orders?where=since=", "missing value"),
            (
                "/hubs/ecommerce/orders?where=since=''",
                "empty quoted value",
            ),
            ("/hubs/ecommerce/orders?nextPage=abc", "`nextPage`"),
            (
                "/hubs/ecommerce/orders?where=since='a' and since='b'",
                "`since` is given twice",
            ),
            ("/hubs/ecommerce/customers", "/hubs/ecommerce/customers"),
        ] {
            let err = direct(url).unwrap_err().to_string();
            assert!(err.contains(want), "{url}: {err}");
        }
    }

    #[test]
    fn native_urls_and_passthrough() {
        assert_eq!(
            direct("/v1/orders/?limit=10&offset=20").unwrap(),
            "/v1/orders/?limit=10&offset=20"
        );
        assert_eq!(direct("/hubs/ecommerce/orders").unwrap(), "/v1/orders");
        assert_eq!(
            direct("/hubs/ecommerce/orders?where=&order=id").unwrap(),
            "/v1/orders?order=id"
        );
        assert_eq!(
            direct("/hubs/ecommerce/orders?where=until = 'it''s'").unwrap(),
            "/v1/orders?until=it%27s"
        );
    }
}
