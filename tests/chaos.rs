//! Chaos: workers killed, paused past the session timeout, stopped,
//! restarted, joined and removed at random while the shops change, the
//! provider misbehaves and OAuth tokens rotate every few seconds; the
//! broker restarts once, keeping its data. Then quiescence, and one check
//! by an independent `read_committed` reader: no change twice, the final
//! state of every order published for every instance, only states the
//! sandbox served, per-key order, unreadable records dead-lettered, no
//! instance stranded.
//!
//! `CHAOS_SECONDS` bounds the churn (default 60: the smoke run CI does;
//! `make chaos` runs 300). One summary line is printed; any violation fails
//! the test after it.
//!
//! Two shops: `rotating` rotates refresh tokens on every refresh
//! (`until-first-use`, 3 s access tokens), so every kill lands near a
//! rotation; `lasting` voids the old refresh token at the provider's
//! answer (`never`) with tokens that outlive the run, so its instances
//! must come through every handover without a single refresh.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::e2e::{self, Instances, Names, Poller, control};
use common::group;
use keap_sandbox::{self as sandbox, SandboxConfig, oauth::RefreshReuse};
use rand::RngExt;
use reqwest::Method;
use serde_json::json;

const SESSION: Duration = Duration::from_secs(6);
const ENV: &[(&str, &str)] = &[
    ("TOPIC_PARTITIONS", "6"),
    ("KAFKA_SESSION_TIMEOUT_MS", "6000"),
    ("KAFKA_HEARTBEAT_INTERVAL_MS", "1000"),
    ("KAFKA_COMMIT_TIMEOUT_MS", "5000"),
];
const ROTATING: usize = 6;
const LASTING: usize = 3;
const TOKEN_ENDPOINT: &str = "POST /token";

/// Instance files for both shops: `rotating-i` and `lasting-i`.
fn instance_files(rotating: &str, lasting: &str) -> Instances {
    let mut files = Vec::new();
    for (shop, base, n) in [
        ("rotating", rotating, ROTATING),
        ("lasting", lasting, LASTING),
    ] {
        for i in 0..n {
            let mut v = e2e::instance(
                &format!("{shop}-{i}"),
                &format!("{base}/crm/rest"),
                1,
                json!({}),
            );
            v["providerData"]["code"] = json!(group::code(i));
            files.push((format!("{shop}-{i}.json"), v.to_string()));
        }
    }
    let refs: Vec<(&str, String)> = files.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    Instances::new(&refs)
}

/// The workers: slots 0..3 have static ids, slot 3 has none, slot 4 is
/// the extra worker that joins and leaves. Replaced processes are kept
/// for their logs.
struct Fleet<'a> {
    names: &'a Names,
    files: &'a Instances,
    slots: Vec<Option<Poller>>,
    retired: Vec<Poller>,
}

impl Fleet<'_> {
    fn id(slot: usize) -> Option<String> {
        match slot {
            3 => None,
            s => Some(format!("chaos-{s}")),
        }
    }

    fn start(&mut self, slot: usize) {
        let p = group::worker(self.names, self.files, Self::id(slot).as_deref(), ENV);
        if let Some(old) = self.slots[slot].replace(p) {
            self.retired.push(old);
        }
    }

    fn retire(&mut self, slot: usize) {
        if let Some(old) = self.slots[slot].take() {
            self.retired.push(old);
        }
    }

    /// Like a supervisor: a worker that ended by itself is started again.
    /// The only way a worker may end by itself is the group dropping it
    /// for good (e.g. a static member fenced after the broker restart):
    /// anything else is a crash, and a problem.
    fn supervise(&mut self, counts: &mut Counts, problems: &mut Vec<String>) {
        for slot in 0..self.slots.len() {
            let ended = match self.slots[slot].as_mut() {
                Some(p) => !p.is_running(),
                None => false,
            };
            if ended {
                self.note_exit(slot, counts, problems);
                self.start(slot);
            }
        }
    }

    fn note_exit(&self, slot: usize, counts: &mut Counts, problems: &mut Vec<String>) {
        let Some(p) = self.slots[slot].as_ref() else {
            return;
        };
        if p.logged("Group membership lost for good.").is_empty() {
            let log = p.log_text();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            problems.push(format!(
                "worker {slot} ended by itself: {}",
                tail.join(" | ")
            ));
        } else {
            counts.self_exits += 1;
        }
    }

    fn all(&self) -> Vec<&Poller> {
        self.slots
            .iter()
            .flatten()
            .chain(self.retired.iter())
            .collect()
    }
}

