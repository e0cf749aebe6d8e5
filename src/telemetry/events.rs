//! Typed events: one struct per thing that happened, named
//! `<Noun><Verb>`, whose `emit` writes the log line and updates the metrics
//! that belong to it, so the two never disagree and the callers stay short.
//!
//! Emitted once per poll, window or transaction, never per record. The
//! job's span (see [`crate::worker`]) puts `partition` and `job` on every
//! line; the poll events repeat `job` as a field of their own because
//! operators and tests select them by it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use metrics::{counter, gauge, histogram};
use tracing::{debug, info, warn};

use super::metrics::{PollResult, TxnResult, event_type_label, names};
use crate::event::EventType;
use crate::publish::PublishError;
use crate::source::{FetchStats, SourceError};
use crate::state::JobId;

fn poll_finished(job: &str, outcome: PollResult, elapsed: Duration) {
    counter!(names::POLLS, "job" => job.to_owned(), "outcome" => outcome.as_str()).increment(1);
    histogram!(names::POLL_DURATION, "job" => job.to_owned()).record(elapsed.as_secs_f64());
}

/// A poll begins: its window is about to be fetched.
pub struct PollStarted<'a> {
    pub job: &'a JobId,
    /// The window's start.
    pub since: DateTime<Utc>,
    /// How long after it was due the poll began.
    pub lateness: Duration,
}

impl PollStarted<'_> {
    pub fn emit(self) {
        debug!(message = "Polling.", job = %self.job, since = %self.since);
        histogram!(names::SCHEDULE_LATENESS).record(self.lateness.as_secs_f64());
    }
}

/// A window's next part is being fetched while this part commits (see
/// `worker::prefetch`).
pub struct PartFetchedAhead<'a> {
    pub job: &'a JobId,
}

impl PartFetchedAhead<'_> {
    pub fn emit(self) {
        info!(
            message = "Fetching the window's next part while this part commits.",
            job = %self.job
        );
    }
}

/// A window's HTTP traffic, whether the window succeeded or failed.
pub struct WindowFetched<'a> {
    pub job: &'a JobId,
    pub stats: &'a FetchStats,
}

impl WindowFetched<'_> {
    pub fn emit(self) {
        let s = self.stats;
        debug!(
            message = "Window fetched.",
            job = %self.job,
            requests = s.requests,
            retries = s.retries,
            throttled_waits = s.throttled_waits,
            waited_ms = u64::try_from(s.waited.as_millis()).unwrap_or(u64::MAX),
        );
        let job = self.job.to_string();
        for (status, n) in &s.status_counts {
            counter!(names::HTTP_RESPONSES, "job" => job.clone(), "status" => status.to_string())
                .increment(*n);
        }
        // Added even when zero: a job's series exists from its first window.
        counter!(names::THROTTLE_WAITS, "job" => job).increment(s.throttled_waits);
    }
}

/// Fetching failed: nothing was published, the window will be retried.
pub struct PollFetchFailed<'a> {
    pub job: &'a JobId,
    pub error: &'a SourceError,
    pub elapsed: Duration,
}

impl PollFetchFailed<'_> {
    pub fn emit(self) {
        warn!(
            message = "Fetch failed; the window will be retried.",
            job = %self.job,
            error = %self.error,
            kind = self.error.kind().as_str(),
        );
        poll_finished(&self.job.to_string(), PollResult::FetchFailed, self.elapsed);
    }
}

/// A poll's transaction committed: its events, dead letters and checkpoint
/// are visible to `read_committed` readers.
pub struct PollCommitted<'a> {
    pub job: &'a JobId,
    pub poll_start: DateTime<Utc>,
    pub records: usize,
    pub pages: u32,
    /// The event type of each event published.
    pub published: &'a [EventType],
    pub dead_letters: usize,
    pub duplicates: u64,
    /// The committed checkpoint's watermark.
    pub watermark: DateTime<Utc>,
    /// When the commit returned.
    pub committed_at: DateTime<Utc>,
    pub elapsed: Duration,
}

impl PollCommitted<'_> {
    pub fn emit(self) {
        info!(
            message = "Poll committed.",
            job = %self.job,
            poll_start = %self.poll_start.to_rfc3339(),
            records = self.records,
            pages = self.pages,
            events = self.published.len(),
            dead_letters = self.dead_letters,
            duplicates = self.duplicates,
            watermark = %self.watermark,
        );
        let job = self.job.to_string();
        let count = |name: &'static str, n: u64| {
            counter!(name, "job" => job.clone()).increment(n);
        };
        count(names::PAGES, u64::from(self.pages));
        count(names::RECORDS, self.records as u64);
        count(names::DUPLICATES, self.duplicates);
        // Worker-wide: what the overlap costs in records, without a series
        // per job.
        counter!(names::RECORDS_REREAD).increment(self.duplicates);
        count(names::DEAD_LETTERS, self.dead_letters as u64);
        // The job's series exists from its first commit, at zero.
        count(names::FUTURE_DATED, 0);
        let (mut created, mut updated) = (0, 0);
        for t in self.published {
            match t {
                EventType::Created => created += 1,
                EventType::Updated => updated += 1,
                EventType::Deleted => {}
            }
        }
        for (t, n) in [(EventType::Created, created), (EventType::Updated, updated)] {
            counter!(names::EVENTS, "job" => job.clone(), "type" => event_type_label(t))
                .increment(n);
        }
        // Never negative: a watermark ahead of our clock (a provider clock
        // ahead, within the future tolerance) would hide real lag from a
        // `lag > X` alert.
        let lag = (self.committed_at - self.watermark)
            .as_seconds_f64()
            .max(0.0);
        gauge!(names::WATERMARK_LAG, "job" => job.clone()).set(lag);
        poll_finished(&job, PollResult::Committed, self.elapsed);
    }
}

