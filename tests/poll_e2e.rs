//! The poller end to end: the real binary against the sandbox over HTTP and
//! the real broker, read back by a `read_committed` consumer.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::e2e::{self, Instances, Names, control, counts, spawn_poller};
use keap_sandbox as sandbox;
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn each_change_becomes_exactly_one_event() {
    let sb = sandbox::start(e2e::oauth_sandbox()).await.expect("sandbox");
    let base = sb.base_url();
    // Orders from an hour ago: older than the job, so never events.
    e2e::orders_dated_back(&base, 5, 3600).await;
    let names = Names::new();
    let files = Instances::new(&[(
        "shop.json",
        e2e::instance("shop", &format!("{base}/crm/rest"), 1, json!({})).to_string(),
    )]);
    let poller = spawn_poller(&names, &files, &[]);

    // Orders that existed before the job started are not events.
    let before: HashSet<String> = e2e::changes(&base).await.into_iter().map(|c| c.0).collect();
    // Wait for the job's first commit (its starting point), then change data.
    e2e::await_any_checkpoint(&names, &poller).await;
    let created = control(&base, Method::POST, "/_sandbox/orders", json!({"count": 3})).await;
    let ids: Vec<String> = created["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.to_string())
        .collect();
    // Spaced by more than the interval so that each state is observable.
    e2e::await_events(&names.events, Duration::from_secs(60), Some(&poller), |s| {
        s.len() >= 3
    })
    .await;
    // An update more than createdCheckTolerance after creation.
    let created_at = e2e::changes(&base)
        .await
        .iter()
        .filter(|(id, _, _)| *id == ids[0])
        .filter_map(|(_, _, d)| e2e::parse_keap_date(d))
        .max()
        .expect("created order in the change log");
    e2e::await_sandbox_time_after(&base, created_at + chrono::TimeDelta::seconds(2)).await;
    control(
        &base,
        Method::POST,
        &format!("/_sandbox/orders/{}/touch", ids[0]),
        json!({}),
    )
    .await;
    let seen = e2e::await_events(&names.events, Duration::from_secs(60), Some(&poller), |s| {
        s.len() >= 4
    })
    .await;

    let truth = e2e::changes(&base).await;
    let expected: HashSet<(String, String)> = truth
        .iter()
        .filter(|(id, _, _)| !before.contains(id))
        .map(|(id, _, date)| (id.clone(), date.clone()))
        .collect();
    let got = counts(&seen);
    assert!(got.values().all(|&n| n == 1), "duplicates: {got:?}");
    let got_keys: HashSet<(String, String)> = got.keys().cloned().collect();
    assert_eq!(
        got_keys, expected,
        "exactly the changes made after the job started"
    );
    for e in &seen {
        assert_eq!(e.key, e.object_id(), "key = objectId");
        assert_eq!(e.value["objectType"], "orders");
        assert_eq!(e.value["elementKey"], "infusionsoftecommerce");
        assert_eq!(e.value["instanceId"], "shop");
        // CREATED when created and updated are within createdCheckTolerance
        // (default 1 s).
        let date = |f: &str| e2e::parse_keap_date(e.value["raw"][f].as_str().unwrap_or_default());
        let (created, updated) = (date("creation_date"), date("modification_date"));
        let expected_type = match (created, updated) {
            (Some(c), Some(u)) if (u - c).num_seconds().abs() <= 1 => "CREATED",
            _ => "UPDATED",
        };
        assert_eq!(e.value["eventType"], expected_type, "{}", e.value);
    }
    assert!(seen.iter().any(|e| e.value["eventType"] == "UPDATED"));
    drop(poller);
    sb.stop().await.expect("sandbox stop");
}
