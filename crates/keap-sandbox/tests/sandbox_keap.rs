//! Keap REST v1 orders and the control API, over real HTTP against an
//! in-process sandbox on 127.0.0.1:0.

use chrono::{DateTime, TimeZone, Utc};
use keap_sandbox::{RunningSandbox, SandboxConfig, start};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 1, 9, 0, 0).unwrap()
}

async fn sandbox(orders: usize) -> RunningSandbox {
    start(SandboxConfig {
        seed: 11,
        orders,
        frozen_clock: Some(t0()),
        ..Default::default()
    })
    .await
    .expect("sandbox starts")
}

async fn get(url: &str) -> (StatusCode, Value) {
    let resp = reqwest::get(url).await.expect("request");
    let status = resp.status();
    (status, resp.json().await.expect("json body"))
}

async fn orders(sb: &RunningSandbox, query: &str) -> Value {
    let (status, body) = get(&format!("{}/crm/rest/v1/orders?{query}", sb.base_url())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn ids(page: &Value) -> Vec<u64> {
    page["orders"]
        .as_array()
        .expect("orders array")
        .iter()
        .map(|o| o["id"].as_u64().expect("id"))
        .collect()
}

async fn control(
    sb: &RunningSandbox,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let resp = reqwest::Client::new()
        .request(method, format!("{}{path}", sb.base_url()))
        .json(&body)
        .send()
        .await
        .expect("control request");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("json")
    };
    (status, value)
}

async fn set_clock(sb: &RunningSandbox, offset: i64) {
    let (status, _) = control(
        sb,
        reqwest::Method::PUT,
        "/_sandbox/clock",
        json!({"offset_seconds": offset}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

async fn create(sb: &RunningSandbox, count: usize) -> Vec<u64> {
    let (status, body) = control(
        sb,
        reqwest::Method::POST,
        "/_sandbox/orders",
        json!({"count": count}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    body["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

fn is_keap_date(s: &str) -> bool {
    // 2019-10-25T18:53:10.000+0000
    let b = s.as_bytes();
    s.len() == 28
        && s.ends_with(".000+0000")
        && b[4] == b'-'
        && b[10] == b'T'
        && DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.3f%z").is_ok()
}

#[tokio::test]
async fn a_page_has_keap_shape_fields_and_links() {
    let sb = sandbox(25).await;
    let page = orders(&sb, "limit=10").await;
    assert_eq!(page["count"], 25);
    assert_eq!(ids(&page), (1..=10).collect::<Vec<_>>());
    let next = page["next"].as_str().unwrap();
    let previous = page["previous"].as_str().unwrap();
    assert!(
        next.starts_with(&format!("{}/crm/rest/v1/orders/?", sb.base_url())),
        "{next}"
    );
    assert!(
        next.contains("limit=10") && next.contains("offset=10"),
        "{next}"
    );
    assert!(previous.contains("offset=0"), "{previous}");

    let mut last = (String::new(), 0);
    for o in page["orders"].as_array().unwrap() {
        for key in ["creation_date", "modification_date", "order_date"] {
            assert!(is_keap_date(o[key].as_str().unwrap()), "{key}: {}", o[key]);
        }
        for key in ["title", "status"] {
            assert!(o[key].is_string(), "{key}");
        }
        for key in ["total", "total_paid", "total_due"] {
            assert!(o[key].is_number(), "{key}");
        }
        for key in ["lead_affiliate_id", "sales_affiliate_id"] {
            assert!(o[key].is_u64(), "{key}");
        }
        assert!(o["contact"]["id"].is_u64() && o["contact"]["email"].is_string());
        assert!(o["contact"]["first_name"].is_string() && o["contact"]["last_name"].is_string());
        let item = &o["order_items"][0];
        assert!(item["id"].is_u64() && item["name"].is_string() && item["price"].is_number());
        assert!(item["quantity"].is_u64() && item["description"].is_string());
        assert!(item["product"]["id"].is_u64() && item["product"]["sku"].is_string());
        assert!(o["shipping_information"]["city"].is_string());
        // History orders are spread before "now" and sorted by date, then id.
        let key = (
            o["modification_date"].as_str().unwrap().to_owned(),
            o["id"].as_u64().unwrap(),
        );
        assert!(key > last, "{key:?} after {last:?}");
        last = key;
    }
    // The newest history order was written "now".
    let all = orders(&sb, "").await;
    let newest = all["orders"].as_array().unwrap().last().unwrap();
    assert_eq!(newest["modification_date"], "2024-03-01T09:00:00.000+0000");
}

#[tokio::test]
async fn next_links_walk_every_order_once() {
    let sb = sandbox(23).await;
    let mut url = format!("{}/crm/rest/v1/orders?limit=5", sb.base_url());
    let mut seen: Vec<u64> = Vec::new();
    loop {
        let (status, page) = get(&url).await;
        assert_eq!(status, StatusCode::OK);
        let got = ids(&page);
        seen.extend(&got);
        if got.len() < 5 {
            break;
        }
        url = page["next"].as_str().unwrap().to_owned();
    }
    assert_eq!(seen, (1..=23).collect::<Vec<_>>());
    // The trailing-slash path the links use is served too, and `next` is
    // given even past the end.
    let past = orders(&sb, "limit=5&offset=100").await;
    assert_eq!(ids(&past), Vec::<u64>::new());
    assert_eq!(past["count"], 23);
    assert!(past["next"].as_str().unwrap().contains("offset=105"));
}

#[tokio::test]
async fn since_until_paid_contact_and_product_filters() {
    let sb = sandbox(0).await;
    let early = create(&sb, 3).await;
    set_clock(&sb, 100).await;
    let middle = create(&sb, 2).await;
    set_clock(&sb, 200).await;
    let late = create(&sb, 1).await;

    let since_100 = "since=2024-03-01T09%3A01%3A40.000%2B0000";
    assert_eq!(
        ids(&orders(&sb, since_100).await),
        [middle.clone(), late.clone()].concat()
    );
    let page = orders(&sb, &format!("{since_100}&until=2024-03-01T09:03:20Z")).await;
    assert_eq!(ids(&page), middle);
    assert_eq!(page["count"], 2);
    // `since` is inclusive, `until` exclusive, and any offset form works.
    assert_eq!(ids(&orders(&sb, "since=2024-03-01T09:03:20Z").await), late);
    assert_eq!(
        ids(&orders(&sb, "until=2024-03-01T10:01:40%2B01:00").await),
        early
    );

    let all = orders(&sb, "").await;
    let first = &all["orders"][0];
    let contact = first["contact"]["id"].as_u64().unwrap();
    let by_contact = orders(&sb, &format!("contact_id={contact}")).await;
    assert!(ids(&by_contact).contains(&first["id"].as_u64().unwrap()));
    for o in by_contact["orders"].as_array().unwrap() {
        assert_eq!(o["contact"]["id"], contact);
    }
    let product = first["order_items"][0]["product"]["id"].as_u64().unwrap();
    for o in orders(&sb, &format!("product_id={product}")).await["orders"]
        .as_array()
        .unwrap()
    {
        assert!(
            o["order_items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["product"]["id"] == product)
        );
    }
    let paid = orders(&sb, "paid=true").await;
    let unpaid = orders(&sb, "paid=false").await;
    assert_eq!(
        paid["count"].as_u64().unwrap() + unpaid["count"].as_u64().unwrap(),
        6
    );
    for o in paid["orders"].as_array().unwrap() {
        assert_eq!(o["status"], "PAID");
        assert_eq!(o["total_due"].as_f64(), Some(0.0));
    }
}

#[tokio::test]
async fn order_and_direction() {
    let sb = sandbox(6).await;
    set_clock(&sb, 60).await;
    let (status, touched) = control(
        &sb,
        reqwest::Method::POST,
        "/_sandbox/orders/2/touch",
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(touched["modification_date"], "2024-03-01T09:01:00.000+0000");
    assert_eq!(ids(&orders(&sb, "").await), [1, 3, 4, 5, 6, 2]);
    assert_eq!(
        ids(&orders(&sb, "order_direction=DESCENDING").await),
        [2, 6, 5, 4, 3, 1]
    );
    assert_eq!(ids(&orders(&sb, "order=id").await), [1, 2, 3, 4, 5, 6]);
    assert_eq!(
        ids(&orders(&sb, "order=id&order_direction=descending").await),
        [6, 5, 4, 3, 2, 1]
    );
    assert_eq!(
        ids(&orders(&sb, "order=creation_date").await),
        [1, 2, 3, 4, 5, 6]
    );
    assert_eq!(
        ids(&orders(&sb, "order=order_date&limit=2&offset=1").await),
        [2, 3]
    );
}

#[tokio::test]
async fn bad_parameters_get_400_naming_the_parameter() {
    let sb = sandbox(1).await;
    for (query, parameter) in [
        ("limit=ten", "limit"),
        ("limit=0", "limit"),
        ("offset=-5", "offset"),
        ("since=yesterday", "since"),
        // An unencoded '+' arrives as a space: refused like the real API.
        ("since=2024-03-01T09:00:00.000+0000", "since"),
        ("until=2024-02-30", "until"),
        ("paid=maybe", "paid"),
        ("contact_id=x", "contact_id"),
        ("product_id=-1", "product_id"),
        ("order=title", "order"),
        ("order_direction=sideways", "order_direction"),
    ] {
        let (status, body) = get(&format!("{}/crm/rest/v1/orders?{query}", sb.base_url())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(body["parameter"], parameter, "{query}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains(parameter),
            "{body}"
        );
    }
    // Unknown parameters are ignored, as Keap ignores them.
    assert_eq!(ids(&orders(&sb, "colour=red").await), [1]);
}

#[tokio::test]
async fn offset_paging_skips_a_record_when_one_is_updated_between_pages() {
    let sb = sandbox(20).await;
    let page1 = orders(&sb, "limit=5").await;
    assert_eq!(ids(&page1), [1, 2, 3, 4, 5]);
    // Order 2 changes: it moves to the end, everything after it moves up.
    set_clock(&sb, 30).await;
    control(
        &sb,
        reqwest::Method::POST,
        "/_sandbox/orders/2/touch",
        json!({}),
    )
    .await;
    let page2 = orders(
        &sb,
        page1["next"].as_str().unwrap().split('?').nth(1).unwrap(),
    )
    .await;
    assert_eq!(
        ids(&page2),
        [7, 8, 9, 10, 11],
        "order 6 shifted into page 1's range and was skipped"
    );
}

#[tokio::test]
async fn offset_paging_repeats_records_when_orders_are_created_between_pages() {
    let sb = sandbox(20).await;
    set_clock(&sb, 10).await;
    let page1 = orders(&sb, "limit=5&order_direction=DESCENDING").await;
    assert_eq!(ids(&page1), [20, 19, 18, 17, 16]);
    create(&sb, 2).await;
    let page2 = orders(&sb, "limit=5&offset=5&order_direction=DESCENDING").await;
    assert_eq!(
        ids(&page2),
        [17, 16, 15, 14, 13],
        "two new orders pushed 17 and 16 down again"
    );
    assert_eq!(page2["count"], 22);
}

#[tokio::test]
async fn offset_paging_shifts_under_a_live_generator() {
    let sb = start(SandboxConfig {
        seed: 5,
        orders: 40,
        // About 3 new orders per loop at 20 ms a request (debug build):
        // a partial-page shift (1..10 created between the page requests)
        // on slow machines too, where 200/s overshot a page every time.
        create_rate: 50.0,
        ..Default::default()
    })
    .await
    .unwrap();
    // Newest first, so every order created between two page requests pushes
    // the older ones down by one: exactly that many records repeat.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let page1 = orders(&sb, "limit=10&order=id&order_direction=DESCENDING").await;
        // Give the generator a chance to add orders between the requests.
        let _ = orders(&sb, "limit=1").await;
        let page2 = orders(
            &sb,
            "limit=10&offset=10&order=id&order_direction=DESCENDING",
        )
        .await;
        let created = page2["count"].as_u64().unwrap() - page1["count"].as_u64().unwrap();
        let first = ids(&page1);
        let second = ids(&page2);
        let repeated = second.iter().filter(|id| first.contains(id)).count() as u64;
        // Page 2 is positions 10..20 of a list that grew by `created` at the
        // top: it overlaps page 1 by `created` records (or by 20 − created
        // once more than a page was created).
        let expected = if created <= 10 {
            created
        } else {
            20u64.saturating_sub(created)
        };
        assert_eq!(
            repeated, expected,
            "created {created}: page1 {first:?} page2 {second:?}"
        );
        if (1..10).contains(&created) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never saw a partial-page shift"
        );
    }
}

#[tokio::test]
async fn deleted_orders_disappear_everywhere() {
    let sb = sandbox(5).await;
    let (status, _) = control(
        &sb,
        reqwest::Method::DELETE,
        "/_sandbox/orders/3",
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let page = orders(&sb, "").await;
    assert_eq!(ids(&page), [1, 2, 4, 5]);
    assert_eq!(page["count"], 4);
    let hub: Value = reqwest::get(format!(
        "{}/elements/api-v2/hubs/ecommerce/orders",
        sb.base_url()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(hub.as_array().unwrap().len(), 4);
    for (method, path, want) in [
        (
            reqwest::Method::DELETE,
            "/_sandbox/orders/3",
            StatusCode::NOT_FOUND,
        ),
        (
            reqwest::Method::POST,
            "/_sandbox/orders/3/touch",
            StatusCode::NOT_FOUND,
        ),
        (
            reqwest::Method::POST,
            "/_sandbox/orders/abc/touch",
            StatusCode::BAD_REQUEST,
        ),
        (
            reqwest::Method::DELETE,
            "/_sandbox/orders/-1",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, body) = control(&sb, method, path, Value::Null).await;
        assert_eq!(status, want, "{path}: {body}");
        assert!(body["message"].is_string(), "{body}");
    }
}

#[tokio::test]
async fn control_api_changes_clock_and_stats() {
    let sb = sandbox(2).await;
    let (status, clock) = control(&sb, reqwest::Method::GET, "/_sandbox/clock", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        clock,
        json!({"offset_seconds": 0, "now": "2024-03-01T09:00:00.000+0000"})
    );
    let (_, clock) = control(
        &sb,
        reqwest::Method::PUT,
        "/_sandbox/clock",
        json!({"offset_seconds": -3600}),
    )
    .await;
    assert_eq!(clock["now"], "2024-03-01T08:00:00.000+0000");
    let (status, _) = control(
        &sb,
        reqwest::Method::PUT,
        "/_sandbox/clock",
        json!({"offset": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = control(&sb, reqwest::Method::PUT, "/_sandbox/clock", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    assert_eq!(create(&sb, 2).await, [3, 4]);
    // No body at all means one order.
    let resp = reqwest::Client::new()
        .post(format!("{}/_sandbox/orders", sb.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"ids": [5]}));
    let (status, body) = control(
        &sb,
        reqwest::Method::POST,
        "/_sandbox/orders",
        json!({"count": 0}),
    )
    .await;
    assert_eq!(
        (status, body["parameter"].clone()),
        (StatusCode::BAD_REQUEST, json!("count"))
    );
    let (status, _) = control(
        &sb,
        reqwest::Method::POST,
        "/_sandbox/orders",
        json!({"cnt": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    control(
        &sb,
        reqwest::Method::POST,
        "/_sandbox/orders/1/touch",
        Value::Null,
    )
    .await;
    control(
        &sb,
        reqwest::Method::DELETE,
        "/_sandbox/orders/4",
        Value::Null,
    )
    .await;

    let (status, changes) =
        control(&sb, reqwest::Method::GET, "/_sandbox/changes", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let h = |d: &str| format!("2024-03-01T{d}.000+0000");
    assert_eq!(
        changes,
        json!({"changes": [
            {"id": 1, "change": "created", "modification_date": changes["changes"][0]["modification_date"]},
            {"id": 2, "change": "created", "modification_date": h("09:00:00")},
            {"id": 3, "change": "created", "modification_date": h("08:00:00")},
            {"id": 4, "change": "created", "modification_date": h("08:00:00")},
            {"id": 5, "change": "created", "modification_date": h("08:00:00")},
            {"id": 1, "change": "updated", "modification_date": h("08:00:00")},
            {"id": 4, "change": "deleted", "modification_date": h("08:00:00")},
        ]})
    );
    // Every served record is a logged state.
    for o in orders(&sb, "").await["orders"].as_array().unwrap() {
        assert!(
            changes["changes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["id"] == o["id"] && c["modification_date"] == o["modification_date"])
        );
    }

    let (status, code) = control(&sb, reqwest::Method::POST, "/_sandbox/codes", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert!(code["code"].as_str().is_some_and(|c| c.len() >= 16));

    let (_, stats) = control(&sb, reqwest::Method::GET, "/_sandbox/stats", Value::Null).await;
    let requests = &stats["requests"];
    assert_eq!(requests["POST /_sandbox/orders"]["200"], 2);
    assert_eq!(requests["POST /_sandbox/orders"]["400"], 2);
    assert_eq!(requests["GET /crm/rest/v1/orders"]["200"], 1);
    assert_eq!(requests["POST /_sandbox/orders/{id}/touch"]["200"], 1);
    assert_eq!(requests["DELETE /_sandbox/orders/{id}"]["204"], 1);
    assert_eq!(requests["PUT /_sandbox/clock"]["400"], 2);
    assert_eq!(requests["GET /_sandbox/changes"]["200"], 1);

    let resp = reqwest::get(format!("{}/no/such/thing", sb.base_url()))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let (_, stats) = control(&sb, reqwest::Method::GET, "/_sandbox/stats", Value::Null).await;
    assert_eq!(stats["requests"]["unmatched"]["404"], 1);
    assert_eq!(stats["requests"]["GET /_sandbox/stats"]["200"], 1);
}
