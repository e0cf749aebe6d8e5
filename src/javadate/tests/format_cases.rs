//! Formatting, one row per letter and pitfall.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};

use super::{at, compile, zone};

/// 2024-02-29 (leap day, a Thursday) 13:05:09.123456789 UTC.
const LEAP: &str = "2024-02-29T13:05:09.123456789Z";

#[test]
fn formats_every_letter() {
    let cases: &[(&str, &str, &str, &str)] = &[
        // pattern, instant, zone, expected
        (
            "yyyy-MM-dd'T'HH:mm:ssXXX",
            "1970-01-01T00:00:00Z",
            "UTC",
            "1970-01-01T00:00:00Z",
        ),
        (
            "yyyy-MM-dd'T'HH:mm:ssXXX",
            LEAP,
            "+05:30",
            "2024-02-29T18:35:09+05:30",
        ),
        (
            "yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
            LEAP,
            "UTC",
            "2024-02-29T13:05:09.123Z",
        ),
        // years
        ("yyyy", LEAP, "UTC", "2024"),
        ("yyy", LEAP, "UTC", "2024"),
        ("y", LEAP, "UTC", "2024"),
        ("yy", LEAP, "UTC", "24"),
        ("yy", "2009-06-01T00:00:00Z", "UTC", "09"),
        (
            "yyyy|yyy|y|yy",
            "0005-06-01T00:00:00Z",
            "UTC",
            "0005|005|5|05",
        ),
        // year 0 is 1 BC: Java prints the year-of-era
        ("yyyy|y", "0000-06-01T00:00:00Z", "UTC", "0001|1"),
        // end of year crosses into the next in a positive offset
        (
            "yyyy-MM-dd HH:mm",
            "2023-12-31T23:59:59Z",
            "+05:45",
            "2024-01-01 05:44",
        ),
        (
            "yyyy-MM-dd HH:mm",
            "2024-01-01T00:00:00Z",
            "-03:30",
            "2023-12-31 20:30",
        ),
        // months and days
        ("M/d", "2024-01-05T00:00:00Z", "UTC", "1/5"),
        ("MM/dd", "2024-01-05T00:00:00Z", "UTC", "01/05"),
        ("M/d", "2024-12-25T00:00:00Z", "UTC", "12/25"),
        ("MMM MMMM", "2024-09-01T00:00:00Z", "UTC", "Sep September"),
        ("MMM MMMM", "2024-05-01T00:00:00Z", "UTC", "May May"),
        ("E|EE|EEE|EEEE", LEAP, "UTC", "Thu|Thu|Thu|Thursday"),
        ("EEEE", "2024-03-03T00:00:00Z", "UTC", "Sunday"),
        // hours: midnight, noon, afternoon
        (
            "H|HH|h|hh|a",
            "2024-01-05T00:05:00Z",
            "UTC",
            "0|00|12|12|AM",
        ),
        (
            "H|HH|h|hh|a",
            "2024-01-05T12:00:00Z",
            "UTC",
            "12|12|12|12|PM",
        ),
        (
            "H|HH|h|hh|a",
            "2024-01-05T13:05:00Z",
            "UTC",
            "13|13|1|01|PM",
        ),
        (
            "H|HH|h|hh|a",
            "2024-01-05T11:59:00Z",
            "UTC",
            "11|11|11|11|AM",
        ),
        ("m|mm|s|ss", "2024-01-05T13:05:09Z", "UTC", "5|05|9|09"),
        // fractions are truncated, never rounded
        (
            "S|SS|SSS|SSSS|SSSSSS|SSSSSSSSS",
            LEAP,
            "UTC",
            "1|12|123|1234|123456|123456789",
        ),
        ("SSS", "2023-12-31T23:59:59.9999Z", "UTC", "999"),
        (
            "SSSSSSSSS",
            "2024-01-01T00:00:00.000000001Z",
            "UTC",
            "000000001",
        ),
        ("ss.SSS", "2024-01-01T00:00:00Z", "UTC", "00.000"),
        ("ss,SSS", LEAP, "UTC", "09,123"),
        // literals
        ("yyyy-MM-dd'T'HH", LEAP, "UTC", "2024-02-29T13"),
        ("h 'o''clock'", LEAP, "UTC", "1 o'clock"),
        ("''yy", LEAP, "UTC", "'24"),
        ("yyyy'''s'", LEAP, "UTC", "2024's"),
        ("'It''s' h a", LEAP, "UTC", "It's 1 PM"),
        ("dd·MM é", LEAP, "UTC", "29·02 é"),
        ("", LEAP, "UTC", ""),
        ("'Z'", LEAP, "UTC", "Z"),
        // named zones: New York winter and summer
        (
            "yyyy-MM-dd HH:mmXXX",
            "2024-01-15T12:00:00Z",
            "America/New_York",
            "2024-01-15 07:00-05:00",
        ),
        (
            "yyyy-MM-dd HH:mmXXX",
            "2024-07-15T12:00:00Z",
            "America/New_York",
            "2024-07-15 08:00-04:00",
        ),
        (
            "yyyy-MM-dd HH:mmXXX",
            "2024-07-15T12:00:00Z",
            "Asia/Kathmandu",
            "2024-07-15 17:45+05:45",
        ),
        (
            "yyyy-MM-dd HH:mmXXX",
            "2024-01-15T12:00:00Z",
            "Australia/Lord_Howe",
            "2024-01-15 23:00+11:00",
        ),
        (
            "yyyy-MM-dd HH:mmXXX",
            "2024-07-15T12:00:00Z",
            "Australia/Lord_Howe",
            "2024-07-15 22:30+10:30",
        ),
        (
            "yyyy-MM-dd HH:mmXXX",
            "2024-07-15T12:00:00Z",
            "IST",
            "2024-07-15 17:30+05:30",
        ),
        (
            "yyyy-MM-dd HH:mmXXX",
            "2024-07-15T12:00:00Z",
            "EST",
            "2024-07-15 07:00-05:00",
        ),
        // years that need a sign or more digits
        (
            "yyyy|y|yyy|yy",
            "+12345-06-01T00:00:00+00:00",
            "UTC",
            "+12345|12345|12345|45",
        ),
    ];
    for &(pattern, instant, zone_id, expected) in cases {
        let got = compile(pattern).format(at(instant), &zone(zone_id));
        assert_eq!(got, expected, "{pattern:?} at {instant} in {zone_id}");
    }
}

