//! The events of real operations, end to end against the real broker and
//! the sandbox: a record dated in the future, a bulk change at one
//! timestamp, a record too large for Kafka, a checkpoint this build cannot
//! read, a state topic whose partitions were changed or whose cleanup policy
//! is wrong, a provider clock behind by more than the overlap, a changed
//! overlap, a throttled first page, and an instance whose grant was
//! revoked. Each test failed on the code before its fix.

mod common;

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::e2e::{self, Instances, Names, Record, control, spawn_poller};
use common::rounds::{PATIENCE, Setup, start};
use event_poller::state::{Checkpoint, JobId, partition_for};
use keap_sandbox::{self as sandbox};
use rdkafka::admin::{AdminOptions, NewPartitions};
use rdkafka::producer::{FutureProducer, FutureRecord};
use reqwest::Method;
use serde_json::{Value, json};

const JOB_KEY: &str = "job/shop/orders";

/// The state records of the job, in offset order per partition.
async fn checkpoints(state_topic: &str) -> Vec<Record> {
    e2e::read_committed_records(state_topic)
        .await
        .into_iter()
        .filter(|r| r.key.as_deref() == Some(JOB_KEY))
        .collect()
}

/// The instance directory of the tests that run their own sandbox: one
/// shop polling it every second.
fn shop(base: &str) -> Instances {
    Instances::new(&[(
        "shop.json",
        e2e::instance("shop", &format!("{base}/crm/rest"), 1, json!({})).to_string(),
    )])
}

fn decoded(r: &Record) -> Value {
    assert!(r.value.is_object(), "checkpoint JSON: {}", r.text);
    r.value.clone()
}

// ---------------------------------------------------------------------------
// 1. A record dated in the future
// ---------------------------------------------------------------------------

/// One update is dated a year ahead of the provider's clock (as if its
/// clock jumped for that write and back). It is published once, and the
/// nine changes made after it are published too, exactly once; the
/// watermark stays at the provider's now, a metric counts the record, and
/// the lag gauge never goes negative.
///
/// Before the fix the watermark jumped a year ahead, every later window
/// started there, and none of the nine changes was ever published.
#[tokio::test(flavor = "multi_thread")]
async fn a_future_dated_record_hides_no_later_change() {
    let mut run = start(Setup::default()).await;
    let a = run.round(5, &[]).await;
    run.space().await;
    control(
        &run.base,
        Method::POST,
        &format!("/_sandbox/orders/{}/touch", a[0]),
        json!({"ahead_seconds": 365 * 86_400}),
    )
    .await;
    run.last_change = Some(std::time::Instant::now());
    run.await_published().await;
    // Nine changes after the jump: creations, updates, both.
    let b = run.round(3, &[]).await;
    run.round(0, &[a[1].clone(), a[2].clone(), b[0].clone()])
        .await;
    run.round(2, &[a[3].clone()]).await;
    run.settle(3).await;
    let summary = run.check().await;
    assert_eq!(summary.required, 5 + 1 + 9, "{summary:?}");

    let last = checkpoints(&run.names.state).await;
    let watermark = decoded(last.last().expect("checkpoint"))["watermark"]
        .as_str()
        .expect("watermark")
        .parse::<chrono::DateTime<Utc>>()
        .expect("watermark date");
    assert!(
        watermark < Utc::now() + TimeDelta::minutes(1),
        "the watermark moved into the future: {watermark}"
    );
    let future = run
        .poller
        .metric("event_poller_future_dated_records_total")
        .await;
    assert!(future.is_some_and(|n| n >= 1.0), "future-dated: {future:?}");
    let lag = run
        .poller
        .metric("event_poller_watermark_lag_seconds")
        .await
        .expect("lag gauge");
    assert!(lag >= 0.0, "lag gauge negative: {lag}");
    run.stop().await;
}

// ---------------------------------------------------------------------------
// 3. Bounded state, no poison pills
// ---------------------------------------------------------------------------

