//! Typed events of the poll loop: one struct per thing that happened, named
//! `<Noun><Verb>`, whose `emit` writes the log line and updates the metrics
//! that belong to it, so the two never disagree and the loop stays short.
//!
//! Emitted once per poll or window, never per record. Log lines keep the
//! poll loop's target, so `LOG_LEVEL=event_poller::worker::poll=…` still
//! selects them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::error::KafkaError;
use tracing::{debug, info, warn};

use crate::event::Change;
use crate::metrics::{CommittedCounts, Metrics, PollResult};
use crate::publish::PublishError;
use crate::source::{FetchStats, SourceError};
use crate::state::JobId;

/// The poll loop's log target (its module path).
const TARGET: &str = "event_poller::worker::poll";

/// A window's HTTP traffic, whether the window succeeded or failed.
pub struct WindowFetched<'a> {
    pub job: &'a JobId,
    pub stats: &'a FetchStats,
}

impl WindowFetched<'_> {
    pub fn emit(self, metrics: &Metrics) {
        let s = self.stats;
        debug!(
            target: TARGET,
            message = "Window fetched.",
            job = %self.job,
            requests = s.requests,
            retries = s.retries,
            throttled_waits = s.throttled_waits,
            waited_ms = u64::try_from(s.waited.as_millis()).unwrap_or(u64::MAX),
        );
        metrics.http_traffic(
            self.job,
            s.status_counts.iter().map(|(status, n)| (*status, *n)),
            s.throttled_waits,
        );
    }
}

/// Fetching failed: nothing was published, the window will be retried.
pub struct PollFetchFailed<'a> {
    pub job: &'a JobId,
    pub error: &'a SourceError,
    pub elapsed: Duration,
}

impl PollFetchFailed<'_> {
    pub fn emit(self, metrics: &Metrics) {
        warn!(
            target: TARGET,
            message = "Fetch failed; the window will be retried.",
            job = %self.job,
            error = %self.error,
            kind = self.error.kind().as_str(),
        );
        metrics.poll_finished(self.job, PollResult::FetchFailed, self.elapsed);
    }
}

/// A poll's transaction committed: its events, dead letters and checkpoint
/// are visible to `read_committed` readers.
pub struct PollCommitted<'a> {
    pub job: &'a JobId,
    pub poll_start: DateTime<Utc>,
    pub records: usize,
    pub pages: u32,
    pub changes: &'a [Change<'a>],
    pub dead_letters: usize,
    pub duplicates: u64,
    /// The committed checkpoint's watermark.
    pub watermark: DateTime<Utc>,
    pub elapsed: Duration,
}

impl PollCommitted<'_> {
    pub fn emit(self, metrics: &Metrics) {
        // Tests and operators parse this line: keep its message and fields.
        info!(
            target: TARGET,
            message = "Poll committed.",
            job = %self.job,
            poll_start = %self.poll_start.to_rfc3339(),
            records = self.records,
            pages = self.pages,
            events = self.changes.len(),
            dead_letters = self.dead_letters,
            duplicates = self.duplicates,
            watermark = %self.watermark,
        );
        let lag = (Utc::now() - self.watermark).as_seconds_f64();
        metrics.poll_committed(
            self.job,
            &CommittedCounts {
                pages: u64::from(self.pages),
                records: self.records as u64,
                duplicates: self.duplicates,
                dead_letters: self.dead_letters as u64,
                watermark_lag_seconds: lag,
            },
            self.changes.iter().map(|c| c.event_type),
        );
        metrics.poll_finished(self.job, PollResult::Committed, self.elapsed);
    }
}

/// The poll's transaction was aborted; the window will be redone.
pub struct PollAborted<'a> {
    pub job: &'a JobId,
    pub error: &'a PublishError,
    pub elapsed: Duration,
}

impl PollAborted<'_> {
    pub fn emit(self, metrics: &Metrics) {
        warn!(
            target: TARGET,
            message = "Transaction aborted; the window will be redone.",
            job = %self.job,
            error = %self.error,
        );
        metrics.poll_finished(self.job, PollResult::Aborted, self.elapsed);
    }
}

/// The producer was fenced or broke during the poll's commit: the partition
/// is fenced and restored again.
pub struct PollProducerFailed<'a> {
    pub job: &'a JobId,
    pub error: &'a KafkaError,
    pub elapsed: Duration,
}

impl PollProducerFailed<'_> {
    pub fn emit(self, metrics: &Metrics) {
        warn!(
            target: TARGET,
            message = "Producer fenced or broken; re-fencing the partition.",
            job = %self.job,
            error = %self.error,
        );
        metrics.poll_finished(self.job, PollResult::Fatal, self.elapsed);
    }
}
