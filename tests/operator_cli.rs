//! The operator's commands against a running worker, the real broker and
//! the sandbox over HTTP: `poll-once --dry-run` prints what `run`
//! publishes, `state rewind` replays exactly the changes after its time
//! once, and `auth exchange` revives an instance the provider stranded,
//! each while a worker keeps running.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Output, Stdio};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use keap_sandbox::{self as sandbox, SandboxConfig};
use reqwest::Method;
use serde_json::{Value, json};

use common::e2e::{self, Instances, Names, Seen, control};
use common::rounds::{PATIENCE, Setup, start};

/// Workers here would wait 60 s for their group after a fence (two
/// session timeouts): what they waited after every command before
/// commands handed the partition back.
const SLOW_GROUP: (&str, &str) = ("KAFKA_SESSION_TIMEOUT_MS", "30000");

/// How long a worker fenced by a command may take to take its partition
/// back once the command handed it back.
const RETAKEN_WITHIN: Duration = Duration::from_secs(30);

fn slow_group() -> Vec<(&'static str, String)> {
    vec![(SLOW_GROUP.0, SLOW_GROUP.1.to_string())]
}

const HANDED_BACK: &str =
    "State partition handed back by an operator's command; taking it over again.";

/// Runs `event-poller ARGS` as the workers' operator would, with `stdin`
/// as its input; panics if it cannot start.
fn cli(
    names: &Names,
    files: &Instances,
    args: &[&str],
    stdin: &str,
    extra: &[(&str, &str)],
) -> Output {
    let mut cmd = e2e::command(names, files);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn event-poller");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes()).expect("stdin");
    }
    child.wait_with_output().expect("event-poller output")
}

fn ok(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}: {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn date(e: &Seen) -> DateTime<Utc> {
    e2e::parse_keap_date(e.modification_date()).expect("a Keap date")
}

/// `state list --json`'s line for the job.
fn listed(names: &Names, files: &Instances, job: &str) -> Value {
    let out = ok(
        &cli(names, files, &["state", "list", "--json"], "", &[]),
        "state list",
    );
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["job"] == job)
        .unwrap_or_else(|| panic!("{job} not in `state list`: {out}"))
}

/// The worker publishes a backfill; `poll-once --dry-run` over the same
/// window, with no broker to reach, prints the same event values byte
/// for byte.
#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_prints_byte_for_byte_what_run_publishes() {
    let sb = sandbox::start(SandboxConfig {
        authorization_codes: vec!["test-code".into(), "dry-code".into()],
        ..e2e::oauth_sandbox()
    })
    .await
    .expect("sandbox");
    let base = sb.base_url();
    e2e::orders_dated_back(&base, 4, 600).await;
    e2e::orders_dated_back(&base, 3, 300).await;
    let since = (Utc::now() - TimeDelta::hours(1)).to_rfc3339();
    let instance = |code: &str| {
        let mut v = e2e::instance(
            "shop",
            &format!("{base}/crm/rest"),
            1,
            json!({ "event.poller.backfill.from": since }),
        );
        v["providerData"]["code"] = json!(code);
        v.to_string()
    };
    let names = Names::new();
    let files = Instances::new(&[("shop.json", instance("test-code"))]);
    let poller = e2e::spawn_poller(&names, &files, &[]);
    e2e::await_events(&names.events, PATIENCE, Some(&poller), |s| s.len() >= 7).await;
    let mut published: Vec<String> = common::read_committed_values(&names.events)
        .await
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(published.len(), 7);

    let dry = Instances::new(&[("shop.json", instance("dry-code"))]);
    let file = dry.dir.path().join("shop.json");
    let out = cli(
        &names,
        &files,
        &[
            "poll-once",
            "--instance",
            file.to_str().expect("utf-8 path"),
            "--resource",
            "orders",
            "--since",
            &since,
            "--dry-run",
        ],
        "",
        // Nothing listens there: a dry run that reached for Kafka would
        // hang or fail.
        &[("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")],
    );
    let stdout = ok(&out, "poll-once --dry-run");
    let mut printed: Vec<String> = stdout.lines().map(str::to_string).collect();
    published.sort();
    printed.sort();
    assert_eq!(printed, published, "the same values, byte for byte");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("7 event(s), 0 dead letter(s)"), "{stderr}");
    assert!(stderr.contains("nothing was written"), "{stderr}");
    drop(poller);
    sb.stop().await.expect("sandbox stop");
}

