//! OAuth2 tokens for one instance: the authorization-code exchange, refresh
//! before expiry and after a 401, and **rotation-safe persistence**.
//!
//! Keap (like many providers) rotates refresh tokens: every refresh returns
//! a new refresh token and invalidates the old one at once. The new token
//! set therefore exists in exactly one place, our memory, until it is
//! stored. The rules that keep an instance from losing access for good:
//!
//! 1. The new set is saved through [`CredentialStore::save`] **before** the new
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
//! - [`tokens`]: the token set as stored, and when to refresh it;
//! - [`endpoint`]: grants POSTed to the token endpoint;
//! - [`memory`]: a process-local store, for tests and dry runs.
//!
//! Secrets never reach logs: tokens, codes and the client secret are
//! [`Secret`]s, whose `Debug` is redacted, and provider error descriptions
//! are scrubbed of them.

mod endpoint;
mod memory;
mod tokens;

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use tracing::Instrument;

pub use endpoint::OAuth2Client;
pub use memory::MemoryTokenStore;
pub use tokens::TokenSet;

use super::FetchError;
use super::FetchLimits;
use crate::secret::Secret;
use crate::source::{CredentialStore, StoreError};
use endpoint::TokenEndpoint;

/// Pause between early-refresh attempts that fail while the current access
/// token still works: without it, every page request of every job of the
/// instance would try (and log) the refresh again.
const EARLY_REFRESH_PAUSE: TimeDelta = TimeDelta::seconds(60);

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
            .field("token_url", &self.inner.endpoint.client.token_url.as_str())
            .finish_non_exhaustive()
    }
}

struct Inner {
    instance_id: String,
    endpoint: TokenEndpoint,
    store: Arc<dyn CredentialStore>,
    /// Held across load, exchange/refresh and save: see the module doc.
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The store's generation when it was last read. While it stays the
    /// same, memory is at least as new as the store; when it changes (the
    /// partition was taken over again) the store is read again, unless
    /// memory holds tokens it has not taken yet, which are newer still.
    loaded: Option<u64>,
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
        store: Arc<dyn CredentialStore>,
        http: reqwest::Client,
        limits: FetchLimits,
    ) -> Self {
        let code = client.authorization_code.take();
        Self {
            inner: Arc::new(Inner {
                instance_id: instance_id.into(),
                endpoint: TokenEndpoint {
                    client,
                    http,
                    limits,
                },
                store,
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
        tokio::spawn(async move { inner.ensure(need).await }.in_current_span())
            .await
            .map_err(|e| FetchError::Internal(format!("token task: {e}")))?
    }
}

/// A granted [`CredentialStore::claim_refresh`], until its rotation is
/// saved or failed.
struct Claim<'a> {
    store: &'a dyn CredentialStore,
    instance: &'a str,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.store.claim_done(self.instance);
    }
}

/// Whether `stored` was issued after `ours`.
fn newer(stored: &Option<TokenSet>, ours: &Option<TokenSet>) -> bool {
    match (stored, ours) {
        (Some(s), Some(o)) => s.issued_at.zip(o.issued_at).is_some_and(|(s, o)| s > o),
        _ => false,
    }
}

