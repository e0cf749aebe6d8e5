//! Tests of the instance model against the fixtures in
//! `tests/fixtures/instances` and against hand-written documents.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::javadate::Zone;

const POLLER: &str = r#"$.configuration["event.poller.configuration"]"#;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/instances")
}

fn parse(doc: &Value) -> Result<Instance, Vec<ConfigProblem>> {
    parse_str(Path::new("inst.json"), &doc.to_string())
}

fn problems(doc: &Value) -> Vec<ConfigProblem> {
    match parse(doc) {
        Ok(instance) => panic!("expected problems, loaded {instance:?}"),
        Err(problems) => problems,
    }
}

fn has_problem(problems: &[ConfigProblem], json_path: &str, reason_part: &str) -> bool {
    problems
        .iter()
        .any(|p| p.json_path == json_path && p.reason.contains(reason_part))
}

/// A small valid document in the seed's spelling.
fn doc() -> Value {
    json!({
        "element": {"key": "infusionsoftecommerce"},
        "configuration": {
            "event.notification.enabled": "true",
            "event.poller.configuration": {
                "orders": {
                    "url": "/hubs/ecommerce/orders?where=since='${date:yyyy-MM-dd'T'HH:mm:ssXXX}'",
                    "idField": "id",
                    "datesConfiguration": {
                        "updatedAtField": "modification_date",
                        "updatedAtFormat": "yyyy-MM-dd'T'HH:mm:ssXXX",
                        "createdAtField": "creation_date",
                        "createdAtFormat": "yyyy-MM-dd'T'HH:mm:ssXXX"
                    }
                }
            }
        }
    })
}

fn orders(doc: &mut Value) -> &mut Value {
    &mut doc["configuration"]["event.poller.configuration"]["orders"]
}

#[test]
fn seed_fixture_loads_with_defaults() {
    let instance = load_file(&fixtures().join("seed.json")).unwrap();
    assert_eq!(instance.id, "seed");
    assert_eq!(instance.id_origin, IdOrigin::FileStem);
    assert_eq!(instance.element_key, "infusionsoftecommerce");
    assert!(instance.enabled && instance.is_polled());
    assert_eq!(instance.vendor_type, VendorType::Polling);
    assert_eq!(instance.refresh_interval, Duration::from_secs(15 * 60));
    assert_eq!(instance.callback_url, None);
    assert_eq!(instance.base_url, None);
    assert!(matches!(instance.connection, Connection::Direct));
    assert!(instance.oauth.api_key.is_none() && instance.oauth.api_secret.is_none());
    assert_eq!(
        instance.oauth.callback_url.as_deref(),
        Some("https://www.yourcallbackurl.com")
    );
    assert_eq!(
        instance.oauth.code.as_ref().map(|c| c.expose()),
        Some("Code on the Return URL")
    );
    assert_eq!(instance.backfill_from, None);
    assert_eq!(
        instance.extra.plain("document.tagging"),
        Some(&json!(false))
    );

    let [orders] = instance.resources.as_slice() else {
        panic!("one resource expected: {:?}", instance.resources);
    };
    assert_eq!(orders.name, "orders");
    // The seed's trailing space is gone.
    assert_eq!(
        orders.url.as_str(),
        "/hubs/ecommerce/orders?where=since='${date:yyyy-MM-dd'T'HH:mm:ssXXX}'"
    );
    assert_eq!(orders.id_field.as_str(), "id");
    assert_eq!(orders.updated.path.as_str(), "modification_date");
    assert_eq!(orders.updated.format.pattern(), "yyyy-MM-dd'T'HH:mm:ssXXX");
    assert!(matches!(orders.updated.zone, Zone::Utc));
    let created = orders.created.as_ref().unwrap();
    assert_eq!(created.path.as_str(), "creation_date");
    assert_eq!(orders.page_size, None);
    assert_eq!(orders.poll_delay, Duration::ZERO);
    assert!(orders.filter_by_updated_date && !orders.filter_by_current_date);
    assert_eq!(orders.created_check_tolerance, Duration::from_secs(1));
    assert_eq!(
        orders.url_after(
            Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap(),
            &Zone::Utc
        ),
        "/hubs/ecommerce/orders?where=since='2024-01-02T03:04:05Z'"
    );
}

