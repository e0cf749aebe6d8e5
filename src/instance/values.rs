//! Lenient readers of single JSON values, as Open Connectors documents
//! carry them: booleans and numbers as JSON values or as strings, strings
//! with stray whitespace, URLs and dates as text. Each returns the value or
//! the reason it cannot be used; the caller names the JSON path.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::FieldPath;
use super::field_path::json_kind;
use super::model::ExtraValue;
use super::problem::{JsonPath, Problems, shown};
use crate::secret::Secret;

/// The object at `key`; absent or `null` is `None`, anything else a problem.
pub(super) fn object_at<'v>(
    parent: &'v Map<String, Value>,
    key: &str,
    parent_path: &JsonPath,
    p: &mut Problems<'_>,
) -> Option<&'v Map<String, Value>> {
    match parent.get(key)? {
        Value::Object(map) => Some(map),
        Value::Null => None,
        other => {
            p.add(
                &parent_path.key(key),
                format!("expected an object, got {}", json_kind(other)),
            );
            None
        }
    }
}

/// A trimmed string; blank is `None`.
pub(super) fn read_text(value: Option<&Value>) -> Result<Option<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let s = s.trim();
            Ok((!s.is_empty()).then(|| s.to_owned()))
        }
        Some(other) => Err(format!("expected a string, got {}", json_kind(other))),
    }
}

/// A secret string. Numbers and booleans are accepted as their text; the
/// value is never quoted in a message.
pub(super) fn read_secret(value: Option<&Value>) -> Result<Option<Secret>, String> {
    match value {
        Some(Value::Number(_) | Value::Bool(_)) => Ok(value.map(|v| Secret::new(v.to_string()))),
        _ => read_text(value).map(|s| s.map(Secret::new)),
    }
}

/// `true`/`false` as JSON or as a string, any case.
pub(super) fn read_flag(value: Option<&Value>) -> Result<Option<bool>, String> {
    match value {
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(_)) | None | Some(Value::Null) => match read_text(value)? {
            None => Ok(None),
            Some(s) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(s) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(s) => Err(format!("expected true or false, got {}", shown(&s))),
        },
        Some(other) => Err(format!("expected true or false, got {}", json_kind(other))),
    }
}

/// A whole number in `min..=max`, as JSON (`15`, `15.0`) or as a string.
pub(super) fn read_whole(
    value: Option<&Value>,
    min: u64,
    max: u64,
    unit: &str,
) -> Result<Option<u64>, String> {
    let number = match value {
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= max as f64)
                    .map(|f| f as u64)
            })
            .ok_or_else(|| format!("expected a whole number of {unit}, got {n}"))?,
        Some(Value::String(_)) | None | Some(Value::Null) => match read_text(value)? {
            None => return Ok(None),
            Some(s) => s
                .parse::<u64>()
                .map_err(|_| format!("expected a whole number of {unit}, got {}", shown(&s)))?,
        },
        Some(other) => {
            return Err(format!(
                "expected a whole number of {unit}, got {}",
                json_kind(other)
            ));
        }
    };
    if (min..=max).contains(&number) {
        Ok(Some(number))
    } else {
        Err(format!(
            "must be between {min} and {max} {unit}, got {number}"
        ))
    }
}

/// One of a few words, any case.
pub(super) fn read_choice<T: Copy>(
    value: Option<&Value>,
    choices: &[(&str, T)],
) -> Result<Option<T>, String> {
    let Some(text) = read_text(value)? else {
        return Ok(None);
    };
    choices
        .iter()
        .find(|(word, _)| text.eq_ignore_ascii_case(word))
        .map(|(_, choice)| Some(*choice))
        .ok_or_else(|| {
            let words: Vec<&str> = choices.iter().map(|(word, _)| *word).collect();
            format!("expected {}, got {}", words.join(" or "), shown(&text))
        })
}

pub(super) fn field_path(text: String) -> Result<FieldPath, String> {
    FieldPath::parse(&text).map_err(|e| e.to_string())
}

