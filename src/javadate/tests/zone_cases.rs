//! Zone ids as Java's `ZoneId.of(id, ZoneId.SHORT_IDS)` reads them.

use chrono::FixedOffset;
use chrono_tz::Tz;

use super::at;
use crate::javadate::{Zone, ZoneError};

fn fixed(seconds: i32) -> Zone {
    Zone::Fixed(FixedOffset::east_opt(seconds).unwrap_or_else(|| panic!("offset {seconds}")))
}

fn named(id: &str) -> Zone {
    Zone::Named(id.parse::<Tz>().unwrap_or_else(|e| panic!("{id}: {e}")))
}

#[test]
fn parses_utc_offsets_and_iana_ids() {
    let cases = [
        ("UTC", Zone::Utc),
        ("GMT", Zone::Utc),
        ("UT", Zone::Utc),
        ("Z", Zone::Utc),
        ("+05:30", fixed(19_800)),
        ("-0800", fixed(-28_800)),
        ("+05", fixed(18_000)),
        ("+5", fixed(18_000)),
        ("-3", fixed(-10_800)),
        ("+00:00", fixed(0)),
        ("+05:30:15", fixed(19_815)),
        ("+053015", fixed(19_815)),
        ("+18:00", fixed(64_800)),
        ("-18:00", fixed(-64_800)),
        ("GMT+5", fixed(18_000)),
        ("UTC-03:30", fixed(-12_600)),
        ("UT+01", fixed(3_600)),
        ("GMT-0800", fixed(-28_800)),
        ("Asia/Kolkata", named("Asia/Kolkata")),
        ("Asia/Kathmandu", named("Asia/Kathmandu")),
        ("America/New_York", named("America/New_York")),
        ("Australia/Lord_Howe", named("Australia/Lord_Howe")),
        ("Etc/UTC", named("Etc/UTC")),
    ];
    for (id, expected) in cases {
        assert_eq!(Zone::parse(id), Ok(expected), "{id}");
        assert_eq!(id.parse::<Zone>(), Ok(expected), "{id} via FromStr");
    }
}

#[test]
fn parses_every_java_short_id() {
    // ZoneId.SHORT_IDS, as printed by Java 17
    let table = [
        ("ACT", "Australia/Darwin"),
        ("AET", "Australia/Sydney"),
        ("AGT", "America/Argentina/Buenos_Aires"),
        ("ART", "Africa/Cairo"),
        ("AST", "America/Anchorage"),
        ("BET", "America/Sao_Paulo"),
        ("BST", "Asia/Dhaka"),
        ("CAT", "Africa/Harare"),
        ("CNT", "America/St_Johns"),
        ("CST", "America/Chicago"),
        ("CTT", "Asia/Shanghai"),
        ("EAT", "Africa/Addis_Ababa"),
        ("ECT", "Europe/Paris"),
        ("EST", "-05:00"),
        ("HST", "-10:00"),
        ("IET", "America/Indiana/Indianapolis"),
        ("IST", "Asia/Kolkata"),
        ("JST", "Asia/Tokyo"),
        ("MIT", "Pacific/Apia"),
        ("MST", "-07:00"),
        ("NET", "Asia/Yerevan"),
        ("NST", "Pacific/Auckland"),
        ("PLT", "Asia/Karachi"),
        ("PNT", "America/Phoenix"),
        ("PRT", "America/Puerto_Rico"),
        ("PST", "America/Los_Angeles"),
        ("SST", "Pacific/Guadalcanal"),
        ("VST", "Asia/Ho_Chi_Minh"),
    ];
    for (short, target) in table {
        let expected = match target.parse::<Tz>() {
            Ok(tz) => Zone::Named(tz),
            Err(_) => Zone::parse(target).unwrap_or_else(|e| panic!("{target}: {e}")),
        };
        assert_eq!(Zone::parse(short), Ok(expected), "{short}");
    }
    // EST is Java's fixed -05:00, not the IANA zone of that name
    assert_eq!(Zone::parse("EST"), Ok(fixed(-5 * 3600)));
    assert_eq!(Zone::parse("HST"), Ok(fixed(-10 * 3600)));
    assert_eq!(Zone::parse("MST"), Ok(fixed(-7 * 3600)));
}

