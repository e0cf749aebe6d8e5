//! `docs/benchmarks.md` from one run's [`Results`].

use std::fmt::Write;

use crate::backfill::BackfillRun;
use crate::jobs::JobsRun;
use crate::latency;
use crate::limit;
use crate::results::{BackfillSet, Results};

/// Peak RSS a backfill may reach, MiB.
pub const BACKFILL_RSS_TARGET_MIB: f64 = 64.0;
/// Peak RSS of a worker with many jobs stays below this, MiB.
pub const JOBS_RSS_TARGET_MIB: f64 = 200.0;
/// CPU of a worker with many jobs stays below this, % of one core.
pub const JOBS_CPU_TARGET_PERCENT: f64 = 50.0;
/// p99 schedule lateness stays below this, seconds.
pub const LATENESS_P99_TARGET_SECONDS: f64 = 1.0;

/// The whole report.
pub fn markdown(r: &Results) -> String {
    let mut out = String::new();
    header(&mut out, r);
    summary(&mut out, r);
    limit_section(&mut out, r);
    backfill_section(&mut out, r);
    jobs_section(&mut out, r);
    latency_section(&mut out, r);
    peer_section(&mut out, r);
    notes_section(&mut out, r);
    out
}

fn header(out: &mut String, r: &Results) {
    let m = &r.machine;
    let commit = if m.dirty {
        format!("`{}` with uncommitted changes", m.commit)
    } else {
        format!("`{}`", m.commit)
    };
    let memory = m
        .memory_gib
        .map_or_else(|| "unknown".into(), |g| format!("{g:.1} GiB"));
    let _ = write!(
        out,
        "# Benchmarks\n\n\
         Written by `poller-bench all` (`crates/bench`), {mode} mode, {date}, \
         commit {commit}; the run took {wall}. Every figure is set against a \
         baseline or target measured or fixed in the same run on the same \
         machine; targets are reported as met or not met and never fail the \
         run. Raw numbers: `.cache/bench/{raw}` (not committed).\n\n\
         | machine | |\n|---|---|\n\
         | cores | {cores} |\n| CPU | {cpu} |\n| memory | {memory} |\n\
         | kernel | {kernel} |\n| Rust | {rustc} |\n\
         | Kafka | {kafka}, the local single-node broker of `make kafka-up` |\n\n\
         Commands (release builds of `event-poller` and `keap-sandbox`, the \
         broker at `KAFKA_BOOTSTRAP_SERVERS`, default `127.0.0.1:9092`):\n\n\
         ```sh\n\
         make bench                 # full run (under 18 minutes on 2 cores), then the criterion micro-benchmarks\n\
         BENCH_QUICK=1 make bench   # smoke run (under 3 minutes), as CI does\n\
         target/release/poller-bench --help   # one benchmark at a time: limit, backfill, jobs, latency, peer\n\
         ```\n\n",
        mode = r.mode,
        raw = crate::results::file_name(r.mode == "quick"),
        date = m.date,
        wall = duration(r.wall_seconds),
        cores = m.cores,
        cpu = m.cpu_model,
        kernel = m.kernel,
        rustc = m.rustc,
        kafka = m.kafka,
    );
    if !r.errors.is_empty() {
        out.push_str("**Runs that failed** (their figures are missing below):\n\n");
        for e in &r.errors {
            let _ = writeln!(out, "- {}", one_line(e));
        }
        out.push('\n');
    }
}