/// A bulk import: 20,000 orders share one `modification_date`, read in
/// pages of 1000. Every order is published once and every poll commits;
/// the checkpoint stays far below the broker's message limit (about
/// 214 kB: 20,000 hashed ids).
///
/// Before the fix the checkpoint held 20,000 pairs (about 1.2 MB), its
/// send failed locally, and the same window was aborted for ever.
#[tokio::test(flavor = "multi_thread")]
async fn twenty_thousand_orders_at_one_timestamp_publish_once_and_commit() {
    let mut run = start(Setup {
        page_size: Some(1000),
        ..Setup::default()
    })
    .await;
    run.change(20_000, &[]).await;
    let log = e2e::changes(&run.base).await;
    assert_eq!(
        log[run.job_started..]
            .iter()
            .map(|c| &c.2)
            .collect::<std::collections::HashSet<_>>()
            .len(),
        1,
        "one timestamp for all 20,000"
    );
    e2e::await_events(
        &run.names.events,
        Duration::from_secs(180),
        Some(&run.poller),
        |s| s.len() >= 20_000,
    )
    .await;
    run.settle(2).await;
    let summary = run.check().await;
    assert_eq!(summary.published, 20_000, "{summary:?}");
    assert!(
        run.poller
            .logged("Transaction aborted; the window will be redone.")
            .is_empty(),
        "no poll was aborted"
    );
    let last = checkpoints(&run.names.state).await;
    let size = last.last().map_or(0, |r| r.text.len());
    eprintln!("checkpoint after 20,000 changes at one timestamp: {size} bytes");
    assert!(size < 250_000, "checkpoint of {size} bytes");
    run.stop().await;
}

/// A larger bulk change: 50,000 orders at one timestamp. The dedupe set no
/// longer fits one record and travels in parts written with the
/// checkpoint; a restart reads the parts back, and the windows after it
/// (which read all 50,000 again) publish nothing twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_dedupe_set_in_parts_survives_a_restart() {
    let mut run = start(Setup {
        page_size: Some(1000),
        ..Setup::default()
    })
    .await;
    run.change(50_000, &[]).await;
    e2e::await_events(
        &run.names.events,
        Duration::from_secs(300),
        Some(&run.poller),
        |s| s.len() >= 50_000,
    )
    .await;
    run.settle(1).await;
    let state = e2e::read_committed_records(&run.names.state).await;
    let head = state
        .iter()
        .rev()
        .find(|r| r.key.as_deref() == Some(JOB_KEY))
        .expect("checkpoint");
    let parts = head.value["seenParts"].as_u64().unwrap_or(0);
    assert!(parts >= 2, "the dedupe set travels in parts: {}", head.text);
    let part_keys: std::collections::HashSet<&str> = state
        .iter()
        .filter_map(|r| r.key.as_deref())
        .filter(|k| k.starts_with("seen/shop/orders/"))
        .collect();
    assert!(part_keys.len() as u64 >= parts, "{part_keys:?}");
    run.restart(&[]);
    run.settle(2).await;
    let summary = run.check().await;
    assert_eq!(summary.published, 50_000, "{summary:?}");
    run.stop().await;
}

