//! Reading a response body within a size limit, and finding the records
//! (kept byte-for-byte as raw JSON) and the `next` link in it.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use crate::element::RecordsPath;

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// More than the limit (by `Content-Length` or while streaming).
    TooLarge,
    /// The connection failed mid-body after `received` bytes.
    Read { received: u64, message: String },
}

/// Reads the whole body, refusing it as soon as it exceeds `limit` bytes:
/// at most `limit` bytes are ever buffered, whatever the server sends.
pub async fn read_body(response: &mut reqwest::Response, limit: u64) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge);
    }
    // Pre-size from Content-Length, but not beyond 1 MiB on its word alone.
    let hint = response.content_length().unwrap_or(0).min(1 << 20);
    let mut body = Vec::with_capacity(usize::try_from(hint).unwrap_or(0));
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() as u64 + chunk.len() as u64 > limit {
                    return Err(BodyError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                return Err(BodyError::Read {
                    received: body.len() as u64,
                    message: describe(e),
                });
            }
        }
    }
}

/// The first few hundred bytes of an error body, one line, for error
/// messages. Anything in `redact` (the credential we sent) is blanked out
/// in case the provider echoes it.
pub async fn excerpt(response: &mut reqwest::Response, redact: &[&str]) -> String {
    const READ: usize = 1024;
    const KEEP: usize = 200;
    let mut raw = Vec::new();
    while raw.len() < READ {
        match response.chunk().await {
            Ok(Some(chunk)) => raw.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let mut text = String::from_utf8_lossy(&raw)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for secret in redact.iter().filter(|s| s.len() >= 4) {
        text = text.replace(secret, "***");
    }
    if let Some((cut, _)) = text.char_indices().nth(KEEP) {
        text.truncate(cut);
        text.push('…');
    }
    if text.is_empty() {
        text.push_str("(empty body)");
    }
    text
}

/// A reqwest error as one line: its own message and its causes, without
/// the URL (whose query may hold secrets).
pub fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut parts = Vec::new();
    let mut next: Option<&dyn std::error::Error> = Some(&error);
    while let Some(e) = next {
        let text = e.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// What a page body holds.
#[derive(Debug)]
pub struct Page {
    pub records: Vec<Box<RawValue>>,
    /// The `next` link, when the element's paging has one and it is set.
    pub next: Option<String>,
}

/// Why a body is not a page.
#[derive(Debug, PartialEq, Eq)]
pub enum PageError {
    /// Not JSON at all (syntax error, cut short).
    Malformed(String),
    /// JSON, but not shaped like this element's pages.
    Shape(String),
}

fn classify(e: &serde_json::Error, what: impl FnOnce() -> String) -> PageError {
    if e.is_data() {
        PageError::Shape(what())
    } else {
        PageError::Malformed(e.to_string())
    }
}

/// Parses a page: the records at `path` (each kept as its exact bytes), and
/// the top-level `next_field` if given. The whole body is validated as
/// JSON, so a page that is broken anywhere is refused as a whole.
pub fn parse_page(
    body: &[u8],
    path: &RecordsPath,
    next_field: Option<&str>,
) -> Result<Page, PageError> {
    let field = match path {
        RecordsPath::Root => {
            let records: Vec<Box<RawValue>> = serde_json::from_slice(body)
                .map_err(|e| classify(&e, || format!("expected a JSON array of records: {e}")))?;
            return Ok(Page {
                records,
                next: None,
            });
        }
        RecordsPath::Field(field) => field,
    };
    let top: BTreeMap<String, &RawValue> = serde_json::from_slice(body)
        .map_err(|e| classify(&e, || format!("expected a JSON object: {e}")))?;

    let mut segments = field.split('.');
    let first = segments.next().unwrap_or_default();
    let missing = || PageError::Shape(format!("no `{field}` field with the records"));
    let mut raw: &RawValue = top.get(first).copied().ok_or_else(missing)?;
    for segment in segments {
        let object: BTreeMap<String, &RawValue> = serde_json::from_str(raw.get())
            .map_err(|e| classify(&e, || format!("`{field}`: {e}")))?;
        raw = object.get(segment).copied().ok_or_else(missing)?;
    }
    let records: Vec<Box<RawValue>> = serde_json::from_str(raw.get())
        .map_err(|e| classify(&e, || format!("`{field}` is not an array of records: {e}")))?;

    let next = match next_field.and_then(|f| top.get(f).map(|raw| (f, raw))) {
        None => None,
        Some((f, raw)) => serde_json::from_str::<Option<String>>(raw.get())
            .map_err(|e| classify(&e, || format!("`{f}` is not a string: {e}")))?
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty()),
    };
    Ok(Page { records, next })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orders() -> RecordsPath {
        RecordsPath::Field("orders".into())
    }

    #[test]
    fn records_are_kept_byte_for_byte() {
        let body = br#"{"orders":[{"id":1, "total":10.50,"x":"\u00e9"} ,{"id":2}],"count":2,"next":"http://h/v1/orders?offset=2"}"#;
        let page = parse_page(body, &orders(), Some("next")).unwrap();
        assert_eq!(page.records.len(), 2);
        assert_eq!(
            page.records[0].get(),
            r#"{"id":1, "total":10.50,"x":"\u00e9"}"#
        );
        assert_eq!(page.next.as_deref(), Some("http://h/v1/orders?offset=2"));
    }

    #[test]
    fn next_may_be_null_or_absent() {
        let page = parse_page(br#"{"orders":[],"next":null}"#, &orders(), Some("next")).unwrap();
        assert!(page.records.is_empty() && page.next.is_none());
        let page = parse_page(br#"{"orders":[]}"#, &orders(), Some("next")).unwrap();
        assert!(page.next.is_none());
    }

    #[test]
    fn root_arrays_and_nested_paths() {
        let page = parse_page(br#"[{"id":"a"}]"#, &RecordsPath::Root, None).unwrap();
        assert_eq!(page.records[0].get(), r#"{"id":"a"}"#);
        let nested = RecordsPath::Field("data.items".into());
        let page = parse_page(br#"{"data":{"items":[1,2,3]}}"#, &nested, None).unwrap();
        assert_eq!(page.records.len(), 3);
    }

    #[test]
    fn broken_pages_are_refused_whole() {
        let cut = br#"{"orders":[{"id":1},{"id":"#;
        assert!(matches!(
            parse_page(cut, &orders(), Some("next")),
            Err(PageError::Malformed(_))
        ));
        // Broken inside a record, after a valid records array.
        let bad = br#"{"orders":[{"id":1}],"next":"x",}"#;
        assert!(matches!(
            parse_page(bad, &orders(), Some("next")),
            Err(PageError::Malformed(_))
        ));
        assert!(matches!(
            parse_page(br#"{"count":0}"#, &orders(), None),
            Err(PageError::Shape(m)) if m.contains("`orders`")
        ));
        assert!(matches!(
            parse_page(br#"{"orders":{"id":1}}"#, &orders(), None),
            Err(PageError::Shape(_))
        ));
        assert!(matches!(
            parse_page(br#"{"orders":[],"next":5}"#, &orders(), Some("next")),
            Err(PageError::Shape(_))
        ));
        assert!(matches!(
            parse_page(br#"{"message":"oops"}"#, &RecordsPath::Root, None),
            Err(PageError::Shape(_))
        ));
        assert!(matches!(
            parse_page(b"", &RecordsPath::Root, None),
            Err(PageError::Malformed(_))
        ));
    }
}