fn summary(out: &mut String, r: &Results) {
    out.push_str(
        "## Summary\n\n| figure | measured | against | ratio | target |\n|---|---|---|---|---|\n",
    );
    let plain = r.limit_median(false);
    let txn = r.limit_median(true);
    for set in &r.backfill {
        let Some(rate) = set.median_of(|x| x.events_per_second) else {
            continue;
        };
        let n = int(set.orders as f64);
        for (base, kind) in [(plain, "plain"), (txn, "transactional")] {
            if let Some(b) = base {
                let _ = writeln!(
                    out,
                    "| backfill {n}: events/s (median) | {} | producer limit, {kind}: {} records/s | {} | |",
                    int(rate),
                    int(b),
                    ratio(rate, b)
                );
            }
        }
        if let Some(rss) = set.median_of(|x| x.peak_rss_mib) {
            let _ = writeln!(
                out,
                "| backfill {n}: peak RSS (median) | {rss:.1} MiB | ≤ {BACKFILL_RSS_TARGET_MIB:.0} MiB | {} | {} |",
                ratio(rss, BACKFILL_RSS_TARGET_MIB),
                met(rss <= BACKFILL_RSS_TARGET_MIB)
            );
        }
        if let Some(d) = set.median_of(|x| x.duplicates as f64) {
            let _ = writeln!(
                out,
                "| backfill {n}: duplicates (median) | {} | 0 | | {} |",
                int(d),
                met(d == 0.0)
            );
        }
    }
    for j in &r.jobs {
        let n = int(j.instances as f64);
        let _ = writeln!(
            out,
            "| jobs {n} every {} s: polls/s | {:.1} | schedule: {:.1} polls/s | {} | |",
            j.interval_seconds,
            j.polls_per_second,
            j.required_polls_per_second,
            ratio(j.polls_per_second, j.required_polls_per_second)
        );
        if let Some(p99) = j.lateness_p99_seconds {
            let _ = writeln!(
                out,
                "| jobs {n}: schedule lateness p99 | {} | < {LATENESS_P99_TARGET_SECONDS:.0} s | {} | {} |",
                secs(p99),
                ratio(p99, LATENESS_P99_TARGET_SECONDS),
                met(p99 < LATENESS_P99_TARGET_SECONDS)
            );
        }
        let _ = writeln!(
            out,
            "| jobs {n}: peak RSS | {:.1} MiB | < {JOBS_RSS_TARGET_MIB:.0} MiB | {} | {} |",
            j.peak_rss_mib,
            ratio(j.peak_rss_mib, JOBS_RSS_TARGET_MIB),
            met(j.peak_rss_mib < JOBS_RSS_TARGET_MIB)
        );
        let _ = writeln!(
            out,
            "| jobs {n}: CPU | {:.1} % of a core | < {JOBS_CPU_TARGET_PERCENT:.0} % | {} | {} |",
            j.cpu_percent,
            ratio(j.cpu_percent, JOBS_CPU_TARGET_PERCENT),
            met(j.cpu_percent < JOBS_CPU_TARGET_PERCENT)
        );
    }
    if let Some(l) = &r.latency {
        let _ = writeln!(
            out,
            "| latency, {} s interval: p99 | {} ms | interval + 250 ms = {} ms | {} | |",
            l.interval_seconds,
            int(l.p99_ms),
            int(l.target_ms),
            ratio(l.p99_ms, l.target_ms)
        );
    }
    out.push('\n');
}

fn limit_section(out: &mut String, r: &Results) {
    let _ = write!(
        out,
        "## Producer limit (the baseline)\n\n\
         A plain rdkafka producer configured like the worker's (`acks=all`, \
         idempotence, `linger.ms=5`, `murmur2_random`) sends pre-built records \
         to a fresh 6-partition topic: keys over records / 5 distinct ids, \
         values of the backfill's mean event size. Timed from the first send \
         until every record is delivered; transactional: one transaction per \
         {} records. It is the most this broker takes from one producer on this \
         machine, so the backfill is read as a fraction of it.\n\n\
         | kind | records | value bytes | seconds | records/s | MiB/s |\n|---|---|---|---|---|---|\n",
        limit::PER_TRANSACTION
    );
    for x in &r.limit {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} | {} | {:.1} |",
            if x.transactional {
                "transactional"
            } else {
                "plain"
            },
            int(x.records as f64),
            int(x.value_bytes as f64),
            x.seconds,
            int(x.records_per_second),
            x.mib_per_second
        );
    }
    for (t, kind) in [(false, "plain"), (true, "transactional")] {
        if let Some(m) = r.limit_median(t) {
            let _ = writeln!(out, "| **median, {kind}** | | | | **{}** | |", int(m));
        }
    }
    out.push('\n');
}