impl Inner {
    async fn ensure(&self, need: Need) -> Result<Secret, FetchError> {
        let mut st = self.state.lock().await;
        let generation = self.store.generation();
        if st.loaded != Some(generation) {
            let stored = self.load().await?;
            st.loaded = Some(generation);
            if st.unsaved && newer(&stored, &st.tokens) {
                // Another owner rotated the tokens after ours (whose save
                // was refused): theirs are the provider's current ones.
                tracing::warn!(
                    message = "Unsaved OAuth2 tokens superseded by newer stored ones; dropping ours.",
                    instance = %self.instance_id,
                );
                st.unsaved = false;
            }
            if !st.unsaved {
                st.tokens = stored;
                if st.tokens.is_some() {
                    tracing::debug!(message = "OAuth2 tokens loaded from the store.", instance = %self.instance_id);
                }
            }
        }
        // Held until the rotation below is saved (or failed): the store
        // waits for it before it lets go of the partition.
        let claim: Claim<'_>;
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
                claim = self.claim().await?;
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
                match self.claim().await {
                    Ok(c) => claim = c,
                    // This worker may not own the instance any more: no
                    // rotation whose result could not be kept. The current
                    // token serves while it lasts.
                    Err(e) if matches!(need, Need::Valid) && current.usable(now) => {
                        tracing::info!(
                            message = "OAuth2 refresh skipped: the state partition is not ours to write.",
                            instance = %self.instance_id,
                            error = %e,
                        );
                        return Ok(current.access_token);
                    }
                    Err(e) => return Err(e),
                }
                match self.refresh(&current).await {
                    Ok(fresh) => fresh,
                    Err(e) => {
                        if let FetchError::Auth { error, .. } = &e
                            && error == "invalid_grant"
                            && st.code.is_some()
                        {
                            tracing::warn!(
                                message = "Refresh token refused (invalid_grant); trying the instance's authorization code.",
                                instance = %self.instance_id,
                            );
                            self.exchange_code(&mut st).await?
                        } else if matches!(need, Need::Valid) && current.usable(now) {
                            // An early refresh failed, but the current token
                            // still works: use it, and try again after a
                            // pause rather than on every page request.
                            st.early_refresh_paused_until =
                                now.checked_add_signed(EARLY_REFRESH_PAUSE);
                            tracing::warn!(
                                message = "OAuth2 refresh failed; using the current access token until it expires.",
                                instance = %self.instance_id,
                                error = %e,
                                expires_at = %current.expires_at,
                            );
                            return Ok(current.access_token);
                        } else {
                            if let FetchError::Auth { error, .. } = &e
                                && error == "invalid_grant"
                            {
                                self.remember_refusal(&mut st, now).await;
                            }
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
        drop(claim);
        Ok(access)
    }

    /// Marks the current set as refused by the provider and stores that
    /// (once per refusal), so the state topic tells operators the instance
    /// needs a new authorization. Best effort: the worker reports the
    /// refusal itself whatever happens here, and the set is not new.
    async fn remember_refusal(&self, st: &mut State, now: DateTime<Utc>) {
        let Some(tokens) = st.tokens.as_mut() else {
            return;
        };
        if tokens.refused_at.is_some() {
            return;
        }
        tokens.refused_at = Some(now);
        let Ok(bytes) = serde_json::to_vec(&*tokens) else {
            return;
        };
        if let Err(error) = self.store.save(&self.instance_id, bytes).await {
            tracing::debug!(
                message = "Could not store that the OAuth2 grant was refused.",
                instance = %self.instance_id,
                %error,
            );
        }
    }

    /// Asks the store whether a rotation's result could be saved now.
    async fn claim(&self) -> Result<Claim<'_>, FetchError> {
        self.store
            .claim_refresh(&self.instance_id)
            .await
            .map_err(|e| self.store_error(e))?;
        Ok(Claim {
            store: self.store.as_ref(),
            instance: &self.instance_id,
        })
    }

    /// Saves `st.tokens`. On failure the set stays in memory, marked
    /// unsaved, and is not handed out: see the module doc.
    async fn persist(&self, st: &mut State) -> Result<(), FetchError> {
        let Some(tokens) = &st.tokens else {
            return Ok(());
        };
        // Plain data with string keys: serialising it cannot fail.
        let bytes = serde_json::to_vec(tokens).expect("a token set serialises as JSON");
        match self.store.save(&self.instance_id, bytes).await {
            Ok(()) => {
                st.unsaved = false;
                tracing::info!(
                    message = "OAuth2 tokens persisted.",
                    instance = %self.instance_id,
                    expires_at = %tokens.expires_at,
                );
                Ok(())
            }
            Err(e) => {
                tracing::error!(
                    message = "Could not persist rotated OAuth2 tokens: the provider has already invalidated the \
                     previous refresh token, so the new one exists only in this process. It is kept in \
                     memory and NOT used until a save succeeds; if this process stops first, the instance \
                     needs a new authorization code.",
                    instance = %self.instance_id,
                    error = %e,
                );
                Err(self.store_error(e))
            }
        }
    }

    /// The stored token set, if any.
    async fn load(&self) -> Result<Option<TokenSet>, FetchError> {
        let Some(bytes) = self
            .store
            .load(&self.instance_id)
            .await
            .map_err(|e| self.store_error(e))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| self.store_error(StoreError::new(format!("stored token set: {e}"))))
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
        if st.code.is_none() {
            return Err(FetchError::NoCredentials {
                instance: self.instance_id.clone(),
            });
        }
        let Some(code) = st.code.take() else {
            return Err(FetchError::NoCredentials {
                instance: self.instance_id.clone(),
            });
        };
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.expose()),
            ("redirect_uri", self.endpoint.client.redirect_uri.as_str()),
        ];
        let mut fresh = match self
            .endpoint
            .grant("authorization_code", &form, &[&code])
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
            return Err(self.endpoint.error(
                "authorization_code",
                None,
                "no_refresh_token",
                Some("the token response has no refresh_token".into()),
            ));
        };
        tracing::info!(message = "OAuth2 authorization code exchanged.", instance = %self.instance_id);
        Ok(fresh.into_set(refresh_token))
    }

    async fn refresh(&self, current: &TokenSet) -> Result<TokenSet, FetchError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", current.refresh_token.expose()),
        ];
        let fresh = self
            .endpoint
            .grant("refresh_token", &form, &[&current.refresh_token])
            .await?;
        // Providers that do not rotate send no refresh token: keep ours.
        let refresh_token = fresh
            .refresh_token
            .clone()
            .unwrap_or_else(|| current.refresh_token.clone());
        tracing::info!(message = "OAuth2 access token refreshed.", instance = %self.instance_id);
        Ok(fresh.into_set(refresh_token))
    }
}
