//! OAuth2 tokens for one instance: the authorization-code exchange, refresh
//! before expiry and after a 401, and **rotation-safe persistence**.
//!
//! Keap (like many providers) rotates refresh tokens: every refresh returns
//! a new refresh token and invalidates the old one at once. The new token
//! set therefore exists in exactly one place, our memory, until it is
//! stored. The rules that keep an instance from losing access for good:
//!
//! 1. The new set is saved through [`TokenStore::save`] **before** the new
//!    access token is handed to anyone. If the process dies after the save,
//!    the next one loads the new set; if it dies before, the new access
//!    token was never used (and the refresh token is lost either way: the
//!    provider answered, and only the save could have kept it).
//! 2. If the save fails, the new access token is not used: the call fails
//!    ([`FetchError::Store`], retriable), the set stays in memory, and the
//!    next call tries the save again before anything else. Should the
//!    process stop first, the instance needs a new authorization code; this
//!    is logged at error level, naming the instance.
//! 3. The exchange-and-save runs on its own task, so a caller dropping its
//!    future (a poll timing out, shutdown) cannot cut it between the
//!    provider's answer and the save.
//! 4. One refresh at a time per instance (a tokio `Mutex` held across it):
//!    concurrent callers wait and share the result instead of each spending
//!    the refresh token, which would invalidate all but one of them.
//!
//! Secrets never reach logs: tokens, codes and the client secret are
//! [`Secret`]s, whose `Debug` is redacted, and provider error descriptions
//! are scrubbed of them.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::BoxFuture;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde::{Deserialize, Serialize};

use super::error::status_is_transient;
use super::links::label;
use super::page::{BodyError, describe, read_body};
use super::retry::{backoff, millis, wait_hint};
use super::{FetchError, FetchLimits};
use crate::secret::Secret;

/// A token response larger than this is not a token response.
const MAX_TOKEN_BODY: u64 = 64 * 1024;

/// Refresh when less than this is left, unless that is more than half the
/// lifetime (see [`TokenSet::needs_refresh`]). A minute covers a request
/// timeout with room to spare.
const MIN_REFRESH_MARGIN: TimeDelta = TimeDelta::seconds(60);

/// An access token this close to expiry is not sent any more: the request
/// could arrive after it expired.
const USABLE_MARGIN: TimeDelta = TimeDelta::seconds(5);

/// Pause between early-refresh attempts that fail while the current access
/// token still works: without it, every page request of every job of the
/// instance would try (and log) the refresh again.
const EARLY_REFRESH_PAUSE: TimeDelta = TimeDelta::seconds(60);

/// Lifetime assumed when the provider sends no `expires_in` (RFC 6749 makes
/// it optional); a 401 triggers a refresh anyway if it was shorter.
const DEFAULT_LIFETIME: TimeDelta = TimeDelta::hours(1);

/// Form values: unreserved characters stay, everything else is escaped.
const FORM_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One instance's tokens, as stored. `Debug` shows no secret.
///
/// Serializes the secrets in clear: the store is responsible for
/// encrypting what it writes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSet {
    #[serde(serialize_with = "expose_secret")]
    pub access_token: Secret,
    #[serde(serialize_with = "expose_secret")]
    pub refresh_token: Secret,
    /// When the access token expires, on our clock (`now + expires_in` at
    /// receipt, so the provider's clock does not matter).
    #[serde(with = "rfc3339")]
    pub expires_at: DateTime<Utc>,
    /// When the set was obtained; with `expires_at` it gives the lifetime,
    /// which sets how early to refresh. Absent in sets stored by hand.
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<DateTime<Utc>>,
}

impl TokenSet {
    /// Whether to refresh now: when less than `max(60 s, 10 % of the
    /// lifetime)` is left, that margin capped at half the lifetime. For
    /// Keap's 24 h tokens that is 2.4 h early, leaving hours to retry a
    /// failed refresh while the old token still works; for the sandbox's
    /// 10 s tokens it is 5 s, not "always".
    pub fn needs_refresh(&self, now: DateTime<Utc>) -> bool {
        let margin = match self.issued_at {
            Some(issued) => {
                let lifetime = (self.expires_at - issued).max(TimeDelta::zero());
                (lifetime / 10).max(MIN_REFRESH_MARGIN).min(lifetime / 2)
            }
            None => MIN_REFRESH_MARGIN,
        };
        // Checked: a stored set is data from outside and may hold dates
        // at the edge of chrono's range.
        now.checked_add_signed(margin)
            .is_none_or(|t| t >= self.expires_at)
    }

