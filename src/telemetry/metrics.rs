//! The worker's Prometheus metrics: written through the `metrics` facade by
//! the typed events ([`super::events`]), kept and rendered (text format
//! 0.0.4) by `metrics-exporter-prometheus`.
//!
//! Labels come from a fixed vocabulary whose values are bounded by
//! configuration or by enums: `job` (`instance/resource`, one per
//! configured job), `outcome`, `result`, `type` (event type), `kind`
//! (failure class) and `status` (HTTP status code). Nothing derived from
//! provider data (ids, URLs, error texts) or from secrets ever becomes a
//! label. Every update happens once per poll or transaction, never per
//! record.

use std::sync::OnceLock;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::event::EventType;

/// `Content-Type` of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Metric names and their labels, as the README documents them, by kind.
/// [`names::ALL`], [`names::HISTOGRAMS`] and [`names::LABELS`] are made
/// from the same lines as the constants, so no name can be added without
/// being listed: deployment files (dashboards, alerts) are checked against
/// them (`tests/deploy_drift.rs`).
pub mod names {
    macro_rules! metric_names {
        (
            counters { $($counter:ident = $counter_name:literal [$($counter_label:literal),*],)* }
            gauges { $($gauge:ident = $gauge_name:literal [$($gauge_label:literal),*],)* }
            histograms { $($histogram:ident = $histogram_name:literal [$($histogram_label:literal),*],)* }
        ) => {
            $(pub const $counter: &str = $counter_name;)*
            $(pub const $gauge: &str = $gauge_name;)*
            $(pub const $histogram: &str = $histogram_name;)*
            /// Every metric family the worker serves.
            pub const ALL: &[&str] = &[$($counter,)* $($gauge,)* $($histogram,)*];
            /// The counters among them.
            pub const COUNTERS: &[&str] = &[$($counter,)*];
            /// The gauges among them.
            pub const GAUGES: &[&str] = &[$($gauge,)*];
            /// The histograms among them, served as `<name>_bucket` (with
            /// `le`), `_sum` and `_count`.
            pub const HISTOGRAMS: &[&str] = &[$($histogram,)*];
            /// The labels of each family's series (`le` of the buckets
            /// aside).
            pub const LABELS: &[(&str, &[&str])] = &[
                $(($counter, &[$($counter_label),*]),)*
                $(($gauge, &[$($gauge_label),*]),)*
                $(($histogram, &[$($histogram_label),*]),)*
            ];
        };
    }

    metric_names! {
        counters {
            POLLS = "event_poller_polls_total" ["job", "outcome"],
            PAGES = "event_poller_pages_total" ["job"],
            RECORDS = "event_poller_records_total" ["job"],
            EVENTS = "event_poller_events_total" ["job", "type"],
            DUPLICATES = "event_poller_duplicates_skipped_total" ["job"],
            DEAD_LETTERS = "event_poller_dead_letters_total" ["job"],
            HTTP_RESPONSES = "event_poller_http_responses_total" ["job", "status"],
            THROTTLE_WAITS = "event_poller_throttle_waits_total" ["job"],
            TRANSACTIONS = "event_poller_transactions_total" ["result"],
            RECORDS_REREAD = "event_poller_records_reread_total" [],
            FUTURE_DATED = "event_poller_future_dated_records_total" ["job"],
        }
        gauges {
            WATERMARK_LAG = "event_poller_watermark_lag_seconds" ["job"],
            OWNED_PARTITIONS = "event_poller_owned_partitions" [],
            READY = "event_poller_ready" [],
            JOBS_BLOCKED = "event_poller_jobs_blocked" ["reason"],
            NEEDING_AUTHORIZATION = "event_poller_instances_needing_authorization" [],
        }
        histograms {
            POLL_DURATION = "event_poller_poll_duration_seconds" ["job"],
            SCHEDULE_LATENESS = "event_poller_schedule_lateness_seconds" [],
            COMMIT_DURATION = "event_poller_commit_duration_seconds" [],
            COMMIT_GROUP_SIZE = "event_poller_commit_group_batches" [],
            LANE_WAIT = "event_poller_lane_wait_seconds" [],
        }
    }
}

/// A poll spans one request to a full window of pages and a commit: from
/// 10 ms to minutes (a window waiting out a throttle).
const POLL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// A transaction commits in milliseconds on a healthy broker (4–40 ms
/// measured locally) and takes up to the transaction timeout when not.
const COMMIT_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// How late a poll starts after it was due: zero when the worker keeps up,
/// intervals' worth when it falls behind.
const LATENESS_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    900.0,
];