#[test]
fn documented_spelling_fixture_loads() {
    let instance = load_file(&fixtures().join("documented-spelling.json")).unwrap();
    assert_eq!(instance.id, "4711");
    assert_eq!(instance.id_origin, IdOrigin::Id);
    assert!(instance.enabled);
    assert_eq!(instance.refresh_interval, Duration::from_secs(5 * 60));
    assert_eq!(
        instance.callback_url.as_deref(),
        Some("https://example.com/hooks/keap")
    );
    assert_eq!(
        instance.base_url.as_deref(),
        Some("https://api.infusionsoft.com")
    );
    assert_eq!(
        instance.backfill_from,
        Some(Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap())
    );
    assert_eq!(
        instance.oauth.api_secret.as_ref().map(|s| s.expose()),
        Some("example-client-secret")
    );
    assert_eq!(
        instance
            .extra
            .secret("oauth.user.refresh_token")
            .map(|s| s.expose()),
        Some("example-refresh-token")
    );

    let names: Vec<&str> = instance.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["orders", "transactions"]);
    let orders = &instance.resources[0];
    assert_eq!(orders.page_size, Some(200));
    assert_eq!(orders.poll_delay, Duration::from_secs(60));
    assert!(orders.filter_by_current_date);
    assert_eq!(orders.created_check_tolerance, Duration::from_secs(2));
    // pollDelay moves the reference time back by a minute; gmtDate ignores the
    // service zone.
    let last_poll = Utc.with_ymd_and_hms(2024, 7, 1, 12, 0, 0).unwrap();
    assert_eq!(
        orders.url_after(last_poll, &Zone::parse("Asia/Kolkata").unwrap()),
        "/crm/rest/v1/orders?since=2024-07-01T11:59:00Z&order=updated"
    );

    let transactions = &instance.resources[1];
    assert_eq!(transactions.id_field.as_str(), "transaction.id");
    assert_eq!(
        transactions
            .id_field
            .get(&json!({"transaction": {"id": 99}})),
        Some(&json!(99))
    );
    assert!(
        matches!(transactions.updated.zone, Zone::Named(tz) if tz.name() == "America/New_York")
    );
    assert!(!transactions.filter_by_updated_date);
    assert_eq!(
        transactions.filter_date().path.as_str(),
        "transaction.created"
    );
    assert_eq!(
        transactions.url_after(last_poll, &Zone::Utc),
        "/crm/rest/v1/transactions?since=2024-07-01%2008:00:00"
    );
}

#[test]
fn debug_output_never_shows_secrets() {
    let mut doc: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("documented-spelling.json")).unwrap(),
    )
    .unwrap();
    let cfg = &mut doc["configuration"];
    cfg["connection.mode"] = json!("hub");
    cfg["hub.user.secret"] = json!("hub-user-secret-value");
    cfg["hub.organization.secret"] = json!("hub-org-secret-value");
    cfg["hub.element.token"] = json!("hub-element-token-value");
    cfg["sftp.password"] = json!("sftp-password-value");
    cfg["provider.settings"] = json!({"nested": {"api_key": "nested-key-value"}});
    let instance = parse(&doc).unwrap();
    let Connection::Hub(hub) = &instance.connection else {
        panic!("hub mode expected");
    };
    assert_eq!(
        hub.element_token.as_ref().map(|t| t.expose()),
        Some("hub-element-token-value")
    );
    let debug = format!("{instance:?}");
    for secret in [
        "example-client-id",
        "example-client-secret",
        "example-authorization-code",
        "example-refresh-token",
        "hub-user-secret-value",
        "hub-org-secret-value",
        "hub-element-token-value",
        "sftp-password-value",
        "nested-key-value",
    ] {
        assert!(!debug.contains(secret), "{secret} leaked: {debug}");
    }
}

