//! Determinism, the change log's exactness under the live generator, and
//! the real `keap-sandbox` binary.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use keap_sandbox::{RunningSandbox, SandboxConfig, start};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn get(sb: &RunningSandbox, path: &str) -> Value {
    let resp = reqwest::get(format!("{}{path}", sb.base_url()))
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK, "{path}");
    resp.json().await.expect("json")
}

async fn post(sb: &RunningSandbox, path: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{path}", sb.base_url()))
        .json(&body)
        .send()
        .await
        .expect("request")
}

/// The same scripted operations against any sandbox.
async fn script(sb: &RunningSandbox) {
    post(sb, "/_sandbox/orders", json!({"count": 7})).await;
    for id in [3, 9, 3, 40] {
        post(sb, &format!("/_sandbox/orders/{id}/touch"), json!({})).await;
    }
    reqwest::Client::new()
        .delete(format!("{}/_sandbox/orders/12", sb.base_url()))
        .send()
        .await
        .unwrap();
    post(sb, "/_sandbox/orders", json!({"count": 2})).await;
}

fn config(seed: u64, frozen: bool) -> SandboxConfig {
    SandboxConfig {
        seed,
        orders: 50,
        frozen_clock: frozen.then(|| Utc.with_ymd_and_hms(2024, 2, 2, 2, 2, 2).unwrap()),
        ..Default::default()
    }
}

/// Drops every date so that runs at different real times compare equal.
fn without_dates(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !k.ends_with("_date"))
                .map(|(k, v)| (k.clone(), without_dates(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_dates).collect()),
        other => other.clone(),
    }
}

