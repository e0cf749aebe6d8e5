//! OAuth token sets at rest: sealed with the operator's key and written to
//! the instance's state partition in a transaction of their own, so a
//! rotated refresh token is durable before the new access token is used,
//! and is never rolled back with (or made to wait for) a poll's fetch.
//!
//! A vault outlives ownership periods (as do the token managers that use
//! it): a rotated token whose save failed stays with its manager and is
//! saved when the partition comes back, instead of being dropped with the
//! period. Within a period, no refresh starts without first proving, by a
//! committed transaction, that the producer is not fenced.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::crypto::SealingKey;
use crate::publish::{Batch, PublishError};
use crate::source::{CredentialStore, StoreError};
use crate::state::StateKey;

use super::lane::Commit;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("STATE_ENCRYPTION_KEY is not set; it is required to keep OAuth tokens in Kafka")]
    NoKey,
    #[error("persisting tokens of instance {instance}: {source}")]
    Publish {
        instance: String,
        source: PublishError,
    },
    /// The partition was revoked (or its producer fenced or broken) since:
    /// whoever owns it now keeps the tokens.
    #[error("tokens of instance {instance}: this worker does not own its state partition now")]
    NotOwner { instance: String },
}

/// Token sets of the instances of one state partition. It lives as long as
/// the process; each ownership period grants it a [`Lease`] (the period's
/// producer and restored tokens), and without one it refuses to save or to
/// let a refresh start.
pub struct TokenVault {
    key: Option<SealingKey>,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    lease: Option<LeaseInner>,
    /// Latest sealed token set by instance: restored, then as saved.
    sealed: HashMap<String, Vec<u8>>,
    /// Counts leases, so token managers know to read the store again.
    generation: u64,
}

struct LeaseInner {
    lane: Arc<dyn Commit>,
    /// Cancelled when the period ends (revocation began, producer fenced
    /// or broken, shutdown).
    stop: CancellationToken,
}

/// The vault's grant for one ownership period; dropping it ends the grant.
pub struct Lease<'a> {
    vault: &'a TokenVault,
    generation: u64,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut held = self.vault.held();
        if held.generation == self.generation {
            held.lease = None;
        }
    }
}

impl TokenVault {
    pub fn new(key: Option<SealingKey>) -> Self {
        Self {
            key,
            held: Mutex::new(Held::default()),
        }
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts an ownership period: saves go through `lane` until `stop`
    /// fires or the lease is dropped; `restored` is what the partition
    /// holds now (another worker may have refreshed meanwhile).
    pub fn lease(
        &self,
        lane: Arc<dyn Commit>,
        stop: CancellationToken,
        restored: HashMap<String, Vec<u8>>,
    ) -> Lease<'_> {
        let mut held = self.held();
        held.generation += 1;
        held.sealed = restored;
        held.lease = Some(LeaseInner { lane, stop });
        Lease {
            vault: self,
            generation: held.generation,
        }
    }

    /// The lane of the current period, unless it is over.
    fn lane(&self, instance: &str) -> Result<Arc<dyn Commit>, VaultError> {
        match &self.held().lease {
            Some(l) if !l.stop.is_cancelled() => Ok(l.lane.clone()),
            _ => Err(VaultError::NotOwner {
                instance: instance.to_string(),
            }),
        }
    }

    fn key(&self) -> Result<&SealingKey, VaultError> {
        self.key.as_ref().ok_or(VaultError::NoKey)
    }

    /// The instance's stored token set (plaintext bytes), if any.
    ///
    /// # Errors
    /// No key configured.
    pub fn load(&self, instance: &str) -> Result<Option<Vec<u8>>, VaultError> {
        let key = self.key()?;
        let Some(sealed) = self.held().sealed.get(instance).cloned() else {
            return Ok(None);
        };
        let aad = record_key(instance);
        match key.open(aad.as_bytes(), &sealed) {
            Ok(plain) => Ok(Some(plain)),
            Err(error) => {
                // Most likely STATE_ENCRYPTION_KEY was changed. The sealed
                // set is useless to this process: fall back to the
                // instance's authorization code rather than failing every
                // poll for ever.
                tracing::error!(
                    message = "Stored OAuth2 tokens cannot be decrypted with STATE_ENCRYPTION_KEY (was the key changed?); using the instance's authorization code instead.",
                    instance,
                    %error,
                );
                Ok(None)
            }
        }
    }

    /// Seals and commits `plaintext` as the instance's token set. Returns
    /// only once the transaction is committed.
    ///
    /// # Errors
    /// No key configured, not the owner, or the commit failed (then
    /// nothing was stored).
    pub async fn save(&self, instance: &str, plaintext: &[u8]) -> Result<(), VaultError> {
        let aad = record_key(instance);
        let sealed = self.key()?.seal(aad.as_bytes(), plaintext);
        self.commit(instance, Some(sealed.clone())).await?;
        self.held().sealed.insert(instance.to_string(), sealed);
        Ok(())
    }

    /// Proves that this worker still owns the partition right before the
    /// provider is asked to rotate the instance's tokens: a transaction
    /// that writes the current token record again, which fails if a newer
    /// owner fenced the producer. A rotation whose save would be fenced
    /// then never starts.
    ///
    /// # Errors
    /// Not the owner (the period ended, or the transaction was fenced).
    pub async fn claim_refresh(&self, instance: &str) -> Result<(), VaultError> {
        let current = self.held().sealed.get(instance).cloned();
        self.commit(instance, current).await
    }

    async fn commit(&self, instance: &str, value: Option<Vec<u8>>) -> Result<(), VaultError> {
        let lane = self.lane(instance)?;
        lane.commit(Batch {
            state: vec![(record_key(instance), value)],
            ..Batch::default()
        })
        .await
        .map_err(|source| VaultError::Publish {
            instance: instance.to_string(),
            source,
        })
    }
}

/// The instance's token set is what its source stores here.
impl CredentialStore for TokenVault {
    fn load<'a>(
        &'a self,
        instance_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        let found = TokenVault::load(self, instance_id).map_err(StoreError::new);
        Box::pin(async move { found })
    }

    fn save<'a>(
        &'a self,
        instance_id: &'a str,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            TokenVault::save(self, instance_id, &bytes)
                .await
                .map_err(StoreError::new)
        })
    }

    fn generation(&self) -> u64 {
        self.held().generation
    }

    fn claim_refresh<'a>(&'a self, instance_id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            TokenVault::claim_refresh(self, instance_id)
                .await
                .map_err(StoreError::new)
        })
    }
}

fn record_key(instance: &str) -> String {
    StateKey::Token {
        instance: instance.to_string(),
    }
    .encode()
}