/// Each broken fixture, the JSON path it must name and part of the reason.
const BROKEN: [(&str, &str, &str); 20] = [
    ("absolute-url.json", "{P}.orders.url", "absolute"),
    (
        "bad-backfill.json",
        r#"$.configuration["event.poller.backfill.from"]"#,
        "RFC 3339",
    ),
    (
        "bad-base-url.json",
        r#"$.configuration["base.url"]"#,
        "absolute http(s) URL",
    ),
    (
        "bad-boolean.json",
        r#"$.configuration["event.notification.enabled"]"#,
        "\"yes\"",
    ),
    ("bad-config-string.json", "{P}", "not valid JSON"),
    ("bad-page-size.json", "{P}.orders.pageSize", "\"many\""),
    (
        "bad-pattern-letter.json",
        "{P}.orders.datesConfiguration.updatedAtFormat",
        "bad date pattern",
    ),
    (
        "bad-refresh-interval.json",
        r#"$.configuration["event.poller.refresh_interval"]"#,
        "got 0",
    ),
    (
        "bad-zone.json",
        "{P}.orders.datesConfiguration.updatedDateTimezone",
        "bad time zone",
    ),
    (
        "conflicting-spellings.json",
        "{P}.orders.datesConfiguration.updatedDateField",
        "conflicts with updatedAtField",
    ),
    (
        "filter-by-missing-created.json",
        "{P}.orders.filterByUpdatedDate",
        "no created date field",
    ),
    ("invalid-json.json", "$", "line 6 column 5"),
    ("many-problems.json", "{P}.orders.idField", "missing"),
    ("missing-element-key.json", "$.element.key", "missing"),
    ("missing-id-field.json", "{P}.orders.idField", "missing"),
    (
        "missing-updated-field.json",
        "{P}.orders.datesConfiguration.updatedAtField",
        "missing",
    ),
    ("missing-url.json", "{P}.orders.url", "missing"),
    ("no-resources.json", "{P}", "no resources to poll"),
    (
        "plain-http-base-url.json",
        r#"$.configuration["base.url"]"#,
        "plain http",
    ),
    (
        "unknown-placeholder.json",
        "{P}.orders.url",
        "unknown placeholder `${lastPoll}` at byte 36",
    ),
];

#[test]
fn every_broken_fixture_names_the_broken_key() {
    for (file, json_path, reason) in BROKEN {
        let path = fixtures().join("broken").join(file);
        let problems = load_file(&path).expect_err(file);
        let json_path = json_path.replace("{P}", POLLER);
        assert!(
            has_problem(&problems, &json_path, reason),
            "{file}: no problem at {json_path} containing {reason:?}: {problems:#?}"
        );
        assert!(problems.iter().all(|p| p.file == path));
    }
}

#[test]
fn broken_fixture_list_is_complete() {
    let loaded = load_path(&fixtures().join("broken"));
    assert!(loaded.instances.is_empty(), "{:?}", loaded.instances);
    let mut files: Vec<String> = loaded
        .problems
        .iter()
        .map(|p| p.file.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    files.dedup();
    let listed: Vec<&str> = BROKEN.iter().map(|(file, _, _)| *file).collect();
    assert_eq!(files, listed);
}

#[test]
fn all_problems_of_a_file_are_reported() {
    let problems = load_file(&fixtures().join("broken/many-problems.json")).unwrap_err();
    let paths: Vec<&str> = problems.iter().map(|p| p.json_path.as_str()).collect();
    let expected = [
        r#"$.configuration["event.poller.refresh_interval"]"#.to_owned(),
        format!("{POLLER}.orders.url"),
        format!("{POLLER}.orders.idField"),
        format!("{POLLER}.orders.datesConfiguration.createdAtFormat"),
        format!("{POLLER}.orders.pollDelay"),
    ];
    assert_eq!(paths, expected, "{problems:#?}");
}

#[test]
fn fixture_directory_loads_without_recursing() {
    let loaded = load_path(&fixtures());
    assert!(loaded.problems.is_empty(), "{:#?}", loaded.problems);
    let ids: Vec<&str> = loaded.instances.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["4711", "seed"]);
}

