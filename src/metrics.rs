//! The worker's Prometheus metrics: a small registry of counters, gauges and
//! poll-duration sums, rendered in the Prometheus text format 0.0.4.
//!
//! Labels come from a fixed vocabulary whose values are bounded by
//! configuration or by enums: `job` (`instance/resource`, one per
//! configured job), `outcome`, `result`, `type` (event type) and `status`
//! (HTTP status code). Nothing derived from provider data (ids, URLs,
//! error texts) or from secrets ever becomes a label.
//!
//! Hand-written rather than `prometheus-client`: that crate encodes
//! OpenMetrics (`# EOF`, counter families named without `_total`), and the
//! handful of families here fit in a few maps. Every update happens once
//! per poll (never per record), so one mutex is far from contended.
//!
//! The writers are the typed events in [`crate::telemetry::events`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::event::EventType;
use crate::state::JobId;

/// `Content-Type` of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How a poll ended (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PollResult {
    Committed,
    FetchFailed,
    Aborted,
    Fatal,
}

impl PollResult {
    pub fn as_str(self) -> &'static str {
        match self {
            PollResult::Committed => "committed",
            PollResult::FetchFailed => "fetch_failed",
            PollResult::Aborted => "aborted",
            PollResult::Fatal => "fatal",
        }
    }
}

/// How a Kafka transaction ended (the `result` label). `Aborted` means
/// "not committed": aborted, or lost with a fenced or broken producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TxnResult {
    Committed,
    Aborted,
}

impl TxnResult {
    pub fn as_str(self) -> &'static str {
        match self {
            TxnResult::Committed => "committed",
            TxnResult::Aborted => "aborted",
        }
    }
}

/// The `type` label of an event: the lower-case event type, as in `ce_type`.
fn event_type_label(t: EventType) -> &'static str {
    match t {
        EventType::Created => "created",
        EventType::Updated => "updated",
        EventType::Deleted => "deleted",
    }
}

/// The registry. Share it (`Arc`) between the jobs and the ops endpoint.
#[derive(Debug, Default)]
pub struct Metrics {
    families: Mutex<Families>,
}

