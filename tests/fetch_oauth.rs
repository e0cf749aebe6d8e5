//! OAuth2 against a fake Keap whose refresh tokens rotate (each refresh
//! invalidates the previous refresh token). The fake and the token store
//! write into one event log, so the tests can check *order*: a new refresh
//! token is saved before the access token that came with it is used.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use chrono::{TimeDelta, Utc};
use event_poller::element::{ConnectionMode, element};
use event_poller::fetch::{
    Auth, FetchError, FetchLimits, Fetcher, MemoryTokenStore, OAuth2Client, TokenManager, TokenSet,
    http_client,
};
use event_poller::secret::Secret;
use event_poller::source::{CredentialStore, FetchRequest, StoreError};
use futures::future::BoxFuture;
use reqwest::Url;

/// Every secret in these tests contains this marker, so captured logs can
/// be searched for leaks.
const MARK: &str = "SECRETVALUE";
/// `client-id:client-SECRETVALUE` in base64.
const BASIC: &str = "Basic Y2xpZW50LWlkOmNsaWVudC1TRUNSRVRWQUxVRQ==";
const CALLBACK: &str = "https://example.com/callback";
const CODE: &str = "code-SECRETVALUE";
const INSTANCE: &str = "instance-1";

type Events = Arc<Mutex<Vec<String>>>;

fn push(events: &Events, event: String) {
    events.lock().unwrap().push(event);
}

fn at(n: u32) -> String {
    format!("atok-{n}-{MARK}")
}

fn rt(n: u32) -> String {
    format!("rtok-{n}-{MARK}")
}

/// A Keap-like provider: `POST /token` and `GET /crm/rest/v1/orders`.
#[derive(Default)]
struct Keap {
    events: Events,
    codes: Mutex<HashSet<String>>,
    refresh_tokens: Mutex<HashSet<String>>,
    access_tokens: Mutex<HashSet<String>>,
    issued: AtomicU32,
    /// `expires_in` of the next issued tokens; 3600 when empty.
    expires_in: Mutex<VecDeque<i64>>,
    /// Answer this many upcoming API calls with 401, whatever the token.
    reject_api: AtomicU32,
    /// When non-zero, `/token` answers this status.
    token_status: AtomicU16,
    refreshes: AtomicU32,
    /// Every `/token` request, answered or not.
    token_requests: AtomicU32,
}

impl Keap {
    fn new(events: &Events) -> Arc<Self> {
        let keap = Self {
            events: Arc::clone(events),
            ..Self::default()
        };
        keap.codes.lock().unwrap().insert(CODE.into());
        Arc::new(keap)
    }

    /// Makes a token pair valid, as if issued earlier.
    fn preload(&self, n: u32) {
        self.access_tokens.lock().unwrap().insert(at(n));
        self.refresh_tokens.lock().unwrap().insert(rt(n));
    }

    async fn serve(self: &Arc<Self>) -> SocketAddr {
        let app = Router::new()
            .route("/token", post(token))
            .route("/crm/rest/v1/orders", get(orders))
            .with_state(Arc::clone(self));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": error, "error_description": format!("{error} says the fake")})),
    )
        .into_response()
}

async fn token(
    State(keap): State<Arc<Keap>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    keap.token_requests.fetch_add(1, Ordering::SeqCst);
    let status = keap.token_status.load(Ordering::SeqCst);
    if status != 0 {
        return (StatusCode::from_u16(status).unwrap(), "token endpoint down").into_response();
    }
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(BASIC) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let grant = form.get("grant_type").cloned().unwrap_or_default();
    let accepted = match grant.as_str() {
        "authorization_code" => {
            form.get("redirect_uri").map(String::as_str) == Some(CALLBACK)
                && form
                    .get("code")
                    .is_some_and(|c| keap.codes.lock().unwrap().remove(c))
        }
        "refresh_token" => {
            // Rotation: the presented refresh token dies now.
            let ok = form
                .get("refresh_token")
                .is_some_and(|r| keap.refresh_tokens.lock().unwrap().remove(r));
            if ok {
                keap.refreshes.fetch_add(1, Ordering::SeqCst);
            }
            ok
        }
        _ => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    };
    if !accepted {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let n = keap.issued.fetch_add(1, Ordering::SeqCst) + 1;
    keap.access_tokens.lock().unwrap().insert(at(n));
    keap.refresh_tokens.lock().unwrap().insert(rt(n));
    let expires_in = keap.expires_in.lock().unwrap().pop_front().unwrap_or(3600);
    push(&keap.events, format!("token {grant} -> {}", rt(n)));
    Json(serde_json::json!({
        "access_token": at(n),
        "token_type": "bearer",
        "expires_in": expires_in,
        "refresh_token": rt(n),
        "scope": "full|sandbox.infusionsoft.com",
    }))
    .into_response()
}

async fn orders(State(keap): State<Arc<Keap>>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_owned();
    let rejected = keap
        .reject_api
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if rejected || !keap.access_tokens.lock().unwrap().contains(&bearer) {
        push(&keap.events, format!("api 401 {bearer}"));
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"message":"Invalid Access Token"}"#,
        )
            .into_response();
    }
    push(&keap.events, format!("api {bearer}"));
    Json(serde_json::json!({"orders": [{"id": 1}], "count": 1, "next": null})).into_response()
}