fn backfill_section(out: &mut String, r: &Results) {
    out.push_str(
        "## Backfill\n\n\
         The sandbox holds N orders of the sandbox's default shape (the \
         event size is in the table), \
         created in batches of 1000 spread over the hour before the run (at most \
         ten seconds apart on the provider's clock, as \
         `benches/backfill-memory.sh` does). One instance (`pageSize` 1000, \
         backfill from two hours ago, 5 s interval) on one worker, new topics and \
         group every run on the same seeded sandbox. A `read_committed` reader \
         assigned every partition counts the events. Events/s is N over the time \
         from the first to the last event seen; \"from start\" counts from the \
         worker's start (group join, topic creation, OAuth included). CPU and \
         peak RSS (`VmHWM`) are the worker's, read from `/proc` just before \
         SIGTERM. Sandbox CPU is what the sandbox spent serving the run on the \
         same two cores: it counts the orders after `since` on every page, so its \
         share grows with N and slows the largest backfill. Duplicates: events \
         seen minus distinct (objectId, eventType, raw `modification_date`).\n\n",
    );
    let plain = r.limit_median(false);
    let txn = r.limit_median(true);
    for set in &r.backfill {
        backfill_set(out, set, plain, txn);
    }
}

fn backfill_set(out: &mut String, set: &BackfillSet, plain: Option<f64>, txn: Option<f64>) {
    let seed = set
        .seed_seconds
        .map_or_else(String::new, |s| format!(", seeded in {}", duration(s)));
    let _ = write!(
        out,
        "### {} orders ({} of {} planned runs{seed})\n\n\
         | run | first event | all events | events/s | events/s from start | CPU s | CPU s / 100k | sandbox CPU s | peak RSS | threads | mean event bytes | duplicates | transactions |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        int(set.orders as f64),
        set.runs.len(),
        set.planned_runs
    );
    let row = |x: &BackfillRun| {
        format!(
            "| {} | {:.1} s | {:.1} s | {} | {} | {:.1} | {:.2} | {:.1} | {:.1} MiB | {} | {} | {} | {} |",
            x.run,
            x.first_event_seconds,
            x.total_seconds,
            int(x.events_per_second),
            int(x.events_per_second_from_start),
            x.cpu_seconds,
            x.cpu_seconds_per_100k,
            x.sandbox_cpu_seconds,
            x.peak_rss_mib,
            x.threads,
            int(x.mean_value_bytes),
            x.duplicates,
            int(x.transactions_committed)
        )
    };
    for x in &set.runs {
        let _ = writeln!(out, "{}", row(x));
    }
    let m = |f: fn(&BackfillRun) -> f64| set.median_of(f).unwrap_or(f64::NAN);
    if !set.runs.is_empty() {
        let _ = writeln!(
            out,
            "| **median** | {:.1} s | {:.1} s | **{}** | {} | {:.1} | {:.2} | {:.1} | **{:.1} MiB** | {} | {} | {} | {} |",
            m(|x| x.first_event_seconds),
            m(|x| x.total_seconds),
            int(m(|x| x.events_per_second)),
            int(m(|x| x.events_per_second_from_start)),
            m(|x| x.cpu_seconds),
            m(|x| x.cpu_seconds_per_100k),
            m(|x| x.sandbox_cpu_seconds),
            m(|x| x.peak_rss_mib),
            int(m(|x| x.threads as f64)),
            int(m(|x| x.mean_value_bytes)),
            int(m(|x| x.duplicates as f64)),
            int(m(|x| x.transactions_committed))
        );
        let rate = m(|x| x.events_per_second);
        let from_start = m(|x| x.events_per_second_from_start);
        out.push('\n');
        for (base, kind) in [(plain, "plain"), (txn, "transactional")] {
            if let Some(b) = base {
                let _ = writeln!(
                    out,
                    "- ÷ producer limit, {kind} ({} records/s): {} (from start: {})",
                    int(b),
                    ratio(rate, b),
                    ratio(from_start, b)
                );
            }
        }
        let rss = m(|x| x.peak_rss_mib);
        let _ = writeln!(
            out,
            "- peak RSS {rss:.1} MiB against ≤ {BACKFILL_RSS_TARGET_MIB:.0} MiB: {}",
            met(rss <= BACKFILL_RSS_TARGET_MIB)
        );
    }
    out.push('\n');
}