#[derive(Default, Debug)]
struct Counts {
    kills: usize,
    pauses: usize,
    terms: usize,
    joins: usize,
    leaves: usize,
    broker_restarts: usize,
    /// Workers the group dropped for good, restarted as a supervisor would.
    self_exits: usize,
}

#[tokio::test(flavor = "multi_thread")]
async fn chaos_loses_nothing_and_publishes_nothing_twice() {
    let seconds: u64 = std::env::var("CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let rotating = sandbox::start(SandboxConfig {
        access_token_ttl_seconds: 3,
        refresh_reuse: RefreshReuse::UntilFirstUse,
        ..group::oauth_sandbox(ROTATING)
    })
    .await
    .expect("sandbox");
    let lasting = sandbox::start(SandboxConfig {
        access_token_ttl_seconds: 24 * 3600,
        refresh_reuse: RefreshReuse::Never,
        ..group::oauth_sandbox(LASTING)
    })
    .await
    .expect("sandbox");
    let (ra, la) = (rotating.base_url(), lasting.base_url());
    let names = Names::new();
    let files = instance_files(&ra, &la);
    let mut fleet = Fleet {
        names: &names,
        files: &files,
        slots: (0..5).map(|_| None).collect(),
        retired: Vec::new(),
    };
    for slot in 0..4 {
        fleet.start(slot);
    }
    // Every job has its starting point before anything changes.
    let all_parts: std::collections::HashSet<i64> = (0..ROTATING)
        .map(|i| format!("rotating-{i}"))
        .chain((0..LASTING).map(|i| format!("lasting-{i}")))
        .map(|id| i64::from(event_poller::state::partition_for(&id, 6)))
        .collect();
    group::await_partitions_commit(
        &fleet.all(),
        &all_parts,
        Utc::now(),
        Duration::from_secs(90),
    )
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let generators = [
        group::start_generator(ra.clone(), stop.clone()),
        group::start_generator(la.clone(), stop.clone()),
    ];
    let faults = json!({
        "error_rate": 0.05, "throttle_rate": 0.05, "latency_ms": 20,
        "malformed_rate": 0.02, "bad_record_rate": 0.02,
    });
    for base in [&ra, &la] {
        control(base, Method::PUT, "/_sandbox/faults", faults.clone()).await;
    }

    let began = Instant::now();
    let churn_began = Utc::now();
    let churn = Duration::from_secs(seconds);
    let restart_broker_at = churn * 2 / 5;
    let mut counts = Counts::default();
    let mut problems: Vec<String> = Vec::new();
    let mut handovers: Vec<Handover> = Vec::new();
    let mut log = Vec::new();
    while began.elapsed() < churn {
        fleet.supervise(&mut counts, &mut problems);
        let (action, slot, pause_ms, retry_after) = {
            let mut rng = rand::rng();
            (
                rng.random_range(0..6),
                rng.random_range(0..4),
                rng.random_range(2000..6000),
                ["seconds", "none", "http-date"][rng.random_range(0..3)],
            )
        };
        for base in [&ra, &la] {
            control(
                base,
                Method::PUT,
                "/_sandbox/faults",
                json!({"retry_after": retry_after}),
            )
            .await;
        }
        if counts.broker_restarts == 0 && began.elapsed() >= restart_broker_at {
            common::kafka_script("restart");
            counts.broker_restarts += 1;
            log.push(format!("{}s broker restart", began.elapsed().as_secs()));
        } else {
            match action {
                0 | 1 => {
                    if let Some(p) = fleet.slots[slot].as_mut() {
                        handovers.push(Handover::before(p, true));
                        p.kill();
                    }
                    fleet.start(slot);
                    counts.kills += 1;
                    log.push(format!("{}s kill -9 {slot}", began.elapsed().as_secs()));
                }
                2 => {
                    if let Some(p) = fleet.slots[slot].as_ref() {
                        group::signal(p, "STOP");
                        // Past the session timeout: the group moves its
                        // partitions; on SIGCONT it is a zombie first.
                        tokio::time::sleep(SESSION + Duration::from_secs(2)).await;
                        group::signal(p, "CONT");
                        counts.pauses += 1;
                        log.push(format!("{}s pause {slot}", began.elapsed().as_secs()));
                    }
                }
                3 => {
                    if let Some(p) = fleet.slots[slot].as_ref() {
                        handovers.push(Handover::before(p, false));
                    }
                    let code = fleet.slots[slot].as_mut().and_then(Poller::terminate);
                    if code != Some(0) {
                        // Ended before the signal, or failed to stop.
                        fleet.note_exit(slot, &mut counts, &mut problems);
                    }
                    fleet.start(slot);
                    counts.terms += 1;
                    log.push(format!("{}s SIGTERM {slot}", began.elapsed().as_secs()));
                }
                _ => {
                    if fleet.slots[4].is_none() {
                        fleet.start(4);
                        counts.joins += 1;
                        log.push(format!("{}s join 4", began.elapsed().as_secs()));
                    } else {
                        if let Some(p) = fleet.slots[4].as_mut() {
                            p.terminate();
                        }
                        fleet.retire(4);
                        counts.leaves += 1;
                        log.push(format!("{}s leave 4", began.elapsed().as_secs()));
                    }
                }
            }
        }
        // The rhythm of the churn, not synchronisation.
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
    }

    // Quiescence: the shops and the faults stop; every final state must
    // arrive.
    stop.store(true, Ordering::Relaxed);
    for g in generators {
        g.await.expect("generator");
    }
    for base in [&ra, &la] {
        control(base, Method::DELETE, "/_sandbox/faults", json!({})).await;
    }
    let rotating_ids: Vec<String> = (0..ROTATING).map(|i| format!("rotating-{i}")).collect();
    let lasting_ids: Vec<String> = (0..LASTING).map(|i| format!("lasting-{i}")).collect();
    let (rt, lt) = (e2e::changes(&ra).await, e2e::changes(&la).await);
    let split = |seen: &[e2e::Seen], ids: &[String]| -> Vec<e2e::Seen> {
        seen.iter()
            .filter(|e| ids.contains(&group::change_of(e).0))
            .cloned()
            .collect()
    };
    let quiet = Instant::now();
    let settled = |s: &[e2e::Seen]| {
        group::check_exactly_once(&split(s, &rotating_ids), &rt, &rotating_ids)
            .0
            .lost
            == 0
            && group::check_exactly_once(&split(s, &lasting_ids), &lt, &lasting_ids)
                .0
                .lost
                == 0
    };
    // Reported below rather than panicking here: the summary and the
    // problems say more than a timeout.
    let seen = loop {
        let s = e2e::events(&names.events).await;
        if settled(&s) || quiet.elapsed() > Duration::from_secs(180) {
            break s;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let quiescence = quiet.elapsed();

    let (r_tally, mut problems) =
        group::check_exactly_once(&split(&seen, &rotating_ids), &rt, &rotating_ids);
    let (l_tally, more) = group::check_exactly_once(&split(&seen, &lasting_ids), &lt, &lasting_ids);
    problems.extend(more);
    // Unreadable records go to the dead-letter topic, as unreadable.
    let dead = e2e::read_committed_records(&names.dlq).await;
    for d in &dead {
        if d.value["kind"] != "unreadable" {
            problems.push(format!("unexpected dead letter: {}", d.text));
        }
    }
    if dead.is_empty() {
        problems.push("no unreadable record was dead-lettered".into());
    }
    // The lasting shop's tokens outlive the run: handovers never refresh
    // them, so the only grants are the first code exchanges.
    let lasting_grants = e2e::served(&la, TOKEN_ENDPOINT, 200).await;
    if lasting_grants != LASTING as u64 {
        problems.push(format!(
            "the lasting shop granted {lasting_grants} tokens for {LASTING} instances (a handover refreshed a valid token)"
        ));
    }
    let refused =
        e2e::served(&la, TOKEN_ENDPOINT, 400).await + e2e::served(&ra, TOKEN_ENDPOINT, 400).await;
    if refused > 0 {
        problems.push(format!(
            "{refused} token requests refused: an instance was stranded"
        ));
    }
    let workers = fleet.all();
    let (unowned, gap_partition, gap_from) = longest_unowned(&workers, &all_parts);
    eprintln!(
        "longest unowned: partition {gap_partition} from {gap_from} ({:.1} s after the churn began)",
        (gap_from - churn_began).num_milliseconds() as f64 / 1000.0
    );
    if unowned > SESSION * 2 {
        trace(&workers, gap_partition, gap_from, unowned);
    }
    // CHAOS_KEEP_LOGS=DIR keeps every worker's log there, for a closer look.
    if let Some(dir) = std::env::var_os("CHAOS_KEEP_LOGS") {
        let dir = std::path::PathBuf::from(dir);
        let _ = std::fs::create_dir_all(&dir);
        for (i, w) in workers.iter().enumerate() {
            let _ = std::fs::copy(&w.log, dir.join(format!("worker-{i}.log")));
        }
    }
    let commits: Vec<(&std::path::Path, Vec<group::Commit>)> = workers
        .iter()
        .map(|w| (w.log.as_path(), group::commits(w)))
        .collect();
    let failover = |killed: bool| -> Vec<Duration> {
        handovers
            .iter()
            .filter(|h| h.killed == killed)
            .filter_map(|h| h.took(&commits))
            .collect()
    };
    let (kills, terms) = (failover(true), failover(false));
    let figure = |xs: &[Duration]| {
        if xs.is_empty() {
            return "none".to_string();
        }
        let (median, max) = group::median_max(xs);
        format!(
            "median {:.1} s, max {:.1} s",
            median.as_secs_f64(),
            max.as_secs_f64()
        )
    };
    let saves = answer_to_saved(&workers);
    let p99 = percentile(&saves, 0.99);
    let changes = rt.len() + lt.len();
    let events = r_tally.events + l_tally.events;
    let duplicated = r_tally.duplicated + l_tally.duplicated;
    let lost = r_tally.lost + l_tally.lost;
    eprintln!("chaos actions: {}", log.join(", "));
    println!(
        "chaos: {seconds} s, {changes} changes, {events} events, {} dead letters, {} kills, {} pauses, {} SIGTERMs, \
         {} joins, {} leaves, {} broker restarts, {} dropped by the group and restarted, \
         failover after kill -9 {}, after SIGTERM {}, longest unowned partition {:.1} s, {} token refreshes \
         (answer -> saved p99 {} ms), quiescence {:.1} s, lost = {lost}, duplicated = {duplicated}",
        dead.len(),
        counts.kills,
        counts.pauses,
        counts.terms,
        counts.joins,
        counts.leaves,
        counts.broker_restarts,
        counts.self_exits,
        figure(&kills),
        figure(&terms),
        unowned.as_secs_f64(),
        saves.len(),
        p99.as_millis(),
        quiescence.as_secs_f64(),
    );
    for slot in 0..5 {
        if let Some(p) = fleet.slots[slot].as_mut() {
            p.terminate();
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    rotating.stop().await.expect("sandbox stop");
    lasting.stop().await.expect("sandbox stop");
}

/// A worker stopped by the driver: when, and the partitions it had
/// committed in the seconds before.
struct Handover {
    at: DateTime<Utc>,
    victim: std::path::PathBuf,
    partitions: std::collections::HashSet<i64>,
    killed: bool,
}

impl Handover {
    fn before(p: &Poller, killed: bool) -> Self {
        let at = Utc::now();
        Self {
            at,
            victim: p.log.clone(),
            partitions: group::partitions_committed(p, at - chrono::TimeDelta::seconds(3)),
            killed,
        }
    }

    /// Until every one of its partitions committed on another worker
    /// (`commits` by worker log).
    fn took(&self, commits: &[(&std::path::Path, Vec<group::Commit>)]) -> Option<Duration> {
        if self.partitions.is_empty() {
            return None;
        }
        let mut worst = Duration::ZERO;
        for p in &self.partitions {
            let first = commits
                .iter()
                .filter(|(log, _)| *log != self.victim.as_path())
                .flat_map(|(_, cs)| cs.iter())
                .filter(|c| c.partition == *p && c.at >= self.at)
                .map(|c| c.at)
                .min()?;
            worst = worst.max((first - self.at).to_std().unwrap_or_default());
        }
        Some(worst)
    }
}

/// The longest time any partition went without a commit on any worker,
/// from its first commit to its last.
fn longest_unowned(
    workers: &[&Poller],
    partitions: &std::collections::HashSet<i64>,
) -> (Duration, i64, DateTime<Utc>) {
    let mut by_part: BTreeMap<i64, Vec<DateTime<Utc>>> = BTreeMap::new();
    for w in workers {
        for c in group::commits(w) {
            by_part.entry(c.partition).or_default().push(c.at);
        }
    }
    let mut longest = (Duration::ZERO, -1, DateTime::<Utc>::MIN_UTC);
    for (p, ts) in &mut by_part {
        if !partitions.contains(p) {
            continue;
        }
        ts.sort();
        for w in ts.windows(2) {
            let gap = (w[1] - w[0]).to_std().unwrap_or_default();
            if gap > longest.0 {
                longest = (gap, *p, w[0]);
            }
        }
    }
    longest
}

/// What the workers logged about ownership and failures from `from` for
/// `span`: where a long gap went.
fn trace(workers: &[&Poller], partition: i64, from: DateTime<Utc>, span: Duration) {
    let to = from + chrono::TimeDelta::from_std(span).unwrap_or_default();
    for (i, w) in workers.iter().enumerate() {
        for l in w.log_lines() {
            let Some(t) = group::timestamp(&l) else {
                continue;
            };
            let level = l["level"].as_str().unwrap_or_default();
            let message = l["message"].as_str().unwrap_or_default();
            let ownership = message.starts_with("State partition")
                || message.starts_with("Worker")
                || message.starts_with("Group");
            let here = group::partition_of(&l).is_none_or(|p| p == partition);
            if t >= from && t <= to && here && (ownership || level == "WARN" || level == "ERROR") {
                eprintln!(
                    "  +{:>6} ms worker {i} {level} {message} {} {} {}",
                    (t - from).num_milliseconds(),
                    l.get("partitions")
                        .or(l.get("partition"))
                        .cloned()
                        .unwrap_or_default(),
                    l.get("kind").cloned().unwrap_or_default(),
                    l.get("retry_in")
                        .or(l.get("error"))
                        .cloned()
                        .unwrap_or_default(),
                );
            }
        }
    }
}

/// For each refresh: from the provider's answer (the refresh logged) to
/// the rotated set's save (persisted), per worker and instance.
fn answer_to_saved(workers: &[&Poller]) -> Vec<Duration> {
    let mut out = Vec::new();
    for w in workers {
        let mut pending: HashMap<String, DateTime<Utc>> = HashMap::new();
        for l in w.log_lines() {
            let instance = l["instance"].as_str().unwrap_or_default().to_string();
            let Some(t) = group::timestamp(&l) else {
                continue;
            };
            match l["message"].as_str() {
                Some("OAuth2 access token refreshed.") => {
                    pending.insert(instance, t);
                }
                Some("OAuth2 tokens persisted.") => {
                    if let Some(a) = pending.remove(&instance) {
                        out.push((t - a).to_std().unwrap_or_default());
                    }
                }
                _ => {}
            }
        }
    }
    out
}

fn percentile(xs: &[Duration], q: f64) -> Duration {
    let mut v = xs.to_vec();
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i.min(v.len() - 1)]
}
