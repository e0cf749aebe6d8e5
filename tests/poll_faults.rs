//! The poller end to end under the provider's faults: throttling (both
//! `Retry-After` forms, and Keap's quota headers alone), server errors,
//! latency, malformed and truncated pages, equal modification dates across
//! page boundaries, unsorted pages and a provider clock off by ±5 minutes.
//!
//! Every test runs the real `event-poller run` binary against an in-process
//! sandbox and the real broker, changes orders in rounds while the fault is
//! active, and ends with the same check ([`e2e::assert_exactly_once`]) on
//! what a `read_committed` reader sees.
//!
//! Rounds: each round's changes are awaited in Kafka before the next round,
//! and two rounds are at least one poll interval plus a second apart (see
//! [`Run::space`]), so every change is observable and must be published:
//! the check finds no change that polling could legitimately miss.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use common::e2e::{self, Instances, Names, control, spawn_poller};
use common::rounds::{
    COMMITTED, FETCH_FAILED, INTERVAL_SECS, ORDERS, PATIENCE, RETRYING, Run, Setup, THROTTLED,
    WINDOW_FAILED, interval, logged_with, start, text,
};
use keap_sandbox::{self as sandbox, SandboxConfig};
use reqwest::Method;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// 429
// ---------------------------------------------------------------------------

/// Throttles half the requests with `Retry-After` in `form` (the sandbox
/// asks for at least 1 s) through three rounds of changes, then every
/// request through a fourth, and shows from the sandbox's side that each
/// 429 was followed by the wait asked for:
///
/// - while every request is throttled, [`BURST`] consecutive 429s are
///   served at least `BURST - 1` seconds apart (a poller retrying at once
///   would collect them within milliseconds);
/// - over the whole run, one job polls sequentially, so at most
///   `elapsed / 1 s + 1` throttled responses fit in it.
async fn throttled_with_retry_after(form: &str, max_wait_ms: u64, clock_offset: i64) {
    let mut run = start(Setup {
        clock_offset,
        ..Setup::default()
    })
    .await;
    let on = Instant::now();
    run.faults(json!({"throttle_rate": 0.5, "retry_after": form}))
        .await;
    run.three_rounds().await;

    let a = run.change(2, &[]).await;
    let before = e2e::served(&run.base, ORDERS, 429).await;
    run.faults(json!({"throttle_rate": 1.0})).await;
    let first = await_served(&run, 429, before + 1).await;
    let last = await_served(&run, 429, before + BURST).await;
    run.clear_faults().await;
    let spread = last - first;
    let asked = Duration::from_secs(BURST - 1);
    assert!(
        spread + STATS_LAG >= asked,
        "{BURST} throttled responses in a row within {spread:?}: the poller did not wait 1 s after each"
    );
    run.await_published().await;
    run.round(0, &a).await;
    run.settle(2).await;

    let n429 = e2e::served(&run.base, ORDERS, 429).await;
    let elapsed = on.elapsed();
    assert!(
        n429 as f64 <= elapsed.as_secs_f64() / 1.0 + 1.0,
        "{n429} throttled responses in {elapsed:?}: the poller did not wait 1 s after each"
    );
    // The poller's own account: every 429 but those that ended a window
    // (after `max_throttle_waits`) was waited out, for what the header said.
    let waits = run.poller.logged(THROTTLED);
    let gave_up = logged_with(&run.poller, WINDOW_FAILED, "error", "still throttled").len();
    assert_eq!(waits.len() + gave_up, n429 as usize, "every 429 handled");
    for w in &waits {
        let ms = w["wait_ms"].as_u64().expect("wait_ms");
        assert_eq!(text(w, "source"), "retry-after", "{w}");
        assert!(
            (1000..=max_wait_ms).contains(&ms),
            "asked 1 s, waited {ms} ms: {w}"
        );
    }
    let summary = run.check().await;
    eprintln!("{form}: {n429} × 429 in {elapsed:?}, {BURST} in a row over {spread:?}; {summary:?}");
    run.stop().await;
}

/// Consecutive 429s timed in the throttle tests.
const BURST: u64 = 4;
/// How late [`await_served`] may notice a response: its polling step plus
/// the time a request takes.
const STATS_LAG: Duration = Duration::from_millis(300);

