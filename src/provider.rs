//! Instance → HTTP source: picks the element definition for the instance's
//! element key and connection mode, and wires its authentication (hub
//! credentials, or an OAuth2 token manager whose tokens live sealed in the
//! instance's state partition).

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::element::{self, ConnectionMode as ElementMode, KNOWN_ELEMENTS};
use crate::fetch::oauth::{OAuth2Client, StoreError, TokenManager, TokenSet, TokenStore};
use crate::fetch::{Auth, FetchLimits, Fetcher, HubCredentials, Keyset, WindowRequest};
use crate::instance::{ConnectionMode, Instance};
use crate::worker::ownership::SourceFactory;
use crate::worker::source::{
    FetchFailure, FetchRequest, Fetched, Source, SourceError, SourceFuture,
};
use crate::worker::tokens::TokenVault;

/// Builds an HTTP [`Source`] per instance; one shared connection pool.
pub struct HttpSources {
    client: reqwest::Client,
    limits: FetchLimits,
}

impl HttpSources {
    /// # Errors
    /// The HTTP client cannot be built (TLS initialisation).
    pub fn new(limits: FetchLimits) -> Result<Self, SourceError> {
        let client = crate::fetch::http_client(&limits)?;
        Ok(Self { client, limits })
    }
}

impl SourceFactory for HttpSources {
    fn source(
        &self,
        instance: &Arc<Instance>,
        vault: Arc<TokenVault>,
    ) -> Result<Arc<dyn Source>, SourceError> {
        let mode = match instance.connection_mode {
            ConnectionMode::Direct => ElementMode::Direct,
            ConnectionMode::Hub(_) => ElementMode::Hub,
        };
        let def = element::element(&instance.element_key, mode).ok_or_else(|| {
            format!(
                "unknown element '{}' (known: {})",
                instance.element_key,
                KNOWN_ELEMENTS.join(", ")
            )
        })?;
        let auth = match (&instance.connection_mode, &def.auth) {
            (ConnectionMode::Hub(hub), _) => {
                let need = |s: &Option<crate::secret::Secret>, key: &str| {
                    s.clone()
                        .ok_or_else(|| format!("hub mode needs configuration key {key}"))
                };
                Auth::Hub(HubCredentials {
                    user: need(&hub.user_secret, "hub.user.secret")?,
                    organization: need(&hub.organization_secret, "hub.organization.secret")?,
                    element: need(&hub.element_token, "hub.element.token")?,
                })
            }
            (ConnectionMode::Direct, element::AuthKind::OAuth2 { .. }) => {
                let root_text = instance
                    .base_url
                    .as_deref()
                    .unwrap_or(&def.default_base_url);
                let root = reqwest::Url::parse(root_text).map_err(|e| format!("base.url: {e}"))?;
                let token_url = def
                    .token_url(&root)?
                    .ok_or("the element has no token endpoint")?;
                let oauth = &instance.oauth;
                let client = OAuth2Client {
                    token_url,
                    client_id: oauth
                        .api_key
                        .clone()
                        .ok_or("OAuth needs configuration key oauth.api.key")?,
                    client_secret: oauth
                        .api_secret
                        .clone()
                        .ok_or("OAuth needs configuration key oauth.api.secret")?,
                    redirect_uri: oauth.callback_url.clone().unwrap_or_default(),
                    authorization_code: oauth.code.clone(),
                };
                let store: Arc<dyn TokenStore> = Arc::new(VaultStore(vault));
                Auth::OAuth2(TokenManager::new(
                    instance.id.clone(),
                    client,
                    store,
                    self.client.clone(),
                    self.limits.clone(),
                ))
            }
            (ConnectionMode::Direct, _) => Auth::None,
        };
        let fetcher = Fetcher::new(
            self.client.clone(),
            def,
            instance.base_url.as_deref(),
            auth,
            self.limits.clone(),
        )?;
        Ok(Arc::new(HttpSource(fetcher)))
    }
}

struct HttpSource(Fetcher);

impl Source for HttpSource {
    fn fetch(&self, request: FetchRequest) -> SourceFuture<'_> {
        Box::pin(async move {
            let field = request.updated;
            let position = move |raw: &serde_json::value::RawValue| {
                let record: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
                let text = field.path.get(&record)?.as_str()?;
                let t = field.format.parse(text, &field.zone).ok()?;
                Some(t.with_timezone(&chrono::Utc))
            };
            let (result, stats) = self
                .0
                .fetch_window_counted(WindowRequest {
                    relative_url: request.url,
                    page_size: request.page_size,
                    keyset: Some(Keyset {
                        position: Arc::new(position),
                    }),
                })
                .await;
            match result {
                Ok(w) => Ok(Fetched {
                    records: w.records,
                    pages: w.pages,
                    truncated: w.truncated,
                    provider_date: w.provider_date,
                    resume_url: w.resume_url,
                    stats,
                }),
                Err(error) => Err(FetchFailure {
                    error: error.into(),
                    stats,
                }),
            }
        })
    }
}

/// The OAuth token store of an instance: JSON token sets in the vault.
struct VaultStore(Arc<TokenVault>);

impl TokenStore for VaultStore {
    fn load<'a>(
        &'a self,
        instance_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<TokenSet>, StoreError>> {
        Box::pin(async move {
            let Some(bytes) = self.0.load(instance_id).map_err(StoreError::new)? else {
                return Ok(None);
            };
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::new(format!("stored token set: {e}")))
        })
    }

    fn save<'a>(
        &'a self,
        instance_id: &'a str,
        tokens: &'a TokenSet,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let bytes = serde_json::to_vec(tokens).map_err(StoreError::new)?;
            self.0
                .save(instance_id, &bytes)
                .await
                .map_err(StoreError::new)
        })
    }
}
