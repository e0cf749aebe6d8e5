//! One job's loop: wait until due, fetch the window, detect, publish the
//! events, dead letters and new checkpoint in one transaction. Cancellation
//! (a revocation, shutdown) ends a wait or a fetch at once, since nothing
//! of a window is published before its commit; a commit in progress is
//! never cut: it ends committed or aborted.
//!
//! The loop talks to a [`Source`] on one side and a [`Commit`] on the
//! other, and reads time from a [`Clock`], so that its schedule is
//! unit-tested with fakes and tokio's paused time (below).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use rand::RngExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::backoff::Backoff;
use crate::detect::{self, Bounds};
use crate::event::{
    DeadKind, DeadRecord, EventContext, MAX_EVENT_BYTES, dead_letter_record, event_record,
};
use crate::javadate::Zone;
use crate::ops::{Attention, Readiness};
use crate::publish::{Batch, PublishError};
use crate::source::{FailureKind, FetchRequest, Pause, Source};
use crate::state::{Checkpoint, Resume};
use crate::telemetry::events::{
    AuthorizationNeeded, FutureDatedSeen, PartFetchedAhead, PollAborted, PollCommitted,
    PollFetchFailed, PollProducerFailed, PollStarted, WindowFetched,
};

use super::clock::Clock;
use super::jobs::Job;
use super::lane::Commit;
use super::ownership::{Handback, Stop};
use super::permit::Held;
use super::prefetch::Prefetch;

/// Settings every job of a worker shares.
#[derive(Debug, Clone)]
pub struct PollSettings {
    /// See [`detect::window_start`].
    pub overlap: TimeDelta,
    /// Zone of `${date:…}`.
    pub service_zone: Zone,
    /// Shortest wait after a failed poll; doubles up to the interval.
    pub retry_min: Duration,
    /// A job that never polled starts at a random point of the first
    /// `min(interval, first_poll_spread)`, so thousands of new jobs (a
    /// first start, a bulk onboarding) do not all come due in the same
    /// instant and keep arriving together ever after.
    pub first_poll_spread: Duration,
}

/// How a poll ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollOutcome {
    /// Committed; `truncated` asks for the next poll at once.
    Committed { events: usize, truncated: bool },
    /// Fetching failed; nothing was published, the watermark stays.
    FetchFailed(FailureKind),
    /// The transaction was aborted; the window will be redone.
    Aborted,
    /// The producer cannot be used again; see [`Handback`].
    Fatal(Handback),
    /// The partition's period ended while fetching; nothing was published.
    Cancelled,
}

/// Everything a job loop needs.
pub struct JobRunner {
    pub job: Job,
    pub checkpoint: Checkpoint,
    pub source: Arc<dyn Source>,
    pub commit: Arc<dyn Commit>,
    pub permits: Arc<Semaphore>,
    pub settings: Arc<PollSettings>,
    pub clock: Arc<dyn Clock>,
    /// Where a job that needs an operator is reported, and its partition.
    pub readiness: Arc<Readiness>,
    pub partition: i32,
    /// The next part of a long window, fetched while this part commits.
    pub prefetch: Prefetch,
}

/// What the loop does after a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Poll again at this time.
    At(DateTime<Utc>),
    /// Stop: the producer cannot be used again.
    HandBack(Handback),
    /// Stop: the period ended.
    Stop,
}

