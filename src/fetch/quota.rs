//! Provider quotas that belong to an OAuth client, not to an instance.
//! Keap counts its daily quota and its per-minute throttle per client
//! application, so every instance (tenant) of one client spends the same
//! quota: once one of them is told it is used up, the others wait for the
//! same reset instead of each spending a request to be told again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// Until when each client's quota is used up. One per process.
#[derive(Default)]
pub struct ClientQuotas {
    /// By token endpoint and client id (an API key: never printed).
    until: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl std::fmt::Debug for ClientQuotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientQuotas").finish_non_exhaustive()
    }
}

/// One client's entry in [`ClientQuotas`], as its instances' fetchers see it.
#[derive(Clone)]
pub struct ClientQuota {
    quotas: Arc<ClientQuotas>,
    client: String,
}

impl std::fmt::Debug for ClientQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientQuota").finish_non_exhaustive()
    }
}

impl ClientQuota {
    pub fn new(quotas: Arc<ClientQuotas>, client: impl Into<String>) -> Self {
        Self {
            quotas,
            client: client.into(),
        }
    }

    /// How long the client's quota stays used up after `now`, if it is.
    pub fn wait(&self, now: DateTime<Utc>) -> Option<Duration> {
        let mut until = self.quotas.until.lock().unwrap_or_else(|e| e.into_inner());
        match until.get(&self.client) {
            Some(t) if *t > now => (*t - now).to_std().ok(),
            Some(_) => {
                until.remove(&self.client);
                None
            }
            None => None,
        }
    }

    /// The provider said the client's quota is used up for `wait` from `now`.
    pub fn exhausted(&self, now: DateTime<Utc>, wait: Duration) {
        let Some(t) = TimeDelta::from_std(wait)
            .ok()
            .and_then(|w| now.checked_add_signed(w))
        else {
            return;
        };
        let mut until = self.quotas.until.lock().unwrap_or_else(|e| e.into_inner());
        let entry = until.entry(self.client.clone()).or_insert(t);
        *entry = (*entry).max(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_used_up_quota_holds_every_instance_of_its_client_until_the_reset() {
        let quotas = Arc::new(ClientQuotas::default());
        let (a, b) = (
            ClientQuota::new(quotas.clone(), "app"),
            ClientQuota::new(quotas.clone(), "app"),
        );
        let other = ClientQuota::new(quotas, "other-app");
        let now = Utc::now();
        a.exhausted(now, Duration::from_secs(30));
        assert_eq!(b.wait(now), Some(Duration::from_secs(30)));
        assert_eq!(
            b.wait(now + TimeDelta::seconds(10)),
            Some(Duration::from_secs(20))
        );
        assert_eq!(other.wait(now), None, "another client's quota is its own");
        assert_eq!(a.wait(now + TimeDelta::seconds(30)), None, "reset");
        // A shorter hint never shortens a longer one.
        a.exhausted(now, Duration::from_secs(60));
        b.exhausted(now, Duration::from_secs(5));
        assert_eq!(a.wait(now), Some(Duration::from_secs(60)));
    }
}