/// One 2 MB order among small ones: it goes to the dead-letter topic with
/// kind `too_large`, its id as key and its raw record cut to fit; the
/// small orders of the same window are published.
///
/// Before the fix the event's send failed, the transaction aborted, and
/// the window (small orders included) was redone for ever.
#[tokio::test(flavor = "multi_thread")]
async fn a_record_too_large_for_kafka_is_dead_lettered_and_the_rest_published() {
    let run = start(Setup::default()).await;
    let small = control(
        &run.base,
        Method::POST,
        "/_sandbox/orders",
        json!({"count": 3}),
    )
    .await;
    let big = control(
        &run.base,
        Method::POST,
        "/_sandbox/orders",
        json!({"count": 1, "notes_bytes": 2_000_000}),
    )
    .await;
    let big_id = big["ids"][0].to_string();
    let dead = e2e::await_records(&run.names.dlq, PATIENCE, Some(&run.poller), |r| {
        !r.is_empty()
    })
    .await;
    let events = e2e::await_events(&run.names.events, PATIENCE, Some(&run.poller), |s| {
        s.len() >= 3
    })
    .await;
    let ids: Vec<String> = small["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(Value::to_string)
        .collect();
    for id in &ids {
        assert!(
            events.iter().any(|e| e.object_id() == id),
            "order {id} published"
        );
    }
    assert!(events.iter().all(|e| e.object_id() != big_id));
    assert_eq!(dead.len(), 1, "one dead letter");
    let d = &dead[0];
    assert_eq!(d.key.as_deref(), Some(big_id.as_str()));
    let value = &d.text;
    assert!(
        value.len() < 1_000_000,
        "dead letter of {} bytes",
        value.len()
    );
    let v = &d.value;
    assert_eq!(v["kind"], "too_large", "{}", &value[..value.len().min(300)]);
    assert!(v["reason"].as_str().expect("reason").contains("bytes"));
    let raw = v["raw"].as_str().expect("raw cut to a string");
    assert!(raw.starts_with('{') && raw.contains(&format!("\"id\":{big_id}")));
    run.stop().await;
}

// ---------------------------------------------------------------------------
// 4. An unreadable checkpoint
// ---------------------------------------------------------------------------

/// Creates the state topic (compacted, 3 partitions, as the poller would)
/// and writes `value` as the job's checkpoint in the partition the poller
/// will read it from.
async fn plant_checkpoint(names: &Names, value: &[u8]) {
    common::create_topics(&[common::topic(&names.state, 3).set("cleanup.policy", "compact")]).await;
    let producer: FutureProducer = common::client_config().create().expect("producer");
    producer
        .send(
            FutureRecord::to(&names.state)
                .key(JOB_KEY)
                .payload(value)
                .partition(partition_for("shop", 3)),
            Duration::from_secs(10),
        )
        .await
        .expect("checkpoint planted");
}

fn checkpoint_json(from: chrono::DateTime<Utc>) -> Value {
    let mut c = Checkpoint::starting(JobId::new("shop", "orders"), from);
    c.polls = 5;
    c.events = 7;
    serde_json::from_slice(&c.encode()).expect("checkpoint JSON")
}

/// A checkpoint of a newer format (version 99) blocks its job: nothing is
/// polled or published for it, its record is never overwritten with a
/// fresh start, and the log, a metric and `/readyz` (still 200: one job
/// must not take the worker out of service) say so.
///
/// Before the fix the job was treated as new: a fresh checkpoint starting
/// now was committed over the record, losing everything since it.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_checkpoint_blocks_its_job_and_is_never_overwritten() {
    let sb = sandbox::start(e2e::oauth_sandbox()).await.expect("sandbox");
    let base = sb.base_url();
    let names = Names::new();
    let mut planted = checkpoint_json(Utc::now() - TimeDelta::hours(1));
    planted["version"] = json!(99);
    plant_checkpoint(&names, planted.to_string().as_bytes()).await;
    let files = shop(&base);
    let poller = spawn_poller(&names, &files, &[]);
    poller
        .await_log(PATIENCE, |l| {
            l.iter().any(|l| {
                l["message"] == "Checkpoint unreadable; the job is blocked."
                    && l["job"] == "shop/orders"
            })
        })
        .await;
    poller
        .await_metrics(PATIENCE, |m| {
            e2e::metric_sum(m, "event_poller_jobs_blocked") == Some(1.0)
        })
        .await;
    let (status, body) = poller.ops_get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("shop/orders") && body.contains("checkpoint"),
        "{body}"
    );
    // Orders change; the blocked job must not poll them.
    control(&base, Method::POST, "/_sandbox/orders", json!({"count": 2})).await;
    let served_before = e2e::served_total(&base, "GET /crm/rest/v1/orders").await;
    tokio::time::sleep(Duration::from_secs(3)).await; // three intervals
    assert_eq!(
        e2e::served_total(&base, "GET /crm/rest/v1/orders").await,
        served_before,
        "a blocked job polls nothing"
    );
    let state = checkpoints(&names.state).await;
    assert_eq!(state.len(), 1, "only the planted record: {state:?}");
    assert_eq!(decoded(&state[0])["version"], 99);
    assert!(e2e::events(&names.events).await.is_empty());
    drop(poller);
    sb.stop().await.expect("sandbox stop");
}