/// A store that logs saves into the shared event log and can fail them.
struct RecordingStore {
    memory: MemoryTokenStore,
    events: Events,
    fail_saves: AtomicBool,
}

impl RecordingStore {
    fn new(events: &Events) -> Arc<Self> {
        Arc::new(Self {
            memory: MemoryTokenStore::new(),
            events: Arc::clone(events),
            fail_saves: AtomicBool::new(false),
        })
    }
}

impl CredentialStore for RecordingStore {
    fn load<'a>(
        &'a self,
        instance_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        self.memory.load(instance_id)
    }

    fn save<'a>(
        &'a self,
        instance_id: &'a str,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let tokens: TokenSet = serde_json::from_slice(&bytes).expect("a token set");
            let rt = tokens.refresh_token.expose();
            if self.fail_saves.load(Ordering::SeqCst) {
                push(&self.events, format!("save failed {rt}"));
                return Err(StoreError::new("broker unavailable"));
            }
            self.memory.save(instance_id, bytes.clone()).await?;
            push(&self.events, format!("save {rt}"));
            Ok(())
        })
    }
}

fn limits() -> FetchLimits {
    FetchLimits {
        request_timeout: Duration::from_secs(5),
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        ..FetchLimits::default()
    }
}

fn manager(addr: SocketAddr, store: Arc<dyn CredentialStore>, code: Option<&str>) -> TokenManager {
    let limits = limits();
    let def = element("infusionsoftecommerce", ConnectionMode::Direct).unwrap();
    let root = Url::parse(&format!("http://{addr}/crm/rest")).unwrap();
    let token_url = def.token_url(&root).unwrap().unwrap();
    TokenManager::new(
        INSTANCE,
        OAuth2Client {
            token_url,
            client_id: Secret::new("client-id"),
            client_secret: Secret::new(format!("client-{MARK}")),
            redirect_uri: CALLBACK.into(),
            authorization_code: code.map(Secret::new),
        },
        store,
        http_client(&limits).unwrap(),
        limits,
    )
}

fn fetcher(addr: SocketAddr, tokens: TokenManager) -> Fetcher {
    let limits = limits();
    Fetcher::new(
        http_client(&limits).unwrap(),
        element("infusionsoftecommerce", ConnectionMode::Direct).unwrap(),
        Some(&format!("http://{addr}/crm/rest")),
        Auth::OAuth2(tokens),
        limits,
    )
    .unwrap()
}

fn request() -> FetchRequest {
    FetchRequest {
        url: "/hubs/ecommerce/orders?where=since='2024-01-01T00%3A00%3A00Z'".into(),
        page_size: None,
        keyset: None,
        pause: Default::default(),
    }
}

/// A stored set for token pair `n`, expiring in `left`, issued a day
/// before expiry.
fn stored(n: u32, left: TimeDelta) -> TokenSet {
    let expires_at = Utc::now() + left;
    TokenSet {
        access_token: Secret::new(at(n)),
        refresh_token: Secret::new(rt(n)),
        expires_at,
        issued_at: Some(expires_at - TimeDelta::hours(24)),
        refused_at: None,
    }
}

fn events(events: &Events) -> Vec<String> {
    events.lock().unwrap().clone()
}