#[test]
fn duplicate_ids_are_refused_on_the_later_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut named = doc();
    named["name"] = json!("shop");
    std::fs::write(dir.path().join("a.json"), named.to_string()).unwrap();
    std::fs::write(dir.path().join("b.json"), named.to_string()).unwrap();
    std::fs::write(dir.path().join("c.json"), doc().to_string()).unwrap();
    std::fs::write(dir.path().join(".hidden.json"), "not json").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not json").unwrap();

    // The directory and one of its files: a.json is read once.
    let loaded = load_paths(&[dir.path().to_owned(), dir.path().join("a.json")]);
    let ids: Vec<&str> = loaded.instances.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["shop", "c"]);
    let [problem] = loaded.problems.as_slice() else {
        panic!("one problem expected: {:#?}", loaded.problems);
    };
    assert_eq!(problem.file, dir.path().join("b.json"));
    assert_eq!(problem.json_path, "$.name");
    assert!(problem.reason.contains("already used by"), "{problem}");
}

#[test]
fn missing_paths_and_unreadable_files_are_problems() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = load_path(&dir.path().join("nope"));
    assert!(loaded.instances.is_empty());
    assert!(has_problem(&loaded.problems, "$", "cannot read"));

    std::fs::write(dir.path().join("latin1.json"), b"{\"name\": \"caf\xe9\"}").unwrap();
    let problems = load_file(&dir.path().join("latin1.json")).unwrap_err();
    assert!(has_problem(&problems, "$", "not UTF-8"), "{problems:#?}");
}

#[test]
fn id_comes_from_id_then_name_then_file_stem() {
    let mut d = doc();
    d["name"] = json!("  ");
    assert_eq!(parse(&d).unwrap().id, "inst");
    d["name"] = json!(" my shop ");
    assert_eq!(parse(&d).unwrap().id, "my shop");
    d["id"] = json!(" 42 ");
    let instance = parse(&d).unwrap();
    assert_eq!(
        (instance.id.as_str(), instance.id_origin),
        ("42", IdOrigin::Id)
    );
    d["id"] = json!(true);
    assert!(has_problem(&problems(&d), "$.id", "string or a number"));
    let no_stem = parse_str(Path::new(""), &doc().to_string()).unwrap_err();
    assert!(has_problem(&no_stem, "$", "no identity"));
}

#[test]
fn refresh_interval_rules() {
    let interval = |cfg: Value| {
        let mut d = doc();
        for (k, v) in cfg.as_object().unwrap() {
            d["configuration"][k] = v.clone();
        }
        parse(&d).map(|i| i.refresh_interval)
    };
    assert_eq!(interval(json!({})).unwrap(), Duration::from_secs(900));
    assert_eq!(
        interval(json!({"event.poller.refresh_interval": " 15 "})).unwrap(),
        Duration::from_secs(900)
    );
    assert_eq!(
        interval(json!({"event.poller.refresh_interval": 1})).unwrap(),
        Duration::from_secs(60)
    );
    assert_eq!(
        interval(json!({"event.poller.refresh_interval": "15", "event.poller.refresh_interval_seconds": "5"}))
            .unwrap(),
        Duration::from_secs(5)
    );
    for bad in [
        json!({"event.poller.refresh_interval": 0}),
        json!({"event.poller.refresh_interval": "1.5"}),
        json!({"event.poller.refresh_interval": "99999999"}),
        json!({"event.poller.refresh_interval_seconds": "0"}),
        json!({"event.poller.refresh_interval_seconds": true}),
    ] {
        assert!(interval(bad.clone()).is_err(), "{bad}");
    }
}

#[test]
fn poller_configuration_as_object_string_or_empty() {
    let mut d = doc();
    let resources = d["configuration"]["event.poller.configuration"].clone();
    d["configuration"]["event.poller.configuration"] = json!(resources.to_string());
    assert_eq!(parse(&d).unwrap().resources.len(), 1);

    // Empty: fine when not polled, a problem when polling is enabled.
    for empty in [json!(""), json!("  "), json!(null), json!({})] {
        let mut d = doc();
        d["configuration"]["event.poller.configuration"] = empty.clone();
        assert!(
            has_problem(&problems(&d), POLLER, "no resources"),
            "{empty}"
        );
        d["configuration"]["event.notification.enabled"] = json!(false);
        let instance = parse(&d).unwrap();
        assert!(instance.resources.is_empty() && !instance.is_polled());
        d["configuration"]["event.notification.enabled"] = json!(true);
        d["configuration"]["event.vendor.type"] = json!("webhook");
        assert!(parse(&d).unwrap().resources.is_empty());
    }

    let mut d = doc();
    d["configuration"]["event.poller.configuration"] = json!(["orders"]);
    assert!(has_problem(
        &problems(&d),
        POLLER,
        "expected an object of resources"
    ));
    d["configuration"]["event.poller.configuration"] = json!("[1]");
    assert!(has_problem(&problems(&d), POLLER, "got an array"));
}

