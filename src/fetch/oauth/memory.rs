//! A process-local credential store, for tests and dry runs (lost on exit).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use futures::future::BoxFuture;

use super::tokens::TokenSet;
use crate::source::{CredentialStore, StoreError};

#[derive(Debug, Default)]
pub struct MemoryTokenStore {
    sets: Mutex<HashMap<String, Vec<u8>>>,
}

impl MemoryTokenStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The token set stored for `instance_id`, if there is a readable one.
    pub fn get(&self, instance_id: &str) -> Option<TokenSet> {
        let bytes = self.lock().get(instance_id).cloned()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Stores a set directly (seeding a test).
    pub fn put(&self, instance_id: &str, tokens: TokenSet) {
        // Plain data with string keys: serialising it cannot fail.
        let bytes = serde_json::to_vec(&tokens).expect("a token set serialises as JSON");
        self.lock().insert(instance_id.to_owned(), bytes);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<u8>>> {
        // Poisoning means a holder panicked mid-insert; the map is intact.
        self.sets.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl CredentialStore for MemoryTokenStore {
    fn load<'a>(
        &'a self,
        instance_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        let found = self.lock().get(instance_id).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn save<'a>(
        &'a self,
        instance_id: &'a str,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.lock().insert(instance_id.to_owned(), bytes);
        Box::pin(async { Ok(()) })
    }
}
