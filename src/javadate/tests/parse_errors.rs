//! Parsing errors: every pitfall is an error whose message names the text,
//! the pattern, and what was expected where.

use super::{compile, zone};
use crate::javadate::ParseError;

fn error(pattern: &str, text: &str, zone_id: &str) -> ParseError {
    match compile(pattern).parse(text, &zone(zone_id)) {
        Ok(dt) => panic!("{pattern:?} on {text:?} gave {dt}, expected an error"),
        Err(e) => e,
    }
}

/// Checks the variant (by name) and that the message quotes the text, the
/// pattern and every fragment given.
fn check(cases: &[(&str, &str, &str, &[&str])]) {
    for &(pattern, text, variant, fragments) in cases {
        let e = error(pattern, text, "America/New_York");
        let message = e.to_string();
        let debug = format!("{e:?}");
        assert!(
            debug.starts_with(variant),
            "{pattern:?} on {text:?}: {debug}"
        );
        assert!(
            message.contains(&format!("{text:?}")),
            "text missing: {message}"
        );
        assert!(
            message.contains(&format!("{pattern:?}")),
            "pattern missing: {message}"
        );
        for fragment in fragments {
            assert!(
                message.contains(fragment),
                "{fragment:?} missing: {message}"
            );
        }
    }
}

const DATE: &str = "yyyy-MM-dd";
const TIME: &str = "yyyy-MM-dd HH:mm:ss";
const ISO: &str = "yyyy-MM-dd'T'HH:mm:ssXXX";

#[test]
fn impossible_dates_are_errors() {
    check(&[
        // Java's default (SMART) resolver would move these to the 30th/28th
        (
            DATE,
            "2024-04-31",
            "InvalidDate",
            &["2024-04-31 is not a valid date"],
        ),
        (
            DATE,
            "2023-02-29",
            "InvalidDate",
            &["2023-02-29 is not a valid date"],
        ),
        (DATE, "2024-02-30", "InvalidDate", &["2024-02-30"]),
        (
            DATE,
            "2024-13-01",
            "OutOfRange",
            &["month 13 at position 5", "1..=12"],
        ),
        (DATE, "2024-00-01", "OutOfRange", &["month 0 at position 5"]),
        (
            DATE,
            "2024-01-32",
            "OutOfRange",
            &["day 32 at position 8", "1..=31"],
        ),
        (DATE, "2024-01-00", "OutOfRange", &["day 0"]),
        (DATE, "0000-01-01", "OutOfRange", &["year 0 at position 0"]),
        (
            "yyyy-MM-dd",
            "+262143-01-01",
            "InvalidDate",
            &["262143-01-01"],
        ),
    ]);
}

#[test]
fn impossible_times_are_errors() {
    check(&[
        (
            TIME,
            "2024-01-05 25:00:00",
            "OutOfRange",
            &["hour 25 at position 11", "0..=23"],
        ),
        // Java's default resolver turns 24:00 into the next midnight
        (TIME, "2024-01-05 24:00:00", "OutOfRange", &["hour 24"]),
        (
            TIME,
            "2024-01-05 10:60:00",
            "OutOfRange",
            &["minute 60 at position 14"],
        ),
        (
            TIME,
            "2024-01-05 10:00:60",
            "OutOfRange",
            &["second 60 at position 17"],
        ),
        (
            "yyyy-MM-dd hh:mm a",
            "2024-01-05 13:00 PM",
            "OutOfRange",
            &["clock hour 13", "1..=12"],
        ),
        (
            "yyyy-MM-dd hh:mm a",
            "2024-01-05 00:00 AM",
            "OutOfRange",
            &["clock hour 0"],
        ),
    ]);
}

#[test]
fn fields_that_disagree_are_errors() {
    check(&[
        (
            "EEE yyyy-MM-dd",
            "Sat 2024-01-05",
            "Conflict",
            &["Sat does not match 2024-01-05, a Fri"],
        ),
        (
            "EEEE yyyy-MM-dd",
            "Monday 2024-01-05",
            "Conflict",
            &["Mon does not match"],
        ),
        (
            "yyyy-MM-dd HH:mm a",
            "2024-01-05 05:00 PM",
            "Conflict",
            &["hour 5 does not match"],
        ),
        (
            "yyyy-MM-dd HH hh a",
            "2024-01-05 17 04 PM",
            "Conflict",
            &["hour 17"],
        ),
        (
            "yyyy yyyy-MM-dd",
            "2024 2025-01-05",
            "Conflict",
            &["year 2025 differs from year 2024"],
        ),
        (
            "MMM yyyy-MM-dd",
            "Feb 2024-01-05",
            "Conflict",
            &["month 1 differs from month 2"],
        ),
    ]);
}