/// Sorted maps so that the rendered text is stable (tests, diffs).
#[derive(Debug)]
struct Families {
    polls: BTreeMap<(String, PollResult), u64>,
    pages: BTreeMap<String, u64>,
    records: BTreeMap<String, u64>,
    events: BTreeMap<(String, &'static str), u64>,
    duplicates: BTreeMap<String, u64>,
    dead_letters: BTreeMap<String, u64>,
    watermark_lag: BTreeMap<String, f64>,
    /// Sum of seconds and count of polls.
    poll_duration: BTreeMap<String, (f64, u64)>,
    http_responses: BTreeMap<(String, u16), u64>,
    throttle_waits: BTreeMap<String, u64>,
    transactions: BTreeMap<TxnResult, u64>,
}

impl Default for Families {
    fn default() -> Self {
        Self {
            polls: BTreeMap::new(),
            pages: BTreeMap::new(),
            records: BTreeMap::new(),
            events: BTreeMap::new(),
            duplicates: BTreeMap::new(),
            dead_letters: BTreeMap::new(),
            watermark_lag: BTreeMap::new(),
            poll_duration: BTreeMap::new(),
            http_responses: BTreeMap::new(),
            throttle_waits: BTreeMap::new(),
            // Both results exist from the start, so that `rate()` and
            // alerts on aborts see a zero rather than no series.
            transactions: [(TxnResult::Committed, 0), (TxnResult::Aborted, 0)].into(),
        }
    }
}

fn add<K: Ord>(map: &mut BTreeMap<K, u64>, key: K, n: u64) {
    let v = map.entry(key).or_default();
    *v = v.saturating_add(n);
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Families> {
        // A panic elsewhere while holding the lock leaves plain numbers
        // behind, still worth serving.
        self.families.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One finished poll: its outcome and how long it took.
    pub fn poll_finished(&self, job: &JobId, outcome: PollResult, elapsed: Duration) {
        let job = job.to_string();
        let mut f = self.lock();
        let d = f.poll_duration.entry(job.clone()).or_default();
        d.0 += elapsed.as_secs_f64();
        d.1 += 1;
        add(&mut f.polls, (job, outcome), 1);
    }

    /// What one committed poll published; `events` counts by event type.
    pub fn poll_committed(
        &self,
        job: &JobId,
        counts: &CommittedCounts,
        events: impl IntoIterator<Item = EventType>,
    ) {
        let job = job.to_string();
        let mut f = self.lock();
        add(&mut f.pages, job.clone(), counts.pages);
        add(&mut f.records, job.clone(), counts.records);
        add(&mut f.duplicates, job.clone(), counts.duplicates);
        add(&mut f.dead_letters, job.clone(), counts.dead_letters);
        for t in events {
            add(&mut f.events, (job.clone(), event_type_label(t)), 1);
        }
        f.watermark_lag.insert(job, counts.watermark_lag_seconds);
    }

    /// HTTP responses of one window (failed windows included) and the 429
    /// answers it waited out.
    pub fn http_traffic(
        &self,
        job: &JobId,
        statuses: impl IntoIterator<Item = (u16, u64)>,
        throttle_waits: u64,
    ) {
        let job = job.to_string();
        let mut f = self.lock();
        for (status, n) in statuses {
            add(&mut f.http_responses, (job.clone(), status), n);
        }
        // Added even when zero: a job's series exists from its first window.
        add(&mut f.throttle_waits, job, throttle_waits);
    }

    /// One Kafka transaction (poll, starting checkpoints or token save).
    pub fn transaction(&self, result: TxnResult) {
        add(&mut self.lock().transactions, result, 1);
    }

    /// Appends every family in the text format.
    pub fn encode(&self, out: &mut String) {
        let f = self.lock();
        family(
            out,
            "event_poller_polls_total",
            "Polls by outcome (committed, fetch_failed, aborted, fatal).",
            "counter",
            f.polls.iter().map(|((job, outcome), n)| {
                (
                    labels(&[("job", job), ("outcome", outcome.as_str())]),
                    *n as f64,
                )
            }),
        );
        per_job(
            out,
            "event_poller_pages_total",
            "Pages fetched by committed polls.",
            "counter",
            &f.pages,
        );
        per_job(
            out,
            "event_poller_records_total",
            "Provider records read by committed polls (duplicates included).",
            "counter",
            &f.records,
        );
        family(
            out,
            "event_poller_events_total",
            "Change events published, by event type.",
            "counter",
            f.events
                .iter()
                .map(|((job, t), n)| (labels(&[("job", job), ("type", t)]), *n as f64)),
        );
        per_job(
            out,
            "event_poller_duplicates_skipped_total",
            "Records skipped because an earlier poll already published them.",
            "counter",
            &f.duplicates,
        );
        per_job(
            out,
            "event_poller_dead_letters_total",
            "Records published to the dead-letter topic.",
            "counter",
            &f.dead_letters,
        );
        family(
            out,
            "event_poller_watermark_lag_seconds",
            "Seconds between the last commit and the newest change it had published (the watermark); grows while a resource has no changes.",
            "gauge",
            f.watermark_lag
                .iter()
                .map(|(job, v)| (labels(&[("job", job)]), *v)),
        );
        header(
            out,
            "event_poller_poll_duration_seconds",
            "Duration of polls (fetch, detect, commit), any outcome.",
            "summary",
        );
        for (job, (sum, count)) in &f.poll_duration {
            let l = labels(&[("job", job)]);
            sample(out, "event_poller_poll_duration_seconds_sum", &l, *sum);
            sample(
                out,
                "event_poller_poll_duration_seconds_count",
                &l,
                *count as f64,
            );
        }
        family(
            out,
            "event_poller_http_responses_total",
            "Provider API responses by HTTP status (token requests not included).",
            "counter",
            f.http_responses.iter().map(|((job, status), n)| {
                (
                    labels(&[("job", job), ("status", &status.to_string())]),
                    *n as f64,
                )
            }),
        );
        per_job(
            out,
            "event_poller_throttle_waits_total",
            "HTTP 429 answers waited out before retrying.",
            "counter",
            &f.throttle_waits,
        );
        family(
            out,
            "event_poller_transactions_total",
            "Kafka transactions by result (aborted: not committed).",
            "counter",
            f.transactions
                .iter()
                .map(|(r, n)| (labels(&[("result", r.as_str())]), *n as f64)),
        );
    }

    /// The whole registry as text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.encode(&mut out);
        out
    }
}

/// Counts of one committed poll.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommittedCounts {
    pub pages: u64,
    pub records: u64,
    pub duplicates: u64,
    pub dead_letters: u64,
    /// Commit time minus the new watermark.
    pub watermark_lag_seconds: f64,
}

/// Appends one label-less gauge (for values owned elsewhere, such as the
/// worker's partition count).
pub fn encode_gauge(out: &mut String, name: &str, help: &str, value: f64) {
    header(out, name, help, "gauge");
    sample(out, name, "", value);
}

