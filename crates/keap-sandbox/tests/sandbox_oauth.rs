//! OAuth2 like Keap: one-time codes, rotating refresh tokens, bearer tokens
//! that expire, and the open mode without a client id.

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use keap_sandbox::Secret;
use keap_sandbox::{RunningSandbox, SandboxConfig, start};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ID: &str = "client-id";
const SECRET: &str = "client-secret";

async fn sandbox(ttl: u64, frozen: bool) -> RunningSandbox {
    start(SandboxConfig {
        orders: 3,
        client_id: Some(ID.into()),
        client_secret: Some(Secret::new(SECRET)),
        authorization_codes: vec!["code-a".into(), "code-b".into()],
        access_token_ttl_seconds: ttl,
        frozen_clock: frozen.then(|| Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()),
        ..Default::default()
    })
    .await
    .expect("sandbox starts")
}

async fn token(
    sb: &RunningSandbox,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/token", sb.base_url()))
        .form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let resp = req.send().await.expect("token request");
    let status = resp.status();
    (status, resp.json().await.expect("json"))
}

async fn exchange(sb: &RunningSandbox, code: &str) -> (StatusCode, Value) {
    token(
        sb,
        Some((ID, SECRET)),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", "http://localhost/cb"),
        ],
    )
    .await
}

async fn refresh(sb: &RunningSandbox, refresh_token: &str) -> (StatusCode, Value) {
    token(
        sb,
        Some((ID, SECRET)),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

/// `GET /crm/rest/v1/orders` with an optional bearer token.
async fn api(sb: &RunningSandbox, bearer: Option<&str>) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new().get(format!("{}/crm/rest/v1/orders", sb.base_url()));
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("api request");
    let status = resp.status();
    (status, resp.json().await.expect("json"))
}

fn access(grant: &Value) -> &str {
    grant["access_token"].as_str().expect("access_token")
}

#[tokio::test]
async fn a_code_works_once_and_grants_keap_shaped_tokens() {
    let sb = sandbox(86_400, true).await;
    let (status, grant) = exchange(&sb, "code-a").await;
    assert_eq!(status, StatusCode::OK, "{grant}");
    assert_eq!(grant["token_type"], "bearer");
    assert_eq!(grant["expires_in"], 86_400);
    assert!(
        grant["refresh_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    assert!(grant["scope"].as_str().unwrap().starts_with("full|"));

    let (status, err) = exchange(&sb, "code-a").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"], "invalid_grant");
    assert!(err["error_description"].is_string());

    // The other configured code is independent; so is a minted one.
    assert_eq!(exchange(&sb, "code-b").await.0, StatusCode::OK);
    let minted: Value = reqwest::Client::new()
        .post(format!("{}/_sandbox/codes", sb.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = minted["code"].as_str().unwrap();
    assert_eq!(exchange(&sb, code).await.0, StatusCode::OK);
    assert_eq!(exchange(&sb, code).await.1["error"], "invalid_grant");
    assert_eq!(
        exchange(&sb, "never-issued").await.1["error"],
        "invalid_grant"
    );
}

#[tokio::test]
async fn client_authentication_and_request_errors() {
    let sb = sandbox(60, true).await;
    let form = [("grant_type", "authorization_code"), ("code", "code-a")];
    let (status, err) = token(&sb, Some((ID, "wrong")), &form).await;
    assert_eq!(
        (status, err["error"].clone()),
        (StatusCode::UNAUTHORIZED, json!("invalid_client"))
    );
    let (status, err) = token(&sb, None, &form).await;
    assert_eq!(
        (status, err["error"].clone()),
        (StatusCode::UNAUTHORIZED, json!("invalid_client"))
    );
    // The failed attempts did not use the code up; credentials in the form
    // body are accepted too.
    let (status, _) = token(
        &sb,
        None,
        &[
            ("grant_type", "authorization_code"),
            ("code", "code-a"),
            ("client_id", ID),
            ("client_secret", SECRET),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    for (form, error) in [
        (vec![("code", "x")], "invalid_request"),
        (
            vec![("grant_type", "authorization_code")],
            "invalid_request",
        ),
        (vec![("grant_type", "refresh_token")], "invalid_request"),
        (vec![("grant_type", "password")], "unsupported_grant_type"),
    ] {
        let (status, err) = token(&sb, Some((ID, SECRET)), &form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form:?}");
        assert_eq!(err["error"], error, "{form:?}");
    }
    // Not a form at all.
    let resp = reqwest::Client::new()
        .post(format!("{}/token", sb.base_url()))
        .basic_auth(ID, Some(SECRET))
        .json(&json!({"grant_type": "refresh_token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );
}

#[tokio::test]
async fn every_refresh_rotates_and_kills_the_old_refresh_token() {
    let sb = sandbox(86_400, true).await;
    let (_, g1) = exchange(&sb, "code-a").await;
    let r1 = g1["refresh_token"].as_str().unwrap();
    let (status, g2) = refresh(&sb, r1).await;
    assert_eq!(status, StatusCode::OK, "{g2}");
    let r2 = g2["refresh_token"].as_str().unwrap();
    assert_ne!(r1, r2);
    assert_ne!(access(&g1), access(&g2));

    let (status, err) = refresh(&sb, r1).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"], "invalid_grant");

    let (status, g3) = refresh(&sb, r2).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(refresh(&sb, r2).await.1["error"], "invalid_grant");
    assert_eq!(api(&sb, Some(access(&g3))).await.0, StatusCode::OK);
    // A refresh needs the client's credentials as well.
    let (status, err) = token(
        &sb,
        Some((ID, "wrong")),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", g3["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(
        (status, err["error"].clone()),
        (StatusCode::UNAUTHORIZED, json!("invalid_client"))
    );
}

#[tokio::test]
async fn the_api_requires_a_valid_bearer_token() {
    let sb = sandbox(86_400, true).await;
    let (status, body) = api(&sb, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body["fault"]["detail"]["errorcode"],
        "keymanagement.service.invalid_access_token"
    );
    let (status, _) = api(&sb, Some("made-up")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (_, grant) = exchange(&sb, "code-a").await;
    let (status, body) = api(&sb, Some(access(&grant))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["count"], 3);

    // Keap's legacy query-parameter form works too.
    let resp = reqwest::get(format!(
        "{}/crm/rest/v1/orders?access_token={}",
        sb.base_url(),
        access(&grant)
    ))
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // 401s come before faults and quota headers.
    let resp = reqwest::get(format!("{}/crm/rest/v1/orders", sb.base_url()))
        .await
        .unwrap();
    assert!(resp.headers().get("www-authenticate").is_some());
    assert!(resp.headers().get("x-keap-product-quota-used").is_none());
}

#[tokio::test]
async fn access_tokens_expire_on_the_provider_clock() {
    let sb = sandbox(3600, true).await;
    let (_, grant) = exchange(&sb, "code-a").await;
    assert_eq!(api(&sb, Some(access(&grant))).await.0, StatusCode::OK);
    let set_clock = |offset: i64| {
        reqwest::Client::new()
            .put(format!("{}/_sandbox/clock", sb.base_url()))
            .json(&json!({"offset_seconds": offset}))
            .send()
    };
    set_clock(3599).await.unwrap();
    assert_eq!(api(&sb, Some(access(&grant))).await.0, StatusCode::OK);
    set_clock(3600).await.unwrap();
    let (status, body) = api(&sb, Some(access(&grant))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body["fault"]["detail"]["errorcode"],
        "keymanagement.service.access_token_expired"
    );
    // The refresh token still works and yields a token valid from "now".
    let (_, fresh) = refresh(&sb, grant["refresh_token"].as_str().unwrap()).await;
    assert_eq!(api(&sb, Some(access(&fresh))).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_one_second_token_expires_in_real_time() {
    let sb = sandbox(1, false).await;
    let (_, grant) = exchange(&sb, "code-a").await;
    assert_eq!(grant["expires_in"], 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = api(&sb, Some(access(&grant))).await;
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(
                body["fault"]["detail"]["errorcode"],
                "keymanagement.service.access_token_expired"
            );
            break;
        }
        assert_eq!(status, StatusCode::OK);
        assert!(Instant::now() < deadline, "token still valid after 10 s");
        // Polling interval while waiting for expiry, not synchronisation.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn without_a_client_id_the_api_is_open_and_token_serves_anyone() {
    let sb = start(SandboxConfig {
        orders: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(api(&sb, None).await.0, StatusCode::OK);
    assert_eq!(api(&sb, Some("anything")).await.0, StatusCode::OK);
    let code: Value = reqwest::Client::new()
        .post(format!("{}/_sandbox/codes", sb.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (status, grant) = token(
        &sb,
        Some(("whoever", "whatever")),
        &[
            ("grant_type", "authorization_code"),
            ("code", code["code"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = token(
        &sb,
        None,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", grant["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // Codes stay single-use even in open mode.
    let (status, _) = token(
        &sb,
        None,
        &[
            ("grant_type", "authorization_code"),
            ("code", code["code"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
