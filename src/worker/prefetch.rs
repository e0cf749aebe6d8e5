//! Pipelining a long window: a window too long for one poll is published in
//! parts (the fetch limits), each part one transaction with the checkpoint
//! that says where the next part starts. The next part's fetch starts as
//! soon as the part before it is fetched, so it runs while that part is
//! detected and committed: fetching (the provider's time) and committing
//! (the broker's) overlap instead of adding up.
//!
//! Only the fetch runs ahead. The part is detected, and its events built,
//! against the checkpoint its predecessor committed, so exactly-once is the
//! same as without pipelining: a fetch is a read, and a part fetched a few
//! hundred milliseconds early is what a poll at that moment would have
//! read. When the part before it fails to commit, the checkpoint does not
//! lead to the prefetched part, and it is dropped unread.
//!
//! A transaction is never held open across a fetch: that would keep the
//! partition's lane (every other job's commit) waiting on a provider, and
//! abort the neighbours' batches whenever the fetch failed. Memory is
//! bounded by two parts: the one committing and the one fetched ahead.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio_util::task::AbortOnDropHandle;

use crate::source::{FetchFailure, FetchRequest, Fetched, Source};

use super::clock::Clock;
use super::permit::Held;

/// A part fetched ahead: when its fetch began (the part's poll start) and
/// what it returned.
pub struct Prefetched {
    pub started: DateTime<Utc>,
    pub result: Result<Fetched, FetchFailure>,
}

enum State {
    Fetching(AbortOnDropHandle<Prefetched>),
    Done(Prefetched),
}

/// At most one part fetched ahead; dropping it stops its fetch.
#[derive(Default)]
pub struct Prefetch {
    ahead: Option<(String, State)>,
}

impl Prefetch {
    /// Starts fetching `request` in the background. It takes a poll permit
    /// of its own, like any fetch, and gives it back when it is done: a job
    /// waiting for its prefetch holds none.
    pub fn start(
        &mut self,
        source: Arc<dyn Source>,
        mut request: FetchRequest,
        permits: Arc<Semaphore>,
        clock: Arc<dyn Clock>,
    ) {
        let url = request.url.clone();
        let task = tokio::spawn(async move {
            let held = Held::acquire(&permits).await;
            let started = clock.now();
            if let Some(held) = &held {
                request.pause = held.pause();
            }
            let result = source.fetch(request).await;
            if let Some(held) = held {
                held.release();
            }
            Prefetched { started, result }
        });
        self.ahead = Some((url, State::Fetching(AbortOnDropHandle::new(task))));
    }

    /// Drops the part fetched ahead unless it is the one at `next` (the
    /// checkpoint's resume URL).
    pub fn keep_only(&mut self, next: Option<&str>) {
        if self.ahead.as_ref().map(|(url, _)| url.as_str()) != next {
            self.ahead = None;
        }
    }

    /// Waits until the fetch ahead, if any, is done. Cancel-safe: the fetch
    /// goes on if the wait is given up.
    pub async fn settled(&mut self) {
        let Some((_, State::Fetching(task))) = &mut self.ahead else {
            return;
        };
        let done = task.await;
        self.ahead = match (self.ahead.take(), done) {
            (Some((url, _)), Ok(done)) => Some((url, State::Done(done))),
            // It panicked: the part is fetched again the usual way.
            _ => None,
        };
    }

    /// The part fetched ahead from `url`, once [`settled`](Self::settled).
    pub fn take(&mut self, url: &str) -> Option<Prefetched> {
        match self.ahead.take() {
            Some((at, State::Done(done))) if at == url => Some(done),
            other => {
                self.ahead = other;
                None
            }
        }
    }
}