    /// Whether the access token can still be sent.
    pub fn usable(&self, now: DateTime<Utc>) -> bool {
        now.checked_add_signed(USABLE_MARGIN)
            .is_some_and(|t| t < self.expires_at)
    }
}

fn expose_secret<S: serde::Serializer>(secret: &Secret, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose())
}

mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

mod rfc3339_opt {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::rfc3339::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|text| {
            DateTime::parse_from_rfc3339(&text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(serde::de::Error::custom)
        })
        .transpose()
    }
}

/// A token store failure, in the store's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

impl StoreError {
    pub fn new(message: impl fmt::Display) -> Self {
        Self(message.to_string())
    }
}

/// Where token sets live between restarts. `save` must be durable when it
/// returns `Ok` (e.g. a Kafka write acknowledged by all in-sync replicas):
/// the saved refresh token is the only one the provider still accepts.
pub trait TokenStore: Send + Sync {
    /// The stored set for an instance, if any.
    fn load<'a>(
        &'a self,
        instance_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<TokenSet>, StoreError>>;

    /// Replaces the stored set for an instance, durably.
    fn save<'a>(
        &'a self,
        instance_id: &'a str,
        tokens: &'a TokenSet,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// A process-local store, for tests and dry runs (lost on exit).
#[derive(Debug, Default)]
pub struct MemoryTokenStore {
    sets: Mutex<HashMap<String, TokenSet>>,
}

impl MemoryTokenStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The set stored for `instance_id`.
    pub fn get(&self, instance_id: &str) -> Option<TokenSet> {
        self.lock().get(instance_id).cloned()
    }

    /// Stores a set directly (seeding a test).
    pub fn put(&self, instance_id: &str, tokens: TokenSet) {
        self.lock().insert(instance_id.to_owned(), tokens);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, TokenSet>> {
        // Poisoning means a holder panicked mid-insert; the map is intact.
        self.sets.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl TokenStore for MemoryTokenStore {
    fn load<'a>(
        &'a self,
        instance_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<TokenSet>, StoreError>> {
        let found = self.get(instance_id);
        Box::pin(async move { Ok(found) })
    }

    fn save<'a>(
        &'a self,
        instance_id: &'a str,
        tokens: &'a TokenSet,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.put(instance_id, tokens.clone());
        Box::pin(async { Ok(()) })
    }
}

/// The instance's OAuth2 client registration and grant.
#[derive(Clone, Debug)]
pub struct OAuth2Client {
    /// The token endpoint (`ElementDef::token_url` for the instance's API
    /// root).
    pub token_url: Url,
    /// `oauth.api.key`.
    pub client_id: Secret,
    /// `oauth.api.secret`.
    pub client_secret: Secret,
    /// `oauth.callback.url`: the provider checks it equals the
    /// `redirect_uri` the code was issued for.
    pub redirect_uri: String,
    /// `providerData.code`: exchanged when the store has no token set, and
    /// tried once more if the stored refresh token is refused (an operator
    /// recovers an instance by giving it a fresh code). One use only.
    pub authorization_code: Option<Secret>,
}

/// Hands out valid access tokens for one instance. Cheap to clone; clones
/// share state, so one per instance is enough for all its jobs.
#[derive(Clone)]
pub struct TokenManager {
    inner: Arc<Inner>,
}

impl fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenManager")
            .field("instance_id", &self.inner.instance_id)
            .field("token_url", &self.inner.client.token_url.as_str())
            .finish_non_exhaustive()
    }
}

