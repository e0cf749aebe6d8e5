//! The Open Connectors hub view: auth header, CEQL `where`, cursor paging.

use chrono::{TimeZone, Utc};
use keap_sandbox::{RunningSandbox, SandboxConfig, start};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::StatusCode;
use serde_json::{Value, json};

const AUTH: &str = "User hub-user, Organization hub-org, Element element-token";
const HUB: &str = "/elements/api-v2/hubs/ecommerce/orders";

async fn sandbox(orders: usize, auth: bool) -> RunningSandbox {
    start(SandboxConfig {
        seed: 3,
        orders,
        frozen_clock: Some(Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0).unwrap()),
        hub_user: auth.then(|| "hub-user".to_owned()),
        hub_organization: auth.then(|| "hub-org".to_owned()),
        ..Default::default()
    })
    .await
    .expect("sandbox starts")
}

/// One hub request: status, the next-page token, the body.
async fn hub(
    sb: &RunningSandbox,
    auth: Option<&str>,
    query: &[(&str, &str)],
) -> (StatusCode, Option<String>, Value) {
    let encoded: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)))
        .collect();
    let url = format!("{}{HUB}?{}", sb.base_url(), encoded.join("&"));
    let mut req = reqwest::Client::new().get(url);
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let resp = req.send().await.expect("hub request");
    let status = resp.status();
    let token = resp
        .headers()
        .get("elements-next-page-token")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, token, resp.json().await.expect("json"))
}

fn ids(body: &Value) -> Vec<u64> {
    body.as_array()
        .expect("a bare JSON array")
        .iter()
        .map(|o| o["id"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn auth_header_must_name_user_organization_and_an_element() {
    let sb = sandbox(3, true).await;
    for bad in [
        None,
        Some("Bearer abc"),
        Some("User hub-user, Organization wrong, Element e"),
        Some("User wrong, Organization hub-org, Element e"),
        Some("User hub-user, Organization hub-org"),
        Some("User hub-user, Organization hub-org, Element "),
    ] {
        let (status, token, body) = hub(&sb, bad, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad:?}");
        assert!(token.is_none());
        assert!(
            body["message"].is_string() && body["requestId"].is_string(),
            "{body}"
        );
    }
    let (status, _, body) = hub(&sb, Some(AUTH), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&body), [1, 2, 3]);
    // Any element token will do.
    let (status, _, _) = hub(
        &sb,
        Some("User hub-user, Organization hub-org, Element other"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn without_hub_credentials_the_hub_is_open() {
    let sb = sandbox(2, false).await;
    let (status, _, body) = hub(&sb, None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&body), [1, 2]);
}

#[tokio::test]
async fn cursor_paging_returns_a_token_until_an_empty_page() {
    let sb = sandbox(25, true).await;
    let mut token: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let mut query = vec![("pageSize", "10")];
        if let Some(t) = &token {
            query.push(("nextPage", t));
        }
        let (status, next, body) = hub(&sb, Some(AUTH), &query).await;
        assert_eq!(status, StatusCode::OK);
        let got = ids(&body);
        pages.push(got.clone());
        if got.is_empty() {
            assert!(next.is_none(), "an empty page carries no token");
            break;
        }
        // A token even on the short last page, whose next page is empty.
        token = Some(next.expect("a non-empty page carries a token"));
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [10, 10, 5, 0]
    );
    assert_eq!(pages.concat(), (1..=25).collect::<Vec<_>>());
}

#[tokio::test]
async fn exact_multiple_of_page_size_ends_with_a_token_to_an_empty_page() {
    let sb = sandbox(20, false).await;
    let (_, t1, p1) = hub(&sb, None, &[("pageSize", "10")]).await;
    let (_, t2, p2) = hub(
        &sb,
        None,
        &[("pageSize", "10"), ("nextPage", t1.as_deref().unwrap())],
    )
    .await;
    assert_eq!((ids(&p1).len(), ids(&p2).len()), (10, 10));
    let (status, t3, p3) = hub(
        &sb,
        None,
        &[("pageSize", "10"), ("nextPage", t2.as_deref().unwrap())],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(p3, json!([]));
    assert!(t3.is_none());
}

#[tokio::test]
async fn where_since_and_date_comparisons() {
    let sb = sandbox(0, false).await;
    let base = sb.base_url();
    let client = reqwest::Client::new();
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
    create(2).await.unwrap(); // ids 1-2 at 12:00:00
    clock(60).await.unwrap();
    create(2).await.unwrap(); // ids 3-4 at 12:01:00
    clock(120).await.unwrap();
    create(1).await.unwrap(); // id 5 at 12:02:00
    client
        .post(format!("{base}/_sandbox/orders/1/touch"))
        .send()
        .await
        .unwrap(); // id 1 → 12:02:00

    for (where_, want) in [
        ("since='2024-06-01T12:01:00Z'", vec![3, 4, 1, 5]),
        ("since='2024-06-01T12:01:00+00:00'", vec![3, 4, 1, 5]),
        ("since='2024-06-01T12:01:00.000+0000'", vec![3, 4, 1, 5]),
        ("modification_date > '2024-06-01T12:01:00Z'", vec![1, 5]),
        (
            "modification_date >= '2024-06-01T12:01:00Z' and modification_date < '2024-06-01T12:02:00Z'",
            vec![3, 4],
        ),
        ("modification_date <= '2024-06-01T12:01:00Z'", vec![2, 3, 4]),
        ("modification_date = '2024-06-01T12:02:00Z'", vec![1, 5]),
        ("creation_date < '2024-06-01T12:01:00Z'", vec![2, 1]),
        (
            "order_date >= '2024-06-01T12:01:00Z' AND id != 4",
            vec![3, 5],
        ),
        (
            "since='2024-06-01T12:00:00Z' and until='2024-06-01T12:02:00Z'",
            vec![2, 3, 4],
        ),
        ("id <= 2", vec![2, 1]),
        ("since = '2024-06-01T12:03:00Z'", vec![]),
    ] {
        let (status, _, body) = hub(&sb, None, &[("where", where_)]).await;
        assert_eq!(status, StatusCode::OK, "{where_}: {body}");
        assert_eq!(ids(&body), want, "{where_}");
    }
}

#[tokio::test]
async fn bad_requests_name_the_parameter() {
    let sb = sandbox(3, false).await;
    for (query, parameter) in [
        (vec![("where", "since>'2024-06-01T12:00:00Z'")], "where"),
        (vec![("where", "since='last week'")], "where"),
        (vec![("where", "colour='red'")], "where"),
        (vec![("where", "id=1 or id=2")], "where"),
        (vec![("pageSize", "0")], "pageSize"),
        (vec![("pageSize", "1001")], "pageSize"),
        (vec![("pageSize", "many")], "pageSize"),
        (vec![("nextPage", "not-a-token")], "nextPage"),
    ] {
        let (status, token, body) = hub(&sb, None, &query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query:?}");
        assert!(token.is_none());
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(parameter), "{query:?}: {message}");
    }
}