#[test]
fn date_key_spellings() {
    // Both spellings with the same value are fine.
    let mut d = doc();
    orders(&mut d)["datesConfiguration"]["updatedDateField"] = json!(" modification_date ");
    assert!(parse(&d).is_ok());

    // Documented spelling only, with zones and no created date.
    let mut d = doc();
    orders(&mut d)["datesConfiguration"] = json!({
        "updatedDateField": "modified",
        "updatedDateFormat": "yyyy-MM-dd'T'HH:mm:ss'Z'",
        "updatedDateTimezone": "Asia/Kathmandu"
    });
    let instance = parse(&d).unwrap();
    let orders_resource = &instance.resources[0];
    assert!(orders_resource.created.is_none());
    assert!(!orders_resource.updated.format.has_offset());
    assert!(matches!(orders_resource.updated.zone, Zone::Named(_)));

    let dates = format!("{POLLER}.orders.datesConfiguration");
    let check = |dates_config: Value, key: &str, reason: &str| {
        let mut d = doc();
        orders(&mut d)["datesConfiguration"] = dates_config.clone();
        let found = problems(&d);
        assert!(
            has_problem(&found, &format!("{dates}{key}"), reason),
            "{dates_config}: {found:#?}"
        );
    };
    check(json!(null), "", "missing");
    check(json!("modified"), "", "expected an object");
    check(json!({}), ".updatedDateField", "missing");
    check(
        json!({"updatedDateField": "m"}),
        ".updatedDateFormat",
        "missing: the Java date pattern",
    );
    check(
        json!({"updatedAtField": "m"}),
        ".updatedAtFormat",
        "missing: the Java date pattern",
    );
    check(
        json!({"updatedDateField": "m", "updatedDateFormat": "yyyy", "createdDateFormat": "yyyy"}),
        ".createdDateFormat",
        "without a field",
    );
    check(
        json!({"updatedDateField": "m", "updatedDateFormat": "yyyy", "createdDateTimezone": "UTC"}),
        ".createdDateTimezone",
        "without a field",
    );
    check(
        json!({"updatedDateField": "a..b", "updatedDateFormat": "yyyy"}),
        ".updatedDateField",
        "empty segment",
    );
    check(
        json!({"updatedAtField": "m", "updatedAtFormat": "yyyy", "updatedDateFormat": "yyyyMMdd"}),
        ".updatedDateFormat",
        "conflicts with updatedAtFormat",
    );
    check(
        json!({"updatedDateField": 5, "updatedDateFormat": "yyyy"}),
        ".updatedDateField",
        "expected a string",
    );
    check(
        json!({"updatedAtField": "m", "updatedAtFormat": "yyyy", "updatedAtTimezone": "UTC", "updatedDateTimezone": "Asia/Kolkata"}),
        ".updatedDateTimezone",
        "conflicts with updatedAtTimezone",
    );

    // The seed-style zone key is honoured, not silently ignored.
    let mut d = doc();
    orders(&mut d)["datesConfiguration"]["updatedAtTimezone"] = json!("America/New_York");
    let instance = parse(&d).unwrap();
    assert!(matches!(instance.resources[0].updated.zone, Zone::Named(_)));

    // Problems of one date do not hide each other.
    let mut d = doc();
    orders(&mut d)["datesConfiguration"] = json!({
        "updatedDateFormat": "yyyy-MM-ddTHH",
        "updatedDateTimezone": "Mars/Olympus_Mons"
    });
    let found = problems(&d);
    for key in [
        "updatedDateField",
        "updatedDateFormat",
        "updatedDateTimezone",
    ] {
        assert!(
            has_problem(&found, &format!("{dates}.{key}"), ""),
            "{key}: {found:#?}"
        );
    }
}

