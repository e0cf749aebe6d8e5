//! Parsing what providers send: one row per letter and leniency.

use super::{at_offset, compile, zone};

/// Checks that each text parses to the expected instant *and* offset.
fn check(cases: &[(&str, &str, &str, &str)]) {
    for &(pattern, text, zone_id, expected) in cases {
        let expected = at_offset(expected);
        let parsed = compile(pattern).parse(text, &zone(zone_id));
        let parsed = parsed.unwrap_or_else(|e| panic!("{pattern:?} on {text:?} in {zone_id}: {e}"));
        assert_eq!(
            (parsed, parsed.offset()),
            (expected, expected.offset()),
            "{pattern:?} on {text:?} in {zone_id}"
        );
    }
}

const ISO: &str = "yyyy-MM-dd'T'HH:mm:ssXXX";

#[test]
fn any_offset_letter_accepts_any_offset_form() {
    let offsets = [
        ("Z", 0),
        ("z", 0),
        ("+00:00", 0),
        ("+0000", 0),
        ("+00", 0),
        ("-00:00", 0),
        ("-05:30", -19_800),
        ("-0530", -19_800),
        ("+05", 18_000),
        ("+05:45", 20_700),
        ("+18:00", 64_800),
        ("-18:00", -64_800),
        ("+05:30:15", 19_815),
        ("+053015", 19_815),
    ];
    let local = at_offset("2024-02-29T13:05:09Z").naive_utc();
    for letters in [
        "X", "XX", "XXX", "x", "xx", "xxx", "Z", "ZZ", "ZZZ", "ZZZZZ",
    ] {
        let format = compile(&format!("yyyy-MM-dd'T'HH:mm:ss{letters}"));
        for (text_offset, seconds) in offsets {
            let text = format!("2024-02-29T13:05:09{text_offset}");
            // the default zone must not matter when the text has an offset
            let parsed = format.parse(&text, &zone("Asia/Kolkata"));
            let parsed = parsed.unwrap_or_else(|e| panic!("{letters} on {text}: {e}"));
            assert_eq!(
                parsed.offset().local_minus_utc(),
                seconds,
                "{letters} on {text}"
            );
            assert_eq!(parsed.naive_local(), local, "{letters} on {text}");
        }
    }
}

#[test]
fn seconds_before_an_offset_take_an_optional_fraction() {
    check(&[
        // Keap
        (
            ISO,
            "2019-10-25T18:53:10.000+0000",
            "UTC",
            "2019-10-25T18:53:10Z",
        ),
        (
            ISO,
            "2019-10-25T18:53:10.5Z",
            "UTC",
            "2019-10-25T18:53:10.5Z",
        ),
        (
            ISO,
            "2019-10-25T18:53:10.123456789-03:30",
            "UTC",
            "2019-10-25T18:53:10.123456789-03:30",
        ),
        (ISO, "2019-10-25T18:53:10Z", "UTC", "2019-10-25T18:53:10Z"),
        // ... and before a quoted 'Z' or the end of the pattern
        (
            "yyyy-MM-dd'T'HH:mm:ss'Z'",
            "2019-10-25T18:53:10.123Z",
            "UTC",
            "2019-10-25T18:53:10.123Z",
        ),
        (
            "yyyy-MM-dd HH:mm:ss",
            "2019-10-25 18:53:10.1",
            "UTC",
            "2019-10-25T18:53:10.1Z",
        ),
        (
            "yyyy-MM-dd HH:mm:s",
            "2019-10-25 18:53:7.25",
            "UTC",
            "2019-10-25T18:53:07.25Z",
        ),
    ]);
}

