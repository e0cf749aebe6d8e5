//! `event-poller validate` as a user runs it: the real binary, real files.

use std::path::Path;
use std::process::Command;

fn validate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_event-poller"))
        .arg("validate")
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .output()
        .expect("run event-poller");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_seed_and_the_documented_spelling_are_valid_and_show_their_urls() {
    let (code, out, err) = validate(&[
        "tests/fixtures/instances/seed.json",
        "tests/fixtures/instances/documented-spelling.json",
        "--at",
        "2024-05-01T12:00:00Z",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.lines().any(|l| l
            == "tests/fixtures/instances/seed.json orders /hubs/ecommerce/orders?where=since='2024-05-01T12:00:00Z'"),
        "{out}"
    );
    assert!(out.contains("documented-spelling.json orders "), "{out}");
}

#[test]
fn the_zone_option_changes_the_rendered_date_and_encodes_the_offset() {
    let (code, out, _) = validate(&[
        "tests/fixtures/instances/seed.json",
        "--at",
        "2024-05-01T12:00:00Z",
        "--zone",
        "Asia/Kathmandu",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("since='2024-05-01T17:45:00%2B05:45'"), "{out}");
}

#[test]
fn broken_files_are_reported_with_the_path_of_the_broken_key() {
    let (code, out, _) = validate(&["tests/fixtures/instances/broken"]);
    assert_eq!(code, 1, "{out}");
    for (file, path) in [
        ("missing-id-field.json", "orders.idField"),
        ("missing-url.json", "orders.url"),
        ("absolute-url.json", "orders.url"),
        ("unknown-placeholder.json", "orders.url"),
        (
            "bad-pattern-letter.json",
            "datesConfiguration.updatedAtFormat",
        ),
        ("bad-zone.json", "datesConfiguration.updatedDateTimezone"),
        (
            "bad-refresh-interval.json",
            "[\"event.poller.refresh_interval\"]",
        ),
        ("invalid-json.json", "$"),
        ("plain-http-base-url.json", "[\"base.url\"]"),
    ] {
        assert!(
            out.lines().any(|l| l.contains(file) && l.contains(path)),
            "no problem for {file} at {path} in:\n{out}"
        );
    }
    // One bad file does not hide a good one given with it.
    let (code, out, _) = validate(&[
        "tests/fixtures/instances/broken/missing-url.json",
        "tests/fixtures/instances/seed.json",
        "--at",
        "2024-05-01T12:00:00Z",
    ]);
    assert_eq!(code, 1);
    assert!(
        out.contains("seed.json orders /hubs/ecommerce/orders"),
        "{out}"
    );
}

#[test]
fn a_bad_time_or_zone_argument_is_a_usage_error() {
    let (code, _, err) = validate(&["tests/fixtures/instances/seed.json", "--at", "noon"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("RFC 3339"), "{err}");
    let (code, _, err) = validate(&["tests/fixtures/instances/seed.json", "--zone", "Mars/Base"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("Mars/Base"), "{err}");
}

/// A resource URL asking for another order than the ascending
/// modification date keyset paging reads pages in would skip records: it
/// is a problem of the file, named at its URL.
#[test]
fn a_conflicting_sort_order_is_refused() {
    let (code, out, _) = validate(&["tests/fixtures/instances/unsafe/descending-order.json"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines().any(|l| l.contains("descending-order.json")
            && l.contains("orders.url")
            && l.contains("order_direction=DESCENDING")),
        "{out}"
    );
}
