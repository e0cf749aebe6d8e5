//! The ops endpoint of the real `event-poller run` binary: `/healthz`
//! answers, `/readyz` turns 200 once the worker owns its state partitions,
//! and `/metrics` counts the job's committed polls.

mod common;

use std::time::{Duration, Instant};

use common::e2e::{self, Instances, Names, spawn_poller};
use keap_sandbox as sandbox;
use serde_json::json;

/// A port that was free a moment ago (bound to 0, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The value of the sample `series` (name and labels exactly as rendered).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_and_metrics_follow_the_worker() {
    let sb = sandbox::start(e2e::oauth_sandbox()).await.expect("sandbox");
    let base = sb.base_url();
    let names = Names::new();
    let files = Instances::new(&[(
        "shop.json",
        e2e::instance("shop", &format!("{base}/crm/rest"), 1, json!({})).to_string(),
    )]);
    let address = format!("127.0.0.1:{}", free_port());
    let mut poller = spawn_poller(&names, &files, &[("OPS_LISTEN", &address)]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let url = |path: &str| format!("http://{address}{path}");

    // Bounded wait for readiness: the worker joins its group, fences and
    // restores every state partition it owns.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut healthy = false;
    loop {
        assert!(poller.is_running(), "poller exited:\n{}", poller.log_text());
        if let Ok(r) = client.get(url("/healthz")).send().await {
            healthy |= r.status() == reqwest::StatusCode::OK;
        }
        if let Ok(r) = client.get(url("/readyz")).send().await
            && r.status() == reqwest::StatusCode::OK
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never answered 200; log:\n{}",
            poller.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(healthy, "/healthz did not answer 200");

    // Bounded wait for the job's first committed poll in /metrics.
    let committed = r#"event_poller_polls_total{job="shop/orders",outcome="committed"}"#;
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let r = client.get(url("/metrics")).send().await.expect("/metrics");
        assert_eq!(r.status(), reqwest::StatusCode::OK);
        assert_eq!(
            r.headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        let text = r.text().await.expect("/metrics body");
        if sample(&text, committed).is_some_and(|n| n >= 1.0) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no committed poll in /metrics:\n{text}\nlog:\n{}",
            poller.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let at_least_one = |series: &str| {
        assert!(
            sample(&text, series).is_some_and(|n| n >= 1.0),
            "{series} < 1 in\n{text}"
        );
    };
    at_least_one(r#"event_poller_http_responses_total{job="shop/orders",status="200"}"#);
    at_least_one(r#"event_poller_poll_duration_seconds_count{job="shop/orders"}"#);
    at_least_one(r#"event_poller_transactions_total{result="committed"}"#);
    at_least_one("event_poller_owned_partitions");
    assert_eq!(sample(&text, "event_poller_ready"), Some(1.0), "{text}");
    // Every family the README documents is served, with its type; the
    // durations are histograms with buckets (their p99s are alerted on).
    for (family, kind) in documented_families() {
        assert!(
            text.lines().any(|l| l == format!("# TYPE {family} {kind}")),
            "{family} ({kind}) missing from /metrics:\n{text}"
        );
    }
    for histogram in [
        "event_poller_poll_duration_seconds",
        "event_poller_commit_duration_seconds",
        "event_poller_schedule_lateness_seconds",
    ] {
        let bucket = format!("{histogram}_bucket{{");
        assert!(
            text.lines()
                .any(|l| l.starts_with(&bucket) && l.contains(r#"le="+Inf""#)),
            "{histogram} has no buckets:\n{text}"
        );
    }
    for secret in ["test-secret", "test-code", e2e::TEST_KEY] {
        assert!(!text.contains(secret), "a secret in /metrics:\n{text}");
    }

    // The log names the bound address.
    assert!(
        poller.log_lines().iter().any(|l| {
            l["message"] == "Ops endpoint listening." && l["address"] == address.as_str()
        }),
        "no 'Ops endpoint listening.' line with {address}"
    );

    assert_eq!(poller.terminate(), Some(0), "clean exit on SIGTERM");
    sb.stop().await.expect("sandbox stop");
}

#[test]
fn an_unusable_ops_address_fails_start_up_and_names_ops_listen() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address").to_string();
    let names = Names::new();
    let files = Instances::new(&[]);
    let mut poller = spawn_poller(&names, &files, &[("OPS_LISTEN", &address)]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while poller.is_running() {
        assert!(Instant::now() < deadline, "poller kept running");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = poller.log_text();
    assert!(log.contains("OPS_LISTEN"), "{log}");
    assert_eq!(poller.terminate(), Some(2), "start-up error exit code");
    drop(taken);
}

/// `(name, Prometheus type)` of every row of the README's metrics table:
/// the README is the contract, this test holds the code to it.
fn documented_families() -> Vec<(String, &'static str)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let families: Vec<(String, &'static str)> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `event_poller_"))
        .map(|rest| {
            let name = format!(
                "event_poller_{}",
                rest.split('`').next().unwrap_or_default()
            );
            let meaning = rest.rsplit('|').nth(1).unwrap_or_default();
            let kind = if meaning.contains("histogram") {
                "histogram"
            } else if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            (name, kind)
        })
        .collect();
    assert!(
        families.len() >= 15,
        "the README's metrics table: {families:?}"
    );
    families
}