impl JobRunner {
    /// Polls until `stop` fires, or until the producer cannot be used
    /// again (then it stops the whole period, saying why).
    pub async fn run(mut self, stop: Stop) {
        let cancel = stop.token().clone();
        let interval = self.job.instance.refresh_interval;
        let mut due = self.first_due(interval);
        let mut failures: u32 = 0;
        loop {
            let wait = (due - self.clock.now()).to_std().unwrap_or(Duration::ZERO);
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            // A part fetched ahead is used only if the checkpoint leads to
            // it (the part before it committed); waiting for it holds no
            // permit, its fetch has one of its own.
            self.prefetch
                .keep_only(self.checkpoint.resume.as_ref().map(|r| r.url.as_str()));
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.prefetch.settled() => {}
            }
            let held = tokio::select! {
                () = cancel.cancelled() => return,
                h = Held::acquire(&self.permits) => h,
            };
            let Some(held) = held else { return };
            let started = self.clock.now();
            let lateness = (started - due).to_std().unwrap_or(Duration::ZERO);
            let outcome = self
                .poll_once(started, lateness, held.pause(), &cancel)
                .await;
            held.release();
            let next = schedule(
                outcome,
                started,
                self.clock.now(),
                interval,
                self.settings.retry_min,
                &mut failures,
            );
            if let Next::At(at) = next {
                self.report(
                    outcome,
                    (at - self.clock.now()).to_std().unwrap_or_default(),
                );
            }
            match next {
                Next::At(at) => due = at,
                Next::HandBack(why) => {
                    stop.hand_back(why);
                    return;
                }
                Next::Stop => return,
            }
        }
    }

    /// Tells the operator when the instance's grant was refused, and when
    /// that is over.
    fn report(&self, outcome: PollOutcome, retry_in: Duration) {
        let instance = &self.job.id.instance;
        match outcome {
            PollOutcome::FetchFailed(FailureKind::Reauthorize) => {
                AuthorizationNeeded {
                    job: &self.job.id,
                    retry_in,
                }
                .emit();
                self.readiness.attention(
                    self.partition,
                    instance,
                    Some(Attention::NeedsAuthorization),
                );
            }
            PollOutcome::Committed { .. } => {
                self.readiness.attention(self.partition, instance, None);
            }
            _ => {}
        }
    }

    /// After a restart the job keeps its rhythm: due one interval after the
    /// last committed poll, or at once in the middle of a window cut short.
    /// One that never polled starts within the spread.
    /// Overdue jobs (a handover) are due at once: delaying them would add
    /// to the failover time, and their rhythm is already spread.
    fn first_due(&self, interval: Duration) -> DateTime<Utc> {
        match self.checkpoint.last_poll_start {
            // A window cut short goes on at once, as it would have without
            // the restart: a backfill must not pause an interval per crash.
            Some(_) if self.checkpoint.resume.is_some() => self.clock.now(),
            Some(last) => next_due(last, interval),
            None => {
                let spread = interval.min(self.settings.first_poll_spread).as_secs_f64();
                let phase = rand::rng().random_range(0.0..=1.0) * spread;
                let now = self.clock.now();
                now.checked_add_signed(TimeDelta::milliseconds((phase * 1000.0) as i64))
                    .unwrap_or(now)
            }
        }
    }

    /// One poll that began at `started`, `lateness` after it was due:
    /// fetch, detect, commit.
    pub async fn poll_once(
        &mut self,
        started: DateTime<Utc>,
        lateness: Duration,
        pause: Pause,
        cancel: &CancellationToken,
    ) -> PollOutcome {
        let timer = Instant::now();
        let job = &self.job;
        let resource = job.resource();
        // A truncated window continues where it stopped rather than from
        // the watermark: re-reading the overlap would fetch the same first
        // pages again, for ever, when more records than one poll may read
        // share that stretch of time. The resume is in the checkpoint, so a
        // restart or a handover continues it too.
        let (start, url) = match &self.checkpoint.resume {
            Some(r) => (r.start, r.url.clone()),
            None => {
                let start =
                    detect::next_window_start(&self.checkpoint, resource, self.settings.overlap);
                (
                    start,
                    resource.url.render(start, &self.settings.service_zone),
                )
            }
        };
        PollStarted {
            job: &job.id,
            since: start,
            lateness,
        }
        .emit();
        let (started, fetched) = match self.prefetch.take(&url) {
            Some(ahead) => (ahead.started, ahead.result),
            None => {
                let request = FetchRequest {
                    url,
                    page_size: resource.page_size,
                    keyset: Some(resource.updated.clone()),
                    pause,
                };
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => return PollOutcome::Cancelled,
                    f = self.source.fetch(request) => (started, f),
                }
            }
        };
        let fetched = match fetched {
            Ok(f) => f,
            Err(failure) => {
                WindowFetched {
                    job: &job.id,
                    stats: &failure.stats,
                }
                .emit();
                PollFetchFailed {
                    job: &job.id,
                    error: &failure.error,
                    elapsed: timer.elapsed(),
                }
                .emit();
                // Nothing of this step was published: it can be retried.
                return PollOutcome::FetchFailed(failure.error.kind());
            }
        };
        WindowFetched {
            job: &job.id,
            stats: &fetched.stats,
        }
        .emit();
        if let (true, Some(next)) = (fetched.truncated, &fetched.resume_url) {
            let request = FetchRequest {
                url: next.clone(),
                page_size: resource.page_size,
                keyset: Some(resource.updated.clone()),
                pause: Pause::default(),
            };
            self.prefetch.start(
                self.source.clone(),
                request,
                self.permits.clone(),
                self.clock.clone(),
            );
            PartFetchedAhead { job: &job.id }.emit();
        }
        let skew = fetched.provider_skew.or(self.checkpoint.provider_skew());
        let window = Bounds {
            start,
            poll_start: started,
            overlap: self.settings.overlap,
            not_before: detect::job_start_on_provider_clock(self.checkpoint.started_from, skew),
            provider_now: detect::provider_now(fetched.provider_date, self.clock.now()),
            skew: fetched.provider_skew,
        };
        let resume = match (fetched.truncated, &fetched.resume_url) {
            (true, Some(url)) => Some(Resume {
                start,
                url: url.clone(),
            }),
            _ => None,
        };
        let detected = detect::detect(resource, &self.checkpoint, window, &fetched.records, resume);
        let ctx = EventContext {
            job: &job.id,
            element_key: &job.instance.element_key,
            callback_url: job.instance.callback_url.as_deref(),
        };
        let mut events = Vec::with_capacity(detected.changes.len());
        let mut published = Vec::with_capacity(detected.changes.len());
        let mut dead = detected.dead.clone();
        for c in &detected.changes {
            let record = event_record(&ctx, c);
            // One record too large for a Kafka message must not fail its
            // window for ever: it is dead-lettered (cut), its pair stays in
            // the dedupe set, and the rest publishes.
            if record.size() > MAX_EVENT_BYTES {
                dead.push(DeadRecord {
                    object_id: Some(c.object_id.clone()),
                    kind: DeadKind::TooLarge,
                    reason: format!(
                        "its event is {} bytes; the largest event is {MAX_EVENT_BYTES} bytes",
                        record.size()
                    ),
                    raw: c.raw,
                });
            } else {
                events.push(record);
                published.push(c.event_type);
            }
        }
        let dead_letters: Vec<_> = dead
            .iter()
            .map(|d| dead_letter_record(&ctx, d, start))
            .collect();
        for d in &dead {
            warn!(
                message = "Record sent to the dead-letter topic.",
                job = %job.id,
                kind = d.kind.as_str(),
                object_id = d.object_id.as_deref().unwrap_or_default(),
                reason = %d.reason
            );
        }
        if detected.future_dated > 0 {
            FutureDatedSeen {
                job: &job.id,
                count: detected.future_dated,
                provider_now: window.provider_now,
                dead_lettered: resource.dead_letter_future_dated,
            }
            .emit();
        }
        let mut next = detected.next;
        next.dead_letters += (dead.len() - detected.dead.len()) as u64;
        next.events -= (dead.len() - detected.dead.len()) as u64;
        let n = events.len();
        let batch = Batch {
            events,
            dead_letters,
            state: next.records(self.checkpoint.seen_parts),
        };
        match self.commit.commit(batch).await {
            Ok(()) => {
                PollCommitted {
                    job: &job.id,
                    poll_start: started,
                    records: fetched.records.len(),
                    pages: fetched.pages,
                    published: &published,
                    dead_letters: dead.len(),
                    duplicates: detected.duplicates,
                    watermark: next.watermark,
                    committed_at: self.clock.now(),
                    elapsed: timer.elapsed(),
                }
                .emit();
                self.checkpoint = next;
                PollOutcome::Committed {
                    events: n,
                    truncated: fetched.truncated,
                }
            }
            Err(error) if error.is_fatal() => {
                PollProducerFailed {
                    job: &job.id,
                    error: &error,
                    elapsed: timer.elapsed(),
                }
                .emit();
                PollOutcome::Fatal(match error {
                    PublishError::Fenced(_) => Handback::Fenced,
                    _ => Handback::Broken,
                })
            }
            Err(error) => {
                PollAborted {
                    job: &job.id,
                    error: &error,
                    elapsed: timer.elapsed(),
                }
                .emit();
                PollOutcome::Aborted
            }
        }
    }
}