struct Inner {
    instance_id: String,
    client: OAuth2Client,
    http: reqwest::Client,
    store: Arc<dyn TokenStore>,
    limits: FetchLimits,
    /// Held across load, exchange/refresh and save: see the module doc.
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The store was read (once per process; afterwards memory is newer).
    loaded: bool,
    tokens: Option<TokenSet>,
    /// `tokens` came from the provider and the store has not taken them.
    unsaved: bool,
    /// The authorization code, until it is used.
    code: Option<Secret>,
    /// After an early refresh failed while the current token still works,
    /// no new attempt before this time.
    early_refresh_paused_until: Option<DateTime<Utc>>,
}

/// What the caller needs.
enum Need {
    /// A token that is not about to expire.
    Valid,
    /// A token other than this one, which the provider refused with 401.
    Replace(Secret),
}

impl TokenManager {
    /// A manager for `instance_id`. Nothing happens until the first
    /// [`TokenManager::access_token`]: the store is read then.
    pub fn new(
        instance_id: impl Into<String>,
        mut client: OAuth2Client,
        store: Arc<dyn TokenStore>,
        http: reqwest::Client,
        limits: FetchLimits,
    ) -> Self {
        let code = client.authorization_code.take();
        Self {
            inner: Arc::new(Inner {
                instance_id: instance_id.into(),
                client,
                http,
                store,
                limits,
                state: tokio::sync::Mutex::new(State {
                    code,
                    ..State::default()
                }),
            }),
        }
    }

    pub fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    /// An access token valid for a while: the stored one, or a new one from
    /// the code exchange or a refresh, persisted before it is returned.
    ///
    /// # Errors
    /// [`FetchError::NoCredentials`] without token and code;
    /// [`FetchError::Auth`] when the provider refuses the grant;
    /// [`FetchError::Store`] when the store fails (the new token is then
    /// withheld); transport errors talking to the token endpoint.
    pub async fn access_token(&self) -> Result<Secret, FetchError> {
        self.run(Need::Valid).await
    }

    /// A new access token after the provider answered 401 to `rejected`.
    /// If another caller already replaced `rejected`, that token is
    /// returned without a second refresh.
    ///
    /// # Errors
    /// As [`TokenManager::access_token`].
    pub async fn refresh_after_unauthorized(
        &self,
        rejected: &Secret,
    ) -> Result<Secret, FetchError> {
        self.run(Need::Replace(rejected.clone())).await
    }

    /// Runs on a task of its own so that dropping the caller cannot cut a
    /// refresh between the provider's answer and the save.
    async fn run(&self, need: Need) -> Result<Secret, FetchError> {
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move { inner.ensure(need).await })
            .await
            .map_err(|e| FetchError::Internal(format!("token task: {e}")))?
    }
}

impl Inner {
    async fn ensure(&self, need: Need) -> Result<Secret, FetchError> {
        let mut st = self.state.lock().await;
        if !st.loaded {
            st.tokens = self
                .store
                .load(&self.instance_id)
                .await
                .map_err(|e| self.store_error(e))?;
            st.loaded = true;
            if st.tokens.is_some() {
                tracing::debug!(instance = %self.instance_id, "OAuth2 tokens loaded from the store");
            }
        }
        if st.unsaved {
            self.persist(&mut st).await?;
        }
        let now = Utc::now();
        let fresh = match st.tokens.clone() {
            None => {
                if st.code.is_none() {
                    return Err(FetchError::NoCredentials {
                        instance: self.instance_id.clone(),
                    });
                }
                self.exchange_code(&mut st).await?
            }
            Some(current) => {
                let must = match &need {
                    Need::Valid => {
                        let paused = current.usable(now)
                            && st.early_refresh_paused_until.is_some_and(|t| now < t);
                        !paused && (current.needs_refresh(now) || !current.usable(now))
                    }
                    Need::Replace(rejected) => current.access_token == *rejected,
                };
                if !must {
                    return Ok(current.access_token);
                }
                match self.refresh(&current).await {
                    Ok(fresh) => fresh,
                    Err(e) => {
                        if let FetchError::Auth { error, .. } = &e
                            && error == "invalid_grant"
                            && st.code.is_some()
                        {
                            tracing::warn!(
                                instance = %self.instance_id,
                                "refresh token refused (invalid_grant); trying the instance's authorization code"
                            );
                            self.exchange_code(&mut st).await?
                        } else if matches!(need, Need::Valid) && current.usable(now) {
                            // An early refresh failed, but the current token
                            // still works: use it, and try again after a
                            // pause rather than on every page request.
                            st.early_refresh_paused_until =
                                now.checked_add_signed(EARLY_REFRESH_PAUSE);
                            tracing::warn!(
                                instance = %self.instance_id,
                                error = %e,
                                expires_at = %current.expires_at,
                                "OAuth2 refresh failed; using the current access token until it expires"
                            );
                            return Ok(current.access_token);
                        } else {
                            return Err(e);
                        }
                    }
                }
            }
        };
        let access = fresh.access_token.clone();
        st.tokens = Some(fresh);
        st.unsaved = true;
        st.early_refresh_paused_until = None;
        self.persist(&mut st).await?;
        Ok(access)
    }

