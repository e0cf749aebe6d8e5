//! The fetch layer against small in-test HTTP servers on 127.0.0.1:0:
//! paging (offset and cursor), retries, throttling, size limits, broken
//! pages and the same-origin rule.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use event_poller::element::{AuthKind, ConnectionMode, ElementDef, element};
use event_poller::fetch::{Auth, FetchError, FetchLimits, Fetcher, http_client};
use event_poller::instance::HubCredentials;
use event_poller::secret::Secret;
use event_poller::source::{FetchRequest, Fetched};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One scripted answer.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// Send the body chunked, without `Content-Length`.
    chunked: bool,
    delay: Duration,
}

impl Reply {
    fn json(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: body.into().into_bytes(),
            chunked: false,
            delay: Duration::ZERO,
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// What the server saw.
#[derive(Clone, Debug)]
struct Seen {
    uri: String,
    authorization: Option<String>,
    at: Instant,
}

/// A server answering every request with the next scripted reply, and
/// recording each request.
#[derive(Clone, Default)]
struct Script {
    replies: Arc<Mutex<VecDeque<Reply>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Script {
    fn push(&self, reply: Reply) {
        self.replies.lock().unwrap().push_back(reply);
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    async fn serve(&self) -> SocketAddr {
        let app = Router::new().fallback(answer).with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }
}

async fn answer(State(script): State<Script>, request: Request) -> Response {
    script.seen.lock().unwrap().push(Seen {
        uri: request.uri().to_string(),
        authorization: request
            .headers()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned()),
        at: Instant::now(),
    });
    let Some(reply) = script.replies.lock().unwrap().pop_front() else {
        return (StatusCode::IM_A_TEAPOT, "script exhausted").into_response();
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let body = if reply.chunked {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            reply.body.chunks(256).map(|c| Ok(c.to_vec())).collect();
        Body::from_stream(futures::stream::iter(chunks))
    } else {
        Body::from(reply.body)
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
    for (name, value) in reply.headers {
        response.headers_mut().insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(&value).unwrap(),
        );
    }
    response
}

fn limits() -> FetchLimits {
    FetchLimits {
        request_timeout: Duration::from_secs(5),
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        ..FetchLimits::default()
    }
}

/// Keap direct, without OAuth (the OAuth flows have their own tests).
fn keap() -> ElementDef {
    let mut def = element("infusionsoftecommerce", ConnectionMode::Direct).unwrap();
    def.auth = AuthKind::None;
    def
}

fn keap_fetcher(addr: SocketAddr, limits: FetchLimits) -> Fetcher {
    let client = http_client(&limits).unwrap();
    let root = format!("http://{addr}/crm/rest");
    Fetcher::new(client, keap(), Some(&root), Auth::None, limits).unwrap()
}

const SEED_URL: &str = "/hubs/ecommerce/orders?where=since='2024-01-01T00%3A00%3A00Z' ";

fn seed(page_size: Option<u32>) -> FetchRequest {
    FetchRequest {
        url: SEED_URL.into(),
        page_size,
        keyset: None,
        pause: Default::default(),
    }
}

fn hub_auth(user: &str, organization: &str, element: &str) -> Auth {
    Auth::hub(&HubCredentials {
        user_secret: Some(Secret::new(user)),
        organization_secret: Some(Secret::new(organization)),
        element_token: Some(Secret::new(element)),
    })
    .unwrap()
}

fn ids(window: &Fetched) -> Vec<String> {
    window.records.iter().map(|r| r.get().to_owned()).collect()
}

fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

#[tokio::test]
async fn offset_paging_follows_next_until_a_short_page() {
    let script = Script::default();
    let addr = script.serve().await;
    let link = |offset: u32| {
        format!(
            "\"http://{addr}/crm/rest/v1/orders/?since=2024-01-01T00%3A00%3A00Z&limit=2&offset={offset}\""
        )
    };
    script.push(
        Reply::json(
            200,
            format!(
                r#"{{"orders":[{{"id":1, "total": 1.50}},{{"id":2}}],"count":5,"next":{}}}"#,
                link(2)
            ),
        )
        .header("date", "Tue, 01 Oct 2024 09:59:58 GMT"),
    );
    script.push(Reply::json(
        200,
        format!(
            r#"{{"orders":[{{"id":3}},{{"id":4}}],"count":5,"next":{}}}"#,
            link(4)
        ),
    ));
    // Keap gives `next` even on the last page: the short page ends it.
    script.push(
        Reply::json(
            200,
            format!(r#"{{"orders":[{{"id":5}}],"count":5,"next":{}}}"#, link(6)),
        )
        .header("date", "Tue, 01 Oct 2024 10:00:00 GMT"),
    );

    let window = keap_fetcher(addr, limits())
        .fetch_window(seed(Some(2)))
        .await
        .unwrap();

    assert_eq!(
        ids(&window),
        [
            r#"{"id":1, "total": 1.50}"#,
            r#"{"id":2}"#,
            r#"{"id":3}"#,
            r#"{"id":4}"#,
            r#"{"id":5}"#
        ]
    );
    assert_eq!(window.pages, 3);
    assert!(!window.truncated && window.resume_url.is_none());
    // The provider's clock as of the window's last answer, and its skew
    // measured on that request (this provider is two years behind).
    assert_eq!(
        window.provider_date,
        Some("2024-10-01T10:00:00Z".parse().unwrap())
    );
    let skew = window.provider_skew.expect("skew measured");
    assert!(skew < chrono::TimeDelta::days(-365), "{skew}");
    assert_eq!(window.stats.requests, 3);
    assert_eq!(window.stats.status_counts.get(&200), Some(&3));
    let uris: Vec<String> = script.seen().into_iter().map(|s| s.uri).collect();
    assert_eq!(
        uris[0],
        "/crm/rest/v1/orders?since=2024-01-01T00:00:00Z&limit=2"
    );
    assert!(uris[1].ends_with("limit=2&offset=2"), "{uris:?}");
    assert!(uris[2].ends_with("limit=2&offset=4"), "{uris:?}");
}

#[tokio::test]
async fn page_size_comes_from_the_url_and_is_capped() {
    let script = Script::default();
    let addr = script.serve().await;
    script.push(Reply::json(200, r#"{"orders":[],"next":null}"#));
    script.push(Reply::json(200, r#"{"orders":[],"next":null}"#));
    let fetcher = keap_fetcher(addr, limits());
    fetcher
        .fetch_window(FetchRequest {
            url: format!("{}&pageSize=7", SEED_URL.trim()),
            page_size: None,
            keyset: None,
            pause: Default::default(),
        })
        .await
        .unwrap();
    fetcher.fetch_window(seed(Some(5000))).await.unwrap();
    let uris: Vec<String> = script.seen().into_iter().map(|s| s.uri).collect();
    assert!(uris[0].ends_with("&limit=7"), "{uris:?}");
    assert!(uris[1].ends_with("&limit=1000"), "{uris:?}");
}

#[tokio::test]
async fn cursor_paging_stops_on_an_empty_page_that_still_has_a_token() {
    let script = Script::default();
    let addr = script.serve().await;
    script.push(
        Reply::json(200, r#"[{"id":1},{"id":2}]"#).header("elements-next-page-token", "djE6Mg"),
    );
    script.push(Reply::json(200, r#"[{"id":3}]"#).header("elements-next-page-token", "djE6Mw"));
    script.push(Reply::json(200, "[]").header("elements-next-page-token", "djE6NA"));

    let hub = element("infusionsoftecommerce", ConnectionMode::Hub).unwrap();
    let auth = hub_auth("u-secret", "o-secret", "e-token");
    let limits = limits();
    let fetcher = Fetcher::new(
        http_client(&limits).unwrap(),
        hub,
        Some(&format!("http://{addr}/elements/api-v2/")),
        auth,
        limits,
    )
    .unwrap();
    let window = fetcher.fetch_window(seed(None)).await.unwrap();

    assert_eq!(ids(&window), [r#"{"id":1}"#, r#"{"id":2}"#, r#"{"id":3}"#]);
    assert_eq!(window.pages, 3);
    let seen = script.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(
        seen[0].uri,
        "/elements/api-v2/hubs/ecommerce/orders?where=since=%272024-01-01T00%3A00%3A00Z%27&pageSize=200"
    );
    assert!(
        seen[1].uri.ends_with("&pageSize=200&nextPage=djE6Mg"),
        "{}",
        seen[1].uri
    );
    assert!(
        seen[2].uri.ends_with("&pageSize=200&nextPage=djE6Mw"),
        "{}",
        seen[2].uri
    );
    for s in &seen {
        assert_eq!(
            s.authorization.as_deref(),
            Some("User u-secret, Organization o-secret, Element e-token")
        );
    }
    assert!(!format!("{fetcher:?}").contains("u-secret"));
}

/// A hub that echoes the request's `Authorization` in its error body: the
/// error (what reaches the log) names the status, never the hub secrets.
#[tokio::test]
async fn hub_secrets_echoed_in_an_error_body_are_redacted() {
    let script = Script::default();
    let addr = script.serve().await;
    script.push(Reply::json(
        400,
        r#"{"message":"bad request","requestHeaders":{"Authorization":"User u-secret, Organization o-secret, Element e-token"}}"#,
    ));
    let hub = element("infusionsoftecommerce", ConnectionMode::Hub).unwrap();
    let limits = limits();
    let fetcher = Fetcher::new(
        http_client(&limits).unwrap(),
        hub,
        Some(&format!("http://{addr}/elements/api-v2/")),
        hub_auth("u-secret", "o-secret", "e-token"),
        limits,
    )
    .unwrap();
    let error = fetcher.fetch_window(seed(None)).await.unwrap_err();
    let shown = format!("{error} {error:?}");
    assert!(shown.contains("400"), "{shown}");
    for secret in ["u-secret", "o-secret", "e-token"] {
        assert!(!shown.contains(secret), "{secret} in: {shown}");
    }
}

#[tokio::test]
async fn server_errors_are_retried_and_counted() {
    let script = Script::default();
    let addr = script.serve().await;
    script.push(Reply::json(
        503,
        r#"{"fault":{"faultstring":"The Service is temporarily unavailable"}}"#,
    ));
    script.push(Reply::json(500, r#"{"message":"Internal Server Error"}"#));
    script.push(Reply::json(200, r#"{"orders":[{"id":1}],"next":null}"#));

    let fetcher = keap_fetcher(addr, limits());
    let window = fetcher.fetch_window(seed(None)).await.unwrap();

    assert_eq!(window.records.len(), 1);
    assert_eq!(window.stats.requests, 3);
    assert_eq!(window.stats.retries, 2);
    assert_eq!(window.stats.status_counts.get(&503), Some(&1));
    assert_eq!(window.stats.status_counts.get(&500), Some(&1));
    assert_eq!(window.stats.status_counts.get(&200), Some(&1));
    assert_eq!(fetcher.totals(), window.stats);
}

#[tokio::test]
async fn server_errors_give_up_after_max_attempts() {
    let script = Script::default();
    let addr = script.serve().await;
    for _ in 0..3 {
        script.push(Reply::json(502, "bad gateway"));
    }
    let fetcher = keap_fetcher(
        addr,
        FetchLimits {
            max_attempts: 3,
            ..limits()
        },
    );
    let err = fetcher.fetch_window(seed(None)).await.unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::Status {
                status: 502,
                attempts: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_retriable());
    assert_eq!(script.seen().len(), 3);
    // Failed windows still count.
    assert_eq!(fetcher.totals().status_counts.get(&502), Some(&3));
}

#[tokio::test]
async fn client_errors_fail_at_once_naming_path_and_status_not_the_query() {
    let script = Script::default();
    let addr = script.serve().await;
    script.push(Reply::json(404, r#"{"message":"Resource   not found"}"#));
    let err = keap_fetcher(addr, limits())
        .fetch_window(seed(None))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, FetchError::Status { status: 404, .. }),
        "{text}"
    );
    assert!(!err.is_retriable());
    assert!(text.contains("GET /crm/rest/v1/orders"), "{text}");
    assert!(
        text.contains(r#"{"message":"Resource not found"}"#),
        "{text}"
    );
    assert!(!text.contains("since"), "{text}");
    assert_eq!(script.seen().len(), 1);
}

#[tokio::test]
async fn timeouts_are_retried() {
    let script = Script::default();
    let addr = script.serve().await;
    let mut slow = Reply::json(200, r#"{"orders":[],"next":null}"#);
    slow.delay = Duration::from_secs(2);
    script.push(slow);
    script.push(Reply::json(200, r#"{"orders":[{"id":1}],"next":null}"#));
    let window = keap_fetcher(
        addr,
        FetchLimits {
            request_timeout: Duration::from_millis(300),
            ..limits()
        },
    )
    .fetch_window(seed(None))
    .await
    .unwrap();
    assert_eq!(window.records.len(), 1);
    assert_eq!(window.stats.requests, 2);
    assert_eq!(window.stats.retries, 1);
    assert_eq!(window.stats.status_counts.get(&200), Some(&1));
}

#[tokio::test]
async fn throttled_requests_wait_for_retry_after_seconds() {
    let script = Script::default();
    let addr = script.serve().await;
    script.push(Reply::json(429, r#"{"fault":{}}"#).header("retry-after", "1"));
    script.push(Reply::json(200, r#"{"orders":[{"id":1}],"next":null}"#));

    let window = keap_fetcher(addr, limits())
        .fetch_window(seed(None))
        .await
        .unwrap();

    let seen = script.seen();
    assert_eq!(seen.len(), 2);
    let waited = seen[1].at - seen[0].at;
    assert!(waited >= Duration::from_secs(1), "waited only {waited:?}");
    assert_eq!(window.stats.throttled_waits, 1);
    assert_eq!(window.stats.retries, 0);
    assert!(window.stats.waited >= Duration::from_secs(1));
    assert_eq!(window.stats.status_counts.get(&429), Some(&1));
}

#[tokio::test]
async fn throttled_requests_wait_for_retry_after_http_date() {
    let script = Script::default();
    let addr = script.serve().await;
    // The provider's clock is 5 minutes ahead; the date is read against
    // its own `Date` header, so the wait is 1 s, not 5 min + 1 s.
    let provider_now = (Utc::now() + TimeDelta::minutes(5)).trunc_subsecs(0);
    script.push(
        Reply::json(429, r#"{"fault":{}}"#)
            .header("date", http_date(provider_now))
            .header(
                "retry-after",
                http_date(provider_now + TimeDelta::seconds(1)),
            ),
    );
    script.push(Reply::json(200, r#"{"orders":[{"id":1}],"next":null}"#));

    let window = keap_fetcher(addr, limits())
        .fetch_window(seed(None))
        .await
        .unwrap();

    let seen = script.seen();
    let waited = seen[1].at - seen[0].at;
    assert!(waited >= Duration::from_secs(1), "waited only {waited:?}");
    assert!(
        waited < Duration::from_secs(30),
        "read against our clock: {waited:?}"
    );
    assert_eq!(window.stats.throttled_waits, 1);
}

#[tokio::test]
async fn throttled_without_hints_backs_off_and_gives_up_eventually() {
    let script = Script::default();
    let addr = script.serve().await;
    for _ in 0..3 {
        script.push(Reply::json(429, "slow down"));
    }
    let fetcher = keap_fetcher(
        addr,
        FetchLimits {
            max_throttle_waits: 2,
            ..limits()
        },
    );
    let err = fetcher.fetch_window(seed(None)).await.unwrap_err();
    assert!(
        matches!(err, FetchError::Throttled { waits: 2, .. }),
        "{err}"
    );
    assert!(err.is_retriable());
    assert_eq!(fetcher.totals().throttled_waits, 2);
    assert_eq!(fetcher.totals().status_counts.get(&429), Some(&3));
    let seen = script.seen();
    assert_eq!(seen.len(), 3);
    // Never "retry at once": at least the backoff base between tries.
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(10));
}

#[tokio::test]
async fn a_malformed_page_fails_the_whole_window() {
    let script = Script::default();
    let addr = script.serve().await;
    script.push(Reply::json(
        200,
        format!(r#"{{"orders":[{{"id":1}},{{"id":2}}],"next":"http://{addr}/crm/rest/v1/orders?limit=2&offset=2"}}"#),
    ));
    script.push(Reply::json(200, r#"{"orders":[{"id":3},{"id":"#));
    let err = keap_fetcher(addr, limits())
        .fetch_window(seed(Some(2)))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Malformed { .. }), "{err}");
    assert!(err.is_retriable());
    assert_eq!(script.seen().len(), 2);
}

#[tokio::test]
async fn a_page_without_the_records_field_fails_the_window() {
    let script = Script::default();
    let addr = script.serve().await;
    script.push(Reply::json(200, r#"{"message":"maintenance"}"#));
    let err = keap_fetcher(addr, limits())
        .fetch_window(seed(None))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Shape { .. }), "{err}");
    assert!(err.to_string().contains("`orders`"), "{err}");
}

/// A raw server announcing 1000 bytes and closing after a few.
async fn truncating_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"orders\":[{\"id\":1},",
                    )
                    .await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (addr, connections)
}

#[tokio::test]
async fn a_truncated_body_is_retried_then_fails_the_window() {
    let (addr, connections) = truncating_server().await;
    let err = keap_fetcher(
        addr,
        FetchLimits {
            max_attempts: 3,
            ..limits()
        },
    )
    .fetch_window(seed(None))
    .await
    .unwrap_err();
    assert!(
        matches!(err, FetchError::Truncated { attempts: 3, .. }),
        "{err}"
    );
    assert!(err.is_retriable());
    assert_eq!(connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_and_not_retried() {
    let script = Script::default();
    let addr = script.serve().await;
    let big = format!(
        r#"{{"orders":[{}],"next":null}}"#,
        vec![r#"{"id":1}"#; 500].join(",")
    );
    // With Content-Length: refused before reading.
    script.push(Reply::json(200, big.clone()));
    // Chunked, no length: refused while streaming.
    let mut chunked = Reply::json(200, big);
    chunked.chunked = true;
    script.push(chunked);

    let fetcher = keap_fetcher(
        addr,
        FetchLimits {
            max_body_bytes: 1000,
            ..limits()
        },
    );
    for _ in 0..2 {
        let err = fetcher.fetch_window(seed(None)).await.unwrap_err();
        assert!(
            matches!(err, FetchError::BodyTooLarge { limit: 1000, .. }),
            "{err}"
        );
        assert!(!err.is_retriable());
    }
    assert_eq!(script.seen().len(), 2);
}

#[tokio::test]
async fn next_links_to_another_origin_are_refused() {
    let elsewhere = Script::default();
    let other = elsewhere.serve().await;
    let script = Script::default();
    let addr = script.serve().await;
    script.push(Reply::json(
        200,
        format!(r#"{{"orders":[{{"id":1}},{{"id":2}}],"next":"http://{other}/crm/rest/v1/orders?offset=2"}}"#),
    ));
    let err = keap_fetcher(addr, limits())
        .fetch_window(seed(Some(2)))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::CrossOrigin { .. }), "{err}");
    assert!(elsewhere.seen().is_empty());
}

#[tokio::test]
async fn absolute_resource_urls_must_be_on_the_api_origin() {
    let script = Script::default();
    let addr = script.serve().await;
    let err = keap_fetcher(addr, limits())
        .fetch_window(FetchRequest {
            url: "http://169.254.169.254/latest/meta-data".into(),
            page_size: None,
            keyset: None,
            pause: Default::default(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::CrossOrigin { .. }), "{err}");
    assert!(script.seen().is_empty());
}

#[tokio::test]
async fn a_page_limit_truncates_and_the_window_resumes() {
    let script = Script::default();
    let addr = script.serve().await;
    let page = |ids: &str, offset: u32| {
        Reply::json(
            200,
            format!(
                r#"{{"orders":[{ids}],"next":"http://{addr}/crm/rest/v1/orders/?limit=1&offset={offset}"}}"#
            ),
        )
    };
    script.push(page(r#"{"id":1}"#, 1));
    script.push(page(r#"{"id":2}"#, 2));
    script.push(page(r#"{"id":3}"#, 3));
    script.push(page("", 4));

    let fetcher = keap_fetcher(
        addr,
        FetchLimits {
            max_pages_per_poll: 2,
            ..limits()
        },
    );
    let first = fetcher.fetch_window(seed(Some(1))).await.unwrap();
    assert!(first.truncated);
    assert_eq!(ids(&first), [r#"{"id":1}"#, r#"{"id":2}"#]);
    let resume = first.resume_url.clone().unwrap();
    assert!(
        resume.ends_with("/crm/rest/v1/orders/?limit=1&offset=2"),
        "{resume}"
    );

    let rest = fetcher
        .fetch_window(FetchRequest {
            url: resume,
            page_size: Some(1),
            keyset: None,
            pause: Default::default(),
        })
        .await
        .unwrap();
    assert!(!rest.truncated);
    assert_eq!(ids(&rest), [r#"{"id":3}"#]);
    assert_eq!(script.seen().len(), 4);
}

#[tokio::test]
async fn hub_401_is_not_retried() {
    let script = Script::default();
    let addr = script.serve().await;
    script.push(Reply::json(
        401,
        r#"{"message":"Invalid organization or user secret"}"#,
    ));
    let limits = limits();
    let fetcher = Fetcher::new(
        http_client(&limits).unwrap(),
        element("infusionsoftecommerce", ConnectionMode::Hub).unwrap(),
        Some(&format!("http://{addr}/elements/api-v2")),
        hub_auth("u", "o", "e"),
        limits,
    )
    .unwrap();
    let err = fetcher.fetch_window(seed(None)).await.unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::Unauthorized {
                refreshed: false,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(script.seen().len(), 1);
}

#[tokio::test]
async fn untranslatable_urls_and_wrong_auth_are_refused_up_front() {
    let script = Script::default();
    let addr = script.serve().await;
    let err = keap_fetcher(addr, limits())
        .fetch_window(FetchRequest {
            url: "/hubs/ecommerce/orders?where=status='PAID'".into(),
            page_size: None,
            keyset: None,
            pause: Default::default(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Translate { .. }), "{err}");
    assert!(err.to_string().contains("status = 'PAID'"), "{err}");
    assert!(script.seen().is_empty());

    // The direct element wants OAuth2.
    let limits = limits();
    let direct = element("infusionsoftecommerce", ConnectionMode::Direct).unwrap();
    let err = Fetcher::new(
        http_client(&limits).unwrap(),
        direct.clone(),
        None,
        Auth::None,
        limits.clone(),
    )
    .unwrap_err();
    assert!(matches!(err, FetchError::Config(_)), "{err}");
    let err = Fetcher::new(
        http_client(&limits).unwrap(),
        keap(),
        Some("ftp://example.com/crm/rest"),
        Auth::None,
        limits,
    )
    .unwrap_err();
    assert!(matches!(err, FetchError::Config(_)), "{err}");
}
