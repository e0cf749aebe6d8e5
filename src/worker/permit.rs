//! A job's hold on one of the worker's poll permits. The permit bounds the
//! polls (and so the provider connections) in flight on a worker; a fetch
//! that sleeps (a throttle, a retry backoff) gives it back for the sleep, so
//! a tenant the provider holds off does not hold off the others.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::source::Pause;

/// One permit, or none while its fetch sleeps. Clones share the hold: the
/// fetch's [`Pause`] may outlive the poll (whoever kept the request), the
/// permit must not, so the poll [`release`](Self::release)s it when done.
#[derive(Clone)]
pub struct Held {
    permits: Arc<Semaphore>,
    slot: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
}

impl Held {
    /// Waits for a permit; `None` once the semaphore is closed.
    pub async fn acquire(permits: &Arc<Semaphore>) -> Option<Self> {
        let permit = permits.clone().acquire_owned().await.ok()?;
        Some(Self {
            permits: permits.clone(),
            slot: Arc::new(Mutex::new(Some(permit))),
        })
    }

    /// Sleeps without the permit, then takes one again.
    pub fn pause(&self) -> Pause {
        let held = self.clone();
        Pause::new(move |wait| {
            let held = held.clone();
            Box::pin(async move {
                held.release();
                tokio::time::sleep(wait).await;
                let again = held.permits.clone().acquire_owned().await.ok();
                *held.lock() = again;
            })
        })
    }

    pub fn release(&self) {
        drop(self.lock().take());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<OwnedSemaphorePermit>> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }
}