#[tokio::test]
async fn code_exchange_then_rotation_persisted_before_use_and_restart_uses_the_store() {
    let log = Events::default();
    let keap = Keap::new(&log);
    // The first token is due for refresh at once.
    keap.expires_in.lock().unwrap().push_back(0);
    let addr = keap.serve().await;
    let store = RecordingStore::new(&log);

    let fetch = fetcher(addr, manager(addr, store.clone(), Some(CODE)));
    fetch.fetch_window(request()).await.unwrap();
    fetch.fetch_window(request()).await.unwrap();

    assert_eq!(
        events(&log),
        [
            format!("token authorization_code -> {}", rt(1)),
            format!("save {}", rt(1)),
            format!("api {}", at(1)),
            format!("token refresh_token -> {}", rt(2)),
            format!("save {}", rt(2)),
            format!("api {}", at(2)),
        ]
    );
    assert_eq!(
        store.memory.get(INSTANCE).unwrap().refresh_token.expose(),
        rt(2)
    );
    assert!(!keap.refresh_tokens.lock().unwrap().contains(&rt(1)));

    // A restart: a new manager with the same store (and the instance file's
    // long-used code) uses the stored token without any token request.
    log.lock().unwrap().clear();
    let restarted = fetcher(addr, manager(addr, store.clone(), Some(CODE)));
    restarted.fetch_window(request()).await.unwrap();
    assert_eq!(events(&log), [format!("api {}", at(2))]);
}

#[tokio::test]
async fn a_401_refreshes_once_and_retries_once() {
    let log = Events::default();
    let keap = Keap::new(&log);
    keap.preload(0);
    let addr = keap.serve().await;
    let store = RecordingStore::new(&log);
    store.memory.put(INSTANCE, stored(0, TimeDelta::hours(20)));
    let fetch = fetcher(addr, manager(addr, store.clone(), None));

    keap.reject_api.store(1, Ordering::SeqCst);
    let window = fetch.fetch_window(request()).await.unwrap();
    assert_eq!(window.records.len(), 1);
    assert_eq!(
        events(&log),
        [
            format!("api 401 {}", at(0)),
            format!("token refresh_token -> {}", rt(1)),
            format!("save {}", rt(1)),
            format!("api {}", at(1)),
        ]
    );
    assert_eq!(window.stats.status_counts.get(&401), Some(&1));
    assert_eq!(window.stats.status_counts.get(&200), Some(&1));

    // Still 401 after the refresh: fail, and only one refresh happened.
    log.lock().unwrap().clear();
    keap.reject_api.store(2, Ordering::SeqCst);
    let err = fetch.fetch_window(request()).await.unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::Unauthorized {
                refreshed: true,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(keap.refreshes.load(Ordering::SeqCst), 2);
    assert_eq!(events(&log).len(), 4, "{:?}", events(&log));
}

/// Collects everything logged on this thread (the test runtime is
/// single-threaded, so spawned tasks log here too).
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_failed_save_withholds_the_new_access_token_and_secrets_stay_out_of_logs() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let log = Events::default();
    let keap = Keap::new(&log);
    keap.preload(0);
    let addr = keap.serve().await;
    let store = RecordingStore::new(&log);
    // About to expire: it must be refreshed and cannot be used meanwhile.
    store.memory.put(INSTANCE, stored(0, TimeDelta::seconds(2)));
    let fetch = fetcher(addr, manager(addr, store.clone(), None));

    store.fail_saves.store(true, Ordering::SeqCst);
    let err = fetch.fetch_window(request()).await.unwrap_err();
    assert!(matches!(err, FetchError::Store { .. }), "{err}");
    assert!(err.is_retriable());
    assert_eq!(
        events(&log),
        [
            format!("token refresh_token -> {}", rt(1)),
            format!("save failed {}", rt(1)),
        ],
        "the new access token must not reach the API before it is saved"
    );

    // The store recovers: the kept set is saved first, then used; no second
    // refresh (rtok-0 is dead at the provider, only rtok-1 works).
    store.fail_saves.store(false, Ordering::SeqCst);
    fetch.fetch_window(request()).await.unwrap();
    assert_eq!(
        events(&log)[2..],
        [format!("save {}", rt(1)), format!("api {}", at(1))]
    );
    assert_eq!(keap.refreshes.load(Ordering::SeqCst), 1);

    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("Could not persist rotated OAuth2 tokens"),
        "{logs}"
    );
    assert!(logs.contains("OAuth2 tokens persisted"), "{logs}");
    assert!(
        !logs.contains(MARK),
        "a secret leaked into the logs:\n{logs}"
    );
    assert!(
        !logs.contains("Y2xpZW50"),
        "client credentials leaked:\n{logs}"
    );
    assert!(!format!("{err:?} {fetch:?}").contains(MARK));
}

