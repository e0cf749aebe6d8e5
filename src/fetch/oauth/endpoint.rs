//! The token endpoint: one grant POSTed with HTTP Basic client
//! authentication, through the same retry driver as page requests, and its
//! answer read as RFC 6749 says (§5.1 success, §5.2 error).

use chrono::{TimeDelta, Utc};
use reqwest::Url;
use reqwest::header::ACCEPT;
use serde::Deserialize;

use super::super::error::status_is_transient;
use super::super::hints::wait_hint;
use super::super::links::label;
use super::super::page::{BodyError, read_body};
use super::super::request::{self, Answer, Step};
use super::super::{FetchError, FetchLimits};
use super::tokens::TokenSet;
use crate::secret::Secret;
use crate::source::{FetchStats, Pause};

/// A token response larger than this is not a token response.
const MAX_TOKEN_BODY: u64 = 64 * 1024;

/// Lifetime assumed when the provider sends no `expires_in` (RFC 6749 makes
/// it optional); a 401 triggers a refresh anyway if it was shorter.
const DEFAULT_LIFETIME: TimeDelta = TimeDelta::hours(1);

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

/// Sends grants to one client's token endpoint.
pub(super) struct TokenEndpoint {
    pub client: OAuth2Client,
    pub http: reqwest::Client,
    pub limits: FetchLimits,
}

/// A token endpoint's success document (RFC 6749 §5.1).
#[derive(Deserialize)]
pub(super) struct TokenResponse {
    pub access_token: Secret,
    #[serde(default)]
    pub refresh_token: Option<Secret>,
    /// Seconds; some providers send it as a string.
    #[serde(default)]
    pub expires_in: Option<serde_json::Value>,
}

impl TokenResponse {
    /// The token set this answer makes with `refresh_token`, dated on our
    /// clock (`now + expires_in`, so the provider's clock does not matter).
    pub fn into_set(self, refresh_token: Secret) -> TokenSet {
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
            refused_at: None,
        }
    }
}

impl TokenEndpoint {
    /// A [`FetchError::Auth`] for `grant`.
    pub fn error(
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

    /// POSTs `form` (a `grant` of that type) and reads the answer,
    /// retrying what may be transient. Retrying a refresh is safe: if the
    /// provider never saw it the old token still works, if it did (and the
    /// answer was lost) the retry gets `invalid_grant` — that loss is
    /// inherent to rotating refresh tokens, not to the retry. `redact` are
    /// the secrets in `form`, scrubbed from any description the provider
    /// echoes.
    ///
    /// # Errors
    /// [`FetchError::Auth`] for a refusal or an answer without a token,
    /// transport errors after the retries.
    pub async fn grant(
        &self,
        grant: &'static str,
        form: &[(&str, &str)],
        redact: &[&Secret],
    ) -> Result<TokenResponse, FetchError> {
        let request = label("POST", &self.client.token_url);
        // Token requests are not the window's traffic: counted apart and
        // dropped.
        let mut stats = FetchStats::default();
        let label = request.as_str();
        request::send(&self.limits, label, &mut stats, &Pause::default(), (), |(), attempts| async move {
            ((), self.attempt(grant, form, redact, label, attempts).await)
        })
        .await
    }

    /// One try of [`TokenEndpoint::grant`].
    async fn attempt(
        &self,
        grant: &'static str,
        form: &[(&str, &str)],
        redact: &[&Secret],
        request: &str,
        attempts: u32,
    ) -> Answer<TokenResponse> {
        let sent = self
            .http
            .post(self.client.token_url.clone())
            .basic_auth(
                self.client.client_id.expose(),
                Some(self.client.client_secret.expose()),
            )
            .header(ACCEPT, "application/json")
            .timeout(self.limits.request_timeout)
            .form(form)
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(e) => return request::no_answer(request, e, attempts),
        };
        let status = response.status().as_u16();
        let hint = wait_hint(response.headers(), &[], Utc::now()).map(|(d, _)| d);
        let step = match read_body(&mut response, MAX_TOKEN_BODY).await {
            Ok(bytes) if (200..300).contains(&status) => {
                match serde_json::from_slice::<TokenResponse>(&bytes)
                    .ok()
                    .filter(|t| !t.access_token.is_empty())
                {
                    Some(answer) => Step::Done(answer),
                    None => Step::Fail(self.error(
                        grant,
                        Some(status),
                        "invalid_token_response",
                        Some("no access_token in the token response".into()),
                    )),
                }
            }
            Ok(bytes) => {
                let error = self.refusal(grant, status, &bytes, redact);
                if status_is_transient(status) {
                    Step::Retry { error, hint }
                } else {
                    Step::Fail(error)
                }
            }
            Err(BodyError::TooLarge) => Step::Fail(self.error(
                grant,
                Some(status),
                "invalid_token_response",
                Some(format!("body over {MAX_TOKEN_BODY} bytes")),
            )),
            Err(BodyError::Read { received, message }) => {
                request::cut_off(request, received, message, attempts)
            }
        };
        Answer::new(Some(status), step)
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
                self.error(grant, Some(status), &code, description)
            }
            Err(_) => self.error(grant, Some(status), &format!("http_{status}"), None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