/// A window held records dated after the provider's clock.
pub struct FutureDatedSeen<'a> {
    pub job: &'a JobId,
    pub count: u64,
    /// The latest date the window accepted as honest.
    pub provider_now: DateTime<Utc>,
    pub dead_lettered: bool,
}

impl FutureDatedSeen<'_> {
    pub fn emit(self) {
        warn!(
            message = "Records dated in the future; the watermark stays at the provider's clock.",
            job = %self.job,
            count = self.count,
            latest_accepted = %self.provider_now.to_rfc3339(),
            handled = if self.dead_lettered { "dead-lettered" } else { "published once" },
        );
        counter!(names::FUTURE_DATED, "job" => self.job.to_string()).increment(self.count);
    }
}

/// The poll's transaction was aborted; the window will be redone.
pub struct PollAborted<'a> {
    pub job: &'a JobId,
    pub error: &'a PublishError,
    pub elapsed: Duration,
}

impl PollAborted<'_> {
    pub fn emit(self) {
        warn!(
            message = "Transaction aborted; the window will be redone.",
            job = %self.job,
            error = %self.error,
        );
        poll_finished(&self.job.to_string(), PollResult::Aborted, self.elapsed);
    }
}

/// The producer was fenced or broke during the poll's commit: the partition
/// is fenced and restored again.
pub struct PollProducerFailed<'a> {
    pub job: &'a JobId,
    pub error: &'a crate::publish::PublishError,
    pub elapsed: Duration,
}

impl PollProducerFailed<'_> {
    pub fn emit(self) {
        warn!(
            message = "Producer fenced or broken; the partition's jobs stop.",
            job = %self.job,
            error = %self.error,
        );
        poll_finished(&self.job.to_string(), PollResult::Fatal, self.elapsed);
    }
}

/// One Kafka transaction of a state partition ended (a poll, job starts or
/// a token save).
pub struct TransactionFinished {
    pub result: TxnResult,
    /// From begin to commit or abort.
    pub elapsed: Duration,
    /// Batches (polls, token saves) that shared it.
    pub batches: usize,
}

impl TransactionFinished {
    pub fn emit(self) {
        counter!(names::TRANSACTIONS, "result" => self.result.as_str()).increment(1);
        histogram!(names::COMMIT_DURATION).record(self.elapsed.as_secs_f64());
        histogram!(names::COMMIT_GROUP_SIZE).record(self.batches as f64);
    }
}

/// A batch's turn in its partition's lane came: how long it waited behind
/// the transaction before it.
pub struct LaneTurn {
    pub waited: Duration,
}

impl LaneTurn {
    pub fn emit(self) {
        histogram!(names::LANE_WAIT).record(self.waited.as_secs_f64());
    }
}

/// What `/readyz` would say, as gauges.
pub struct ReadinessChanged {
    pub owned_partitions: usize,
    pub ready: bool,
    pub blocked_jobs: usize,
    pub needing_authorization: usize,
}

impl ReadinessChanged {
    pub fn emit(self) {
        gauge!(names::OWNED_PARTITIONS).set(self.owned_partitions as f64);
        gauge!(names::READY).set(if self.ready { 1.0 } else { 0.0 });
        gauge!(names::JOBS_BLOCKED, "reason" => "unreadable_checkpoint")
            .set(self.blocked_jobs as f64);
        gauge!(names::NEEDING_AUTHORIZATION).set(self.needing_authorization as f64);
    }
}

/// A job's checkpoint does not decode: the job is blocked, never reset.
pub struct CheckpointUnreadable<'a> {
    pub job: &'a JobId,
    pub partition: i32,
    pub problem: &'a str,
}

impl CheckpointUnreadable<'_> {
    pub fn emit(self) {
        tracing::error!(
            message = "Checkpoint unreadable; the job is blocked.",
            job = %self.job,
            partition = self.partition,
            problem = self.problem,
            action = "run the release that wrote it, or replace the checkpoint; the job is never started over on its own",
        );
    }
}

/// The provider refused an instance's grant: it needs a new code.
pub struct AuthorizationNeeded<'a> {
    pub job: &'a JobId,
    pub retry_in: Duration,
}