    /// Saves `st.tokens`. On failure the set stays in memory, marked
    /// unsaved, and is not handed out: see the module doc.
    async fn persist(&self, st: &mut State) -> Result<(), FetchError> {
        let Some(tokens) = &st.tokens else {
            return Ok(());
        };
        match self.store.save(&self.instance_id, tokens).await {
            Ok(()) => {
                st.unsaved = false;
                tracing::info!(
                    instance = %self.instance_id,
                    expires_at = %tokens.expires_at,
                    "OAuth2 tokens persisted"
                );
                Ok(())
            }
            Err(e) => {
                tracing::error!(
                    instance = %self.instance_id,
                    error = %e,
                    "could not persist rotated OAuth2 tokens: the provider has already invalidated the \
                     previous refresh token, so the new one exists only in this process. It is kept in \
                     memory and NOT used until a save succeeds; if this process stops first, the instance \
                     needs a new authorization code"
                );
                Err(self.store_error(e))
            }
        }
    }

    fn store_error(&self, source: StoreError) -> FetchError {
        FetchError::Store {
            instance: self.instance_id.clone(),
            source,
        }
    }

    /// Exchanges `st.code`. The code is spent once the provider answered;
    /// after a transport failure (which may not have reached it) it is
    /// kept for the next attempt.
    async fn exchange_code(&self, st: &mut State) -> Result<TokenSet, FetchError> {
        let Some(code) = st.code.take() else {
            return Err(FetchError::NoCredentials {
                instance: self.instance_id.clone(),
            });
        };
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.expose()),
            ("redirect_uri", self.client.redirect_uri.as_str()),
        ];
        let mut fresh = match self
            .token_request("authorization_code", &form, &[&code])
            .await
        {
            Ok(fresh) => fresh,
            Err(e) => {
                if e.is_retriable() {
                    st.code = Some(code);
                }
                return Err(e);
            }
        };
        let Some(refresh_token) = fresh.refresh_token.take() else {
            return Err(self.auth_error(
                "authorization_code",
                None,
                "no_refresh_token",
                Some("the token response has no refresh_token".into()),
            ));
        };
        tracing::info!(instance = %self.instance_id, "OAuth2 authorization code exchanged");
        Ok(fresh.into_set(refresh_token))
    }

    async fn refresh(&self, current: &TokenSet) -> Result<TokenSet, FetchError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", current.refresh_token.expose()),
        ];
        let fresh = self
            .token_request("refresh_token", &form, &[&current.refresh_token])
            .await?;
        // Providers that do not rotate send no refresh token: keep ours.
        let refresh_token = fresh
            .refresh_token
            .clone()
            .unwrap_or_else(|| current.refresh_token.clone());
        tracing::info!(instance = %self.instance_id, "OAuth2 access token refreshed");
        Ok(fresh.into_set(refresh_token))
    }

    fn auth_error(
        &self,
        grant: &'static str,
        status: Option<u16>,
        error: &str,
        description: Option<String>,
    ) -> FetchError {
        FetchError::Auth {
            grant,
            endpoint: label("POST", &self.client.token_url),
            status,
            error: error.to_owned(),
            description,
        }
    }

    /// POSTs a grant to the token endpoint with HTTP Basic client
    /// authentication, retrying what may be transient. Retrying a refresh
    /// is safe: if the provider never saw it the old token still works, if
    /// it did (and the answer was lost) the retry gets `invalid_grant` —
    /// that loss is inherent to rotating refresh tokens, not to the retry.
    async fn token_request(
        &self,
        grant: &'static str,
        form: &[(&str, &str)],
        redact: &[&Secret],
    ) -> Result<TokenResponse, FetchError> {
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", k, utf8_percent_encode(v, FORM_VALUE)))
            .collect::<Vec<_>>()
            .join("&");
        let request = label("POST", &self.client.token_url);
        let limits = &self.limits;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .http
                .post(self.client.token_url.clone())
                .basic_auth(
                    self.client.client_id.expose(),
                    Some(self.client.client_secret.expose()),
                )
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(ACCEPT, "application/json")
                .timeout(limits.request_timeout)
                .body(body.clone())
                .send()
                .await;
            let (error, hint) = match sent {
                Err(e) => (
                    FetchError::Transport {
                        request: request.clone(),
                        message: describe(&e),
                        attempts: attempt,
                    },
                    None,
                ),
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    let hint = wait_hint(response.headers(), Utc::now()).map(|(d, _)| d);
                    match read_body(&mut response, MAX_TOKEN_BODY).await {
                        Ok(bytes) if (200..300).contains(&status) => {
                            return serde_json::from_slice::<TokenResponse>(&bytes)
                                .ok()
                                .filter(|t| !t.access_token.is_empty())
                                .ok_or_else(|| {
                                    self.auth_error(
                                        grant,
                                        Some(status),
                                        "invalid_token_response",
                                        Some("no access_token in the token response".into()),
                                    )
                                });
                        }
                        Ok(bytes) => {
                            let err = self.refusal(grant, status, &bytes, redact);
                            if !status_is_transient(status) {
                                return Err(err);
                            }
                            (err, hint)
                        }
                        Err(BodyError::TooLarge) => {
                            return Err(self.auth_error(
                                grant,
                                Some(status),
                                "invalid_token_response",
                                Some(format!("body over {MAX_TOKEN_BODY} bytes")),
                            ));
                        }
                        Err(BodyError::Read { received, message }) => (
                            FetchError::Truncated {
                                request: request.clone(),
                                received,
                                message,
                                attempts: attempt,
                            },
                            None,
                        ),
                    }
                }
            };
            if attempt >= limits.max_attempts {
                return Err(error);
            }
            let wait = hint
                .map(|h| h.min(limits.max_throttle_wait))
                .unwrap_or_else(|| backoff(attempt, limits.backoff_base, limits.backoff_max));
            tracing::warn!(
                instance = %self.instance_id,
                grant,
                attempt,
                wait_ms = millis(wait),
                error = %error,
                "OAuth2 token request failed, retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// An RFC 6749 error document → [`FetchError::Auth`]. Only `error` and
    /// `error_description` are kept, never the raw body, and the
    /// description is scrubbed of the secrets we sent.
    fn refusal(
        &self,
        grant: &'static str,
        status: u16,
        body: &[u8],
        redact: &[&Secret],
    ) -> FetchError {
        #[derive(Deserialize)]
        struct ErrorBody {
            error: String,
            #[serde(default)]
            error_description: Option<String>,
        }
        let secrets = [&self.client.client_secret]
            .into_iter()
            .chain(redact.iter().copied())
            .filter(|s| s.expose().len() >= 4);
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(parsed) => {
                let description = parsed.error_description.map(|d| {
                    let mut d: String = d.chars().take(200).collect();
                    for s in secrets {
                        d = d.replace(s.expose(), "***");
                    }
                    d
                });
                let code: String = parsed.error.chars().take(64).collect();
                self.auth_error(grant, Some(status), &code, description)
            }
            Err(_) => self.auth_error(grant, Some(status), &format!("http_{status}"), None),
        }
    }
}