#[test]
fn missing_fields_are_errors() {
    check(&[
        (
            "yyyy-MM-dd hh:mm",
            "2024-01-05 10:00",
            "Incomplete",
            &["no AM/PM (a)"],
        ),
        (
            "yyyy-MM-dd a",
            "2024-01-05 PM",
            "Incomplete",
            &["no hour (H or h) to go with AM/PM"],
        ),
        ("MM-dd HH:mm", "01-05 10:00", "Incomplete", &["no year (y)"]),
        ("yyyy-dd", "2024-05", "Incomplete", &["no month (M)"]),
        ("yyyy-MM", "2024-05", "Incomplete", &["no day of month (d)"]),
        ("yyyy-MM-dd mm", "2024-01-05 30", "Incomplete", &["no hour"]),
        (
            "yyyy-MM-dd HH:ss",
            "2024-01-05 10:30",
            "Incomplete",
            &["no minute (m)"],
        ),
        (
            "yyyy-MM-dd HH:mm SSS",
            "2024-01-05 10:30 123",
            "Incomplete",
            &["no second (s)"],
        ),
    ]);
}

#[test]
fn text_that_does_not_match_is_an_error() {
    check(&[
        (
            DATE,
            "",
            "Expected",
            &["expected four-digit year (yyyy) at position 0, found end of text"],
        ),
        (
            DATE,
            "hello",
            "Expected",
            &["expected four-digit year (yyyy) at position 0, found \"hello\""],
        ),
        (DATE, "24-01-05", "Expected", &["four-digit year"]),
        (
            DATE,
            "12024-01-05",
            "Expected",
            &["a longer year needs a leading +"],
        ),
        (
            DATE,
            "2024-1-05",
            "Expected",
            &["expected two-digit month (MM) at position 5, found \"1-05\""],
        ),
        (
            DATE,
            "2024/01/05",
            "Expected",
            &["expected \"-\" at position 4"],
        ),
        (
            "M/d/yyyy",
            "x/5/2024",
            "Expected",
            &["expected month (M) at position 0"],
        ),
        (
            DATE,
            "2024-01-05x",
            "TrailingText",
            &["unexpected \"x\" at position 10"],
        ),
        (
            DATE,
            "2024-01-05 10:00",
            "TrailingText",
            &["unexpected \" 10:00\" at position 10"],
        ),
        (
            DATE,
            "２０２４-01-05",
            "Expected",
            &["four-digit year", "position 0"],
        ),
        (
            "'é'yyyy-MM-dd",
            "é2024-01-0x",
            "Expected",
            &["two-digit day (dd) at position 9"],
        ),
        (
            "yyyy-MM-dd'T'HH",
            "2024-01-05t10",
            "Expected",
            &["expected \"T\" at position 10"],
        ),
        (
            "dd MMM yyyy",
            "05 Sept 2024",
            "Expected",
            &["expected \" \" at position 6"],
        ),
        (
            "dd MMM yyyy",
            "05 Foo 2024",
            "Expected",
            &["month abbreviation (Jan..Dec) at position 3"],
        ),
        (
            "dd MMMM yyyy",
            "05 Jan 2024",
            "Expected",
            &["month name (January..December)"],
        ),
        (
            "EEE dd",
            "Fr 05",
            "Expected",
            &["day abbreviation (Mon..Sun) at position 0"],
        ),
        (
            "yyyy-MM-dd hh a",
            "2024-01-05 10 XM",
            "Expected",
            &["AM or PM at position 14"],
        ),
    ]);
}