/// When to poll after `outcome` of the poll that began at `started`;
/// `failures` counts failed polls in a row. A truncated window continues
/// at once; a committed one waits an interval from its start (so the
/// rhythm does not drift by the poll's duration); a failed one backs off by
/// what failed ([`retry_delay`]).
fn schedule(
    outcome: PollOutcome,
    started: DateTime<Utc>,
    now: DateTime<Utc>,
    interval: Duration,
    retry_min: Duration,
    failures: &mut u32,
) -> Next {
    let after = |delay: TimeDelta| Next::At(now.checked_add_signed(delay).unwrap_or(now));
    match outcome {
        PollOutcome::Committed {
            truncated: true, ..
        } => {
            *failures = 0;
            Next::At(now)
        }
        PollOutcome::Committed { .. } => {
            *failures = 0;
            Next::At(next_due(started, interval))
        }
        PollOutcome::FetchFailed(kind) => {
            *failures = failures.saturating_add(1);
            after(retry_delay(kind, retry_min, interval, *failures))
        }
        PollOutcome::Aborted => {
            *failures = failures.saturating_add(1);
            after(retry_delay(
                FailureKind::Retriable,
                retry_min,
                interval,
                *failures,
            ))
        }
        PollOutcome::Fatal(why) => Next::HandBack(why),
        PollOutcome::Cancelled => Next::Stop,
    }
}