#[tokio::test]
async fn concurrent_callers_share_one_refresh() {
    let log = Events::default();
    let keap = Keap::new(&log);
    keap.preload(0);
    let addr = keap.serve().await;
    let store = RecordingStore::new(&log);
    store.memory.put(INSTANCE, stored(0, TimeDelta::seconds(2)));
    let tokens = manager(addr, store.clone(), None);

    let calls = (0..8).map(|_| {
        let tokens = tokens.clone();
        async move { tokens.access_token().await }
    });
    let got = futures::future::join_all(calls).await;
    for token in got {
        assert_eq!(token.unwrap().expose(), at(1));
    }
    assert_eq!(keap.refreshes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn refused_grants_name_the_grant_and_the_error_code() {
    let log = Events::default();
    let keap = Keap::new(&log);
    let addr = keap.serve().await;

    // A refresh token the provider no longer knows (rotated away).
    let store = RecordingStore::new(&log);
    store.memory.put(INSTANCE, stored(7, TimeDelta::seconds(2)));
    let err = manager(addr, store, None).access_token().await.unwrap_err();
    assert!(
        matches!(&err, FetchError::Auth { grant: "refresh_token", error, status: Some(400), .. } if error == "invalid_grant"),
        "{err}"
    );
    assert!(!err.is_retriable());
    let text = err.to_string();
    assert!(
        text.contains("refresh_token grant") && text.contains("invalid_grant"),
        "{text}"
    );
    assert!(!text.contains(MARK), "{text}");

    // A code that was already used.
    let err = manager(
        addr,
        RecordingStore::new(&log),
        Some("code-used-SECRETVALUE"),
    )
    .access_token()
    .await
    .unwrap_err();
    assert!(
        matches!(&err, FetchError::Auth { grant: "authorization_code", error, .. } if error == "invalid_grant"),
        "{err}"
    );

    // Neither a stored token nor a code.
    let err = manager(addr, RecordingStore::new(&log), None)
        .access_token()
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::NoCredentials { .. }), "{err}");
}

#[tokio::test]
async fn a_dead_refresh_token_falls_back_to_a_fresh_code() {
    let log = Events::default();
    let keap = Keap::new(&log);
    let addr = keap.serve().await;
    let store = RecordingStore::new(&log);
    store.memory.put(INSTANCE, stored(7, TimeDelta::seconds(2)));
    let token = manager(addr, store.clone(), Some(CODE))
        .access_token()
        .await
        .unwrap();
    assert_eq!(token.expose(), at(1));
    assert_eq!(
        events(&log),
        [
            format!("token authorization_code -> {}", rt(1)),
            format!("save {}", rt(1)),
        ]
    );
}

#[tokio::test]
async fn a_failed_early_refresh_keeps_using_the_valid_token() {
    let log = Events::default();
    let keap = Keap::new(&log);
    keap.preload(0);
    keap.token_status.store(503, Ordering::SeqCst);
    let addr = keap.serve().await;
    let store = RecordingStore::new(&log);
    // 10 % of a day is 2.4 h: 1 h left means "refresh now", but the token
    // still works for an hour.
    store.memory.put(INSTANCE, stored(0, TimeDelta::hours(1)));
    let fetch = fetcher(addr, manager(addr, store, None));
    for _ in 0..2 {
        let window = fetch.fetch_window(request()).await.unwrap();
        assert_eq!(window.records.len(), 1);
    }
    assert_eq!(
        events(&log),
        [format!("api {}", at(0)), format!("api {}", at(0))]
    );
    // One failed refresh (with its retries), then a pause: the second
    // window did not try again.
    let limits = limits();
    assert_eq!(
        keap.token_requests.load(Ordering::SeqCst),
        limits.max_attempts
    );
}