/// A checkpoint with a field this build does not know (written by a newer
/// release of the same format) is read, and the job continues from it.
///
/// Before the fix the field made the checkpoint unreadable and the job
/// started over from now (counters back at zero, `startedFrom` moved).
#[tokio::test(flavor = "multi_thread")]
async fn unknown_checkpoint_fields_are_ignored() {
    let sb = sandbox::start(e2e::oauth_sandbox()).await.expect("sandbox");
    let base = sb.base_url();
    let names = Names::new();
    let from = Utc::now() - TimeDelta::minutes(30);
    let mut planted = checkpoint_json(from);
    planted["addedByANewerRelease"] = json!({"x": 1});
    plant_checkpoint(&names, planted.to_string().as_bytes()).await;
    let files = shop(&base);
    let poller = spawn_poller(&names, &files, &[]);
    let state = e2e::await_records(&names.state, PATIENCE, Some(&poller), |r| {
        r.iter()
            .filter(|r| r.key.as_deref() == Some(JOB_KEY))
            .count()
            >= 2
    })
    .await;
    let next: Vec<Value> = state
        .iter()
        .filter(|r| r.key.as_deref() == Some(JOB_KEY))
        .map(decoded)
        .collect();
    assert_eq!(
        next[1]["startedFrom"], planted["startedFrom"],
        "{:?}",
        next[1]
    );
    assert_eq!(next[1]["polls"], 6, "continued from the planted checkpoint");
    drop(poller);
    sb.stop().await.expect("sandbox stop");
}

// ---------------------------------------------------------------------------
// 2 and 9. The state topic's layout and policy
// ---------------------------------------------------------------------------

/// Partitions were added to the state topic after checkpoints were written
/// under 3: jobs would hash to other partitions and start over there. The
/// worker refuses to own partitions and exits non-zero, saying what
/// happened and what to do, and writes nothing.
///
/// Before the fix it ran on, and jobs whose instance now hashes elsewhere
/// restarted from now.
#[tokio::test(flavor = "multi_thread")]
async fn a_changed_state_topic_partition_count_is_refused() {
    let sb = sandbox::start(e2e::oauth_sandbox()).await.expect("sandbox");
    let base = sb.base_url();
    let names = Names::new();
    let files = shop(&base);
    let mut poller = spawn_poller(&names, &files, &[]);
    e2e::await_checkpoint(&names, &poller, "shop", "orders").await;
    assert_eq!(poller.terminate(), Some(0));
    let before = e2e::read_committed_records(&names.state).await.len();

    let admin = common::admin();
    let grown = admin
        .create_partitions(
            &[NewPartitions::new(&names.state, 5)],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create partitions");
    assert!(grown.iter().all(Result::is_ok), "{grown:?}");

    let mut poller = spawn_poller(&names, &files, &[]);
    let code = poller.await_exit(PATIENCE).await;
    let log = poller.log_text();
    assert_ne!(code, Some(0), "{log}");
    assert!(
        log.contains(&names.state) && log.contains("3 partitions") && log.contains('5'),
        "the error names the topic and both counts: {log}"
    );
    assert!(
        log.contains("README \"Scaling\""),
        "and where to read what to do: {log}"
    );
    assert_eq!(
        e2e::read_committed_records(&names.state).await.len(),
        before,
        "nothing written under the new count"
    );
    sb.stop().await.expect("sandbox stop");
}

/// A state topic with `cleanup.policy=delete` would drop checkpoints and
/// tokens after its retention: the worker refuses it at start-up.
///
/// Before the fix it ran on such a topic without a word.
#[tokio::test(flavor = "multi_thread")]
async fn a_delete_policy_state_topic_is_refused() {
    let names = Names::new();
    common::create_topics(&[common::topic(&names.state, 3).set("cleanup.policy", "delete")]).await;
    let files = Instances::new(&[]);
    let mut poller = spawn_poller(&names, &files, &[]);
    let code = poller.await_exit(PATIENCE).await;
    let log = poller.log_text();
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains(&names.state) && log.contains("cleanup.policy") && log.contains("compact"),
        "{log}"
    );
}