/// One interval after `from`, with ±10% jitter so that jobs that started
/// together (a restart, a rebalance) spread out instead of polling in step.
fn next_due(from: DateTime<Utc>, interval: Duration) -> DateTime<Utc> {
    let base = interval.as_secs_f64();
    let jitter = rand::rng().random_range(-0.1..=0.1) * base;
    let secs = (base + jitter).max(0.0);
    from.checked_add_signed(TimeDelta::milliseconds((secs * 1000.0) as i64))
        .unwrap_or(from)
}

/// The longest wait before polling again after a failure: an instance that
/// needs a person (a refused grant, a resource URL the provider rejects)
/// costs the provider one request an hour, and a throttle that asks for
/// more than an hour is asked again after one.
const LONGEST_RETRY: Duration = Duration::from_secs(3600);

/// A refused grant needs a person too, but one who is usually told by the
/// metric and `/readyz` and fixes it soon: retry from 30 s (or one interval)
/// up to 15 minutes, so the fix is picked up quickly without hammering the
/// token endpoint.
const FIRST_REAUTHORIZE_RETRY: Duration = Duration::from_secs(30);
const LONGEST_REAUTHORIZE_RETRY: Duration = Duration::from_secs(15 * 60);

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
        FailureKind::Reauthorize => {
            let first = interval.max(min).max(FIRST_REAUTHORIZE_RETRY);
            Backoff::new(first, LONGEST_REAUTHORIZE_RETRY.max(first)).delay(failures)
        }
        FailureKind::Permanent => {
            let first = interval.max(min);
            Backoff::new(first, LONGEST_RETRY.max(first)).delay(failures)
        }
    };
    // At most an hour or a 31-day interval: always within TimeDelta.
    TimeDelta::from_std(wait).unwrap_or(TimeDelta::hours(1))
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
            // A person must act: one interval at first, up to an hour for
            // a rejected URL, up to 15 minutes for a refused grant.
            for kind in [FailureKind::Reauthorize, FailureKind::Permanent] {
                assert!((30_000..=60_000).contains(&ms(kind, 1)));
            }
            assert!((1_800_000..=3_600_000).contains(&ms(FailureKind::Permanent, 20)));
            assert!((450_000..=900_000).contains(&ms(FailureKind::Reauthorize, 20)));
            // Even with a short interval, a refused grant waits 15–30 s.
            let short = retry_delay(FailureKind::Reauthorize, min, min, 1).num_milliseconds();
            assert!((15_000..=30_000).contains(&short), "{short}");
        }
        // A throttle is waited out as asked, past the interval, within the hour.
        let asked = |secs| FailureKind::Throttled {
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(ms(asked(90), 1), 90_000);
        assert_eq!(ms(asked(0), 1), 1_000);
        assert_eq!(ms(asked(u64::MAX), 1), 3_600_000);
    }

    /// The loop against fakes: a source that answers from a script, a
    /// commit that records batches, and a clock that follows tokio's paused
    /// timer, so that waits are exact and take no real time.
    mod with_fakes {
        use std::collections::VecDeque;
        use std::path::Path;
        use std::sync::Mutex;

        use futures::future::BoxFuture;
        use rdkafka::error::KafkaError;
        use serde_json::value::RawValue;
        use tokio::time::Instant as TokioInstant;

        use super::*;
        use crate::instance::parse_str;
        use crate::source::{FetchFailure, Fetched, SourceError};
        use crate::worker::jobs::jobs_by_partition;

        fn origin() -> DateTime<Utc> {
            DateTime::parse_from_rfc3339("2024-06-01T12:00:00Z")
                .unwrap()
                .to_utc()
        }

        struct TestClock {
            start: TokioInstant,
        }

        impl Clock for TestClock {
            fn now(&self) -> DateTime<Utc> {
                origin() + TimeDelta::from_std(self.start.elapsed()).unwrap()
            }
        }

        type Answer = Result<Fetched, FetchFailure>;

        /// Answers windows from a script (then empty windows) and notes
        /// when each request came and what it asked for.
        #[derive(Default)]
        struct FakeSource {
            answers: Mutex<VecDeque<Answer>>,
            calls: Mutex<Vec<(TokioInstant, FetchRequest)>>,
            /// Sleeps this long through the request's pause before each
            /// answer, like a fetch waiting out a throttle.
            throttled: Mutex<Option<Duration>>,
        }

        impl Source for FakeSource {
            fn fetch(&self, request: FetchRequest) -> BoxFuture<'_, Answer> {
                let pause = request.pause.clone();
                self.calls
                    .lock()
                    .unwrap()
                    .push((TokioInstant::now(), request));
                let answer = self.answers.lock().unwrap().pop_front();
                let throttled = *self.throttled.lock().unwrap();
                Box::pin(async move {
                    if let Some(wait) = throttled {
                        pause.sleep(wait).await;
                    }
                    answer.unwrap_or_else(|| Ok(Fetched::default()))
                })
            }
        }

        impl FakeSource {
            /// Seconds between consecutive requests.
            fn gaps(&self) -> Vec<f64> {
                let calls = self.calls.lock().unwrap();
                calls
                    .windows(2)
                    .map(|w| (w[1].0 - w[0].0).as_secs_f64())
                    .collect()
            }
        }

        /// Commits (or fails) as scripted, keeping every batch.
        #[derive(Default)]
        struct FakeCommit {
            answers: Mutex<VecDeque<Result<(), PublishError>>>,
            batches: Mutex<Vec<Batch>>,
            /// How long each commit takes.
            takes: Mutex<Duration>,
            /// When each commit ended.
            ended: Arc<Mutex<Vec<TokioInstant>>>,
        }

        impl Commit for FakeCommit {
            fn commit(&self, batch: Batch) -> BoxFuture<'_, Result<(), PublishError>> {
                self.batches.lock().unwrap().push(batch);
                let answer = self.answers.lock().unwrap().pop_front().unwrap_or(Ok(()));
                let takes = *self.takes.lock().unwrap();
                let ended = self.ended.clone();
                Box::pin(async move {
                    tokio::time::sleep(takes).await;
                    ended.lock().unwrap().push(TokioInstant::now());
                    answer
                })
            }
        }

        struct Harness {
            source: Arc<FakeSource>,
            commit: Arc<FakeCommit>,
            runner: JobRunner,
        }

        fn harness(answers: Vec<Answer>, commits: Vec<Result<(), PublishError>>) -> Harness {
            let text = r#"{"element":{"key":"infusionsoftecommerce"},"name":"shop",
              "configuration":{"event.notification.enabled":"true",
                "event.poller.refresh_interval_seconds":"60",
                "event.poller.configuration":{"orders":{
                  "url":"/hubs/ecommerce/orders?where=since='${date:yyyy-MM-dd'T'HH:mm:ssXXX}'",
                  "idField":"id",
                  "datesConfiguration":{
                    "updatedAtField":"modification_date","updatedAtFormat":"yyyy-MM-dd'T'HH:mm:ssXXX",
                    "createdAtField":"creation_date","createdAtFormat":"yyyy-MM-dd'T'HH:mm:ssXXX"}}}}}"#;
            let instance = Arc::new(parse_str(Path::new("shop.json"), text).unwrap());
            let job = jobs_by_partition(&[instance], 1)
                .remove(&0)
                .unwrap()
                .remove(0);
            let source = Arc::new(FakeSource {
                answers: Mutex::new(answers.into()),
                ..FakeSource::default()
            });
            let commit = Arc::new(FakeCommit {
                answers: Mutex::new(commits.into()),
                ..FakeCommit::default()
            });
            let runner = JobRunner {
                checkpoint: Checkpoint::starting(job.id.clone(), origin() - TimeDelta::minutes(10)),
                job,
                source: source.clone(),
                commit: commit.clone(),
                permits: Arc::new(Semaphore::new(1)),
                settings: Arc::new(PollSettings {
                    overlap: TimeDelta::seconds(60),
                    service_zone: Zone::Utc,
                    retry_min: Duration::from_secs(1),
                    first_poll_spread: Duration::ZERO,
                }),
                clock: Arc::new(TestClock {
                    start: TokioInstant::now(),
                }),
                readiness: Arc::new(Readiness::new()),
                partition: 0,
                prefetch: Prefetch::default(),
            };
            Harness {
                source,
                commit,
                runner,
            }
        }

        /// An order created and last changed `minutes_ago` before the origin.
        fn order(id: u32, minutes_ago: i64) -> Box<RawValue> {
            let at = (origin() - TimeDelta::minutes(minutes_ago)).to_rfc3339();
            RawValue::from_string(format!(
                r#"{{"id":{id},"creation_date":"{at}","modification_date":"{at}"}}"#
            ))
            .unwrap()
        }

        fn window(records: Vec<Box<RawValue>>) -> Answer {
            Ok(Fetched {
                pages: 1,
                records,
                ..Fetched::default()
            })
        }

        fn failure(kind: FailureKind) -> Answer {
            Err(FetchFailure {
                error: SourceError::new(kind, "scripted failure"),
                stats: Default::default(),
            })
        }

        /// Runs the job loop for `span` of paused time.
        async fn run_for(runner: JobRunner, span: Duration) -> Stop {
            let stop = Stop::default();
            let task = tokio::spawn(runner.run(stop.clone()));
            tokio::time::sleep(span).await;
            stop.token().cancel();
            task.await.unwrap();
            stop
        }

        #[tokio::test(start_paused = true)]
        async fn a_poll_commits_its_events_and_checkpoint_in_one_batch() {
            let mut h = harness(vec![window(vec![order(1, 5), order(2, 3)])], vec![]);
            let outcome = h
                .runner
                .poll_once(
                    origin(),
                    Duration::ZERO,
                    Pause::default(),
                    &CancellationToken::new(),
                )
                .await;
            assert_eq!(
                outcome,
                PollOutcome::Committed {
                    events: 2,
                    truncated: false
                }
            );
            let batches = h.commit.batches.lock().unwrap();
            let [batch] = batches.as_slice() else {
                panic!("one transaction expected, got {}", batches.len());
            };
            assert_eq!(batch.events.len(), 2);
            assert!(batch.dead_letters.is_empty());
            let [(key, Some(value))] = batch.state.as_slice() else {
                panic!("one checkpoint expected: {:?}", batch.state);
            };
            assert_eq!(key, "job/shop/orders");
            let committed = Checkpoint::decode(key, value).unwrap();
            assert_eq!(committed.watermark, origin() - TimeDelta::minutes(3));
            assert_eq!(
                committed, h.runner.checkpoint,
                "the loop keeps what it committed"
            );
            // The window asked for what the checkpoint said: since the job
            // start minus the overlap, by keyset on the updated date.
            let calls = h.source.calls.lock().unwrap();
            assert!(
                calls[0].1.url.contains("since='2024-06-01T11:49:00Z'"),
                "{}",
                calls[0].1.url
            );
            assert!(calls[0].1.keyset.is_some());
        }

        #[tokio::test(start_paused = true)]
        async fn new_jobs_start_spread_over_the_first_interval() {
            let mut dues = Vec::new();
            for _ in 0..200 {
                let mut h = harness(vec![], vec![]);
                h.runner.settings = Arc::new(PollSettings {
                    first_poll_spread: Duration::from_secs(600),
                    ..(*h.runner.settings).clone()
                });
                // The instance's interval (60 s) bounds the spread.
                dues.push((h.runner.first_due(Duration::from_secs(60)) - origin()).num_seconds());
            }
            assert!(dues.iter().all(|d| (0..=60).contains(d)), "{dues:?}");
            // Spread, not bunched: every fifth of the interval gets some.
            for fifth in 0..5 {
                let n = dues.iter().filter(|d| **d / 12 == fifth).count();
                assert!(n >= 10, "{fifth}: {n} of {dues:?}");
            }
            // A job that polled before keeps its rhythm.
            let mut h = harness(vec![], vec![]);
            h.runner.checkpoint.last_poll_start = Some(origin() - TimeDelta::seconds(30));
            let due = h.runner.first_due(Duration::from_secs(60)) - origin();
            assert!((24..=36).contains(&due.num_seconds()), "{due}");
            // One in the middle of a window cut short goes on at once.
            h.runner.checkpoint.resume = Some(Resume {
                start: origin() - TimeDelta::minutes(5),
                url: "http://keap.test/crm/rest/v1/orders?part=2".into(),
            });
            assert_eq!(h.runner.first_due(Duration::from_secs(60)), origin());
        }

        #[tokio::test(start_paused = true)]
        async fn a_failed_fetch_backs_off_by_what_failed() {
            let transient = harness(
                vec![
                    failure(FailureKind::Retriable),
                    failure(FailureKind::Retriable),
                    window(vec![]),
                ],
                vec![],
            );
            run_for(transient.runner, Duration::from_secs(70)).await;
            let gaps = transient.source.gaps();
            assert!((0.5..=1.0).contains(&gaps[0]), "first retry {gaps:?}");
            assert!((1.0..=2.0).contains(&gaps[1]), "second retry {gaps:?}");
            // Success: back to the interval, ±10 %.
            assert!((54.0..=66.0).contains(&gaps[2]), "after success {gaps:?}");
            assert!(!transient.commit.batches.lock().unwrap().is_empty());

            // A refused grant is not a 503: the next try is an interval
            // away, and the one after that further still.
            let refused = harness(
                vec![
                    failure(FailureKind::Reauthorize),
                    failure(FailureKind::Reauthorize),
                ],
                vec![],
            );
            run_for(refused.runner, Duration::from_secs(200)).await;
            let gaps = refused.source.gaps();
            assert!((30.0..=60.0).contains(&gaps[0]), "{gaps:?}");
            assert!((60.0..=120.0).contains(&gaps[1]), "{gaps:?}");

            // A throttle is waited out as the provider asked.
            let throttled = harness(
                vec![failure(FailureKind::Throttled {
                    retry_after: Some(Duration::from_secs(90)),
                })],
                vec![],
            );
            run_for(throttled.runner, Duration::from_secs(100)).await;
            assert_eq!(throttled.source.gaps()[0], 90.0);
        }

        #[tokio::test(start_paused = true)]
        async fn a_truncated_window_is_continued_at_once_from_its_resume_url() {
            let resume = "http://keap.test/crm/rest/v1/orders?since=x&offset=2".to_string();
            let h = harness(
                vec![
                    Ok(Fetched {
                        pages: 100,
                        records: vec![order(1, 5), order(2, 5)],
                        truncated: true,
                        resume_url: Some(resume.clone()),
                        ..Fetched::default()
                    }),
                    window(vec![order(3, 5)]),
                ],
                vec![],
            );
            run_for(h.runner, Duration::from_secs(30)).await;
            let calls = h.source.calls.lock().unwrap();
            assert_eq!(
                calls.len(),
                2,
                "continued once, then waits for the interval"
            );
            assert_eq!(calls[1].0, calls[0].0, "continued without waiting");
            assert_eq!(calls[1].1.url, resume);
            let events: usize = h
                .commit
                .batches
                .lock()
                .unwrap()
                .iter()
                .map(|b| b.events.len())
                .sum();
            assert_eq!(events, 3);
        }

        /// A window fetched in `parts`, each but the last truncated with a
        /// resume URL naming the part after it.
        fn parts(parts: Vec<Vec<Box<RawValue>>>) -> (Vec<Answer>, Vec<String>) {
            let n = parts.len();
            let url = |i: usize| format!("http://keap.test/crm/rest/v1/orders?part={i}");
            let answers = parts
                .into_iter()
                .enumerate()
                .map(|(i, records)| {
                    Ok(Fetched {
                        pages: 1,
                        records,
                        truncated: i + 1 < n,
                        resume_url: (i + 1 < n).then(|| url(i + 1)),
                        ..Fetched::default()
                    })
                })
                .collect();
            (answers, (1..n).map(url).collect())
        }

        fn committed_ids(commit: &FakeCommit) -> Vec<Vec<String>> {
            commit
                .batches
                .lock()
                .unwrap()
                .iter()
                .map(|b| {
                    b.events
                        .iter()
                        .map(|e| e.key.clone().unwrap_or_default())
                        .collect()
                })
                .collect()
        }

        #[tokio::test(start_paused = true)]
        async fn the_next_part_of_a_window_is_fetched_while_this_part_commits() {
            let (answers, urls) = parts(vec![
                vec![order(1, 9), order(2, 8)],
                vec![order(3, 7)],
                vec![order(4, 6)],
            ]);
            let mut h = harness(answers, vec![]);
            h.runner.permits = Arc::new(Semaphore::new(2));
            *h.commit.takes.lock().unwrap() = Duration::from_secs(1);
            run_for(h.runner, Duration::from_secs(30)).await;
            let calls = h.source.calls.lock().unwrap();
            let asked: Vec<&str> = calls[1..3].iter().map(|c| c.1.url.as_str()).collect();
            assert_eq!(asked, urls);
            let ended = h.commit.ended.lock().unwrap();
            for part in 0..2 {
                assert!(
                    calls[part + 1].0 < ended[part],
                    "part {} was fetched only after part {part} committed",
                    part + 1
                );
            }
            drop((calls, ended));
            // Each part committed once, in order, each event once.
            assert_eq!(
                committed_ids(&h.commit),
                vec![vec!["1", "2"], vec!["3"], vec!["4"]]
            );
        }

        #[tokio::test(start_paused = true)]
        async fn a_part_fetched_ahead_is_dropped_when_the_part_before_it_fails() {
            let (mut answers, urls) =
                parts(vec![vec![order(1, 9), order(2, 8)], vec![order(3, 7)]]);
            // After the failed commit: the same two parts again.
            let again = parts(vec![vec![order(1, 9), order(2, 8)], vec![order(3, 7)]]).0;
            answers.extend(again);
            let mut h = harness(
                answers,
                vec![Err(PublishError::MustAbort(KafkaError::Canceled))],
            );
            h.runner.permits = Arc::new(Semaphore::new(2));
            run_for(h.runner, Duration::from_secs(30)).await;
            let calls = h.source.calls.lock().unwrap();
            let asked: Vec<&str> = calls.iter().map(|c| c.1.url.as_str()).collect();
            assert_eq!(asked.len(), 4, "{asked:?}");
            assert_eq!(asked[1], urls[0]);
            // The failed part is fetched again from the checkpoint's start,
            // not continued from the part fetched ahead of it.
            assert_eq!(asked[2], asked[0]);
            assert_eq!(asked[3], urls[0]);
            drop(calls);
            assert_eq!(
                committed_ids(&h.commit),
                vec![vec!["1", "2"], vec!["1", "2"], vec!["3"]],
                "the part fetched ahead of the failed one was never published"
            );
        }

        #[tokio::test(start_paused = true)]
        async fn a_fatal_publish_error_stops_the_period_saying_why() {
            for (error, why) in [
                (PublishError::Fatal(KafkaError::Canceled), Handback::Broken),
                (PublishError::Fenced(KafkaError::Canceled), Handback::Fenced),
            ] {
                let h = harness(vec![window(vec![order(1, 5)])], vec![Err(error)]);
                let stop = Stop::default();
                // Ends by itself, before anyone cancels it.
                tokio::time::timeout(Duration::from_secs(3600), h.runner.run(stop.clone()))
                    .await
                    .expect("the job loop ends on a fatal error");
                assert_eq!(stop.why(), Some(why));
                assert!(stop.token().is_cancelled(), "the other jobs stop too");
                assert_eq!(h.source.calls.lock().unwrap().len(), 1);
            }
        }

        #[tokio::test(start_paused = true)]
        async fn a_fetch_in_flight_ends_at_once_when_the_period_stops() {
            let h = harness(vec![], vec![]);
            *h.source.throttled.lock().unwrap() = Some(Duration::from_secs(3600));
            let stop = Stop::default();
            let task = tokio::spawn(h.runner.run(stop.clone()));
            tokio::time::sleep(Duration::from_secs(5)).await;
            assert_eq!(h.source.calls.lock().unwrap().len(), 1, "fetching");
            let asked = TokioInstant::now();
            stop.token().cancel();
            task.await.unwrap();
            assert!(asked.elapsed() < Duration::from_secs(1));
            assert!(h.commit.batches.lock().unwrap().is_empty());
            assert_eq!(stop.why(), None);
        }

        #[tokio::test(start_paused = true)]
        async fn a_throttled_fetch_gives_its_poll_permit_back_while_it_waits() {
            let h = harness(vec![window(vec![order(1, 5)])], vec![]);
            *h.source.throttled.lock().unwrap() = Some(Duration::from_secs(300));
            let permits = h.runner.permits.clone();
            let stop = Stop::default();
            let task = tokio::spawn(h.runner.run(stop.clone()));
            tokio::time::sleep(Duration::from_secs(1)).await;
            // The only permit is free while the job sleeps out the throttle.
            let other =
                tokio::time::timeout(Duration::from_secs(1), permits.clone().acquire_owned())
                    .await
                    .expect("the permit is free during the wait")
                    .unwrap();
            drop(other);
            tokio::time::sleep(Duration::from_secs(300)).await;
            assert_eq!(
                h.commit.batches.lock().unwrap().len(),
                1,
                "and it polls on after"
            );
            stop.token().cancel();
            task.await.unwrap();
        }

        #[tokio::test(start_paused = true)]
        async fn an_aborted_transaction_redoes_the_same_window_soon() {
            let h = harness(
                vec![window(vec![order(1, 5)]), window(vec![order(1, 5)])],
                vec![Err(PublishError::MustAbort(KafkaError::Canceled))],
            );
            run_for(h.runner, Duration::from_secs(5)).await;
            let calls = h.source.calls.lock().unwrap();
            assert_eq!(calls.len(), 2);
            assert_eq!(calls[0].1.url, calls[1].1.url, "the same window again");
            assert!((calls[1].0 - calls[0].0) <= Duration::from_secs(1));
            let batches = h.commit.batches.lock().unwrap();
            assert_eq!(batches.len(), 2);
            assert_eq!(
                batches[1].events, batches[0].events,
                "the same events again"
            );
        }
    }
}
