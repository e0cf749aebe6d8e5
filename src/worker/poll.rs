//! One job's loop: wait until due, fetch the window, detect, publish the
//! events, dead letters and new checkpoint in one transaction. Cancellation
//! is observed only while waiting, never inside a poll: a poll ends
//! committed or aborted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use rand::RngExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::detect::{self, Window};
use crate::event::{Change, EventContext, dead_letter_record, event_record};
use crate::javadate::Zone;
use crate::metrics::Metrics;
use crate::publish::{Batch, PublishError};
use crate::state::{Checkpoint, StateKey};
use crate::telemetry::events::{
    PollAborted, PollCommitted, PollFetchFailed, PollProducerFailed, WindowFetched,
};

use super::jobs::Job;
use super::lane::Lane;
use super::source::{FetchRequest, Source};

/// Settings every job of a worker shares.
#[derive(Debug, Clone)]
pub struct PollSettings {
    /// See [`detect::window_start`].
    pub overlap: TimeDelta,
    /// Zone of `${date:…}`.
    pub service_zone: Zone,
    /// Shortest wait after a failed poll; doubles up to the interval.
    pub retry_min: Duration,
}

/// How a poll ended.
#[derive(Debug)]
pub enum PollOutcome {
    /// Committed; `truncated` asks for the next poll at once.
    Committed { events: usize, truncated: bool },
    /// Fetching failed; nothing was published, the watermark stays.
    FetchFailed,
    /// The transaction was aborted; the window will be redone.
    Aborted,
    /// The producer was fenced or broke: the partition must be fenced and
    /// restored again.
    Fatal,
}

/// Everything a job loop needs.
pub struct JobRunner {
    pub job: Job,
    pub checkpoint: Checkpoint,
    /// A window cut short by the page or record limit continues here (its
    /// start and the provider's resume URL). Only in memory: after a crash
    /// the window is redone from the checkpoint.
    pub resume: Option<(DateTime<Utc>, String)>,
    pub source: Arc<dyn Source>,
    pub lane: Arc<Lane>,
    pub permits: Arc<Semaphore>,
    pub settings: Arc<PollSettings>,
    pub metrics: Arc<Metrics>,
}

