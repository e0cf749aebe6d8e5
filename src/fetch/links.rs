//! URL handling: same-origin checks, query parameters, log-safe labels.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use reqwest::Url;

use super::FetchError;

/// Query values keep RFC 3986 unreserved characters; everything else is
/// escaped (page tokens are opaque and may hold `+`, `/` or `=`).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Same scheme, host and port (default ports made explicit), the browser
/// notion of origin. Credentials are only ever sent to the API root's
/// origin.
pub fn same_origin(a: &Url, b: &Url) -> bool {
    let (oa, ob) = (a.origin(), b.origin());
    // Opaque origins (non-http schemes) never equal anything, not even
    // themselves.
    oa.is_tuple() && oa == ob
}

/// `scheme://host:port`, for messages.
pub fn origin_text(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// `GET /path`: names a request in logs and errors without the query
/// (which may carry provider secrets) or credentials.
pub fn label(method: &str, url: &Url) -> String {
    format!("{method} {}", url.path())
}

/// Resolves a provider's `next` link (absolute, or relative to the page it
/// came from) and refuses it unless it stays on the API root's origin.
///
/// # Errors
/// [`FetchError::InvalidUrl`] for an unparseable link,
/// [`FetchError::CrossOrigin`] for a link to another origin.
pub fn resolve_next(root: &Url, current: &Url, next: &str) -> Result<Url, FetchError> {
    let url = current.join(next).map_err(|e| FetchError::InvalidUrl {
        url: format!("next link of {}", current.path()),
        reason: e.to_string(),
    })?;
    if !same_origin(root, &url) {
        return Err(FetchError::CrossOrigin {
            what: "next link",
            origin: origin_text(&url),
            expected: origin_text(root),
        });
    }
    Ok(url)
}

/// The decoded value of query parameter `key`, if present.
pub fn query_param(url: &Url, key: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// Sets query parameter `key` to `value`, replacing any existing one and
/// leaving every other parameter exactly as it was written.
pub fn set_query_param(url: &mut Url, key: &str, value: &str) {
    let mut pairs: Vec<String> = url
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let raw_key = p.split_once('=').map_or(*p, |(k, _)| k);
            percent_decode_str(&raw_key.replace('+', " ")).decode_utf8_lossy() != key
        })
        .map(str::to_owned)
        .collect();
    pairs.push(format!(
        "{}={}",
        utf8_percent_encode(key, QUERY_VALUE),
        utf8_percent_encode(value, QUERY_VALUE)
    ));
    url.set_query(Some(&pairs.join("&")));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn next_links_must_stay_on_the_api_origin() {
        let root = url("http://127.0.0.1:8089/crm/rest");
        let page = url("http://127.0.0.1:8089/crm/rest/v1/orders?limit=2");
        let ok = resolve_next(
            &root,
            &page,
            "http://127.0.0.1:8089/crm/rest/v1/orders/?limit=2&offset=2",
        )
        .unwrap();
        assert_eq!(ok.query(), Some("limit=2&offset=2"));
        // Relative links resolve against the page.
        let rel = resolve_next(&root, &page, "/crm/rest/v1/orders?offset=4").unwrap();
        assert_eq!(
            rel.as_str(),
            "http://127.0.0.1:8089/crm/rest/v1/orders?offset=4"
        );
        for bad in [
            "http://127.0.0.1:8090/crm/rest/v1/orders",
            "https://127.0.0.1:8089/crm/rest/v1/orders",
            "http://localhost:8089/crm/rest/v1/orders",
            "http://evil.example/crm/rest/v1/orders",
            "//evil.example/x",
            "file:///etc/passwd",
        ] {
            let err = resolve_next(&root, &page, bad).unwrap_err();
            assert!(
                matches!(err, FetchError::CrossOrigin { .. }),
                "{bad}: {err}"
            );
            assert!(!err.is_retriable());
        }
        // Default ports are the same origin.
        let https = url("https://api.infusionsoft.com/crm/rest");
        assert!(same_origin(
            &https,
            &url("https://api.infusionsoft.com:443/x")
        ));
    }

    #[test]
    fn query_params_are_replaced_and_others_kept_verbatim() {
        let mut u = url("http://h/hubs/ecommerce/orders?where=since%3D%272024%27&pageSize=5");
        set_query_param(&mut u, "pageSize", "200");
        set_query_param(&mut u, "nextPage", "djE6MjAw+/=");
        assert_eq!(
            u.query(),
            Some("where=since%3D%272024%27&pageSize=200&nextPage=djE6MjAw%2B%2F%3D")
        );
        assert_eq!(query_param(&u, "nextPage").as_deref(), Some("djE6MjAw+/="));
        assert_eq!(query_param(&u, "limit"), None);
        assert_eq!(label("GET", &u), "GET /hubs/ecommerce/orders");
    }
}