#[test]
fn formats_every_offset_style() {
    // offset of the zone -> X, XX, XXX, x, xx, xxx, Z, ZZ, ZZZ, ZZZZZ
    let cases: &[(&str, [&str; 10])] = &[
        (
            "UTC",
            [
                "Z", "Z", "Z", "+00", "+0000", "+00:00", "+0000", "+0000", "+0000", "Z",
            ],
        ),
        (
            "+05:30",
            [
                "+0530", "+0530", "+05:30", "+0530", "+0530", "+05:30", "+0530", "+0530", "+0530",
                "+05:30",
            ],
        ),
        (
            "+05:45",
            [
                "+0545", "+0545", "+05:45", "+0545", "+0545", "+05:45", "+0545", "+0545", "+0545",
                "+05:45",
            ],
        ),
        (
            "+05:00",
            [
                "+05", "+0500", "+05:00", "+05", "+0500", "+05:00", "+0500", "+0500", "+0500",
                "+05:00",
            ],
        ),
        (
            "-03:30",
            [
                "-0330", "-0330", "-03:30", "-0330", "-0330", "-03:30", "-0330", "-0330", "-0330",
                "-03:30",
            ],
        ),
        (
            "-00:30",
            [
                "-0030", "-0030", "-00:30", "-0030", "-0030", "-00:30", "-0030", "-0030", "-0030",
                "-00:30",
            ],
        ),
        (
            "+14:00",
            [
                "+14", "+1400", "+14:00", "+14", "+1400", "+14:00", "+1400", "+1400", "+1400",
                "+14:00",
            ],
        ),
        // seconds are dropped except by ZZZZZ, as in Java
        (
            "-00:44:30",
            [
                "-0044",
                "-0044",
                "-00:44",
                "-0044",
                "-0044",
                "-00:44",
                "-0044",
                "-0044",
                "-0044",
                "-00:44:30",
            ],
        ),
    ];
    let letters = [
        "X", "XX", "XXX", "x", "xx", "xxx", "Z", "ZZ", "ZZZ", "ZZZZZ",
    ];
    let instant = at("2024-06-01T12:00:00Z");
    for (zone_id, expected) in cases {
        for (letters, expected) in letters.iter().zip(expected) {
            let got = compile(letters).format(instant, &zone(zone_id));
            assert_eq!(&got, expected, "{letters} in {zone_id}");
        }
    }
}

#[test]
fn formats_a_leap_second_as_the_last_nanosecond_of_the_second() {
    let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
        .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
        .map(|naive| Utc.from_utc_datetime(&naive))
        .expect("chrono represents leap seconds");
    let got = compile("HH:mm:ss.SSSSSSSSS").format(leap, &zone("UTC"));
    assert_eq!(got, "23:59:59.999999999");
}

#[test]
fn formats_the_extremes_of_chrono_without_panicking() {
    let format = compile("yyyy-MM-dd'T'HH:mm:ss.SSSXXX EEEE MMMM a yy y");
    for instant in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
        for zone_id in ["UTC", "+18:00", "-18:00", "America/New_York"] {
            assert!(!format.format(instant, &zone(zone_id)).is_empty());
        }
    }
}

#[test]
fn output_is_allocated_once_with_enough_room() {
    let format = compile("EEEE, dd MMMM yyyy 'at' hh:mm:ss.SSSSSSSSS a xxx");
    let out = format.format(at("2024-09-25T23:59:59.999999999Z"), &zone("-03:30"));
    assert_eq!(
        out,
        "Wednesday, 25 September 2024 at 08:29:59.999999999 PM -03:30"
    );
    // Reserved up front and never grown: the capacity is the compiled bound.
    assert_eq!(out.capacity(), format.compiled.max_len);
}