#[test]
fn a_dotted_fraction_takes_one_to_nine_digits_or_none() {
    let pattern = "yyyy-MM-dd'T'HH:mm:ss.SSSXXX";
    check(&[
        (
            pattern,
            "2024-01-05T10:00:00.123Z",
            "UTC",
            "2024-01-05T10:00:00.123Z",
        ),
        (
            pattern,
            "2024-01-05T10:00:00.1Z",
            "UTC",
            "2024-01-05T10:00:00.1Z",
        ),
        (
            pattern,
            "2024-01-05T10:00:00.123456Z",
            "UTC",
            "2024-01-05T10:00:00.123456Z",
        ),
        (
            pattern,
            "2024-01-05T10:00:00.123456789Z",
            "UTC",
            "2024-01-05T10:00:00.123456789Z",
        ),
        (
            pattern,
            "2024-01-05T10:00:00.000000001Z",
            "UTC",
            "2024-01-05T10:00:00.000000001Z",
        ),
        (
            pattern,
            "2024-01-05T10:00:00Z",
            "UTC",
            "2024-01-05T10:00:00Z",
        ),
        (
            "HH:mm:ss,SSS yyyy-MM-dd",
            "10:00:00,5 2024-01-05",
            "UTC",
            "2024-01-05T10:00:00.5Z",
        ),
        (
            "HH:mm:ss.S yyyy-MM-dd",
            "10:00:00.987654321 2024-01-05",
            "UTC",
            "2024-01-05T10:00:00.987654321Z",
        ),
        // an undotted fraction followed by a number has its exact width
        (
            "yyyyMMddHHmmssSSSZ",
            "20240105100000123+0100",
            "UTC",
            "2024-01-05T10:00:00.123+01:00",
        ),
        (
            "yyyyMMddHHmmssSSSX",
            "2024010510000012Z",
            "UTC",
            "2024-01-05T10:00:00.12Z",
        ),
        (
            "SSSyyyyMMddHHmmss",
            "12320240105100000",
            "UTC",
            "2024-01-05T10:00:00.123Z",
        ),
    ]);
}

#[test]
fn reads_every_numeric_letter() {
    check(&[
        (
            "yyyyMMddHHmmss",
            "20240105070309",
            "UTC",
            "2024-01-05T07:03:09Z",
        ),
        ("yyyyMMdd", "20240105", "UTC", "2024-01-05T00:00:00Z"),
        (
            "M/d/yyyy H:m:s",
            "1/5/2024 7:3:9",
            "UTC",
            "2024-01-05T07:03:09Z",
        ),
        (
            "M/d/yyyy H:m:s",
            "12/25/2024 17:30:59",
            "UTC",
            "2024-12-25T17:30:59Z",
        ),
        ("yy-MM-dd", "99-01-05", "UTC", "2099-01-05T00:00:00Z"),
        ("yy-MM-dd", "00-01-05", "UTC", "2000-01-05T00:00:00Z"),
        ("y-MM-dd", "99-01-05", "UTC", "0099-01-05T00:00:00Z"),
        ("y-MM-dd", "2024-01-05", "UTC", "2024-01-05T00:00:00Z"),
        ("yyy-MM-dd", "2024-01-05", "UTC", "2024-01-05T00:00:00Z"),
        (
            "yyyy-MM-dd",
            "+12024-01-05",
            "UTC",
            "+12024-01-05T00:00:00+00:00",
        ),
        ("yyyy-MM-dd", "0001-01-01", "UTC", "0001-01-01T00:00:00Z"),
        // missing time fields at the end are zero
        (
            "yyyy-MM-dd HH",
            "2024-01-05 07",
            "UTC",
            "2024-01-05T07:00:00Z",
        ),
        (
            "yyyy-MM-dd HH:mm",
            "2024-01-05 07:03",
            "UTC",
            "2024-01-05T07:03:00Z",
        ),
        (
            "yyyy-MM-dd",
            "2024-01-05",
            "Asia/Kolkata",
            "2024-01-05T00:00:00+05:30",
        ),
    ]);
}