impl AuthorizationNeeded<'_> {
    pub fn emit(self) {
        warn!(
            message = "Instance needs re-authorization; backing off.",
            job = %self.job,
            instance = %self.job.instance,
            retry_in_s = self.retry_in.as_secs(),
            action = "authorize the app again and put the new code in the instance file's providerData.code, then restart the worker",
        );
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::super::metrics::Metrics;
    use super::*;
    use crate::source::FailureKind;

    #[test]
    fn poll_events_count_what_they_report() {
        let (recorder, m) = Metrics::isolated();
        let job = JobId::new("shop", "orders");
        let now = Utc::now();
        metrics::with_local_recorder(&recorder, || {
            WindowFetched {
                job: &job,
                stats: &FetchStats {
                    requests: 3,
                    throttled_waits: 1,
                    status_counts: [(200, 2), (429, 1)].into(),
                    ..FetchStats::default()
                },
            }
            .emit();
            PollCommitted {
                job: &job,
                poll_start: now,
                records: 4,
                pages: 2,
                published: &[EventType::Created, EventType::Updated],
                dead_letters: 1,
                duplicates: 1,
                watermark: now - TimeDelta::milliseconds(12_500),
                committed_at: now,
                elapsed: Duration::from_millis(250),
            }
            .emit();
            PollFetchFailed {
                job: &job,
                error: &SourceError::new(FailureKind::Retriable, "HTTP 503"),
                elapsed: Duration::from_millis(750),
            }
            .emit();
            PollStarted {
                job: &job,
                since: now,
                lateness: Duration::from_millis(30),
            }
            .emit();
            TransactionFinished {
                result: TxnResult::Committed,
                elapsed: Duration::from_millis(4),
                batches: 3,
            }
            .emit();
            LaneTurn {
                waited: Duration::from_millis(2),
            }
            .emit();
            ReadinessChanged {
                owned_partitions: 1,
                ready: true,
                blocked_jobs: 0,
                needing_authorization: 0,
            }
            .emit();
        });
        let text = m.render();
        for line in [
            r#"event_poller_polls_total{job="shop/orders",outcome="committed"} 1"#,
            r#"event_poller_polls_total{job="shop/orders",outcome="fetch_failed"} 1"#,
            r#"event_poller_pages_total{job="shop/orders"} 2"#,
            r#"event_poller_records_total{job="shop/orders"} 4"#,
            r#"event_poller_events_total{job="shop/orders",type="created"} 1"#,
            r#"event_poller_events_total{job="shop/orders",type="updated"} 1"#,
            r#"event_poller_duplicates_skipped_total{job="shop/orders"} 1"#,
            r#"event_poller_dead_letters_total{job="shop/orders"} 1"#,
            r#"event_poller_watermark_lag_seconds{job="shop/orders"} 12.5"#,
            r#"event_poller_http_responses_total{job="shop/orders",status="200"} 2"#,
            r#"event_poller_http_responses_total{job="shop/orders",status="429"} 1"#,
            r#"event_poller_throttle_waits_total{job="shop/orders"} 1"#,
            r#"event_poller_transactions_total{result="committed"} 1"#,
            r#"event_poller_transactions_total{result="aborted"} 0"#,
            r#"event_poller_poll_duration_seconds_sum{job="shop/orders"} 1"#,
            r#"event_poller_poll_duration_seconds_count{job="shop/orders"} 2"#,
            r#"event_poller_poll_duration_seconds_bucket{job="shop/orders",le="0.25"} 1"#,
            r#"event_poller_poll_duration_seconds_bucket{job="shop/orders",le="1"} 2"#,
            r#"event_poller_schedule_lateness_seconds_bucket{le="0.05"} 1"#,
            r#"event_poller_commit_duration_seconds_bucket{le="0.005"} 1"#,
            r#"event_poller_commit_group_batches_bucket{le="2"} 0"#,
            r#"event_poller_commit_group_batches_bucket{le="4"} 1"#,
            r#"event_poller_lane_wait_seconds_bucket{le="0.0025"} 1"#,
            "event_poller_records_reread_total 1",
            "event_poller_owned_partitions 1",
            "event_poller_ready 1",
            "# TYPE event_poller_poll_duration_seconds histogram",
            "# TYPE event_poller_watermark_lag_seconds gauge",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn a_window_without_429_still_shows_a_zero_throttle_series() {
        let (recorder, m) = Metrics::isolated();
        let job = JobId::new("shop", "orders");
        let stats = FetchStats {
            status_counts: [(200, 1)].into(),
            ..FetchStats::default()
        };
        metrics::with_local_recorder(&recorder, || {
            for _ in 0..2 {
                WindowFetched {
                    job: &job,
                    stats: &stats,
                }
                .emit();
            }
        });
        let text = m.render();
        assert!(text.contains(r#"event_poller_throttle_waits_total{job="shop/orders"} 0"#));
        assert!(
            text.contains(r#"event_poller_http_responses_total{job="shop/orders",status="200"} 2"#)
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let (recorder, m) = Metrics::isolated();
        let job = JobId::new("a\"b\\c", "d");
        metrics::with_local_recorder(&recorder, || {
            WindowFetched {
                job: &job,
                stats: &FetchStats::default(),
            }
            .emit();
        });
        let text = m.render();
        assert!(
            text.contains(r#"event_poller_throttle_waits_total{job="a\"b\\c/d"} 0"#),
            "{text}"
        );
    }
}
