//! OAuth2 the way Keap does it: `POST /token` and bearer tokens.
//!
//! - `grant_type=authorization_code`: exchanges a one-time code (from
//!   `--authorization-code` or `POST /_sandbox/codes`). A code works once.
//! - `grant_type=refresh_token`: every refresh returns a new access token and
//!   a **new refresh token, and the old refresh token stops working**. A
//!   client that loses the new one has lost access for good; that is the
//!   property the poller's token persistence is tested against.
//! - Client authentication: HTTP Basic (`client_id:client_secret`), which
//!   Keap documents for refreshes; `client_id`/`client_secret` form fields
//!   are accepted too (RFC 6749 §2.3.1, and Keap's code exchange uses them).
//! - Access tokens live `--access-token-ttl` seconds (Keap: 24 h) on the
//!   sandbox clock, so `PUT /_sandbox/clock` can expire them instantly.
//!   Refresh tokens do not expire. Old access tokens stay valid after a
//!   refresh until they expire.
//! - With [`RefreshReuse::UntilFirstUse`] (`--refresh-reuse until-first-use`)
//!   the old refresh token keeps working until the client *uses* what the
//!   refresh gave it (the new access token on an API call, or the new
//!   refresh token); presenting it again before that reissues a pair and
//!   voids the unused one. Several providers soften rotation this way; it is
//!   what makes "store the new refresh token before using the new access
//!   token" crash-safe. The default, [`RefreshReuse::Never`], voids the old
//!   token at once, and then no client can survive a crash between the
//!   provider's answer and its own durable write.
//! - Errors are RFC 6749 documents, as Keap sends them:
//!   `{"error":"invalid_grant","error_description":"…"}`.
//!
//! Without `--client-id` the sandbox runs **open**: the Keap API needs no
//! token at all, and `/token` still issues tokens to any client, so both
//! token-less tools (curl, demos) and OAuth-configured pollers work. With
//! `--client-id`, a valid unexpired bearer token is required.

use std::collections::{HashMap, HashSet};

use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::Sandbox;
use super::faults::lock;
use crate::Secret;

/// The `scope` Keap returns: full access to one app.
const SCOPE: &str = "full|sandbox.infusionsoft.com";

/// When a rotated-out refresh token stops working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RefreshReuse {
    /// At once, on the refresh that replaced it.
    #[default]
    Never,
    /// When the client first uses the new access or refresh token.
    UntilFirstUse,
}

/// Registered client and all live grants.
#[derive(Debug)]
pub struct Tokens {
    client: Option<(String, Secret)>,
    ttl_seconds: i64,
    codes: HashSet<String>,
    access: HashMap<String, DateTime<Utc>>,
    refresh: HashSet<String>,
    reuse: RefreshReuse,
    /// Rotated-out refresh token → the (access, refresh) pair that replaced
    /// it and has not been used yet ([`RefreshReuse::UntilFirstUse`]).
    grace: HashMap<String, (String, String)>,
    /// Unused new access token → the refresh token it replaced.
    unused: HashMap<String, String>,
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    Missing,
    Invalid,
    Expired,
}

/// A `/token` failure: status plus the OAuth error code and description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": self.error,
            "error_description": self.description,
        });
        let mut headers = HeaderMap::new();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"keap-sandbox\""),
            );
        }
        (self.status, headers, axum::Json(body)).into_response()
    }
}

/// A successful `/token` answer.
#[derive(Debug, Clone, Serialize)]
pub struct Grant {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub refresh_token: String,
    pub scope: &'static str,
}

impl Tokens {
    pub fn new(
        client: Option<(String, Secret)>,
        codes: impl IntoIterator<Item = String>,
        ttl_seconds: i64,
    ) -> Self {
        Self {
            client,
            ttl_seconds,
            codes: codes.into_iter().collect(),
            access: HashMap::new(),
            refresh: HashSet::new(),
            reuse: RefreshReuse::Never,
            grace: HashMap::new(),
            unused: HashMap::new(),
        }
    }

    pub fn with_reuse(mut self, reuse: RefreshReuse) -> Self {
        self.reuse = reuse;
        self
    }

    /// The pair replacing `old` was used: `old` is dead from now on.
    fn end_grace(&mut self, old: &str) {
        if let Some((access, _)) = self.grace.remove(old) {
            self.unused.remove(&access);
        }
    }

    /// Whether API calls need a bearer token (a client id was configured).
    pub fn enforced(&self) -> bool {
        self.client.is_some()
    }

    /// The client id for log-style messages (the throttle fault names it).
    pub fn client_id(&self) -> &str {
        self.client
            .as_ref()
            .map_or("sandbox", |(id, _)| id.as_str())
    }

    /// Mints a fresh one-time authorization code.
    pub fn mint_code(&mut self) -> String {
        let code = random_token();
        self.codes.insert(code.clone());
        code
    }