#[test]
fn resource_options() {
    let mut d = doc();
    let o = orders(&mut d);
    o["pageSize"] = json!(" 50 ");
    o["pollDelay"] = json!("30");
    o["filterByUpdatedDate"] = json!("FALSE");
    o["filterByCurrentDate"] = json!("true");
    o["createdCheckTolerance"] = json!(0);
    o["unknownKey"] = json!("tolerated");
    let instance = parse(&d).unwrap();
    let r = &instance.resources[0];
    assert_eq!(r.page_size, Some(50));
    assert_eq!(r.poll_delay, Duration::from_secs(30));
    assert!(!r.filter_by_updated_date && r.filter_by_current_date);
    assert_eq!(r.created_check_tolerance, Duration::ZERO);
    assert_eq!(r.filter_date().path.as_str(), "creation_date");
    let at = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    assert_eq!(r.reference_time(at), at - chrono::Duration::seconds(30));

    for (key, bad) in [
        ("pageSize", json!(0)),
        ("pageSize", json!(5_000_000_000_u64)),
        ("pollDelay", json!(-1)),
        ("filterByCurrentDate", json!("maybe")),
        ("createdCheckTolerance", json!("1s")),
        ("url", json!(42)),
        ("url", json!("orders")),
    ] {
        let mut d = doc();
        orders(&mut d)[key] = bad.clone();
        assert!(
            has_problem(&problems(&d), &format!("{POLLER}.orders.{key}"), ""),
            "{key}: {bad}"
        );
    }
}