/// Three orders, then T, then two more. `state rewind --to T` while the
/// worker runs: the two after T are published exactly once more, the
/// three before it not again, and polling goes on without duplicates.
#[tokio::test(flavor = "multi_thread")]
async fn a_rewind_replays_exactly_the_changes_after_its_time_once_while_a_worker_runs() {
    let mut run = start(Setup {
        env: slow_group(),
        ..Setup::default()
    })
    .await;
    let job = "shop/orders";
    let before = run.round(3, &[]).await;
    let seen = e2e::events(&run.names.events).await;
    let t = seen.iter().map(date).max().expect("events");
    e2e::await_sandbox_time_after(&run.base, t).await;
    let after = run.round(2, &[]).await;
    run.settle(1).await;
    let watermark_before = listed(&run.names, &run.files, job)["watermark"].clone();

    // Not confirmed: nothing changes.
    let to = t.to_rfc3339();
    let refused = cli(
        &run.names,
        &run.files,
        &["state", "rewind", job, "--to", &to],
        "n\n",
        &[],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not confirmed"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(
        listed(&run.names, &run.files, job)["watermark"],
        watermark_before
    );

    let out = ok(
        &cli(
            &run.names,
            &run.files,
            &["state", "rewind", job, "--to", &to, "--yes"],
            "",
            &[],
        ),
        "state rewind",
    );
    assert!(out.contains("Rewound shop/orders"), "{out}");

    // The replay: both changes after T twice, then one more round.
    let twice = |s: &[Seen]| {
        let mut n: HashMap<&str, usize> = HashMap::new();
        for e in s {
            *n.entry(e.object_id()).or_default() += 1;
        }
        after.iter().all(|id| n.get(id.as_str()) == Some(&2))
    };
    e2e::await_events(&run.names.events, RETAKEN_WITHIN, Some(&run.poller), twice).await;
    let fenced = run
        .poller
        .logged("Producer fenced by a newer owner; waiting for the group.");
    assert!(!fenced.is_empty(), "the worker was fenced by the rewind");
    assert!(
        !run.poller.logged(HANDED_BACK).is_empty(),
        "and took the partition back when the rewind handed it back"
    );
    let later = run.round(1, &[]).await;
    run.settle(3).await;

    let events = e2e::events(&run.names.events).await;
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for e in &events {
        *by_id.entry(e.object_id().to_string()).or_default() += 1;
    }
    for id in &before {
        assert_eq!(by_id.get(id), Some(&1), "order {id} (before T): once");
    }
    for id in &after {
        assert_eq!(
            by_id.get(id),
            Some(&2),
            "order {id} (after T): replayed once"
        );
    }
    for id in &later {
        assert_eq!(
            by_id.get(id),
            Some(&1),
            "order {id} (after the rewind): once"
        );
    }
    assert_eq!(
        events.len(),
        before.len() + 2 * after.len() + later.len(),
        "nothing else"
    );

    let shown = ok(
        &cli(&run.names, &run.files, &["state", "show", job], "", &[]),
        "state show",
    );
    let shown: Value = serde_json::from_str(&shown).expect("state show prints JSON");
    assert_eq!(shown["job"], job);
    assert!(
        shown["checkpoint"]["watermark"].as_str().is_some(),
        "{shown}"
    );
    assert!(
        !shown.to_string().contains("refresh_token"),
        "no tokens: {shown}"
    );

    // Reset: the job starts over as new (no backfill: from now), so
    // nothing is published again, and it polls on.
    let polls = shown["checkpoint"]["polls"].as_u64().expect("polls");
    let out = ok(
        &cli(
            &run.names,
            &run.files,
            &["state", "reset", job, "--yes"],
            "",
            &[],
        ),
        "state reset",
    );
    assert!(out.contains("Reset shop/orders"), "{out}");
    let restored = run.poller.logged("State partition restored.").len();
    run.poller
        .await_log(RETAKEN_WITHIN, |l| {
            l.iter()
                .filter(|l| l["message"] == "State partition restored.")
                .count()
                > restored
        })
        .await;
    run.settle(2).await;
    let row = listed(&run.names, &run.files, job);
    assert!(
        row["polls"].as_u64().is_some_and(|p| p < polls),
        "started over: {row} (had {polls} polls)"
    );
    assert_eq!(
        e2e::events(&run.names.events).await.len(),
        events.len(),
        "a reset replays nothing"
    );
    run.stop().await;
}