fn jobs_section(out: &mut String, r: &Results) {
    out.push_str(
        "## Many jobs\n\n\
         N OAuth instances, one authorization code each, on one worker; the \
         shops are idle (every poll is one empty page). The sandbox reports \
         throttle and quota limits of 100,000,000 instead of Keap's 1500 a \
         minute and 150,000 a day: those apply per tenant, and N tenants sharing \
         one sandbox would otherwise wait on a limit none of them has. Once every \
         job has committed a poll (\"all polled\", from worker start: OAuth code \
         exchange and first poll included) and one more interval has passed (the \
         second round still carries the start-up backlog), the steady-state \
         window is measured from two \
         scrapes of `/metrics` and `/proc`: committed polls/s, the schedule \
         lateness histogram's delta (p50 and p99 interpolated inside buckets, \
         max as the upper bound of the highest non-empty bucket), transactions/s, \
         CPU over the window, and provider requests per poll (the sandbox's \
         count of orders requests over polls).\n\n\
         | instances | interval | window | all polled | polls/s | schedule polls/s | ratio | failed polls | lateness p50 | p99 | max | peak RSS | CPU | threads | transactions/s | requests/poll |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for j in &r.jobs {
        let _ = writeln!(
            out,
            "| {} | {} s | {:.0} s | {:.1} s | {:.1} | {:.1} | {} | {} | {} | {} | {} | {:.1} MiB | {:.1} % | {} | {:.1} | {:.2} |",
            int(j.instances as f64),
            j.interval_seconds,
            j.measure_seconds,
            j.all_polled_seconds,
            j.polls_per_second,
            j.required_polls_per_second,
            ratio(j.polls_per_second, j.required_polls_per_second),
            int(j.polls_failed),
            j.lateness_p50_seconds.map_or("—".into(), secs),
            j.lateness_p99_seconds.map_or("—".into(), secs),
            j.lateness_max_bound_seconds
                .map_or("—".into(), |m| format!("≤ {}", secs(m))),
            j.peak_rss_mib,
            j.cpu_percent,
            j.threads,
            j.transactions_per_second,
            j.http_requests_per_poll
        );
    }
    out.push('\n');
    for j in &r.jobs {
        let checks = jobs_targets(j);
        let _ = writeln!(out, "- {} jobs: {checks}", int(j.instances as f64));
    }
    if !r.jobs.is_empty() {
        out.push('\n');
    }
}

fn jobs_targets(j: &JobsRun) -> String {
    let lateness = j.lateness_p99_seconds.map_or_else(
        || "lateness p99 unknown".to_owned(),
        |p| {
            format!(
                "lateness p99 < {LATENESS_P99_TARGET_SECONDS:.0} s {}",
                met(p < LATENESS_P99_TARGET_SECONDS)
            )
        },
    );
    format!(
        "RSS < {JOBS_RSS_TARGET_MIB:.0} MiB {}; CPU < {JOBS_CPU_TARGET_PERCENT:.0} % {}; {lateness}",
        met(j.peak_rss_mib < JOBS_RSS_TARGET_MIB),
        met(j.cpu_percent < JOBS_CPU_TARGET_PERCENT)
    )
}