/// Polls and token saves per transaction: 1 when the lane is idle, more
/// when batches queue behind a running transaction.
const GROUP_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// How a poll ended (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
pub fn event_type_label(t: EventType) -> &'static str {
    match t {
        EventType::Created => "created",
        EventType::Updated => "updated",
        EventType::Deleted => "deleted",
    }
}

/// The rendering side of the registry. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// The process-wide registry: installed as the global recorder on the
    /// first call, the same one on every later call.
    pub fn install() -> Metrics {
        static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
        let handle = HANDLE.get_or_init(|| {
            let recorder = recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                // Only another registry installed by an embedding program
                // can be there first; then this one stays empty.
                tracing::warn!(
                    message = "A metrics recorder was already installed; /metrics serves none."
                );
            }
            describe();
            handle
        });
        Metrics {
            handle: handle.clone(),
        }
    }

    /// A registry of its own, not installed: emit into it inside
    /// `metrics::with_local_recorder(&recorder, …)`.
    #[cfg(test)]
    pub fn isolated() -> (PrometheusRecorder, Metrics) {
        let recorder = recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, describe);
        (recorder, Metrics { handle })
    }

    /// Every family in the text format.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Folds recorded histogram samples into their buckets. Rendering does
    /// it too; call this periodically so that an unscraped worker does not
    /// keep every sample.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// The buckets of each histogram family.
const BUCKETS: &[(&str, &[f64])] = &[
    (names::POLL_DURATION, POLL_BUCKETS),
    (names::COMMIT_DURATION, COMMIT_BUCKETS),
    (names::SCHEDULE_LATENESS, LATENESS_BUCKETS),
    (names::LANE_WAIT, COMMIT_BUCKETS),
    (names::COMMIT_GROUP_SIZE, GROUP_BUCKETS),
];

fn recorder() -> PrometheusRecorder {
    let mut builder = PrometheusBuilder::new();
    for &(name, values) in BUCKETS {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(name.to_string()), values)
            .expect("bucket lists are non-empty constants");
    }
    builder.build_recorder()
}

