//! Instance → HTTP source: picks the element definition for the instance's
//! element key and connection mode, and wires its authentication (hub
//! credentials, or an OAuth2 token manager whose tokens the worker keeps
//! sealed in the instance's state partition).

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::element::{self, AuthKind, KNOWN_ELEMENTS};
use crate::fetch::{
    Auth, ClientQuota, ClientQuotas, FetchLimits, Fetcher, OAuth2Client, TokenManager,
};
use crate::instance::{Connection, Instance};
use crate::source::{
    CredentialStore, FetchFailure, FetchRequest, Fetched, Source, SourceError, SourceFactory,
};

/// Builds an HTTP [`Source`] per instance; one shared connection pool.
pub struct HttpSources {
    client: reqwest::Client,
    limits: FetchLimits,
    /// Shared by the instances of each OAuth client.
    quotas: Arc<ClientQuotas>,
}

impl HttpSources {
    /// # Errors
    /// Unusable limits, or the HTTP client cannot be built (TLS
    /// initialisation).
    pub fn new(limits: FetchLimits) -> Result<Self, SourceError> {
        limits.validate()?;
        let client = crate::fetch::http_client(&limits)?;
        Ok(Self {
            client,
            limits,
            quotas: Arc::default(),
        })
    }
}

impl HttpSources {
    fn token_manager(
        &self,
        instance: &Instance,
        client: OAuth2Client,
        credentials: Arc<dyn CredentialStore>,
    ) -> TokenManager {
        TokenManager::new(
            instance.id.clone(),
            client,
            credentials,
            self.client.clone(),
            self.limits.clone(),
        )
    }

    /// The OAuth2 token manager of a direct OAuth instance, as its source
    /// would use it: for the operator's code exchange.
    ///
    /// # Errors
    /// Unknown element, an instance that does not use OAuth2, or OAuth
    /// settings missing.
    pub fn oauth_tokens(
        &self,
        instance: &Instance,
        credentials: Arc<dyn CredentialStore>,
    ) -> Result<TokenManager, SourceError> {
        let def = element_of(instance)?;
        match (&instance.connection, &def.auth) {
            (Connection::Direct, AuthKind::OAuth2 { .. }) => {
                let client = oauth_client(instance, &def)?;
                Ok(self.token_manager(instance, client, credentials))
            }
            _ => Err(SourceError::permanent(format!(
                "instance {} does not authorize with OAuth2 (element '{}', {:?} connection)",
                instance.id,
                instance.element_key,
                instance.connection.mode()
            ))),
        }
    }
}

fn element_of(instance: &Instance) -> Result<element::ElementDef, SourceError> {
    element::element(&instance.element_key, instance.connection.mode()).ok_or_else(|| {
        SourceError::permanent(format!(
            "unknown element '{}' (known: {})",
            instance.element_key,
            KNOWN_ELEMENTS.join(", ")
        ))
    })
}

/// The instance's OAuth2 client: the element's token endpoint under the
/// instance's base URL, and the instance's client credentials and code.
fn oauth_client(
    instance: &Instance,
    def: &element::ElementDef,
) -> Result<OAuth2Client, SourceError> {
    let root_text = instance
        .base_url
        .as_deref()
        .unwrap_or(&def.default_base_url);
    let root = reqwest::Url::parse(root_text)
        .map_err(|e| SourceError::permanent(format!("base.url: {e}")))?;
    let token_url = def
        .token_url(&root)
        .map_err(SourceError::permanent)?
        .ok_or_else(|| SourceError::permanent("the element has no token endpoint"))?;
    let oauth = &instance.oauth;
    let need = |key: &str| SourceError::permanent(format!("OAuth needs configuration key {key}"));
    Ok(OAuth2Client {
        token_url,
        client_id: oauth.api_key.clone().ok_or_else(|| need("oauth.api.key"))?,
        client_secret: oauth
            .api_secret
            .clone()
            .ok_or_else(|| need("oauth.api.secret"))?,
        redirect_uri: oauth.callback_url.clone().unwrap_or_default(),
        authorization_code: oauth.code.clone(),
    })
}

impl SourceFactory for HttpSources {
    fn source(
        &self,
        instance: &Arc<Instance>,
        credentials: Arc<dyn CredentialStore>,
    ) -> Result<Arc<dyn Source>, SourceError> {
        let def = element_of(instance)?;
        let mut quota = None;
        let auth = match (&instance.connection, &def.auth) {
            (Connection::Hub(hub), _) => Auth::hub(hub)?,
            (Connection::Direct, AuthKind::OAuth2 { .. }) => {
                let client = oauth_client(instance, &def)?;
                quota = Some(ClientQuota::new(
                    self.quotas.clone(),
                    format!("{} {}", client.token_url, client.client_id.expose()),
                ));
                Auth::OAuth2(self.token_manager(instance, client, credentials))
            }
            (Connection::Direct, _) => Auth::None,
        };
        let mut fetcher = Fetcher::new(
            self.client.clone(),
            def,
            instance.base_url.as_deref(),
            auth,
            self.limits.clone(),
        )?;
        if let Some(q) = quota {
            fetcher = fetcher.with_client_quota(q);
        }
        Ok(Arc::new(HttpSource(fetcher)))
    }
}

struct HttpSource(Fetcher);

impl Source for HttpSource {
    fn fetch(&self, request: FetchRequest) -> BoxFuture<'_, Result<Fetched, FetchFailure>> {
        Box::pin(async move {
            let (result, stats) = self.0.fetch_window_counted(request).await;
            result.map_err(|error| FetchFailure {
                error: error.into(),
                stats,
            })
        })
    }
}
