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
    settled: tokio::sync::Notify,
}

#[derive(Default)]
struct Held {
    lease: Option<LeaseInner>,
    /// Latest sealed token set by instance: restored, then as saved.
    sealed: HashMap<String, Vec<u8>>,
    /// Counts leases, so token managers know to read the store again.
    generation: u64,
    /// Claims granted whose rotation is not saved (or failed) yet.
    claims: usize,
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
            settled: tokio::sync::Notify::new(),
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

    /// The lane of the current period. Once the period is stopping, only
    /// saves still use it (a rotation claimed before must be kept: the
    /// next owner restores after fencing, so it sees the save); new claims
    /// are refused.
    fn lane(&self, instance: &str, claiming: bool) -> Result<Arc<dyn Commit>, VaultError> {
        match &self.held().lease {
            Some(l) if !(claiming && l.stop.is_cancelled()) => Ok(l.lane.clone()),
            _ => Err(VaultError::NotOwner {
                instance: instance.to_string(),
            }),
        }
    }

    /// Waits (at most `limit`) until every claimed rotation is saved or
    /// failed: the period must not end between a provider's answer and
    /// its save.
    pub async fn settle(&self, limit: std::time::Duration) {
        let wait = async {
            loop {
                let notified = self.settled.notified();
                if self.held().claims == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
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
        self.commit(instance, Some(sealed.clone()), false).await?;
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
        self.commit(instance, current, true).await?;
        let mut held = self.held();
        if held.lease.as_ref().is_some_and(|l| !l.stop.is_cancelled()) {
            held.claims += 1;
            Ok(())
        } else {
            Err(VaultError::NotOwner {
                instance: instance.to_string(),
            })
        }
    }

    /// See [`CredentialStore::claim_done`].
    pub fn claim_done(&self) {
        let mut held = self.held();
        held.claims = held.claims.saturating_sub(1);
        if held.claims == 0 {
            self.settled.notify_waiters();
        }
    }

    async fn commit(
        &self,
        instance: &str,
        value: Option<Vec<u8>>,
        claiming: bool,
    ) -> Result<(), VaultError> {
        let lane = self.lane(instance, claiming)?;
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

    fn claim_done(&self, _instance_id: &str) {
        TokenVault::claim_done(self);
    }
}

fn record_key(instance: &str) -> String {
    StateKey::Token {
        instance: instance.to_string(),
    }
    .encode()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;
    use std::time::Duration;

    use super::*;

    #[derive(Default)]
    struct Recorded(StdMutex<Vec<Batch>>);

    impl Commit for Recorded {
        fn commit(&self, batch: Batch) -> BoxFuture<'_, Result<(), PublishError>> {
            self.0.lock().unwrap().push(batch);
            Box::pin(async { Ok(()) })
        }
    }

    fn vault() -> TokenVault {
        TokenVault::new(Some(
            SealingKey::from_base64("ZGVtby1rZXktZGVtby1rZXktZGVtby1rZXktMDAwMDA=").unwrap(),
        ))
    }

    #[tokio::test]
    async fn without_a_lease_nothing_is_saved_or_claimed() {
        let v = vault();
        assert!(matches!(
            v.save("i", b"{}").await,
            Err(VaultError::NotOwner { .. })
        ));
        assert!(matches!(
            v.claim_refresh("i").await,
            Err(VaultError::NotOwner { .. })
        ));
    }

    #[tokio::test]
    async fn a_stopping_period_refuses_claims_but_keeps_saves_until_its_lease_ends() {
        let v = vault();
        let lane = Arc::new(Recorded::default());
        let stop = CancellationToken::new();
        let lease = v.lease(lane.clone(), stop.clone(), HashMap::new());
        let generation = CredentialStore::generation(&v);
        v.claim_refresh("i").await.unwrap();
        // The claim proves ownership with a transaction of its own.
        assert_eq!(lane.0.lock().unwrap().len(), 1);
        stop.cancel();
        assert!(matches!(
            v.claim_refresh("i").await,
            Err(VaultError::NotOwner { .. })
        ));
        v.save("i", b"{}").await.unwrap();
        assert_eq!(v.load("i").unwrap().as_deref(), Some(&b"{}"[..]));
        drop(lease);
        assert!(matches!(
            v.save("i", b"{}").await,
            Err(VaultError::NotOwner { .. })
        ));
        // The next period's restore replaces what this one saw.
        let _next = v.lease(lane, CancellationToken::new(), HashMap::new());
        assert!(CredentialStore::generation(&v) > generation);
        assert_eq!(v.load("i").unwrap(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn settle_waits_for_claimed_rotations() {
        let v = Arc::new(vault());
        let _lease = v.lease(
            Arc::new(Recorded::default()),
            CancellationToken::new(),
            HashMap::new(),
        );
        v.claim_refresh("i").await.unwrap();
        let waiting = tokio::spawn({
            let v = v.clone();
            async move { v.settle(Duration::from_secs(10)).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "a claimed rotation is in flight");
        v.claim_done();
        tokio::time::timeout(Duration::from_millis(10), waiting)
            .await
            .expect("settled once the rotation is done")
            .unwrap();
    }
}
