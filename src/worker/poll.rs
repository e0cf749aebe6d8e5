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

use crate::detect::{self, Bounds};
use crate::event::{EventContext, dead_letter_record, event_record};
use crate::javadate::Zone;
use crate::metrics::Metrics;
use crate::publish::{Batch, PublishError};
use crate::state::{Checkpoint, StateKey};
use crate::telemetry::events::{
    PollAborted, PollCommitted, PollFetchFailed, PollProducerFailed, WindowFetched,
};

use crate::backoff::Backoff;
use crate::source::{FailureKind, FetchRequest, Source};

use super::jobs::Job;
use super::lane::Lane;

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
    FetchFailed(FailureKind),
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
                PollOutcome::FetchFailed(kind) => {
                    failures = failures.saturating_add(1);
                    Utc::now() + retry_delay(kind, self.settings.retry_min, interval, failures)
                }
                PollOutcome::Aborted => {
                    failures = failures.saturating_add(1);
                    Utc::now()
                        + retry_delay(
                            FailureKind::Retriable,
                            self.settings.retry_min,
                            interval,
                            failures,
                        )
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
        let mut window = Bounds {
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
            keyset: Some(resource.updated.clone()),
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
                    error: &failure.error,
                    elapsed: timer.elapsed(),
                }
                .emit(&self.metrics);
                // Nothing of this step was published: it can be retried.
                self.resume = resume;
                return PollOutcome::FetchFailed(failure.error.kind());
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
            .map(|c| event_record(&ctx, c))
            .collect();
        let dead_letters: Vec<_> = detected
            .dead
            .iter()
            .map(|d| dead_letter_record(&ctx, d, window.start))
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

/// The longest wait before polling again after a failure: an instance that
/// needs a person (a refused grant, a resource URL the provider rejects)
/// costs the provider one request an hour, and a throttle that asks for
/// more than an hour is asked again after one.
const LONGEST_RETRY: Duration = Duration::from_secs(3600);

/// When to poll again after the `failures`-th failure in a row, by what
/// failed: transient trouble is retried soon, backing off up to one
/// interval; a throttle is waited out as asked; a failure only a person can
/// fix is retried from one interval on, doubling up to [`LONGEST_RETRY`].
fn retry_delay(kind: FailureKind, min: Duration, interval: Duration, failures: u32) -> TimeDelta {
    let transient = Backoff::new(min, interval.max(min));
    let wait = match kind {
        FailureKind::Retriable | FailureKind::Throttled { retry_after: None } => {
            transient.delay(failures)
        }
        FailureKind::Throttled {
            retry_after: Some(asked),
        } => asked.clamp(min, LONGEST_RETRY.max(min)),
        FailureKind::Reauthorize | FailureKind::Permanent => {
            let first = interval.max(min);
            Backoff::new(first, LONGEST_RETRY.max(first)).delay(failures)
        }
    };
    TimeDelta::from_std(wait).unwrap_or(TimeDelta::MAX)
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
    fn retry_delay_differs_by_what_failed() {
        let min = Duration::from_secs(1);
        let interval = Duration::from_secs(60);
        let ms = |kind, failures| retry_delay(kind, min, interval, failures).num_milliseconds();
        for _ in 0..50 {
            // Transient: soon, growing, capped by the interval.
            let transient = FailureKind::Retriable;
            assert!((500..=1_000).contains(&ms(transient, 1)));
            assert!((30_000..=60_000).contains(&ms(transient, 10)));
            // A throttle without a hint backs off like transient trouble.
            let unhinted = FailureKind::Throttled { retry_after: None };
            assert!((500..=1_000).contains(&ms(unhinted, 1)));
            // A person must act: one interval at first, up to an hour.
            for kind in [FailureKind::Reauthorize, FailureKind::Permanent] {
                assert!((30_000..=60_000).contains(&ms(kind, 1)));
                assert!((1_800_000..=3_600_000).contains(&ms(kind, 20)));
            }
        }
        // A throttle is waited out as asked, past the interval, within the hour.
        let asked = |secs| FailureKind::Throttled {
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(ms(asked(90), 1), 90_000);
        assert_eq!(ms(asked(0), 1), 1_000);
        assert_eq!(ms(asked(u64::MAX), 1), 3_600_000);
    }
}