pub(super) fn rfc3339(text: String) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            format!(
                "expected an RFC 3339 time such as 2024-01-31T00:00:00Z, got {}: {e}",
                shown(&text)
            )
        })
}

/// An absolute http(s) URL with a host and without credentials. The value is
/// not quoted in messages: a URL may carry a password.
pub(super) fn http_url(text: String) -> Result<String, String> {
    let url =
        url::Url::parse(&text).map_err(|e| format!("expected an absolute http(s) URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "expected an http or https URL, not {}:",
            url.scheme()
        ));
    }
    if !url.has_host() {
        return Err("expected an absolute http(s) URL with a host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials; configure them as secrets".to_owned());
    }
    Ok(text)
}

/// [`http_url`] without query and fragment, and without trailing `/`, so that
/// appending a resource path (which starts with `/`) gives the request URL.
pub(super) fn base_url(text: String) -> Result<String, String> {
    let text = http_url(text)?;
    if text.contains(['?', '#']) {
        return Err(
            "must not have a query or fragment: resource URLs are appended to it".to_owned(),
        );
    }
    if let Ok(url) = url::Url::parse(&text)
        && url.scheme() == "http"
        && !is_loopback(&url)
    {
        return Err(
            "plain http would send OAuth tokens, the client secret and hub secrets in clear: use https (http is accepted for loopback hosts only)"
                .to_owned(),
        );
    }
    Ok(text.trim_end_matches('/').to_owned())
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Whether a configuration key names a credential.
pub(super) fn is_secret_key(key: &str) -> bool {
    const WORDS: [&str; 6] = [
        "secret",
        "token",
        "password",
        "credential",
        "apikey",
        "privatekey",
    ];
    let normalized: String = key
        .chars()
        .filter(|c| !matches!(c, '.' | '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect();
    WORDS.iter().any(|word| normalized.contains(word))
}

pub(super) fn holds_secret_key(value: &Value) -> bool {
    match value {
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| is_secret_key(k) || holds_secret_key(v)),
        Value::Array(items) => items.iter().any(holds_secret_key),
        _ => false,
    }
}

pub(super) fn extra_value(key: &str, value: &Value) -> ExtraValue {
    if is_secret_key(key) || holds_secret_key(value) {
        let text = match value {
            Value::String(s) => s.trim().to_owned(),
            other => other.to_string(),
        };
        ExtraValue::Secret(Secret::new(text))
    } else {
        ExtraValue::Plain(value.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flags_accept_json_and_strings() {
        for (value, expected) in [
            (json!(true), Some(true)),
            (json!("true"), Some(true)),
            (json!(" TRUE "), Some(true)),
            (json!("false"), Some(false)),
            (json!(false), Some(false)),
            (json!(""), None),
            (json!(null), None),
        ] {
            assert_eq!(read_flag(Some(&value)), Ok(expected), "{value}");
        }
        assert!(
            read_flag(Some(&json!("yes")))
                .unwrap_err()
                .contains("\"yes\"")
        );
        assert!(read_flag(Some(&json!(1))).is_err());
    }

    #[test]
    fn whole_numbers_accept_json_and_strings_in_range() {
        for value in [json!(15), json!("15"), json!(" 15 "), json!(15.0)] {
            assert_eq!(
                read_whole(Some(&value), 1, 100, "minutes"),
                Ok(Some(15)),
                "{value}"
            );
        }
        for bad in [
            json!(0),
            json!("-1"),
            json!(1.5),
            json!("fifteen"),
            json!(101),
            json!([15]),
            json!(-3),
        ] {
            assert!(read_whole(Some(&bad), 1, 100, "minutes").is_err(), "{bad}");
        }
    }

    #[test]
    fn secret_keys() {
        for key in [
            "oauth.user.token",
            "oauth.user.refresh_token",
            "epages.access.token",
            "db.password",
            "api_key",
            "apiKey",
            "client-secret",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "document.tagging",
            "filter.response.nulls",
            "oauth.user.refresh_time",
        ] {
            assert!(!is_secret_key(key), "{key}");
        }
        assert!(holds_secret_key(&json!({"nested": [{"token": "x"}]})));
    }
}