/// A token endpoint's success document (RFC 6749 §5.1).
#[derive(Deserialize)]
struct TokenResponse {
    access_token: Secret,
    #[serde(default)]
    refresh_token: Option<Secret>,
    /// Seconds; some providers send it as a string.
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

impl TokenResponse {
    fn into_set(self, refresh_token: Secret) -> TokenSet {
        let now = Utc::now();
        let seconds = match &self.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_i64(),
            Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        };
        // Clamp: a negative or absurd lifetime must not overflow chrono.
        let lifetime = seconds
            .map(|s| TimeDelta::seconds(s.clamp(0, 10 * 365 * 86_400)))
            .unwrap_or(DEFAULT_LIFETIME);
        TokenSet {
            access_token: self.access_token,
            refresh_token,
            expires_at: now + lifetime,
            issued_at: Some(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(lifetime_s: i64, left_s: i64) -> (TokenSet, DateTime<Utc>) {
        let issued = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let expires = issued + TimeDelta::seconds(lifetime_s);
        (
            TokenSet {
                access_token: Secret::new("at"),
                refresh_token: Secret::new("rt"),
                expires_at: expires,
                issued_at: Some(issued),
            },
            expires - TimeDelta::seconds(left_s),
        )
    }

    #[test]
    fn refresh_margin_scales_with_lifetime() {
        // 24 h: 10 % = 2.4 h early.
        let (t, now) = set(86_400, 8_641);
        assert!(!t.needs_refresh(now));
        let (t, now) = set(86_400, 8_639);
        assert!(t.needs_refresh(now));
        // 10 min: the 60 s floor.
        let (t, now) = set(600, 61);
        assert!(!t.needs_refresh(now));
        let (t, now) = set(600, 59);
        assert!(t.needs_refresh(now));
        // 10 s: capped at half the lifetime, not "always refresh".
        let (t, now) = set(10, 6);
        assert!(!t.needs_refresh(now));
        let (t, now) = set(10, 4);
        assert!(t.needs_refresh(now));
    }

    #[test]
    fn absurd_stored_dates_do_not_panic() {
        let t = TokenSet {
            access_token: Secret::new("at"),
            refresh_token: Secret::new("rt"),
            expires_at: DateTime::<Utc>::MAX_UTC,
            issued_at: Some(DateTime::<Utc>::MIN_UTC),
        };
        // Far from expiry, whatever the absurd lifetime says.
        assert!(!t.needs_refresh(Utc::now()));
        assert!(t.usable(Utc::now()));
        let past = TokenSet {
            expires_at: DateTime::<Utc>::MIN_UTC,
            issued_at: Some(DateTime::<Utc>::MAX_UTC),
            ..t
        };
        assert!(past.needs_refresh(Utc::now()));
        assert!(!past.usable(Utc::now()));
    }

    #[test]
    fn token_sets_round_trip_and_debug_is_redacted() {
        let (t, _) = set(3600, 0);
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.contains(r#""refresh_token":"rt""#), "{json}");
        assert_eq!(serde_json::from_str::<TokenSet>(&json).unwrap(), t);
        let debug = format!("{t:?}");
        assert!(
            !debug.contains("\"at\"") && !debug.contains("\"rt\""),
            "{debug}"
        );
        // issued_at is optional in stored sets.
        let old = r#"{"access_token":"a","refresh_token":"r","expires_at":"2024-01-01T00:00:00Z"}"#;
        assert_eq!(
            serde_json::from_str::<TokenSet>(old).unwrap().issued_at,
            None
        );
    }

    #[test]
    fn expires_in_as_number_string_or_missing() {
        for (value, want) in [
            (Some(serde_json::json!(86399)), 86_399),
            (Some(serde_json::json!("3600")), 3_600),
            (None, 3_600),
            (Some(serde_json::json!(-5)), 0),
        ] {
            let r = TokenResponse {
                access_token: Secret::new("a"),
                refresh_token: None,
                expires_in: value,
            };
            let t = r.into_set(Secret::new("r"));
            let lifetime = t.expires_at - t.issued_at.unwrap();
            assert_eq!(lifetime.num_seconds(), want);
        }
    }
}