#[tokio::test]
async fn same_seed_and_operations_give_identical_data() {
    let (a, b, c) = (
        start(config(42, true)).await.unwrap(),
        start(config(42, true)).await.unwrap(),
        start(config(43, true)).await.unwrap(),
    );
    for sb in [&a, &b, &c] {
        script(sb).await;
    }
    let (la, lb, lc) = (
        get(&a, "/crm/rest/v1/orders?order=id").await,
        get(&b, "/crm/rest/v1/orders?order=id").await,
        get(&c, "/crm/rest/v1/orders?order=id").await,
    );
    assert_eq!(
        la["orders"], lb["orders"],
        "frozen clock: byte-identical records"
    );
    assert_eq!(la["count"], 58);
    assert_eq!(
        get(&a, "/_sandbox/changes").await,
        get(&b, "/_sandbox/changes").await
    );
    assert_eq!(
        get(&a, "/elements/api-v2/hubs/ecommerce/orders?pageSize=1000").await,
        get(&b, "/elements/api-v2/hubs/ecommerce/orders?pageSize=1000").await
    );
    // Another seed: same ids, different data.
    let ids = |v: &Value| -> Vec<Value> {
        v["orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].clone())
            .collect()
    };
    assert_eq!(ids(&la), ids(&lc));
    assert_ne!(without_dates(&la["orders"]), without_dates(&lc["orders"]));
}

#[tokio::test]
async fn same_seed_on_the_real_clock_differs_only_in_dates() {
    let a = start(config(7, false)).await.unwrap();
    script(&a).await;
    let la = get(&a, "/crm/rest/v1/orders?order=id").await;
    a.stop().await.unwrap();
    let b = start(config(7, false)).await.unwrap();
    // A different provider time for the second run.
    reqwest::Client::new()
        .put(format!("{}/_sandbox/clock", b.base_url()))
        .json(&json!({"offset_seconds": 86_400}))
        .send()
        .await
        .unwrap();
    script(&b).await;
    let lb = get(&b, "/crm/rest/v1/orders?order=id").await;
    assert_ne!(la["orders"], lb["orders"], "dates follow the clock");
    assert_eq!(without_dates(&la["orders"]), without_dates(&lb["orders"]));
}

type State = BTreeMap<u64, String>;

/// Whether replaying some prefix of `changes` yields exactly `state`
/// (ids → modification dates): the store and the log never diverge.
fn some_prefix_replays_to(changes: &[Value], state: &State) -> bool {
    let mut replay: HashMap<u64, String> = HashMap::new();
    let mut differing = state.len();
    if differing == 0 {
        return true;
    }
    for c in changes {
        let id = c["id"].as_u64().unwrap();
        let before = replay.get(&id) == state.get(&id);
        if c["change"] == "deleted" {
            replay.remove(&id);
        } else {
            replay.insert(id, c["modification_date"].as_str().unwrap().to_owned());
        }
        let after = replay.get(&id) == state.get(&id);
        match (before, after) {
            (true, false) => differing += 1,
            (false, true) => differing -= 1,
            _ => {}
        }
        if differing == 0 {
            return true;
        }
    }
    false
}

fn parse(d: &str) -> DateTime<chrono::FixedOffset> {
    DateTime::parse_from_str(d, "%Y-%m-%dT%H:%M:%S%.3f%z").expect("a Keap date")
}

#[tokio::test]
async fn the_change_log_is_exact_under_a_live_generator() {
    let sb = start(SandboxConfig {
        seed: 99,
        orders: 50,
        create_rate: 250.0,
        update_rate: 400.0,
        ..Default::default()
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let base = sb.base_url();
    let mut served: HashSet<(u64, String)> = HashSet::new();
    let mut deleted = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    // Page through everything with offsets, like a poller, while the
    // generator writes; delete an order now and then as well.
    for round in 0.. {
        let mut offset = 0;
        loop {
            let page: Value = client
                .get(format!(
                    "{base}/crm/rest/v1/orders?limit=50&offset={offset}"
                ))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let orders = page["orders"].as_array().unwrap();
            for o in orders {
                served.insert((
                    o["id"].as_u64().unwrap(),
                    o["modification_date"].as_str().unwrap().to_owned(),
                ));
            }
            if orders.len() < 50 {
                break;
            }
            offset += 50;
        }
        if round % 3 == 0 {
            let id = served.iter().map(|(id, _)| *id).max().unwrap_or(1);
            let resp = client
                .delete(format!("{base}/_sandbox/orders/{id}"))
                .send()
                .await
                .unwrap();
            if resp.status() == StatusCode::NO_CONTENT {
                deleted += 1;
            }
        }
        let changes: Value = client
            .get(format!("{base}/_sandbox/changes"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if changes["changes"].as_array().unwrap().len() >= 600 && deleted >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the generator is too slow");
    }

    // One consistent snapshot of the store, then the log (taken later).
    let snapshot: Value = client
        .get(format!("{base}/crm/rest/v1/orders?limit=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let log: Value = client
        .get(format!("{base}/_sandbox/changes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let changes = log["changes"].as_array().unwrap();
    assert!(
        snapshot["count"].as_u64().unwrap() <= 1000,
        "the snapshot must fit one page"
    );

    // 1. The store equals the log replayed up to some point: no gap, no
    //    reordering between them.
    let state: State = snapshot["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["id"].as_u64().unwrap(),
                o["modification_date"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(state.len() as u64, snapshot["count"].as_u64().unwrap());
    assert!(
        some_prefix_replays_to(changes, &state),
        "store and change log diverge"
    );

    // 2. Everything ever served is a logged state.
    let logged: HashSet<(u64, String)> = changes
        .iter()
        .filter(|c| c["change"] != "deleted")
        .map(|c| {
            (
                c["id"].as_u64().unwrap(),
                c["modification_date"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let unlogged: Vec<_> = served.difference(&logged).collect();
    assert!(unlogged.is_empty(), "served but not logged: {unlogged:?}");

    // 3. The log is in time order, ids are created once and in order, and
    //    nothing happens to an order after its deletion.
    let mut last = parse(changes[0]["modification_date"].as_str().unwrap());
    let mut created = 0;
    let mut gone = HashSet::new();
    let kinds: HashSet<&str> = changes
        .iter()
        .map(|c| c["change"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, HashSet::from(["created", "updated", "deleted"]));
    for c in changes {
        let at = parse(c["modification_date"].as_str().unwrap());
        assert!(at >= last, "log out of time order at {c}");
        last = at;
        let id = c["id"].as_u64().unwrap();
        assert!(!gone.contains(&id), "change after deletion: {c}");
        match c["change"].as_str().unwrap() {
            "created" => {
                created += 1;
                assert_eq!(id, created, "ids are created in sequence");
            }
            "deleted" => {
                gone.insert(id);
            }
            _ => assert!(id <= created),
        }
    }
    // 4. The snapshot is sorted by date, then id.
    let keys: Vec<(DateTime<chrono::FixedOffset>, u64)> = snapshot["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                parse(o["modification_date"].as_str().unwrap()),
                o["id"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn the_binary_prints_its_address_serves_and_exits_0_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keap-sandbox"))
        .args(["--listen", "127.0.0.1:0", "--orders", "4", "--seed", "5"])
        .args(["--client-id", "cid", "--client-secret", "csecret"])
        .args(["--authorization-code", "one", "--authorization-code", "two"])
        .args(["--hub-user", "u", "--hub-organization", "o"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn keap-sandbox");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("read the first line");
    let url = line
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"),
        "{url}"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let resp = client
            .get(format!("{url}/crm/rest/v1/orders"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        for code in ["one", "two"] {
            let grant: Value = client
                .post(format!("{url}/token"))
                .basic_auth("cid", Some("csecret"))
                .form(&[("grant_type", "authorization_code"), ("code", code)])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let page: Value = client
                .get(format!("{url}/crm/rest/v1/orders"))
                .bearer_auth(grant["access_token"].as_str().unwrap())
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(page["count"], 4);
        }
        let hub = client
            .get(format!("{url}/elements/api-v2/hubs/ecommerce/orders"))
            .header("Authorization", "User u, Organization o, Element e")
            .send()
            .await
            .unwrap();
        assert_eq!(hub.status(), StatusCode::OK);
    });

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("keap-sandbox did not exit after SIGTERM");
        }
        // Polling for the exit, bounded by the deadline above.
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn the_binary_refuses_half_configured_credentials() {
    let out = Command::new(env!("CARGO_BIN_EXE_keap-sandbox"))
        .args(["--listen", "127.0.0.1:0", "--client-id", "only-id"])
        .output()
        .expect("run keap-sandbox");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("client-secret"));
}