#[test]
fn reads_names_case_insensitively() {
    let rfc1123 = "EEE, dd MMM yyyy HH:mm:ss Z";
    check(&[
        (
            rfc1123,
            "Fri, 05 Jan 2024 10:00:00 +0000",
            "UTC",
            "2024-01-05T10:00:00Z",
        ),
        (
            rfc1123,
            "fri, 05 JAN 2024 10:00:00 +0000",
            "UTC",
            "2024-01-05T10:00:00Z",
        ),
        (
            rfc1123,
            "FRI, 05 jan 2024 10:00:00 -0800",
            "UTC",
            "2024-01-05T10:00:00-08:00",
        ),
        (
            "EEEE, MMMM d, yyyy",
            "Friday, January 5, 2024",
            "UTC",
            "2024-01-05T00:00:00Z",
        ),
        (
            "EEEE, MMMM d, yyyy",
            "friday, september 6, 2024",
            "UTC",
            "2024-09-06T00:00:00Z",
        ),
        (
            "MMMM d, yyyy h:mm a",
            "January 5, 2024 7:03 pm",
            "UTC",
            "2024-01-05T19:03:00Z",
        ),
        (
            "MMMM d, yyyy h:mm a",
            "May 5, 2024 7:03 Am",
            "UTC",
            "2024-05-05T07:03:00Z",
        ),
        (
            "yyyy-MM-dd hh:mm a",
            "2024-01-05 12:00 AM",
            "UTC",
            "2024-01-05T00:00:00Z",
        ),
        (
            "yyyy-MM-dd hh:mm a",
            "2024-01-05 12:30 PM",
            "UTC",
            "2024-01-05T12:30:00Z",
        ),
        (
            "yyyy-MM-dd hh:mm a",
            "2024-01-05 11:59 PM",
            "UTC",
            "2024-01-05T23:59:00Z",
        ),
        // HH and a may both be present if they agree
        (
            "yyyy-MM-dd HH:mm a",
            "2024-01-05 17:00 PM",
            "UTC",
            "2024-01-05T17:00:00Z",
        ),
        (
            "E dd/MM/yyyy",
            "Sun 03/11/2024",
            "UTC",
            "2024-11-03T00:00:00Z",
        ),
    ]);
}

#[test]
fn without_an_offset_reads_local_time_in_the_default_zone() {
    let local = "yyyy-MM-dd HH:mm:ss";
    let quoted_z = "yyyy-MM-dd'T'HH:mm:ss'Z'";
    check(&[
        (local, "2024-07-01 12:00:00", "UTC", "2024-07-01T12:00:00Z"),
        (
            local,
            "2024-07-01 12:00:00",
            "+05:30",
            "2024-07-01T12:00:00+05:30",
        ),
        (
            local,
            "2024-07-01 12:00:00",
            "America/New_York",
            "2024-07-01T12:00:00-04:00",
        ),
        (
            local,
            "2024-01-01 12:00:00",
            "America/New_York",
            "2024-01-01T12:00:00-05:00",
        ),
        (
            local,
            "2024-01-01 12:00:00",
            "Asia/Kathmandu",
            "2024-01-01T12:00:00+05:45",
        ),
        // a quoted 'Z' is text: the zone still applies
        (
            quoted_z,
            "2024-07-01T12:00:00Z",
            "UTC",
            "2024-07-01T12:00:00Z",
        ),
        (
            quoted_z,
            "2024-07-01T12:00:00Z",
            "Asia/Kolkata",
            "2024-07-01T12:00:00+05:30",
        ),
        // DST overlaps take the earlier offset (the earlier instant), as Java
        (
            local,
            "2024-11-03 01:30:00",
            "America/New_York",
            "2024-11-03T01:30:00-04:00",
        ),
        (
            local,
            "2024-11-03 00:59:59",
            "America/New_York",
            "2024-11-03T00:59:59-04:00",
        ),
        (
            local,
            "2024-11-03 02:00:00",
            "America/New_York",
            "2024-11-03T02:00:00-05:00",
        ),
        (
            local,
            "2024-04-07 01:45:00",
            "Australia/Lord_Howe",
            "2024-04-07T01:45:00+11:00",
        ),
        (
            local,
            "2024-04-07 02:00:00",
            "Australia/Lord_Howe",
            "2024-04-07T02:00:00+10:30",
        ),
        (
            local,
            "2150-07-01 12:00:00",
            "America/New_York",
            "2150-07-01T12:00:00-04:00",
        ),
        (
            local,
            "2150-11-01 01:30:00",
            "America/New_York",
            "2150-11-01T01:30:00-04:00",
        ),
        // right after a gap
        (
            local,
            "2024-03-10 03:00:00",
            "America/New_York",
            "2024-03-10T03:00:00-04:00",
        ),
        (
            local,
            "2024-03-10 01:59:59",
            "America/New_York",
            "2024-03-10T01:59:59-05:00",
        ),
    ]);
}

#[test]
fn keeps_the_offset_of_the_text() {
    let format = compile(ISO);
    let dt = format.parse("2024-07-01T12:00:00-03:30", &zone("Asia/Kolkata"));
    let dt = dt.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dt.offset().local_minus_utc(), -(3 * 3600 + 1800));
    assert_eq!(dt.to_rfc3339(), "2024-07-01T12:00:00-03:30");
}
