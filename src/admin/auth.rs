//! `auth exchange | status`: OAuth tokens in the state topic. A new
//! authorization code is exchanged by the same token manager a worker
//! uses, and the sealed set is committed through the instance's state
//! partition (fencing its owner, as `state rewind` does): the owner
//! restores it when it takes the partition back, and a stranded instance
//! polls again without a restart or a file edit.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::future::BoxFuture;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::crypto::SealingKey;
use crate::instance::{Connection, load_file, load_path};
use crate::provider::HttpSources;
use crate::secret::Secret;
use crate::settings::Settings;
use crate::source::{CredentialStore, StoreError};
use crate::state::{Restored, partition_for};
use crate::worker::WorkerConfig;
use crate::worker::tokens::TokenVault;
use crate::worker::topics::partition_count;

use super::fenced::FencedPartition;
use super::state::open_tokens;
use super::{AdminError, worker_config};

/// The vault, minus what it holds: the token manager then exchanges its
/// code even when a set is stored (a refused one, or one being replaced).
struct CodeOnly(Arc<TokenVault>);

impl CredentialStore for CodeOnly {
    fn load<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        Box::pin(async { Ok(None) })
    }

    fn save<'a>(
        &'a self,
        instance: &'a str,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        CredentialStore::save(&*self.0, instance, bytes)
    }

    fn generation(&self) -> u64 {
        CredentialStore::generation(&*self.0)
    }

    fn claim_refresh<'a>(&'a self, instance: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        CredentialStore::claim_refresh(&*self.0, instance)
    }

    fn claim_done(&self, instance: &str) {
        CredentialStore::claim_done(&*self.0, instance);
    }
}

fn key(config: &WorkerConfig, to: &'static str) -> Result<SealingKey, AdminError> {
    config.encryption_key.clone().ok_or(AdminError::NoKey(to))
}

/// Exchanges `code` for the instance in `file` and stores the sealed
/// tokens in its state partition.
///
/// # Errors
/// An unreadable instance file, no key, the provider refusing the code,
/// or Kafka (then the provider may have spent the code: get another).
pub async fn exchange(
    settings: &Settings,
    file: &Path,
    code: Secret,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let config = worker_config(settings);
    let key = key(&config, "seal the tokens")?;
    let mut instance = load_file(file).map_err(AdminError::Instance)?;
    instance.oauth.code = Some(code);
    let id = instance.id.clone();
    let sources =
        HttpSources::new(settings.fetch_limits()).map_err(|source| AdminError::Source {
            instance: id.clone(),
            source,
        })?;
    let n = partition_count(&config.kafka, &config.topics.state).await?;
    let partition = partition_for(&id, n);
    let taken = FencedPartition::take(&config, partition).await?;
    let vault = Arc::new(TokenVault::new(Some(key)));
    let stop = CancellationToken::new();
    let _lease = vault.lease(taken.lane(), stop, taken.restored.tokens.clone());
    let tokens = sources
        .oauth_tokens(&instance, Arc::new(CodeOnly(vault.clone())))
        .map_err(|source| AdminError::Source {
            instance: id.clone(),
            source,
        })?;
    tokens
        .access_token()
        .await
        .map_err(|e| AdminError::Exchange {
            instance: id.clone(),
            reason: e.to_string(),
        })?;
    let expires = vault
        .load(&id)
        .ok()
        .flatten()
        .and_then(|plain| serde_json::from_slice::<crate::fetch::TokenSet>(&plain).ok())
        .map(|t| t.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| "-".into());
    drop(_lease);
    taken.release("auth exchange").await;
    writeln!(
        out,
        "Authorized instance {id}: tokens stored sealed in state partition {partition} (access token expires {expires}). The worker owning the partition takes them up when its next commit (its next retry, for a stranded instance) finds it fenced and it takes the partition back."
    )?;
    Ok(())
}

/// One instance's stored tokens, without the tokens.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRow {
    pub instance: String,
    pub partition: Option<i32>,
    pub stored: bool,
    /// When the set was obtained: the last refresh or exchange.
    pub last_refresh: Option<DateTime<Utc>>,
    pub age_seconds: Option<i64>,
    pub expires_at: Option<DateTime<Utc>>,
    pub refused_at: Option<DateTime<Utc>>,
    pub needs_authorization: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