/// Waits until the sandbox has answered `status` at least `n` times on the
/// orders endpoint; returns when that was noticed.
async fn await_served(run: &Run, status: u16, n: u64) -> Instant {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if e2e::served(&run.base, ORDERS, status).await >= n {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "fewer than {n} responses with {status} within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn throttled_with_retry_after_seconds_waits_and_loses_nothing() {
    throttled_with_retry_after("seconds", 1000, 0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn throttled_with_retry_after_http_date_waits_and_loses_nothing() {
    // The date is whole seconds, rounded up by the sandbox, and must be read
    // against the response's `Date` (the provider's clock, here 5 minutes
    // behind ours; against our clock it would mean "now"): 1 to 2 s.
    throttled_with_retry_after("http-date", 2000, -300).await;
}

/// A 429 with no `Retry-After`, only Keap's quota headers (product throttle
/// at 0 per minute): the poller waits for the next minute boundary of the
/// provider's clock, which runs [`QUOTA_SKEW`] seconds ahead of ours so
/// that its minute boundaries are not ours. Every request is throttled
/// until the first 429 is seen, then the fault is lifted: the sandbox sees
/// no request at all until that boundary, after which the changes arrive.
#[tokio::test(flavor = "multi_thread")]
async fn throttled_with_only_quota_headers_waits_for_the_next_minute() {
    let mut run = start(Setup {
        clock_offset: QUOTA_SKEW,
        ..Setup::default()
    })
    .await;
    let a = run.round(3, &[]).await;

    let provider_now = || Utc::now() + TimeDelta::seconds(QUOTA_SKEW);
    let into_minute = |t: DateTime<Utc>| t.timestamp().rem_euclid(60);
    // A throttle in the last seconds of a provider minute would wait too
    // briefly to tell from an immediate retry: start it in the next minute
    // instead. (A sleep by design: the scenario needs that placement.)
    if into_minute(provider_now()) >= 48 {
        let left = 61 - into_minute(provider_now());
        tokio::time::sleep(Duration::from_secs(left as u64)).await;
    }
    run.faults(json!({"throttle_rate": 1.0, "retry_after": "none"}))
        .await;
    run.change(2, &a[..1]).await;
    await_served(&run, 429, 1).await;
    let throttled_at = provider_now();
    run.clear_faults().await;
    let requests = e2e::served_total(&run.base, ORDERS).await;

    // The first (and only) wait: to the provider's next minute.
    run.poller
        .await_log(Duration::from_secs(10), |l| {
            l.iter().any(|l| l["message"] == THROTTLED)
        })
        .await;
    let wait = run.poller.logged(THROTTLED).remove(0);
    assert_eq!(text(&wait, "source"), "throttle-window", "{wait}");
    // The provider's time when the poller decided to wait (its log line),
    // not when this test noticed the 429, which can be seconds later on a
    // loaded machine.
    let decided_at = DateTime::parse_from_rfc3339(text(&wait, "timestamp"))
        .map(|t| t.to_utc() + TimeDelta::seconds(QUOTA_SKEW))
        .unwrap_or(throttled_at);
    let to_boundary = TimeDelta::seconds(60 - into_minute(decided_at))
        - TimeDelta::milliseconds(i64::from(decided_at.timestamp_subsec_millis()));
    let boundary_ms = to_boundary.num_milliseconds();
    let wait_ms = wait["wait_ms"].as_i64().expect("wait_ms");
    assert!(
        (boundary_ms - 1500..=boundary_ms + 1500).contains(&wait_ms),
        "waited {wait_ms} ms, the provider's next minute was {boundary_ms} ms away: {wait}"
    );
    // The sandbox's side: silence until (just before) that boundary.
    let boundary = decided_at + to_boundary;
    while provider_now() + TimeDelta::seconds(1) < boundary {
        assert_eq!(
            e2e::served_total(&run.base, ORDERS).await,
            requests,
            "a request before the provider's minute ended"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    run.await_published().await;
    assert_eq!(e2e::served(&run.base, ORDERS, 429).await, 1);
    run.settle(2).await;
    run.check().await;
    run.stop().await;
}

/// Provider clock offset in the quota-header test, in seconds.
const QUOTA_SKEW: i64 = 20;

// ---------------------------------------------------------------------------
// 5xx, latency, malformed and truncated pages
// ---------------------------------------------------------------------------

/// Half the requests answer `status`; each is retried (the log says so for
/// every one but those that exhausted a request's attempts).
async fn server_errors(status: u16) {
    let mut run = start(Setup::default()).await;
    run.faults(json!({"error_rate": 0.5, "error_status": status}))
        .await;
    run.three_rounds().await;
    run.settle(3).await;
    run.clear_faults().await;
    run.settle(1).await;

    let served = e2e::served(&run.base, ORDERS, status).await;
    assert!(served >= 3, "the fault was real: {served} × {status}");
    let needle = format!("HTTP {status}");
    let retried = logged_with(&run.poller, RETRYING, "error", &needle).len();
    let exhausted = logged_with(&run.poller, WINDOW_FAILED, "error", &needle).len();
    assert_eq!(
        retried + exhausted,
        served as usize,
        "every {status} handled"
    );
    run.check().await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn service_unavailable_503_is_retried_and_loses_nothing() {
    server_errors(503).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn internal_server_error_500_is_retried_and_loses_nothing() {
    server_errors(500).await;
}

/// Every request takes 1.5 s, longer than the poll interval: polls run
/// back to back (never two at once: at most `elapsed / 1.5 s + 1` requests
/// reach the sandbox) and nothing is lost or doubled.
#[tokio::test(flavor = "multi_thread")]
async fn slow_responses_lose_nothing() {
    let mut run = start(Setup::default()).await;
    let before = e2e::served_total(&run.base, ORDERS).await;
    let on = Instant::now();
    run.faults(json!({"latency_ms": 1500})).await;
    run.three_rounds().await;
    run.settle(2).await;
    let requests = e2e::served_total(&run.base, ORDERS).await - before;
    let elapsed = on.elapsed();
    run.clear_faults().await;
    assert!(requests >= 3, "{requests} requests");
    assert!(
        requests as f64 <= elapsed.as_secs_f64() / 1.5 + 1.0,
        "{requests} requests of 1.5 s each in {elapsed:?}"
    );
    run.check().await;
    run.stop().await;
}

/// Half the pages are cut short with a correct `Content-Length` (a complete
/// response carrying broken JSON): the poll fails as a whole and is redone.
#[tokio::test(flavor = "multi_thread")]
async fn malformed_pages_fail_the_poll_and_lose_nothing() {
    let mut run = start(Setup::default()).await;
    run.faults(json!({"malformed_rate": 0.5})).await;
    run.three_rounds().await;
    run.settle(3).await;
    run.clear_faults().await;
    let failed = logged_with(&run.poller, FETCH_FAILED, "error", "malformed JSON page");
    assert!(!failed.is_empty(), "the fault was real: no malformed page");
    run.check().await;
    run.stop().await;
}

/// Half the bodies stop midway and the connection drops: the request is
/// retried.
#[tokio::test(flavor = "multi_thread")]
async fn truncated_bodies_are_retried_and_lose_nothing() {
    let mut run = start(Setup::default()).await;
    run.faults(json!({"truncate_rate": 0.5})).await;
    run.three_rounds().await;
    run.settle(3).await;
    run.clear_faults().await;
    let cut = logged_with(&run.poller, RETRYING, "error", "body cut off");
    assert!(!cut.is_empty(), "the fault was real: no truncated body");
    run.check().await;
    run.stop().await;
}

// ---------------------------------------------------------------------------
// Dates: equal across page boundaries, unsorted pages, provider clock skew
// ---------------------------------------------------------------------------

/// With `shared_timestamps`, every write gets one modification date; with
/// `pageSize` 2, the orders sharing it span many pages. A second batch at
/// the same date (the watermark's own second) must still be published,
/// and so must later updates at new dates.
#[tokio::test(flavor = "multi_thread")]
async fn equal_modification_dates_across_page_boundaries() {
    let mut run = start(Setup {
        page_size: Some(2),
        ..Setup::default()
    })
    .await;
    run.faults(json!({"shared_timestamps": true})).await;
    let a = run.round(9, &[]).await;
    let b = run.round(6, &[]).await;
    run.faults(json!({"shared_timestamps": false})).await;
    run.round(0, &[a[0].clone(), a[8].clone(), b[5].clone()])
        .await;
    run.settle(2).await;

    let log = e2e::changes(&run.base).await;
    let shared: HashSet<&str> = log[run.job_started..run.job_started + 15]
        .iter()
        .map(|c| c.2.as_str())
        .collect();
    assert_eq!(shared.len(), 1, "the fault was real: 15 orders, one date");
    let pages = run
        .poller
        .logged(COMMITTED)
        .iter()
        .filter_map(|l| l["pages"].as_u64())
        .max();
    assert!(pages >= Some(8), "windows spanned many pages: {pages:?}");
    run.check().await;
    run.stop().await;
}

/// The sandbox shuffles every page (4 orders a page, so windows have
/// several shuffled pages).
#[tokio::test(flavor = "multi_thread")]
async fn unsorted_pages_lose_nothing() {
    let mut run = start(Setup {
        page_size: Some(4),
        ..Setup::default()
    })
    .await;
    let on = run.faults(json!({"unsorted": true})).await;
    assert_eq!(on["unsorted"], true);
    run.three_rounds().await;
    run.round(3, &[]).await;
    run.settle(3).await;
    assert_page_unsorted(&run).await;
    run.check().await;
    run.stop().await;
}

/// The fault was real: a page fetched now, as the poller fetches it, is not
/// in modification-date order.
async fn assert_page_unsorted(run: &Run) {
    let code = control(&run.base, Method::POST, "/_sandbox/codes", json!({})).await;
    let form = format!(
        "grant_type=authorization_code&code={}&client_id=test-client&client_secret=test-secret&redirect_uri=https%3A%2F%2Fexample.test%2Fcallback",
        code["code"].as_str().expect("code")
    );
    let client = reqwest::Client::new();
    let token: Value = client
        .post(format!("{}/token", run.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token json");
    let page: Value = client
        .get(format!("{}/crm/rest/v1/orders?limit=1000", run.base))
        .bearer_auth(token["access_token"].as_str().expect("access_token"))
        .send()
        .await
        .expect("page")
        .json()
        .await
        .expect("page json");
    let keys: Vec<(String, u64)> = page["orders"]
        .as_array()
        .expect("orders")
        .iter()
        .map(|o| {
            let date = o["modification_date"].as_str().unwrap_or_default();
            (date.to_owned(), o["id"].as_u64().unwrap_or_default())
        })
        .collect();
    assert!(keys.len() > 1);
    assert!(!keys.is_sorted(), "page in order: {keys:?}");
}

/// The provider's clock is off by `offset` seconds from the start: its
/// dates (and its `Date` header) are skewed. Orders dated a minute before
/// the job on its clock are not events (ahead: they are dated after the
/// job's start on our clock); changes after the job's start all are
/// (behind: they are dated before the job's start on our clock).
async fn clock_skew(offset: i64) {
    let mut run = start(Setup {
        clock_offset: offset,
        ..Setup::default()
    })
    .await;
    run.three_rounds().await;
    run.settle(3).await;
    run.check().await;

    // The fault was real: the first event (a change of the job, as checked)
    // is dated about `offset` from our clock.
    let seen = e2e::events(&run.names.events).await;
    let first = DateTime::parse_from_str(seen[0].modification_date(), "%Y-%m-%dT%H:%M:%S%.f%z")
        .expect("date")
        .to_utc();
    let skew = (first - Utc::now()).num_seconds();
    assert!(
        (offset - 60..=offset + 1).contains(&skew),
        "event dated {skew} s from now with a clock offset of {offset} s"
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_clock_five_minutes_ahead() {
    clock_skew(300).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_clock_five_minutes_behind() {
    clock_skew(-300).await;
}

// ---------------------------------------------------------------------------
// Former failures: each of these failed before its fix
// ---------------------------------------------------------------------------

/// More orders share one modification date than one window may fetch
/// (`pageSize` 2 × 100 pages = 200 records). The window comes back
/// truncated; the job must go on past the first 200. It used to drop
/// `resume_url` and re-poll from `watermark - overlap`, which returned the
/// same 200 records (all duplicates) forever, at full speed.
#[tokio::test(flavor = "multi_thread")]
async fn equal_modification_dates_beyond_one_windows_page_limit() {
    let mut run = start(Setup {
        page_size: Some(2),
        ..Setup::default()
    })
    .await;
    run.faults(json!({"shared_timestamps": true})).await;
    run.round(250, &[]).await;
    run.settle(2).await;
    run.check().await;
    run.stop().await;
}

/// A backfill window covering 800 orders of history (100 a page). While the
/// poller is between page 1 and page 2, order 1 (the oldest, on page 1) is
/// updated: it moves to the end of the sort, every later order shifts one
/// place left, and order 101, first of page 2 until then, now sits on the
/// page already read. With offset paging order 101 was never published
/// (the window's watermark jumped to order 1's new date, the next window
/// started 10 minutes before that, and order 101 is dated about 20 minutes
/// earlier); keyset paging asks for page 2 by date, which cannot skip it.
#[tokio::test(flavor = "multi_thread")]
async fn backfill_window_with_a_change_between_pages() {
    let sb = sandbox::start(SandboxConfig {
        orders: 800,
        ..e2e::oauth_sandbox()
    })
    .await
    .expect("sandbox");
    let base = sb.base_url();
    let from = (Utc::now() - TimeDelta::hours(2)).to_rfc3339();
    let mut instance = e2e::instance(
        "shop",
        &format!("{base}/crm/rest"),
        INTERVAL_SECS,
        json!({ "event.poller.backfill.from": from }),
    );
    instance["configuration"]["event.poller.configuration"]["orders"]["pageSize"] = json!(100);
    // Two seconds per page: time to change data between two pages.
    control(
        &base,
        Method::PUT,
        "/_sandbox/faults",
        json!({"latency_ms": 2000}),
    )
    .await;
    let names = Names::new();
    let files = Instances::new(&[("shop.json", instance.to_string())]);
    let poller = spawn_poller(&names, &files, &[]);
    poller
        .await_log(PATIENCE, |l| {
            l.iter()
                .any(|l| l["message"] == "Page fetched." && l["page"] == 1)
        })
        .await;
    control(&base, Method::POST, "/_sandbox/orders/1/touch", json!({})).await;
    control(&base, Method::DELETE, "/_sandbox/faults", json!({})).await;
    poller
        .await_log(PATIENCE, |l| {
            l.iter().filter(|l| l["message"] == COMMITTED).count() >= 5
        })
        .await;
    let seen = e2e::events(&names.events).await;
    let log = e2e::changes(&base).await;
    e2e::assert_exactly_once(&seen, &log, 0, 0, interval());
    drop(poller);
    sb.stop().await.expect("sandbox stop");
}

// ---------------------------------------------------------------------------
// One tenant throttled, another not
// ---------------------------------------------------------------------------

/// Poll interval of both tenants below.
const TENANT_INTERVAL: Duration = Duration::from_secs(2);

/// Two instances on one worker with a single poll permit
/// (`MAX_CONCURRENT_POLLS=1`): every request of the first is answered 429
/// (`Retry-After: 1`), the second's shop works. The throttled job waits
/// out its 429s without holding the permit, so each change of the other
/// shop is published within two poll intervals.
#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_tenant_does_not_delay_another_on_the_same_worker() {
    let throttled = sandbox::start(e2e::oauth_sandbox()).await.expect("sandbox");
    let calm = sandbox::start(e2e::oauth_sandbox()).await.expect("sandbox");
    let names = Names::new();
    let files = Instances::new(&[
        (
            "throttled.json",
            e2e::instance(
                "throttled",
                &format!("{}/crm/rest", throttled.base_url()),
                TENANT_INTERVAL.as_secs(),
                json!({}),
            )
            .to_string(),
        ),
        (
            "calm.json",
            e2e::instance(
                "calm",
                &format!("{}/crm/rest", calm.base_url()),
                TENANT_INTERVAL.as_secs(),
                json!({}),
            )
            .to_string(),
        ),
    ]);
    control(
        &throttled.base_url(),
        Method::PUT,
        "/_sandbox/faults",
        json!({"throttle_rate": 1.0, "retry_after": "seconds"}),
    )
    .await;
    let poller = spawn_poller(&names, &files, &[("MAX_CONCURRENT_POLLS", "1")]);
    e2e::await_checkpoint(&names, &poller, "calm", "orders").await;
    // The throttled job is inside its waits.
    poller
        .await_log(PATIENCE, |l| {
            l.iter().filter(|x| x["message"] == THROTTLED).count() >= 3
        })
        .await;
    let mut worst = Duration::ZERO;
    for round in 0..5 {
        let v = control(
            &calm.base_url(),
            Method::POST,
            "/_sandbox/orders",
            json!({"count": 1}),
        )
        .await;
        let id = v["ids"][0].to_string();
        let made = Instant::now();
        e2e::await_events(&names.events, PATIENCE, Some(&poller), |s| {
            s.iter().any(|e| e.object_id() == id)
        })
        .await;
        let took = made.elapsed();
        worst = worst.max(took);
        assert!(
            took <= TENANT_INTERVAL * 2 + Duration::from_millis(500),
            "round {round}: the calm shop's change took {took:?} while the other tenant was throttled"
        );
    }
    let throttles = e2e::served(&throttled.base_url(), ORDERS, 429).await;
    eprintln!("calm tenant's worst latency {worst:?} while the other got {throttles} 429s");
    assert!(
        throttles >= 5,
        "the other tenant was throttled ({throttles} 429s)"
    );
    throttled.stop().await.expect("sandbox stop");
    calm.stop().await.expect("sandbox stop");
}