fn latency_section(out: &mut String, r: &Results) {
    let Some(l) = &r.latency else {
        return;
    };
    let _ = write!(
        out,
        "## Latency\n\n\
         The sandbox's live generator creates {} and updates {} orders a second \
         (millisecond dates: `--timestamp-millis`, read with \
         `yyyy-MM-dd'T'HH:mm:ss.SSSZ`); one instance polls every {} s. Latency \
         is the time a `read_committed` reader (broker fetch wait {} ms) receives \
         an event minus the order's `modification_date` in the event's `raw` \
         record, over {} s, the first {} s after the first event skipped.\n\n\
         | events | p50 | p99 | max | interval + 250 ms | p99 ratio | worker CPU | peak RSS |\n\
         |---|---|---|---|---|---|---|---|\n\
         | {} | {} ms | {} ms | {} ms | {} ms | {} | {:.1} % | {:.1} MiB |\n\n",
        latency::CREATE_RATE,
        latency::UPDATE_RATE,
        l.interval_seconds,
        latency::READER_FETCH_WAIT.as_millis(),
        l.seconds,
        latency::SKIP.as_secs(),
        int(l.events as f64),
        int(l.p50_ms),
        int(l.p99_ms),
        int(l.max_ms),
        int(l.target_ms),
        ratio(l.p99_ms, l.target_ms),
        l.cpu_percent,
        l.peak_rss_mib
    );
}

fn peer_section(out: &mut String, r: &Results) {
    let _ = write!(
        out,
        "## Peer comparison\n\n{}\nWith a checkout given (`PEER_CASTORM_SRC`), the \
         same workloads would run through that Kafka Connect source for a \
         side-by-side figure; until then there is no peer figure.\n\n",
        r.peer.message
    );
}

fn notes_section(out: &mut String, r: &Results) {
    out.push_str("## Notes\n\n");
    for n in &r.notes {
        let _ = writeln!(out, "- {n}");
    }
    let sections: Vec<String> = r
        .sections
        .iter()
        .map(|(name, s)| format!("{name} {}", duration(*s)))
        .collect();
    if !sections.is_empty() {
        let _ = writeln!(out, "- Wall time per section: {}.", sections.join(", "));
    }
    out.push_str(
        "- Peak RSS with large orders (about 4 KB each) is measured by \
         `benches/backfill-memory.sh`; its earlier figures are in this file's \
         git history.\n",
    );
}

/// `12,345`
pub fn int(x: f64) -> String {
    if !x.is_finite() {
        return "—".into();
    }
    let n = x.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A ratio with two significant decimals.
fn ratio(x: f64, base: f64) -> String {
    if base == 0.0 || !x.is_finite() {
        return "—".into();
    }
    format!("{:.2}", x / base)
}

/// Seconds, in ms below one.
fn secs(s: f64) -> String {
    if s.is_infinite() {
        "+Inf".into()
    } else if s < 1.0 {
        format!("{:.1} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

fn duration(s: f64) -> String {
    let total = s.round() as u64;
    if total >= 60 {
        format!("{}m {:02}s", total / 60, total % 60)
    } else {
        format!("{s:.1} s")
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "not met" }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(int(1234567.4), "1,234,567");
        assert_eq!(int(999.0), "999");
        assert_eq!(int(-1000.0), "-1,000");
        assert_eq!(int(f64::NAN), "—");
        assert_eq!(ratio(1.0, 4.0), "0.25");
        assert_eq!(ratio(1.0, 0.0), "—");
        assert_eq!(secs(0.0123), "12.3 ms");
        assert_eq!(secs(2.5), "2.50 s");
        assert_eq!(secs(f64::INFINITY), "+Inf");
        assert_eq!(duration(125.0), "2m 05s");
    }
}
