//! OAuth token sets at rest: sealed with the operator's key and written to
//! the instance's state partition in a transaction of their own, so a
//! rotated refresh token is durable before the new access token is used,
//! and is never rolled back with (or made to wait for) a poll's fetch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

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
}

/// Token sets of the instances of one state partition.
pub struct TokenVault {
    key: Option<SealingKey>,
    lane: Arc<dyn Commit>,
    /// Latest sealed token set by instance: restored, then as saved.
    sealed: Mutex<HashMap<String, Vec<u8>>>,
}

impl TokenVault {
    pub fn new(
        key: Option<SealingKey>,
        lane: Arc<dyn Commit>,
        restored: HashMap<String, Vec<u8>>,
    ) -> Self {
        Self {
            key,
            lane,
            sealed: Mutex::new(restored),
        }
    }

    fn key(&self) -> Result<&SealingKey, VaultError> {
        self.key.as_ref().ok_or(VaultError::NoKey)
    }

    /// The instance's stored token set (plaintext bytes), if any.
    ///
    /// # Errors
    /// No key configured, or the stored bytes do not decrypt with it.
    pub fn load(&self, instance: &str) -> Result<Option<Vec<u8>>, VaultError> {
        let key = self.key()?;
        let sealed = match self.sealed.lock() {
            Ok(map) => map.get(instance).cloned(),
            Err(poisoned) => poisoned.into_inner().get(instance).cloned(),
        };
        let Some(sealed) = sealed else {
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
    /// No key configured, or the commit failed (then nothing was stored).
    pub async fn save(&self, instance: &str, plaintext: &[u8]) -> Result<(), VaultError> {
        let aad = record_key(instance);
        let sealed = self.key()?.seal(aad.as_bytes(), plaintext);
        self.lane
            .commit(Batch {
                state: vec![(aad, Some(sealed.clone()))],
                ..Batch::default()
            })
            .await
            .map_err(|source| VaultError::Publish {
                instance: instance.to_string(),
                source,
            })?;
        match self.sealed.lock() {
            Ok(mut map) => map.insert(instance.to_string(), sealed),
            Err(poisoned) => poisoned.into_inner().insert(instance.to_string(), sealed),
        };
        Ok(())
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
}

fn record_key(instance: &str) -> String {
    StateKey::Token {
        instance: instance.to_string(),
    }
    .encode()
}