/// The provider voids every grant; the instance is stranded (the metric
/// says so, and so do `auth status` and `state list` from the state
/// topic). `auth exchange` with a new code, while the worker runs: it
/// polls again, and nothing is lost or published twice.
///
/// Failed before the fix that ends a partition's period when a token
/// commit finds the producer fenced: the stranded instance's polls never
/// reached a commit of their own, so its worker never noticed the fence
/// and kept its refused tokens for ever.
#[tokio::test(flavor = "multi_thread")]
async fn auth_exchange_revives_a_stranded_instance_while_a_worker_runs() {
    let mut run = start(Setup {
        sandbox: Some(SandboxConfig {
            access_token_ttl_seconds: 2,
            ..e2e::oauth_sandbox()
        }),
        env: slow_group(),
        ..Setup::default()
    })
    .await;
    run.round(2, &[]).await;
    control(&run.base, Method::POST, "/_sandbox/revoke", json!({})).await;
    run.poller
        .await_metrics(PATIENCE, |m| {
            e2e::metric_sum(m, "event_poller_instances_needing_authorization") == Some(1.0)
        })
        .await;
    let status = |run: &common::rounds::Run| {
        let out = ok(
            &cli(
                &run.names,
                &run.files,
                &["auth", "status", "--json"],
                "",
                &[],
            ),
            "auth status",
        );
        out.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["instance"] == "shop")
            .unwrap_or_else(|| panic!("shop not in `auth status`: {out}"))
    };
    let stranded = status(&run);
    assert_eq!(stranded["needsAuthorization"], true, "{stranded}");
    assert_eq!(
        listed(&run.names, &run.files, "shop/orders")["status"],
        "needs-authorization"
    );

    let code = control(&run.base, Method::POST, "/_sandbox/codes", json!({})).await;
    let code = code["code"].as_str().expect("a code").to_string();
    let file = run.files.dir.path().join("shop.json");
    let out = ok(
        &cli(
            &run.names,
            &run.files,
            &[
                "auth",
                "exchange",
                "--instance",
                file.to_str().expect("utf-8 path"),
            ],
            "",
            &[("AUTH_CODE", &code)],
        ),
        "auth exchange",
    );
    assert!(out.contains("Authorized instance shop"), "{out}");
    assert!(!out.contains(&code), "the code is not echoed: {out}");

    // The stranded job retries 30 s after its first refusal at the
    // latest; then it finds the fence and takes the partition back.
    run.poller
        .await_metrics(Duration::from_secs(30) + RETAKEN_WITHIN, |m| {
            e2e::metric_sum(m, "event_poller_instances_needing_authorization")
                .is_none_or(|n| n == 0.0)
        })
        .await;
    run.round(2, &[]).await;
    run.settle(1).await;
    run.check().await;
    let revived = status(&run);
    assert_eq!(revived["needsAuthorization"], false, "{revived}");
    run.stop().await;
}

/// `poll-once` without `--dry-run` is a poll of the job: it commits the
/// window it prints (events and checkpoint) through the job's partition,
/// and the worker started afterwards goes on from there, publishing
/// nothing twice.
#[tokio::test(flavor = "multi_thread")]
async fn poll_once_commits_the_window_it_prints_and_the_worker_goes_on_from_it() {
    let mut run = start(Setup::default()).await;
    assert_eq!(run.poller.terminate(), Some(0), "clean exit on SIGTERM");
    run.change(3, &[]).await;
    let file = run.files.dir.path().join("shop.json");
    let out = cli(
        &run.names,
        &run.files,
        &[
            "poll-once",
            "--instance",
            file.to_str().expect("utf-8 path"),
            "--resource",
            "orders",
        ],
        "",
        &[],
    );
    let printed = ok(&out, "poll-once");
    let mut printed: Vec<String> = printed.lines().map(str::to_string).collect();
    let mut published: Vec<String> = common::read_committed_values(&run.names.events)
        .await
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    printed.sort();
    published.sort();
    assert_eq!(printed.len(), 3, "{printed:?}");
    assert_eq!(printed, published, "what it printed is what it committed");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("; committed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(listed(&run.names, &run.files, "shop/orders")["events"], 3);

    run.poller = e2e::spawn_poller(&run.names, &run.files, &[]);
    run.settle(2).await;
    run.round(1, &[]).await;
    run.settle(1).await;
    run.check().await;
    run.stop().await;
}