#[test]
fn resource_names_and_shapes() {
    let mut d = doc();
    let resources = &mut d["configuration"]["event.poller.configuration"];
    resources["my orders"] = resources["orders"].clone();
    resources[""] = resources["orders"].clone();
    resources["contacts"] = json!("not an object");
    let found = problems(&d);
    assert!(has_problem(
        &found,
        &format!(r#"{POLLER}[""]"#),
        "name is empty"
    ));
    assert!(has_problem(
        &found,
        &format!("{POLLER}.contacts"),
        "got a string"
    ));
    assert_eq!(found.len(), 2, "{found:#?}");
}

#[test]
fn configuration_values() {
    let with = |key: &str, value: Value| {
        let mut d = doc();
        d["configuration"][key] = value;
        parse(&d)
    };
    let path = |key: &str| format!("$.configuration[\"{key}\"]");

    assert_eq!(
        with(
            "base.url",
            json!(" https://sandbox.example:8080/crm/rest/v1/ ")
        )
        .unwrap()
        .base_url
        .as_deref(),
        Some("https://sandbox.example:8080/crm/rest/v1")
    );
    for (bad, reason) in [
        ("/crm/rest/v1", "absolute"),
        ("ftp://files.example", "http or https"),
        ("https://user:pw@api.example", "credentials"),
        ("https://api.example/v1?x=1", "query"),
    ] {
        let found = with("base.url", json!(bad)).unwrap_err();
        assert!(
            has_problem(&found, &path("base.url"), reason),
            "{bad}: {found:#?}"
        );
        assert!(found.iter().all(|p| !p.reason.contains("pw@")));
    }
    assert!(with("event.notification.callback.url", json!("not a url")).is_err());
    assert_eq!(
        with("event.notification.callback.url", json!(""))
            .unwrap()
            .callback_url,
        None
    );

    assert_eq!(
        with("event.vendor.type", json!("Webhook"))
            .unwrap()
            .vendor_type,
        VendorType::Webhook
    );
    assert!(has_problem(
        &with("event.vendor.type", json!("push")).unwrap_err(),
        &path("event.vendor.type"),
        "polling or webhook"
    ));
    assert!(has_problem(
        &with("connection.mode", json!("proxy")).unwrap_err(),
        &path("connection.mode"),
        "direct or hub"
    ));
    assert!(matches!(
        with("connection.mode", json!("HUB")).unwrap().connection,
        Connection::Hub(_)
    ));
    assert_eq!(
        with(
            "event.poller.backfill.from",
            json!("2024-03-01T10:00:00+01:00")
        )
        .unwrap()
        .backfill_from,
        Some(Utc.with_ymd_and_hms(2024, 3, 1, 9, 0, 0).unwrap())
    );
    // A blank flag is unset: the default (disabled) applies.
    assert!(
        !with("event.notification.enabled", json!(""))
            .unwrap()
            .enabled
    );
    assert!(has_problem(
        &with("oauth.api.secret", json!({"nested": 1})).unwrap_err(),
        &path("oauth.api.secret"),
        "expected a string"
    ));
}

#[test]
fn document_shape_problems() {
    let found = parse_str(Path::new("x.json"), "[1, 2]").unwrap_err();
    assert!(has_problem(&found, "$", "expected an instance object"));
    let found = parse_str(Path::new("x.json"), "").unwrap_err();
    assert!(has_problem(&found, "$", "not valid JSON"));
    let mut d = doc();
    d["configuration"] = json!("oops");
    d["element"] = json!("infusionsoftecommerce");
    let found = problems(&d);
    assert!(has_problem(&found, "$.configuration", "expected an object"));
    assert!(has_problem(&found, "$.element", "expected an object"));
    assert!(has_problem(&found, "$.element.key", "missing"));
    // A byte order mark is not an error.
    assert!(parse_str(Path::new("x.json"), &format!("\u{feff}{}", doc())).is_ok());
}

/// JSON text that may or may not be valid, built from the keys the parser
/// looks at, so that random cases reach deep into the model.
fn jsonish_value() -> impl Strategy<Value = Value> {
    let text = prop_oneof![
        Just(String::new()),
        Just(" 15 ".to_owned()),
        Just("true".to_owned()),
        Just("-1".to_owned()),
        Just("/o?x=${date:yyyy-MM-dd'T'HH:mm:ssXXX}".to_owned()),
        Just("/o?x=${dateTimeZone:+05:30:yyyy}".to_owned()),
        Just("yyyy-MM-dd'T'HH:mm:ssXXX".to_owned()),
        Just("Asia/Kolkata".to_owned()),
        Just("https://api.example".to_owned()),
        Just("{\"orders\":{\"url\":\"/o\"}}".to_owned()),
        "\\PC{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text.prop_map(Value::String),
    ];
    let key = prop_oneof![
        Just("element"),
        Just("key"),
        Just("id"),
        Just("name"),
        Just("configuration"),
        Just("providerData"),
        Just("code"),
        Just("event.notification.enabled"),
        Just("event.poller.configuration"),
        Just("event.poller.refresh_interval"),
        Just("base.url"),
        Just("orders"),
        Just("url"),
        Just("idField"),
        Just("datesConfiguration"),
        Just("updatedAtField"),
        Just("updatedDateFormat"),
        Just("createdDateTimezone"),
        Just("pageSize"),
        Just("filterByUpdatedDate"),
        Just("x.token"),
    ]
    .prop_map(str::to_owned);
    leaf.prop_recursive(6, 96, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..8)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn parse_str_never_panics_on_text(text in r#"[{}\[\]":, 0-9a-z.$'\\-]{0,200}"#) {
        let _ = parse_str(Path::new("p.json"), &text);
    }

    #[test]
    fn parse_str_never_panics_on_json(value in jsonish_value(), cut in 0usize..400) {
        let text = value.to_string();
        let _ = parse_str(Path::new("p.json"), &text);
        // Truncated documents too.
        let cut = (0..=cut.min(text.len())).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        let _ = parse_str(Path::new("p.json"), &text[..cut]);
    }

    #[test]
    fn parse_str_never_panics_on_random_resources(resource in jsonish_value(), dates in jsonish_value()) {
        let mut d = doc();
        *orders(&mut d) = resource;
        if orders(&mut d).is_object() {
            orders(&mut d)["datesConfiguration"] = dates;
        }
        if let Ok(instance) = parse(&d) {
            for r in &instance.resources {
                let _ = r.url_after(Utc::now(), &Zone::Utc);
            }
        }
    }
}