/// `STATE_ENCRYPTION_KEY` was changed: the stored tokens cannot be
/// decrypted. The poller says so and falls back to the instance's
/// authorization code (a new one, as the operator would give it), instead
/// of failing every poll.
///
/// Before the fix every poll failed on the undecryptable token set.
#[tokio::test(flavor = "multi_thread")]
async fn a_changed_encryption_key_falls_back_to_the_authorization_code() {
    let mut run = start(Setup::default()).await;
    run.round(2, &[]).await;
    run.authorize_again().await;
    let other_key = "b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXktMDA=";
    run.restart(&[("STATE_ENCRYPTION_KEY", other_key)]);
    run.round(2, &[]).await;
    assert!(
        !run
            .poller
            .logged(
                "Stored OAuth2 tokens cannot be decrypted with STATE_ENCRYPTION_KEY (was the key changed?); using the instance's authorization code instead."
            )
            .is_empty(),
        "the key change is named"
    );
    run.settle(1).await;
    run.check().await;
    run.stop().await;
}

// ---------------------------------------------------------------------------
// 6. Clock edges
// ---------------------------------------------------------------------------

/// The provider's clock runs 30 s behind ours and the overlap is 5 s: the
/// changes made right after the job started are dated 30 s before its
/// start on our clock. All are published.
///
/// Before the fix the first window started 5 s before the job's start on
/// our clock and those changes fell below it, lost for good.
#[tokio::test(flavor = "multi_thread")]
async fn a_provider_behind_by_more_than_the_overlap_loses_nothing() {
    let mut run = start(Setup {
        clock_offset: -30,
        env: vec![("SAFETY_OVERLAP_SECONDS", "5".into())],
        ..Setup::default()
    })
    .await;
    run.three_rounds().await;
    run.settle(2).await;
    run.check().await;
    run.stop().await;
}

/// Changes published with a 5 s overlap; the poller is restarted with a
/// 600 s overlap, whose windows reach far behind what the dedupe set still
/// holds. Nothing is published again.
///
/// Before the fix every change of the last ten minutes was published a
/// second time.
#[tokio::test(flavor = "multi_thread")]
async fn raising_the_overlap_republishes_nothing() {
    let mut run = start(Setup {
        env: vec![("SAFETY_OVERLAP_SECONDS", "5".into())],
        ..Setup::default()
    })
    .await;
    let a = run.round(4, &[]).await;
    // Far enough apart that the first round's pairs are pruned.
    tokio::time::sleep(Duration::from_secs(6)).await;
    run.round(2, &a[..2]).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    run.round(1, &[]).await;
    run.restart(&[("SAFETY_OVERLAP_SECONDS", "600")]);
    run.settle(3).await;
    run.check().await;
    run.stop().await;
}

/// The job's first page is throttled for several seconds; orders created
/// meanwhile, right after the job started, are published. The skew to the
/// provider's clock is measured on the request that was answered, not from
/// the poll's start.
///
/// Before the fix the wait counted as clock skew, the job's start on the
/// provider's clock moved seconds later, and those orders were dropped as
/// older than the job.
#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_first_page_does_not_move_the_job_start() {
    let mut run = start(Setup {
        faults: Some(json!({"throttle_rate": 1.0, "retry_after": "seconds"})),
        ..Setup::default()
    })
    .await;
    run.change(3, &[]).await;
    // Let the throttle last a few retries after the orders were created.
    run.poller
        .await_log(PATIENCE, |l| {
            l.iter()
                .filter(|l| l["message"] == "Throttled (HTTP 429); waiting.")
                .count()
                >= 5
        })
        .await;
    run.clear_faults().await;
    run.await_published().await;
    run.settle(2).await;
    run.check().await;
    run.stop().await;
}

// ---------------------------------------------------------------------------
// 7. Re-authorization needed
// ---------------------------------------------------------------------------