impl JobRunner {
    /// Polls until `cancel` fires or the producer breaks (then `refence`
    /// is cancelled so the partition task starts over).
    pub async fn run(mut self, cancel: CancellationToken, refence: CancellationToken) {
        let interval = self.job.instance.refresh_interval;
        let mut due = self.first_due(interval);
        let mut failures: u32 = 0;
        loop {
            let wait = (due - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            let permit = tokio::select! {
                () = cancel.cancelled() => return,
                p = self.permits.clone().acquire_owned() => p,
            };
            let Ok(_permit) = permit else { return };
            let started = Utc::now();
            let outcome = self.poll_once(started).await;
            due = match outcome {
                PollOutcome::Committed {
                    truncated: true, ..
                } => {
                    failures = 0;
                    Utc::now()
                }
                PollOutcome::Committed { .. } => {
                    failures = 0;
                    next_due(started, interval)
                }
                PollOutcome::FetchFailed | PollOutcome::Aborted => {
                    failures = failures.saturating_add(1);
                    Utc::now() + retry_delay(self.settings.retry_min, interval, failures)
                }
                PollOutcome::Fatal => {
                    refence.cancel();
                    return;
                }
            };
        }
    }

    /// After a restart the job keeps its rhythm: due one interval after the
    /// last committed poll, or now if it never polled.
    fn first_due(&self, interval: Duration) -> DateTime<Utc> {
        match self.checkpoint.last_poll_start {
            Some(last) => next_due(last, interval),
            None => Utc::now(),
        }
    }

    /// One poll: fetch, detect, commit. Public for tests and `poll --once`.
    pub async fn poll_once(&mut self, started: DateTime<Utc>) -> PollOutcome {
        let timer = Instant::now();
        let job = &self.job;
        let resource = job.resource();
        let resume = self.resume.take();
        let start = match &resume {
            Some((start, _)) => *start,
            None => {
                detect::window_start(self.checkpoint.watermark, resource, self.settings.overlap)
            }
        };
        let mut window = Window {
            start,
            poll_start: started,
            overlap: self.settings.overlap,
            not_before: self.checkpoint.started_from,
        };
        // A truncated window continues where it stopped rather than from
        // the watermark: re-reading the overlap would fetch the same first
        // pages again, for ever, when more records than one poll may read
        // share that stretch of time.
        let url = match resume.as_ref() {
            Some((_, url)) => url.clone(),
            None => resource
                .url
                .render(window.start, &self.settings.service_zone),
        };
        debug!(message = "Polling.", job = %job.id, since = %window.start);
        let request = FetchRequest {
            url,
            page_size: resource.page_size,
            updated: resource.updated.clone(),
        };
        let fetched = match self.source.fetch(request).await {
            Ok(f) => f,
            Err(failure) => {
                WindowFetched {
                    job: &job.id,
                    stats: &failure.stats,
                }
                .emit(&self.metrics);
                PollFetchFailed {
                    job: &job.id,
                    error: &*failure.error,
                    elapsed: timer.elapsed(),
                }
                .emit(&self.metrics);
                // Nothing of this step was published: it can be retried.
                self.resume = resume;
                return PollOutcome::FetchFailed;
            }
        };
        WindowFetched {
            job: &job.id,
            stats: &fetched.stats,
        }
        .emit(&self.metrics);
        window.not_before = detect::job_start_on_provider_clock(
            self.checkpoint.started_from,
            started,
            fetched.provider_date,
        );
        let detected = detect::detect(resource, &self.checkpoint, window, &fetched.records);
        let ctx = EventContext {
            job: &job.id,
            element_key: &job.instance.element_key,
            callback_url: job.instance.callback_url.as_deref(),
        };
        let events: Vec<_> = detected
            .changes
            .iter()
            .map(|c| {
                event_record(
                    &ctx,
                    &Change {
                        object_id: &c.object_id,
                        event_type: c.event_type,
                        updated_at: c.updated_at,
                        raw: c.raw,
                    },
                )
            })
            .collect();
        let dead_letters: Vec<_> = detected
            .dead
            .iter()
            .map(|d| {
                dead_letter_record(&ctx, d.object_id.as_deref(), &d.reason, d.raw, window.start)
            })
            .collect();
        for d in &detected.dead {
            warn!(message = "Record sent to the dead-letter topic.", job = %job.id, reason = %d.reason);
        }
        let n = events.len();
        let batch = Batch {
            events,
            dead_letters,
            state: vec![(
                StateKey::Job(job.id.clone()).encode(),
                Some(detected.next.encode()),
            )],
        };
        match self.lane.commit(batch).await {
            Ok(()) => {
                PollCommitted {
                    job: &job.id,
                    poll_start: started,
                    records: fetched.records.len(),
                    pages: fetched.pages,
                    changes: &detected.changes,
                    dead_letters: detected.dead.len(),
                    duplicates: detected.duplicates,
                    watermark: detected.next.watermark,
                    elapsed: timer.elapsed(),
                }
                .emit(&self.metrics);
                self.checkpoint = detected.next;
                self.resume = if fetched.truncated {
                    fetched.resume_url.clone().map(|u| (window.start, u))
                } else {
                    None
                };
                PollOutcome::Committed {
                    events: n,
                    truncated: fetched.truncated,
                }
            }
            Err(PublishError::Fatal(error)) => {
                PollProducerFailed {
                    job: &job.id,
                    error: &error,
                    elapsed: timer.elapsed(),
                }
                .emit(&self.metrics);
                PollOutcome::Fatal
            }
            Err(error) => {
                PollAborted {
                    job: &job.id,
                    error: &error,
                    elapsed: timer.elapsed(),
                }
                .emit(&self.metrics);
                PollOutcome::Aborted
            }
        }
    }
}

/// One interval after `from`, with ±10% jitter so that jobs that started
/// together (a restart, a rebalance) spread out instead of polling in step.
fn next_due(from: DateTime<Utc>, interval: Duration) -> DateTime<Utc> {
    let base = interval.as_secs_f64();
    let jitter = rand::rng().random_range(-0.1..=0.1) * base;
    let secs = (base + jitter).max(0.0);
    from + TimeDelta::milliseconds((secs * 1000.0) as i64)
}

/// Exponential backoff with full jitter, never longer than the interval.
fn retry_delay(min: Duration, interval: Duration, failures: u32) -> TimeDelta {
    let exp = min.saturating_mul(1u32 << failures.min(16));
    let cap = exp.min(interval.max(min));
    let secs = rand::rng().random_range(0.5..=1.0) * cap.as_secs_f64();
    TimeDelta::milliseconds((secs * 1000.0) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_due_stays_within_the_jitter() {
        let from = Utc::now();
        for _ in 0..100 {
            let d = next_due(from, Duration::from_secs(100)) - from;
            assert!((90_000..=110_000).contains(&d.num_milliseconds()), "{d}");
        }
    }

    #[test]
    fn retry_delay_grows_and_is_capped_by_the_interval() {
        let min = Duration::from_secs(1);
        let interval = Duration::from_secs(60);
        for _ in 0..50 {
            let d1 = retry_delay(min, interval, 1).num_milliseconds();
            assert!((1_000..=2_000).contains(&d1), "{d1}");
            let d10 = retry_delay(min, interval, 10).num_milliseconds();
            assert!((30_000..=60_000).contains(&d10), "{d10}");
        }
    }
}