    /// Voids every access and refresh token (a user revoking the app, or
    /// the provider resetting grants): the client needs a new code.
    pub fn revoke_all(&mut self) {
        self.access.clear();
        self.refresh.clear();
        self.grace.clear();
        self.unused.clear();
    }

    /// Checks a bearer token at provider time `now`.
    ///
    /// # Errors
    /// Why the token is refused; always `Ok` when not enforced.
    pub fn check(&mut self, token: Option<&str>, now: DateTime<Utc>) -> Result<(), BearerError> {
        if !self.enforced() {
            return Ok(());
        }
        let token = token.ok_or(BearerError::Missing)?;
        let expires = *self.access.get(token).ok_or(BearerError::Invalid)?;
        if now >= expires {
            return Err(BearerError::Expired);
        }
        if let Some(old) = self.unused.remove(token) {
            self.grace.remove(&old);
        }
        Ok(())
    }

    /// Handles one `POST /token` (form fields already decoded).
    ///
    /// # Errors
    /// An RFC 6749 error: `invalid_client` (401), `invalid_request`,
    /// `invalid_grant`, `unsupported_grant_type` (400).
    pub fn token(
        &mut self,
        basic: Option<(String, String)>,
        form: &HashMap<String, String>,
        now: DateTime<Utc>,
    ) -> Result<Grant, OAuthError> {
        let field = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
        let presented = basic.or_else(|| {
            field("client_id").map(|id| {
                (
                    id.to_owned(),
                    field("client_secret").unwrap_or("").to_owned(),
                )
            })
        });
        if let Some((id, secret)) = &self.client {
            match presented {
                Some((pid, psecret)) if pid == *id && psecret == secret.expose() => {}
                Some(_) => {
                    return Err(OAuthError::new(
                        StatusCode::UNAUTHORIZED,
                        "invalid_client",
                        "Invalid client_id or client_secret",
                    ));
                }
                None => {
                    return Err(OAuthError::new(
                        StatusCode::UNAUTHORIZED,
                        "invalid_client",
                        "Client authentication is required (HTTP Basic)",
                    ));
                }
            }
        }
        let missing = |name: &str| {
            OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("Missing required parameter: {name}"),
            )
        };
        match field("grant_type") {
            Some("authorization_code") => {
                let code = field("code").ok_or_else(|| missing("code"))?;
                if !self.codes.remove(code) {
                    return Err(OAuthError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "Invalid authorization code",
                    ));
                }
            }
            Some("refresh_token") => {
                let old = field("refresh_token").ok_or_else(|| missing("refresh_token"))?;
                if self.refresh.remove(old) {
                    // Using a refresh token ends the grace of the one it
                    // replaced.
                    let replaced: Vec<String> = self
                        .grace
                        .iter()
                        .filter(|(_, (_, r))| r == old)
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in replaced {
                        self.end_grace(&k);
                    }
                } else if let Some((access, refresh)) = self.grace.remove(old) {
                    // Reused within its grace: the unused pair is void.
                    self.unused.remove(&access);
                    self.access.remove(&access);
                    self.refresh.remove(&refresh);
                } else {
                    return Err(OAuthError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "Invalid refresh token",
                    ));
                }
                let grant = self.issue(now);
                if self.reuse == RefreshReuse::UntilFirstUse {
                    self.grace.insert(
                        old.to_owned(),
                        (grant.access_token.clone(), grant.refresh_token.clone()),
                    );
                    self.unused
                        .insert(grant.access_token.clone(), old.to_owned());
                }
                return Ok(grant);
            }
            Some(other) => {
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    format!("Unsupported grant type: {other}"),
                ));
            }
            None => return Err(missing("grant_type")),
        }
        Ok(self.issue(now))
    }

    fn issue(&mut self, now: DateTime<Utc>) -> Grant {
        let access_token = random_token();
        let refresh_token = random_token();
        let expires = now + TimeDelta::seconds(self.ttl_seconds);
        // Forget expired tokens so the map does not grow without bound.
        self.access.retain(|_, e| *e > now);
        self.access.insert(access_token.clone(), expires);
        self.refresh.insert(refresh_token.clone());
        Grant {
            access_token,
            token_type: "bearer",
            expires_in: self.ttl_seconds,
            refresh_token,
            scope: SCOPE,
        }
    }
}

/// 32 hex characters of OS randomness: tokens must not be guessable or
/// reproducible, unlike the seeded data.
fn random_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// `Authorization: Basic …` → `(client_id, client_secret)`.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(rest.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// The bearer token from `Authorization: Bearer …`, or from the legacy
/// `access_token` query parameter Keap still honours.
pub fn bearer_token<'a>(headers: &'a HeaderMap, query_token: Option<&'a str>) -> Option<&'a str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .or(query_token)
        .filter(|t| !t.is_empty())
}