/// Help texts, and the series that must exist before anything happened
/// (so that `rate()` and alerts see a zero rather than no series).
fn describe() {
    use names::*;
    describe_counter!(
        POLLS,
        "Polls by outcome (committed, fetch_failed, aborted, fatal)."
    );
    describe_counter!(PAGES, "Pages fetched by committed polls.");
    describe_counter!(
        RECORDS,
        "Provider records read by committed polls (duplicates included)."
    );
    describe_counter!(EVENTS, "Change events published, by event type.");
    describe_counter!(
        DUPLICATES,
        "Records skipped because an earlier poll already published them."
    );
    describe_counter!(DEAD_LETTERS, "Records published to the dead-letter topic.");
    describe_gauge!(
        WATERMARK_LAG,
        Unit::Seconds,
        "Seconds between the last commit and the newest change it had published (the watermark); grows while a resource has no changes."
    );
    describe_histogram!(
        POLL_DURATION,
        Unit::Seconds,
        "Duration of polls (fetch, detect, commit), any outcome."
    );
    describe_histogram!(
        SCHEDULE_LATENESS,
        Unit::Seconds,
        "How long after it was due a poll started (waiting for a poll permit included)."
    );
    describe_counter!(
        HTTP_RESPONSES,
        "Provider API responses by HTTP status (token requests not included)."
    );
    describe_counter!(
        THROTTLE_WAITS,
        "HTTP 429 answers waited out before retrying."
    );
    describe_counter!(
        TRANSACTIONS,
        "Kafka transactions by result (aborted: not committed)."
    );
    describe_histogram!(
        COMMIT_DURATION,
        Unit::Seconds,
        "Duration of Kafka transactions, from begin to commit or abort."
    );
    describe_histogram!(
        COMMIT_GROUP_SIZE,
        "Batches (polls, token saves) committed together in one transaction (group commit)."
    );
    describe_histogram!(
        LANE_WAIT,
        Unit::Seconds,
        "How long a poll's (or token save's) batch waited for its partition's transaction turn."
    );
    describe_counter!(
        RECORDS_REREAD,
        "Records read again in a window's overlap that an earlier poll had already published (the cost of the safety overlap)."
    );
    describe_gauge!(
        OWNED_PARTITIONS,
        "State partitions this worker owns (and so whose jobs it polls)."
    );
    describe_gauge!(READY, "1 while /readyz answers 200.");
    describe_counter!(
        FUTURE_DATED,
        "Records dated after the provider's clock: published (or dead-lettered) once, never moving the watermark."
    );
    describe_gauge!(
        JOBS_BLOCKED,
        "Jobs of owned partitions that are not polled, by reason (unreadable_checkpoint)."
    );
    describe_gauge!(
        NEEDING_AUTHORIZATION,
        "Instances of owned partitions whose grant the provider refused: they need a new authorization code."
    );
    for result in [TxnResult::Committed, TxnResult::Aborted] {
        metrics::counter!(TRANSACTIONS, "result" => result.as_str()).increment(0);
    }
    metrics::gauge!(OWNED_PARTITIONS).set(0.0);
    metrics::gauge!(JOBS_BLOCKED, "reason" => "unreadable_checkpoint").set(0.0);
    metrics::gauge!(NEEDING_AUTHORIZATION).set(0.0);
    metrics::gauge!(READY).set(0.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_exist_from_the_start_with_help_and_type() {
        let (_recorder, metrics) = Metrics::isolated();
        let text = metrics.render();
        for line in [
            "# TYPE event_poller_transactions_total counter",
            r#"event_poller_transactions_total{result="committed"} 0"#,
            r#"event_poller_transactions_total{result="aborted"} 0"#,
            "# TYPE event_poller_ready gauge",
            "event_poller_ready 0",
            "event_poller_owned_partitions 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(text.contains("# HELP event_poller_ready 1 while /readyz answers 200."));
    }

    #[test]
    fn histograms_have_their_buckets() {
        let (recorder, metrics) = Metrics::isolated();
        metrics::with_local_recorder(&recorder, || {
            metrics::histogram!(names::COMMIT_DURATION).record(0.004);
            metrics::histogram!(names::SCHEDULE_LATENESS).record(2.0);
            metrics::histogram!(names::POLL_DURATION, "job" => "shop/orders").record(0.3);
        });
        let text = metrics.render();
        for line in [
            "# TYPE event_poller_commit_duration_seconds histogram",
            r#"event_poller_commit_duration_seconds_bucket{le="0.0025"} 0"#,
            r#"event_poller_commit_duration_seconds_bucket{le="0.005"} 1"#,
            r#"event_poller_commit_duration_seconds_bucket{le="+Inf"} 1"#,
            r#"event_poller_schedule_lateness_seconds_bucket{le="1"} 0"#,
            r#"event_poller_schedule_lateness_seconds_bucket{le="5"} 1"#,
            r#"event_poller_poll_duration_seconds_bucket{job="shop/orders",le="0.5"} 1"#,
            r#"event_poller_poll_duration_seconds_count{job="shop/orders"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    /// `# TYPE <family> <kind>` lines of a rendering.
    fn families(text: &str) -> std::collections::BTreeMap<String, String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .map(|(name, kind)| (name.to_string(), kind.to_string()))
            .collect()
    }

    #[test]
    fn every_listed_name_is_described_and_histograms_have_their_buckets() {
        use std::collections::BTreeSet;
        let (recorder, metrics) = Metrics::isolated();
        metrics::with_local_recorder(&recorder, || {
            for name in names::COUNTERS {
                metrics::counter!(*name).increment(1);
            }
            for name in names::GAUGES {
                metrics::gauge!(*name).set(1.0);
            }
            for name in names::HISTOGRAMS {
                metrics::histogram!(*name).record(1.0);
            }
        });
        let text = metrics.render();
        for name in names::ALL {
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} has no help text (describe() misses it):\n{text}"
            );
        }
        let listed: BTreeSet<&str> = names::HISTOGRAMS.iter().copied().collect();
        let bucketed: BTreeSet<&str> = BUCKETS.iter().map(|(n, _)| *n).collect();
        assert_eq!(listed, bucketed, "every histogram has buckets of its own");
        let kinds: usize = [names::COUNTERS, names::GAUGES, names::HISTOGRAMS]
            .iter()
            .map(|k| k.len())
            .sum();
        let all: BTreeSet<&str> = names::ALL.iter().copied().collect();
        assert_eq!((all.len(), kinds), (names::ALL.len(), names::ALL.len()));
    }

    /// What the worker serves is what its typed events emit: every one of
    /// them, emitted once, renders exactly the listed families, each with
    /// the listed kind.
    #[test]
    fn the_typed_events_serve_exactly_the_listed_families() {
        use std::time::Duration;

        use chrono::Utc;

        use super::super::events::*;
        use crate::publish::PublishError;
        use crate::source::{FailureKind, FetchStats, SourceError};
        use crate::state::JobId;

        let (recorder, metrics) = Metrics::isolated();
        let job = JobId::new("shop", "orders");
        let now = Utc::now();
        let aborted = PublishError::MustAbort(rdkafka::error::KafkaError::Canceled);
        let elapsed = Duration::from_millis(5);
        metrics::with_local_recorder(&recorder, || {
            PollStarted {
                job: &job,
                since: now,
                lateness: elapsed,
            }
            .emit();
            WindowFetched {
                job: &job,
                stats: &FetchStats {
                    status_counts: [(200, 1)].into(),
                    ..FetchStats::default()
                },
            }
            .emit();
            PollCommitted {
                job: &job,
                poll_start: now,
                records: 1,
                pages: 1,
                published: &[EventType::Created],
                dead_letters: 0,
                duplicates: 0,
                watermark: now,
                committed_at: now,
                elapsed,
            }
            .emit();
            FutureDatedSeen {
                job: &job,
                count: 1,
                provider_now: now,
                dead_lettered: false,
            }
            .emit();
            PollFetchFailed {
                job: &job,
                error: &SourceError::new(FailureKind::Retriable, "HTTP 503"),
                elapsed,
            }
            .emit();
            PollAborted {
                job: &job,
                error: &aborted,
                elapsed,
            }
            .emit();
            PollProducerFailed {
                job: &job,
                error: &aborted,
                elapsed,
            }
            .emit();
            TransactionFinished {
                result: TxnResult::Committed,
                elapsed,
                batches: 1,
            }
            .emit();
            LaneTurn { waited: elapsed }.emit();
            ReadinessChanged {
                owned_partitions: 1,
                ready: true,
                blocked_jobs: 0,
                needing_authorization: 0,
            }
            .emit();
        });
        let text = metrics.render();
        let served = families(&text);
        let listed: std::collections::BTreeMap<String, String> = [
            (names::COUNTERS, "counter"),
            (names::GAUGES, "gauge"),
            (names::HISTOGRAMS, "histogram"),
        ]
        .iter()
        .flat_map(|(list, kind)| list.iter().map(|n| (n.to_string(), kind.to_string())))
        .collect();
        assert_eq!(served, listed);

        let mut labels: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
            names::ALL
                .iter()
                .map(|n| (n.to_string(), Default::default()))
                .collect();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let series = line.split(' ').next().unwrap_or_default();
            let (name, rest) = series.split_once('{').unwrap_or((series, ""));
            let family = names::HISTOGRAMS
                .iter()
                .find(|h| {
                    ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|suffix| name.strip_suffix(suffix) == Some(**h))
                })
                .map_or(name, |h| *h);
            let found = labels.get_mut(family).expect("a listed family");
            for pair in rest
                .trim_end_matches('}')
                .split(',')
                .filter(|p| !p.is_empty())
            {
                let label = pair.split('=').next().unwrap_or_default();
                if label != "le" {
                    found.insert(label.to_string());
                }
            }
        }
        let declared: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
            names::LABELS
                .iter()
                .map(|(n, ls)| (n.to_string(), ls.iter().map(|l| l.to_string()).collect()))
                .collect();
        assert_eq!(labels, declared);
    }

    #[test]
    fn the_readme_documents_every_family_with_its_labels() {
        let readme = include_str!("../../README.md");
        let documented: std::collections::BTreeMap<&str, Vec<&str>> = readme
            .lines()
            .filter(|l| l.starts_with("| `event_poller_"))
            .filter_map(|row| {
                let mut cells = row.split('|').skip(1);
                let name = cells.next()?.trim().trim_matches('`');
                let labels = cells
                    .next()?
                    .split(',')
                    .map(|l| l.trim().trim_matches('`'))
                    .filter(|l| !l.is_empty())
                    .collect();
                Some((name, labels))
            })
            .collect();
        let declared: std::collections::BTreeMap<&str, Vec<&str>> = names::LABELS
            .iter()
            .map(|(n, ls)| (*n, ls.to_vec()))
            .collect();
        assert_eq!(documented, declared);
    }

    #[test]
    fn isolated_registries_do_not_see_each_other() {
        let (a, ma) = Metrics::isolated();
        let (_b, mb) = Metrics::isolated();
        metrics::with_local_recorder(&a, || {
            metrics::counter!(names::PAGES, "job" => "x/y").increment(3);
        });
        assert!(
            ma.render()
                .contains(r#"event_poller_pages_total{job="x/y"} 3"#)
        );
        assert!(!mb.render().contains("event_poller_pages_total"));
    }
}
