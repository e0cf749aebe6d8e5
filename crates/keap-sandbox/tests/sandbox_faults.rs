//! Every fault of `PUT /_sandbox/faults`, seen by a real HTTP client.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use keap_sandbox::{RunningSandbox, SandboxConfig, start};
use reqwest::StatusCode;
use serde_json::{Value, json};

const HUB: &str = "/elements/api-v2/hubs/ecommerce/orders";
const KEAP: &str = "/crm/rest/v1/orders";

async fn sandbox(orders: usize) -> RunningSandbox {
    start(SandboxConfig {
        seed: 9,
        orders,
        frozen_clock: Some(Utc.with_ymd_and_hms(2024, 9, 1, 8, 0, 0).unwrap()),
        ..Default::default()
    })
    .await
    .expect("sandbox starts")
}

async fn faults(sb: &RunningSandbox, body: Value) -> (StatusCode, Value) {
    let resp = reqwest::Client::new()
        .put(format!("{}/_sandbox/faults", sb.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

async fn fetch(sb: &RunningSandbox, path_and_query: &str) -> reqwest::Response {
    reqwest::get(format!("{}{path_and_query}", sb.base_url()))
        .await
        .expect("request")
}

fn fault_of(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get("x-sandbox-fault")
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn fault_settings_patch_clear_and_validation() {
    let sb = sandbox(1).await;
    let defaults = json!({
        "error_rate": 0.0, "error_status": 503, "throttle_rate": 0.0, "retry_after": "seconds",
        "latency_ms": 0, "malformed_rate": 0.0, "truncate_rate": 0.0, "bad_record_rate": 0.0,
        "shared_timestamps": false, "unsorted": false
    });
    let got: Value = fetch(&sb, "/_sandbox/faults").await.json().await.unwrap();
    assert_eq!(got, defaults);
    let (status, after) =
        faults(&sb, json!({"error_rate": 0.25, "retry_after": "http-date"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(after["error_rate"], 0.25);
    assert_eq!(after["retry_after"], "http-date");
    assert_eq!(after["error_status"], 503);
    // `{}` clears nothing.
    let (_, same) = faults(&sb, json!({})).await;
    assert_eq!(same, after);
    for (body, key) in [
        (json!({"error_rate": 1.5}), "error_rate"),
        (json!({"throttle_rate": -0.1}), "throttle_rate"),
        (json!({"error_status": 200}), "error_status"),
        (json!({"latency_ms": 600_000}), "latency_ms"),
    ] {
        let (status, err) = faults(&sb, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(err["parameter"], key, "{err}");
    }
    for body in [
        json!({"error_rat": 1}),
        json!({"retry_after": "minutes"}),
        json!({"unsorted": "yes"}),
    ] {
        let (status, err) = faults(&sb, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(err["message"].is_string());
    }
    // Nothing above changed the settings.
    let got: Value = fetch(&sb, "/_sandbox/faults").await.json().await.unwrap();
    assert_eq!(got, after);
    let cleared: Value = reqwest::Client::new()
        .delete(format!("{}/_sandbox/faults", sb.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cleared, defaults);
}

#[tokio::test]
async fn error_statuses_on_both_apis_but_never_on_control() {
    let sb = sandbox(2).await;
    faults(&sb, json!({"error_rate": 1.0})).await;
    let resp = fetch(&sb, KEAP).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(fault_of(&resp).as_deref(), Some("error"));
    let body: Value = resp.json().await.unwrap();
    assert!(body["fault"]["faultstring"].is_string(), "{body}");

    faults(&sb, json!({"error_status": 500})).await;
    let resp = fetch(&sb, KEAP).await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(resp.headers().get("x-keap-product-quota-used").is_some());
    assert_eq!(
        resp.json::<Value>().await.unwrap()["message"],
        "Internal Server Error"
    );

    let resp = fetch(&sb, HUB).await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = resp.json().await.unwrap();
    assert!(body["requestId"].is_string() && body["message"].is_string());

    // Faults never touch the control API.
    let resp = fetch(&sb, "/_sandbox/changes").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let stats: Value = fetch(&sb, "/_sandbox/stats").await.json().await.unwrap();
    assert_eq!(stats["requests"]["GET /crm/rest/v1/orders"]["503"], 1);
    assert_eq!(stats["requests"]["GET /crm/rest/v1/orders"]["500"], 1);
    assert_eq!(
        stats["requests"]["GET /elements/api-v2/hubs/ecommerce/orders"]["500"],
        1
    );
}

#[tokio::test]
async fn throttling_with_retry_after_in_seconds_as_a_date_and_absent() {
    let sb = sandbox(2).await;
    faults(&sb, json!({"throttle_rate": 1.0})).await;

    let resp = fetch(&sb, KEAP).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let h = resp.headers().clone();
    assert_eq!(h["retry-after"], "1");
    assert_eq!(h["x-keap-product-throttle-available"], "0");
    assert_eq!(h["x-keap-product-throttle-limit"], "1500");
    assert_eq!(h["x-keap-product-quota-limit"], "150000");
    for name in [
        "x-keap-product-quota-available",
        "x-keap-product-quota-used",
        "x-keap-product-quota-expiry-time",
        "x-keap-product-quota-time-unit",
        "x-keap-product-throttle-used",
    ] {
        assert!(h.get(name).is_some(), "{name}");
    }
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["fault"]["detail"]["errorcode"],
        "policies.ratelimit.QuotaViolation"
    );

    faults(&sb, json!({"retry_after": "http-date"})).await;
    let resp = fetch(&sb, KEAP).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let parse = |v: &reqwest::header::HeaderValue| {
        DateTime::parse_from_rfc2822(v.to_str().unwrap()).expect("an HTTP-date")
    };
    let retry_at = parse(&resp.headers()["retry-after"]);
    let date = parse(&resp.headers()["date"]);
    // The sandbox clock is frozen at 08:00:00; the wait is one second.
    assert_eq!(date.to_rfc3339(), "2024-09-01T08:00:00+00:00");
    assert_eq!((retry_at - date).num_seconds(), 1);

    faults(&sb, json!({"retry_after": "none"})).await;
    let resp = fetch(&sb, KEAP).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().get("retry-after").is_none());

    faults(&sb, json!({"retry_after": "seconds"})).await;
    let resp = fetch(&sb, HUB).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert!(resp.json::<Value>().await.unwrap()["message"].is_string());

    // Quota headers also come with ordinary answers.
    faults(&sb, json!({"throttle_rate": 0.0})).await;
    let resp = fetch(&sb, KEAP).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let used: u64 = resp.headers()["x-keap-product-quota-used"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(used, 4);
    assert_eq!(resp.headers()["x-keap-product-throttle-available"], "1496");
}

#[tokio::test]
async fn quota_headers_report_the_configured_limits() {
    let sb = start(SandboxConfig {
        seed: 9,
        orders: 1,
        frozen_clock: Some(Utc.with_ymd_and_hms(2024, 9, 1, 8, 0, 0).unwrap()),
        throttle_per_minute: 100_000_000,
        quota_per_day: 2_000_000_000,
        ..Default::default()
    })
    .await
    .expect("sandbox starts");
    let resp = fetch(&sb, KEAP).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers();
    assert_eq!(h["x-keap-product-throttle-limit"], "100000000");
    assert_eq!(h["x-keap-product-throttle-available"], "99999999");
    assert_eq!(h["x-keap-product-quota-limit"], "2000000000");
    assert_eq!(h["x-keap-product-quota-available"], "1999999999");
}

#[tokio::test]
async fn throttling_at_a_partial_rate_hits_some_requests() {
    let sb = sandbox(1).await;
    faults(&sb, json!({"throttle_rate": 0.5})).await;
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(fetch(&sb, KEAP).await.status());
    }
    let throttled = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!((5..=35).contains(&throttled), "{throttled} of 40 throttled");
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::TOO_MANY_REQUESTS)
    );
}

#[tokio::test]
async fn latency_delays_every_data_request() {
    let sb = sandbox(1).await;
    faults(&sb, json!({"latency_ms": 300})).await;
    for path in [KEAP, HUB] {
        let started = Instant::now();
        assert_eq!(fetch(&sb, path).await.status(), StatusCode::OK);
        assert!(started.elapsed() >= Duration::from_millis(300), "{path}");
    }
}

#[tokio::test]
async fn malformed_pages_are_complete_responses_with_broken_json() {
    let sb = sandbox(5).await;
    faults(&sb, json!({"malformed_rate": 1.0})).await;
    for path in [KEAP, HUB] {
        let resp = fetch(&sb, path).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(fault_of(&resp).as_deref(), Some("malformed"));
        let length: usize = resp.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = resp
            .bytes()
            .await
            .expect("the whole advertised body arrives");
        assert_eq!(body.len(), length);
        assert!(serde_json::from_slice::<Value>(&body).is_err(), "{path}");
    }
}

#[tokio::test]
async fn truncated_bodies_fail_mid_stream() {
    let sb = sandbox(200).await;
    faults(&sb, json!({"truncate_rate": 1.0})).await;
    for path in [KEAP, HUB] {
        let resp = fetch(&sb, path).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(fault_of(&resp).as_deref(), Some("truncate"));
        assert!(resp.content_length().is_some_and(|n| n > 1000));
        assert!(
            resp.bytes().await.is_err(),
            "{path}: the body must end early"
        );
    }
    // The next request is fine again once the fault is off.
    faults(&sb, json!({"truncate_rate": 0.0})).await;
    let body: Value = fetch(&sb, KEAP).await.json().await.unwrap();
    assert_eq!(body["count"], 200);
}

#[tokio::test]
async fn bad_records_miss_the_id_or_carry_an_unparseable_date() {
    let sb = sandbox(10).await;
    faults(&sb, json!({"bad_record_rate": 1.0})).await;
    let (mut missing_id, mut bad_date) = (0, 0);
    for round in 0..30 {
        let path = if round % 2 == 0 {
            KEAP.to_owned()
        } else {
            HUB.to_owned()
        };
        let resp = fetch(&sb, &path).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await.unwrap();
        let records = if round % 2 == 0 {
            body["orders"].clone()
        } else {
            body
        };
        let records = records.as_array().unwrap();
        assert_eq!(records.len(), 10);
        let bad: Vec<&Value> = records
            .iter()
            .filter(|o| {
                o.get("id").is_none()
                    || ["creation_date", "modification_date"].iter().any(|k| {
                        DateTime::parse_from_str(
                            o[k].as_str().unwrap_or(""),
                            "%Y-%m-%dT%H:%M:%S%.3f%z",
                        )
                        .is_err()
                    })
            })
            .collect();
        assert_eq!(bad.len(), 1, "exactly one bad record per page");
        if bad[0].get("id").is_none() {
            missing_id += 1;
        } else {
            bad_date += 1;
        }
    }
    assert!(
        missing_id > 0 && bad_date > 0,
        "{missing_id} missing ids, {bad_date} bad dates"
    );
    // The store itself is unharmed.
    faults(&sb, json!({"bad_record_rate": 0.0})).await;
    let body: Value = fetch(&sb, KEAP).await.json().await.unwrap();
    assert!(
        body["orders"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["id"].is_u64())
    );
}

#[tokio::test]
async fn shared_timestamps_span_a_page_boundary() {
    let sb = sandbox(0).await;
    let client = reqwest::Client::new();
    let base = sb.base_url();
    let clock = |offset: i64| {
        client
            .put(format!("{base}/_sandbox/clock"))
            .json(&json!({"offset_seconds": offset}))
            .send()
    };
    let create = |n: u64| {
        client
            .post(format!("{base}/_sandbox/orders"))
            .json(&json!({"count": n}))
            .send()
    };
    faults(&sb, json!({"shared_timestamps": true})).await;
    create(4).await.unwrap();
    clock(30).await.unwrap();
    create(4).await.unwrap();
    clock(60).await.unwrap();
    client
        .post(format!("{base}/_sandbox/orders/2/touch"))
        .send()
        .await
        .unwrap();

    let page1: Value = fetch(&sb, &format!("{KEAP}?limit=5"))
        .await
        .json()
        .await
        .unwrap();
    let page2: Value = fetch(&sb, &format!("{KEAP}?limit=5&offset=5"))
        .await
        .json()
        .await
        .unwrap();
    let dates: Vec<&Value> = page1["orders"]
        .as_array()
        .unwrap()
        .iter()
        .chain(page2["orders"].as_array().unwrap())
        .map(|o| &o["modification_date"])
        .collect();
    assert_eq!(dates.len(), 8);
    assert!(
        dates.iter().all(|d| **d == "2024-09-01T08:00:00.000+0000"),
        "{dates:?}"
    );
    // Switched off, time moves again.
    faults(&sb, json!({"shared_timestamps": false})).await;
    create(1).await.unwrap();
    let newest: Value = fetch(&sb, &format!("{KEAP}?since=2024-09-01T08:00:01Z"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        newest["orders"][0]["modification_date"],
        "2024-09-01T08:01:00.000+0000"
    );
    // The change log says exactly what was served.
    let changes: Value = fetch(&sb, "/_sandbox/changes").await.json().await.unwrap();
    let logged: Vec<&Value> = changes["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["modification_date"])
        .collect();
    assert_eq!(
        logged
            .iter()
            .filter(|d| ***d == "2024-09-01T08:00:00.000+0000")
            .count(),
        9
    );
}

#[tokio::test]
async fn unsorted_pages_hold_the_same_records_out_of_order() {
    let sb = sandbox(30).await;
    let sorted: Value = fetch(&sb, &format!("{KEAP}?limit=20"))
        .await
        .json()
        .await
        .unwrap();
    faults(&sb, json!({"unsorted": true})).await;
    let ids = |v: &Value| -> Vec<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_u64().unwrap())
            .collect()
    };
    let want = ids(&sorted["orders"]);
    for path in [format!("{KEAP}?limit=20"), format!("{HUB}?pageSize=20")] {
        let body: Value = fetch(&sb, &path).await.json().await.unwrap();
        let got = ids(if path.starts_with(KEAP) {
            &body["orders"]
        } else {
            &body
        });
        assert_ne!(got, want, "{path}");
        let mut same = got.clone();
        same.sort_unstable();
        let mut expected = want.clone();
        expected.sort_unstable();
        assert_eq!(same, expected, "{path}");
    }
}