fn token_rows(
    partition: i32,
    restored: &Restored,
    key: &SealingKey,
    now: DateTime<Utc>,
) -> Vec<TokenRow> {
    restored
        .tokens
        .iter()
        .map(
            |(instance, sealed)| match open_tokens(key, instance, sealed) {
                Some(t) => TokenRow {
                    instance: instance.clone(),
                    partition: Some(partition),
                    stored: true,
                    last_refresh: t.issued_at,
                    age_seconds: t.issued_at.map(|i| (now - i).num_seconds()),
                    expires_at: Some(t.expires_at),
                    refused_at: t.refused_at,
                    needs_authorization: t.refused_at.is_some(),
                    detail: t.refused_at.map(|_| {
                        "the provider refused the grant: `auth exchange` with a new code"
                            .to_string()
                    }),
                },
                None => TokenRow {
                    instance: instance.clone(),
                    partition: Some(partition),
                    stored: true,
                    last_refresh: None,
                    age_seconds: None,
                    expires_at: None,
                    refused_at: None,
                    needs_authorization: true,
                    detail: Some(
                        "cannot be opened with STATE_ENCRYPTION_KEY (was the key changed?)"
                            .to_string(),
                    ),
                },
            },
        )
        .collect()
}

/// Every stored token set, and the OAuth instances of `INSTANCES_PATH`
/// (when it exists) that have none yet.
///
/// # Errors
/// No key, or the state topic cannot be read.
pub async fn status(settings: &Settings) -> Result<Vec<TokenRow>, AdminError> {
    let config = worker_config(settings);
    let key = key(&config, "open the stored tokens")?;
    let now = Utc::now();
    let mut rows: Vec<TokenRow> = super::state::read_all(&config)
        .await?
        .iter()
        .flat_map(|(p, r)| token_rows(*p, r, &key, now))
        .collect();
    if settings.instances_path.exists() {
        let loaded = load_path(&settings.instances_path);
        for i in loaded.instances {
            let oauth = matches!(i.connection, Connection::Direct) && i.oauth.api_key.is_some();
            if !oauth || !i.is_polled() || rows.iter().any(|r| r.instance == i.id) {
                continue;
            }
            let has_code = i.oauth.code.is_some();
            rows.push(TokenRow {
                instance: i.id.clone(),
                partition: None,
                stored: false,
                last_refresh: None,
                age_seconds: None,
                expires_at: None,
                refused_at: None,
                needs_authorization: !has_code,
                detail: Some(if has_code {
                    "no tokens stored yet: the first poll exchanges providerData.code".into()
                } else {
                    "no tokens stored and no providerData.code: `auth exchange` with a code".into()
                }),
            });
        }
    }
    rows.sort_by(|a, b| a.instance.cmp(&b.instance));
    Ok(rows)
}

/// Prints `rows` as a table, or as one JSON object per line.
///
/// # Errors
/// Writing fails.
pub fn print_status(
    rows: &[TokenRow],
    as_json: bool,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    if as_json {
        for r in rows {
            serde_json::to_writer(&mut *out, r).map_err(std::io::Error::other)?;
            writeln!(out)?;
        }
        return Ok(());
    }
    let t = |t: Option<DateTime<Utc>>| {
        t.map_or_else(
            || "-".into(),
            |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
        )
    };
    let width = rows
        .iter()
        .map(|r| r.instance.len())
        .max()
        .unwrap_or(8)
        .max(8);
    writeln!(
        out,
        "{:<width$}  {:>4}  {:<20}  {:>8}  {:<20}  NEEDS AUTHORIZATION",
        "INSTANCE", "PART", "LAST REFRESH", "AGE", "EXPIRES"
    )?;
    for r in rows {
        let mut needs = if r.needs_authorization { "yes" } else { "no" }.to_string();
        if let Some(d) = &r.detail {
            needs.push_str(": ");
            needs.push_str(d);
        }
        writeln!(
            out,
            "{:<width$}  {:>4}  {:<20}  {:>8}  {:<20}  {needs}",
            r.instance,
            r.partition.map_or_else(|| "-".into(), |p| p.to_string()),
            t(r.last_refresh),
            r.age_seconds
                .map_or_else(|| "-".into(), |s| format!("{s}s")),
            t(r.expires_at),
        )?;
    }
    Ok(())
}