/// Keap's 401 for API calls: the gateway's fault document.
pub fn unauthorized(why: BearerError) -> Response {
    let (faultstring, errorcode, rfc_error) = match why {
        BearerError::Missing | BearerError::Invalid => (
            "Invalid access token",
            "keymanagement.service.invalid_access_token",
            "invalid_token",
        ),
        BearerError::Expired => (
            "Access Token expired",
            "keymanagement.service.access_token_expired",
            "invalid_token",
        ),
    };
    let mut headers = HeaderMap::new();
    let challenge = if why == BearerError::Missing {
        "Bearer realm=\"keap-sandbox\"".to_owned()
    } else {
        format!("Bearer realm=\"keap-sandbox\", error=\"{rfc_error}\"")
    };
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        headers.insert(header::WWW_AUTHENTICATE, v);
    }
    let body = serde_json::json!({
        "fault": {"faultstring": faultstring, "detail": {"errorcode": errorcode}}
    });
    (StatusCode::UNAUTHORIZED, headers, axum::Json(body)).into_response()
}

/// `POST /token`: form-encoded OAuth2 token requests.
pub async fn token_endpoint(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The body must be application/x-www-form-urlencoded",
        )
        .into_response();
    };
    let now = sb.0.clock.now();
    let result = lock(&sb.0.tokens).token(basic_credentials(&headers), &form, now);
    match result {
        Ok(grant) => ([(header::CACHE_CONTROL, "no-store")], axum::Json(grant)).into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
    }

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn client() -> Option<(String, String)> {
        Some(("id".into(), "secret".into()))
    }

    #[test]
    fn code_once_then_rotating_refresh() {
        let mut t = Tokens::new(
            Some(("id".into(), Secret::new("secret"))),
            ["c1".to_owned()],
            60,
        );
        let code = form(&[("grant_type", "authorization_code"), ("code", "c1")]);
        let g1 = t.token(client(), &code, now()).unwrap();
        assert_eq!(
            t.token(client(), &code, now()).unwrap_err().error,
            "invalid_grant"
        );
        let refresh = |tok: &str| form(&[("grant_type", "refresh_token"), ("refresh_token", tok)]);
        let g2 = t
            .token(client(), &refresh(&g1.refresh_token), now())
            .unwrap();
        assert_ne!(g2.refresh_token, g1.refresh_token);
        let again = t.token(client(), &refresh(&g1.refresh_token), now());
        assert_eq!(again.unwrap_err().error, "invalid_grant");
        assert!(t.check(Some(&g2.access_token), now()).is_ok());
        assert_eq!(
            t.check(Some(&g2.access_token), now() + TimeDelta::seconds(60)),
            Err(BearerError::Expired)
        );
        assert_eq!(t.check(None, now()), Err(BearerError::Missing));
        assert_eq!(t.check(Some("x"), now()), Err(BearerError::Invalid));
    }

    #[test]
    fn until_first_use_keeps_the_old_refresh_token_until_the_new_pair_is_used() {
        let mut t = Tokens::new(
            Some(("id".into(), Secret::new("secret"))),
            ["c".to_string()],
            60,
        )
        .with_reuse(RefreshReuse::UntilFirstUse);
        let code = form(&[("grant_type", "authorization_code"), ("code", "c")]);
        let g1 = t.token(client(), &code, now()).unwrap();
        let refresh = |tok: &str| form(&[("grant_type", "refresh_token"), ("refresh_token", tok)]);
        let g2 = t
            .token(client(), &refresh(&g1.refresh_token), now())
            .unwrap();
        // Crash before storing g2: the old refresh token still works, and
        // the unused pair g2 is void.
        let g3 = t
            .token(client(), &refresh(&g1.refresh_token), now())
            .unwrap();
        assert_eq!(
            t.check(Some(&g2.access_token), now()),
            Err(BearerError::Invalid)
        );
        assert!(
            t.token(client(), &refresh(&g2.refresh_token), now())
                .is_err()
        );
        // Using the new access token ends the grace.
        assert_eq!(t.check(Some(&g3.access_token), now()), Ok(()));
        assert!(
            t.token(client(), &refresh(&g1.refresh_token), now())
                .is_err()
        );
        assert!(
            t.token(client(), &refresh(&g3.refresh_token), now())
                .is_ok()
        );
    }

    #[test]
    fn wrong_client_is_401() {
        let mut t = Tokens::new(Some(("id".into(), Secret::new("secret"))), [], 60);
        let f = form(&[("grant_type", "refresh_token"), ("refresh_token", "r")]);
        let e = t
            .token(Some(("id".into(), "nope".into())), &f, now())
            .unwrap_err();
        assert_eq!(
            (e.status, e.error),
            (StatusCode::UNAUTHORIZED, "invalid_client")
        );
        let e = t.token(None, &f, now()).unwrap_err();
        assert_eq!(e.error, "invalid_client");
    }

    #[test]
    fn basic_header_parses() {
        let mut h = HeaderMap::new();
        let v = format!("Basic {}", STANDARD.encode("my-id:my:secret"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(&v).unwrap());
        assert_eq!(
            basic_credentials(&h),
            Some(("my-id".into(), "my:secret".into()))
        );
    }
}