/// The provider voids every grant (the app was disconnected): the instance
/// cannot refresh and its code was used long ago. It backs off (a handful
/// of token requests, not one a second), is counted by
/// `event_poller_instances_needing_authorization`, named in `/readyz`
/// (still 200) and logged with what to do. A new code in the instance file
/// is picked up at the next start and the instance recovers.
///
/// Before the fix there was no metric and nothing in `/readyz`.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_instance_backs_off_is_reported_and_recovers_with_a_new_code() {
    let mut run = start(Setup {
        sandbox: Some(sandbox::SandboxConfig {
            access_token_ttl_seconds: 2,
            ..e2e::oauth_sandbox()
        }),
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
    let (status, body) = run.poller.ops_get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("shop") && body.contains("authorization"),
        "{body}"
    );
    let told = run
        .poller
        .logged("Instance needs re-authorization; backing off.");
    assert!(!told.is_empty(), "logged");
    assert!(
        told[0]["action"]
            .as_str()
            .is_some_and(|a| a.contains("providerData.code")),
        "{:?}",
        told[0]
    );
    let tokens = |s: &Value| e2e::requests_to(s, |e| e == "POST /token");
    let before = tokens(&e2e::stats(&run.base).await);
    tokio::time::sleep(Duration::from_secs(10)).await; // ten intervals
    let after = tokens(&e2e::stats(&run.base).await);
    assert!(
        after - before <= 1,
        "{} token requests in 10 s while stranded",
        after - before
    );

    // The operator authorizes again: a new code in the instance file.
    run.authorize_again().await;
    run.restart(&[]);
    run.round(2, &[]).await;
    run.poller
        .await_metrics(PATIENCE, |m| {
            e2e::metric_sum(m, "event_poller_instances_needing_authorization")
                .is_none_or(|n| n == 0.0)
        })
        .await;
    run.settle(1).await;
    run.check().await;
    run.stop().await;
}

// ---------------------------------------------------------------------------
// 5. Paging that cannot skip
// ---------------------------------------------------------------------------

/// Six orders share one date, read two a page in a backfill with a 5 s
/// overlap. Between page 1 and page 2 the group's first order changes:
/// every later order of the group moves one place forward. All six (and
/// the change) are published.
///
/// Before the fix page 2 was asked for at offset 2 of the shrunken group,
/// order 3 was never served, and since the window moved on past the
/// overlap it was lost for good.
#[tokio::test(flavor = "multi_thread")]
async fn a_change_inside_an_equal_date_group_between_pages_skips_nothing() {
    let sb = sandbox::start(e2e::oauth_sandbox()).await.expect("sandbox");
    let base = sb.base_url();
    control(
        &base,
        Method::PUT,
        "/_sandbox/clock",
        json!({"offset_seconds": -60}),
    )
    .await;
    let created = control(&base, Method::POST, "/_sandbox/orders", json!({"count": 6})).await;
    control(
        &base,
        Method::PUT,
        "/_sandbox/clock",
        json!({"offset_seconds": 0}),
    )
    .await;
    let first = created["ids"][0].to_string();
    let from = (Utc::now() - TimeDelta::hours(2)).to_rfc3339();
    let mut instance = e2e::instance(
        "shop",
        &format!("{base}/crm/rest"),
        1,
        json!({ "event.poller.backfill.from": from }),
    );
    instance["configuration"]["event.poller.configuration"]["orders"]["pageSize"] = json!(2);
    control(
        &base,
        Method::PUT,
        "/_sandbox/faults",
        json!({"latency_ms": 2000}),
    )
    .await;
    let names = Names::new();
    let files = Instances::new(&[("shop.json", instance.to_string())]);
    let poller = spawn_poller(&names, &files, &[("SAFETY_OVERLAP_SECONDS", "5")]);
    poller
        .await_log(PATIENCE, |l| {
            l.iter()
                .any(|l| l["message"] == "Page fetched." && l["page"] == 1)
        })
        .await;
    control(
        &base,
        Method::POST,
        &format!("/_sandbox/orders/{first}/touch"),
        json!({}),
    )
    .await;
    control(&base, Method::DELETE, "/_sandbox/faults", json!({})).await;
    poller
        .await_log(PATIENCE, |l| {
            l.iter()
                .filter(|l| l["message"] == "Poll committed.")
                .count()
                >= 4
        })
        .await;
    let seen = e2e::events(&names.events).await;
    let log = e2e::changes(&base).await;
    let summary = e2e::assert_exactly_once(&seen, &log, 0, 0, Duration::from_secs(1));
    assert_eq!(summary.required, 7, "{summary:?}");
    drop(poller);
    sb.stop().await.expect("sandbox stop");
}