fn per_job(out: &mut String, name: &str, help: &str, kind: &str, map: &BTreeMap<String, u64>) {
    family(
        out,
        name,
        help,
        kind,
        map.iter()
            .map(|(job, n)| (labels(&[("job", job)]), *n as f64)),
    );
}

fn family(
    out: &mut String,
    name: &str,
    help: &str,
    kind: &str,
    samples: impl Iterator<Item = (String, f64)>,
) {
    header(out, name, help, kind);
    for (l, v) in samples {
        sample(out, name, &l, v);
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &str, value: f64) {
    let _ = writeln!(out, "{name}{labels} {}", number(value));
}

/// `{a="x",b="y"}` with values escaped as the format requires.
fn labels(pairs: &[(&str, &str)]) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(k);
        s.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '"' => s.push_str("\\\""),
                '\n' => s.push_str("\\n"),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s.push('}');
    s
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> JobId {
        JobId::new("shop", "orders")
    }

    #[test]
    fn renders_counters_with_labels() {
        let m = Metrics::new();
        m.poll_finished(&job(), PollResult::Committed, Duration::from_millis(1500));
        m.poll_finished(&job(), PollResult::FetchFailed, Duration::from_millis(500));
        m.poll_committed(
            &job(),
            &CommittedCounts {
                pages: 2,
                records: 7,
                duplicates: 3,
                dead_letters: 1,
                watermark_lag_seconds: 12.5,
            },
            [EventType::Created, EventType::Updated, EventType::Created],
        );
        m.http_traffic(&job(), [(200, 2), (429, 1)], 1);
        m.transaction(TxnResult::Committed);
        let text = m.render();
        for line in [
            r#"event_poller_polls_total{job="shop/orders",outcome="committed"} 1"#,
            r#"event_poller_polls_total{job="shop/orders",outcome="fetch_failed"} 1"#,
            r#"event_poller_pages_total{job="shop/orders"} 2"#,
            r#"event_poller_records_total{job="shop/orders"} 7"#,
            r#"event_poller_events_total{job="shop/orders",type="created"} 2"#,
            r#"event_poller_events_total{job="shop/orders",type="updated"} 1"#,
            r#"event_poller_duplicates_skipped_total{job="shop/orders"} 3"#,
            r#"event_poller_dead_letters_total{job="shop/orders"} 1"#,
            r#"event_poller_watermark_lag_seconds{job="shop/orders"} 12.5"#,
            r#"event_poller_poll_duration_seconds_sum{job="shop/orders"} 2"#,
            r#"event_poller_poll_duration_seconds_count{job="shop/orders"} 2"#,
            r#"event_poller_http_responses_total{job="shop/orders",status="200"} 2"#,
            r#"event_poller_http_responses_total{job="shop/orders",status="429"} 1"#,
            r#"event_poller_throttle_waits_total{job="shop/orders"} 1"#,
            r#"event_poller_transactions_total{result="committed"} 1"#,
            r#"event_poller_transactions_total{result="aborted"} 0"#,
            "# TYPE event_poller_polls_total counter",
            "# TYPE event_poller_watermark_lag_seconds gauge",
            "# TYPE event_poller_poll_duration_seconds summary",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn every_line_is_a_comment_or_a_sample() {
        let m = Metrics::new();
        m.poll_finished(&job(), PollResult::Aborted, Duration::from_secs(1));
        for line in m.render().lines() {
            if line.starts_with('#') {
                assert!(
                    line.starts_with("# HELP event_poller_")
                        || line.starts_with("# TYPE event_poller_"),
                    "{line}"
                );
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect(line);
            assert!(series.starts_with("event_poller_"), "{line}");
            value.parse::<f64>().expect(line);
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(labels(&[("job", "a\"b\\c\nd")]), r#"{job="a\"b\\c\nd"}"#);
    }

    #[test]
    fn a_window_without_429_still_shows_a_zero_throttle_series() {
        let m = Metrics::new();
        m.http_traffic(&job(), [(200, 1)], 0);
        m.http_traffic(&job(), [(200, 1)], 0);
        let text = m.render();
        assert!(text.contains(r#"event_poller_throttle_waits_total{job="shop/orders"} 0"#));
        assert!(
            text.contains(r#"event_poller_http_responses_total{job="shop/orders",status="200"} 2"#)
        );
    }

    #[test]
    fn special_numbers_use_the_format_spelling() {
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(-3.0), "-3");
    }
}