#[test]
fn bad_offsets_and_fractions_are_errors() {
    check(&[
        (
            ISO,
            "2024-01-05T10:00:00",
            "Expected",
            &["offset (Z, +hh, +hhmm or +hh:mm) at position 19, found end of text"],
        ),
        (
            ISO,
            "2024-01-05T10:00:00 Z",
            "Expected",
            &["offset", "position 19"],
        ),
        (
            ISO,
            "2024-01-05T10:00:00UTC",
            "Expected",
            &["offset", "found \"UTC\""],
        ),
        (
            ISO,
            "2024-01-05T10:00:00+5",
            "Expected",
            &["offset", "position 19"],
        ),
        (
            ISO,
            "2024-01-05T10:00:00+19:00",
            "OutOfRange",
            &["offset +19:00 at position 19"],
        ),
        (
            ISO,
            "2024-01-05T10:00:00+18:01",
            "OutOfRange",
            &["offset +18:01"],
        ),
        (
            ISO,
            "2024-01-05T10:00:00+05:60",
            "OutOfRange",
            &["offset +05:60"],
        ),
        (
            ISO,
            "2024-01-05T10:00:00+05:",
            "TrailingText",
            &["unexpected \":\" at position 22"],
        ),
        (
            ISO,
            "2024-01-05T10:00:00.Z",
            "Expected",
            &["1 to 9 fraction digits at position 20"],
        ),
        (
            ISO,
            "2024-01-05T10:00:00.1234567891Z",
            "Expected",
            &["1 to 9 fraction digits at position 20"],
        ),
        (
            ISO,
            "2024-01-05T10:00:00,5Z",
            "Expected",
            &["offset", "position 19"],
        ),
        (
            "yyyy-MM-dd'T'HH:mm:ss.SSSX",
            "2024-01-05T10:00:00.Z",
            "Expected",
            &["1 to 9 fraction digits"],
        ),
        // an undotted fraction followed by a number must have its exact width
        (
            "yyyy-MM-dd'T'SSSHH",
            "2024-01-05T12",
            "Expected",
            &["3 fraction digits at position 11"],
        ),
        // a quoted 'Z' is not an offset
        (
            "yyyy-MM-dd'T'HH:mm:ss'Z'",
            "2024-01-05T10:00:00+00:00",
            "Expected",
            &["expected \"Z\" at position 19"],
        ),
    ]);
}

#[test]
fn a_local_time_in_a_dst_gap_is_an_error() {
    let cases = [
        (
            "2024-03-10 02:30:00",
            "America/New_York",
            "local time 2024-03-10 02:30:00 does not exist in America/New_York",
        ),
        (
            "2024-03-10 02:00:00",
            "America/New_York",
            "2024-03-10 02:00:00 does not exist",
        ),
        (
            "2024-10-06 02:15:00",
            "Australia/Lord_Howe",
            "does not exist in Australia/Lord_Howe",
        ),
        (
            "2024-03-31 01:30:00",
            "Europe/London",
            "does not exist in Europe/London",
        ),
        (
            "2100-03-14 02:30:00",
            "America/New_York",
            "2100-03-14 02:30:00 does not exist",
        ),
    ];
    for (text, zone_id, fragment) in cases {
        let e = compile(TIME).parse(text, &zone(zone_id));
        match e {
            Err(e @ ParseError::NonexistentLocalTime { .. }) => {
                assert!(e.to_string().contains(fragment), "{e}");
                assert!(e.to_string().contains("daylight-saving"), "{e}");
            }
            other => panic!("{text} in {zone_id}: {other:?}"),
        }
    }
    // the same text with an offset is fine: the offset decides
    let with_offset = compile("yyyy-MM-dd HH:mm:ssXXX");
    let dt = with_offset.parse("2024-03-10 02:30:00-05:00", &zone("America/New_York"));
    assert_eq!(
        dt.map(|d| d.to_rfc3339()),
        Ok("2024-03-10T02:30:00-05:00".to_owned())
    );
}

#[test]
fn long_garbage_is_clipped_in_the_message() {
    let garbage = "x".repeat(10_000);
    let message = error(DATE, &garbage, "UTC").to_string();
    assert!(message.len() < 300, "{} bytes", message.len());
    assert!(message.contains(&format!("{}…", "x".repeat(100))));
    let message = error("yyyy", &format!("2024{garbage}"), "UTC").to_string();
    assert!(
        message.contains("unexpected \"xxxxxxxxxxxx…\" at position 4"),
        "{message}"
    );
}