#[test]
fn refuses_anything_else_naming_the_input() {
    for id in [
        "",
        "utc",
        "est",
        "Mars/Olympus",
        "Asia/kolkata",
        " UTC",
        "UTC ",
        "GMTX",
        "CEST",
    ] {
        match Zone::parse(id) {
            Err(e @ ZoneError::Unknown { .. }) => {
                assert!(
                    e.to_string().contains(&format!("unknown time zone {id:?}")),
                    "{e}"
                );
                assert!(e.to_string().contains("IANA"), "{e}");
            }
            other => panic!("{id:?}: {other:?}"),
        }
    }
    for (id, reason) in [
        ("+19:00", "±18:00"),
        ("+18:01", "±18:00"),
        ("-24", "±18:00"),
        ("+05:60", "below 60"),
        ("+5:30", "expected +h"),
        ("+053", "expected +h"),
        ("+", "expected +h"),
        ("GMT+", "expected +h"),
        ("+05:30:", "expected +h"),
        ("GMT+05:3a", "expected +h"),
        ("UTC+99", "±18:00"),
    ] {
        match Zone::parse(id) {
            Err(e @ ZoneError::InvalidOffset { .. }) => {
                assert!(e.to_string().contains(&format!("{id:?}")), "{e}");
                assert!(e.to_string().contains(reason), "{e}");
            }
            other => panic!("{id:?}: {other:?}"),
        }
    }
}

#[test]
fn displays_a_string_that_parses_back() {
    for id in [
        "UTC",
        "Z",
        "GMT+5",
        "+05:30",
        "-03:30",
        "-00:30",
        "+05:30:15",
        "-0000",
        "EST",
        "PST",
        "IST",
        "Asia/Kathmandu",
        "Australia/Lord_Howe",
    ] {
        let zone = Zone::parse(id).unwrap_or_else(|e| panic!("{id}: {e}"));
        let shown = zone.to_string();
        assert_eq!(Zone::parse(&shown), Ok(zone), "{id} shown as {shown}");
    }
    assert_eq!(Zone::Utc.to_string(), "UTC");
    assert_eq!(fixed(-12_600).to_string(), "-03:30");
    assert_eq!(fixed(-1_800).to_string(), "-00:30");
    assert_eq!(fixed(19_815).to_string(), "+05:30:15");
    assert_eq!(named("America/New_York").to_string(), "America/New_York");
}

#[test]
fn default_is_utc() {
    assert_eq!(Zone::default(), Zone::Utc);
}

#[test]
fn offset_at_follows_daylight_saving() {
    let cases = [
        ("UTC", "2024-07-01T00:00:00Z", 0),
        ("+05:30", "2024-07-01T00:00:00Z", 19_800),
        ("America/New_York", "2024-01-15T12:00:00Z", -5 * 3600),
        ("America/New_York", "2024-07-15T12:00:00Z", -4 * 3600),
        // the second before and the second of the spring-forward change
        ("America/New_York", "2024-03-10T06:59:59Z", -5 * 3600),
        ("America/New_York", "2024-03-10T07:00:00Z", -4 * 3600),
        ("Asia/Kolkata", "2024-07-15T12:00:00Z", 19_800),
        ("Asia/Kathmandu", "2024-07-15T12:00:00Z", 20_700),
        ("Australia/Lord_Howe", "2024-01-15T12:00:00Z", 11 * 3600),
        (
            "Australia/Lord_Howe",
            "2024-07-15T12:00:00Z",
            10 * 3600 + 1800,
        ),
        ("PST", "2024-07-15T12:00:00Z", -7 * 3600),
        // past 2099, the end of chrono-tz's table, DST still follows the rules
        ("America/New_York", "2150-07-01T12:00:00Z", -4 * 3600),
        ("America/New_York", "2150-01-01T12:00:00Z", -5 * 3600),
        ("America/New_York", "2100-03-14T06:59:59Z", -5 * 3600),
        ("America/New_York", "2100-03-14T07:00:00Z", -4 * 3600),
        (
            "Australia/Lord_Howe",
            "2100-07-15T12:00:00Z",
            10 * 3600 + 1800,
        ),
        ("Australia/Lord_Howe", "2199-01-15T12:00:00Z", 11 * 3600),
        ("Europe/London", "2200-06-15T12:00:00Z", 3600),
        ("EST", "2024-07-15T12:00:00Z", -5 * 3600),
    ];
    for (id, instant, seconds) in cases {
        let zone = Zone::parse(id).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(
            zone.offset_at(at(instant)).local_minus_utc(),
            seconds,
            "{id} at {instant}"
        );
    }
}
