//! Property tests: format-then-parse returns the instant for every pattern
//! that determines it, parsing is exactly as strict as the calendar, and no
//! input makes `compile`, `format` or `parse` panic.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveTime, Utc};
use proptest::prelude::*;
use proptest::sample::select;

use crate::javadate::{JavaDateFormat, Zone};

/// 2201-01-01T00:00:00Z: instants cover 1970..=2200.
const END_OF_2200: i64 = 7_289_654_400;

fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    (0..END_OF_2200, 0u32..1_000_000_000)
        .prop_map(|(secs, nanos)| DateTime::from_timestamp(secs, nanos).expect("in chrono's range"))
}

fn zone() -> impl Strategy<Value = Zone> {
    prop_oneof![
        Just(Zone::Utc),
        (-18 * 60..=18 * 60i32).prop_map(|minutes| {
            Zone::Fixed(FixedOffset::east_opt(minutes * 60).expect("within ±18:00"))
        }),
        select(vec![
            "Asia/Kolkata",
            "Asia/Kathmandu",
            "America/New_York",
            "Australia/Lord_Howe",
            "America/St_Johns",
            "Europe/London",
            "Pacific/Chatham",
        ])
        .prop_map(|id| Zone::Named(id.parse().expect("IANA id"))),
    ]
}

/// A pattern that fully determines an instant: year, month, day, hour (24 h,
/// or 12 h with `a`), minute, second, a fraction of `digits` digits, and an
/// offset letter or none (then the zone is supplied when parsing).
#[derive(Clone, Debug)]
struct Spec {
    weekday: &'static str,
    layout: u8,
    year: &'static str,
    month: &'static str,
    day: &'static str,
    twelve_hour: bool,
    hour_width: &'static str,
    minute: &'static str,
    second: &'static str,
    digits: usize,
    fraction_separator: &'static str,
    offset: &'static str,
    offset_separator: &'static str,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (
            select(vec!["", "EEE, ", "EEEE "]),
            0u8..4,
            select(vec!["yyyy", "y", "yyy", "yy"]),
            select(vec!["MM", "M", "MMM", "MMMM"]),
            select(vec!["dd", "d"]),
            any::<bool>(),
            select(vec!["1", "2"]),
        ),
        (
            select(vec!["mm", "m"]),
            select(vec!["ss", "s"]),
            1usize..=9,
            select(vec![".", ",", ""]),
            select(vec![
                "", "X", "XX", "XXX", "x", "xx", "xxx", "Z", "ZZ", "ZZZ", "ZZZZZ",
            ]),
            select(vec!["", " "]),
        ),
    )
        .prop_map(
            |((weekday, layout, year, month, day, twelve_hour, hour_width), rest)| {
                let (minute, second, digits, fraction_separator, offset, offset_separator) = rest;
                Spec {
                    weekday,
                    layout,
                    year,
                    month,
                    day,
                    twelve_hour,
                    hour_width,
                    minute,
                    second,
                    digits,
                    fraction_separator,
                    offset,
                    offset_separator,
                }
            },
        )
}

impl Spec {
    /// The pattern; `yy` becomes `yyyy` when the local year is outside
    /// 2000..=2099, which `yy` cannot tell apart.
    fn pattern(&self, local_year: i32) -> String {
        let year = if self.year == "yy" && !(2000..=2099).contains(&local_year) {
            "yyyy"
        } else {
            self.year
        };
        let hour = match (self.twelve_hour, self.hour_width) {
            (true, "1") => "h",
            (true, _) => "hh",
            (false, "1") => "H",
            (false, _) => "HH",
        };
        let fraction = format!("{}{}", self.fraction_separator, "S".repeat(self.digits));
        let mut p = String::from(self.weekday);
        if self.layout == 3 {
            // compact: only fixed widths can sit next to each other
            let hh = if self.twelve_hour { "hh" } else { "HH" };
            p.push_str(&format!("{year}MMdd'T'{hh}mmss{fraction}"));
        } else {
            let date = match self.layout {
                0 => format!("{year}-{}-{}'T'", self.month, self.day),
                1 => format!("{}/{}/{year} ", self.month, self.day),
                _ => format!("{} {} {year}, ", self.day, self.month),
            };
            p.push_str(&date);
            p.push_str(&format!("{hour}:{}:{}{fraction}", self.minute, self.second));
        }
        if self.twelve_hour {
            p.push_str(" a");
        }
        if !self.offset.is_empty() {
            p.push_str(self.offset_separator);
            p.push_str(self.offset);
        }
        p
    }
}

/// `instant` with its fraction cut to `digits` digits.
fn truncate(instant: DateTime<Utc>, digits: usize) -> DateTime<Utc> {
    let unit = 10u32.pow(9 - digits as u32);
    let nanos = instant.timestamp_subsec_nanos();
    DateTime::from_timestamp(instant.timestamp(), nanos - nanos % unit).expect("same second")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn format_then_parse_returns_the_instant(instant in instant(), zone in zone(), spec in spec()) {
        let instant = truncate(instant, spec.digits);
        let local_year = instant.with_timezone(&zone.offset_at(instant)).year();
        let pattern = spec.pattern(local_year);
        let format = JavaDateFormat::compile(&pattern).expect("generated patterns compile");
        let text = format.format(instant, &zone);
        if format.has_offset() {
            // the default zone must not matter: use one that differs
            let parsed = format.parse(&text, &Zone::Fixed(FixedOffset::east_opt(3600).expect("+01:00")));
            let parsed = parsed.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(parsed, instant, "{} -> {}", pattern, text);
            prop_assert_eq!(*parsed.offset(), zone.offset_at(instant));
        } else {
            let parsed = format.parse(&text, &zone).map_err(|e| TestCaseError::fail(e.to_string()))?;
            if parsed != instant {
                // only in a DST overlap, where the earlier instant is chosen
                prop_assert!(parsed < instant, "{} -> {} -> {}", pattern, text, parsed);
                prop_assert_eq!(format.format(parsed.with_timezone(&Utc), &zone), text);
            }
        }
    }

    #[test]
    fn dates_parse_exactly_when_the_calendar_has_them(year in 1i32..=9999, month in 0u32..=14, day in 0u32..=33) {
        let format = JavaDateFormat::compile("yyyy-MM-dd").expect("valid pattern");
        let text = format!("{year:04}-{month:02}-{day:02}");
        let parsed = format.parse(&text, &Zone::Utc).ok().map(|dt| dt.date_naive());
        prop_assert_eq!(parsed, NaiveDate::from_ymd_opt(year, month, day), "{}", text);
    }

    #[test]
    fn times_parse_exactly_when_the_clock_has_them(hour in 0u32..=30, minute in 0u32..=65, second in 0u32..=65) {
        let format = JavaDateFormat::compile("yyyy-MM-dd HH:mm:ss").expect("valid pattern");
        let text = format!("2024-01-05 {hour:02}:{minute:02}:{second:02}");
        let parsed = format.parse(&text, &Zone::Utc).ok().map(|dt| dt.time());
        prop_assert_eq!(parsed, NaiveTime::from_hms_opt(hour, minute, second), "{}", text);
    }

    #[test]
    fn fixed_zones_display_as_text_that_parses_back(seconds in -18 * 3600..=18 * 3600i32) {
        let zone = Zone::Fixed(FixedOffset::east_opt(seconds).expect("within ±18:00"));
        prop_assert_eq!(Zone::parse(&zone.to_string()), Ok(zone));
    }
}

/// Patterns that parse real-world shapes, for the robustness tests.
const PATTERNS: [&str; 8] = [
    "yyyy-MM-dd'T'HH:mm:ssXXX",
    "yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
    "yyyy-MM-dd'T'HH:mm:ss'Z'",
    "EEE, dd MMM yyyy HH:mm:ss Z",
    "M/d/yy h:mm a",
    "yyyyMMddHHmmssSSSx",
    "SSSyMd",
    "EEEE MMMM d yyy H:m:s.SSSSSSSSS ZZZZZ",
];

fn pattern_like() -> impl Strategy<Value = String> {
    "[yMdHhmsSaEXxZGQkuV' .:,/T\\-\\[\\]#é]{0,24}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn compile_never_panics(pattern in any::<String>()) {
        let _ = JavaDateFormat::compile(&pattern);
    }

    #[test]
    fn compile_format_and_parse_of_pattern_like_text_never_panic(
        pattern in pattern_like(),
        secs in DateTime::<Utc>::MIN_UTC.timestamp()..=DateTime::<Utc>::MAX_UTC.timestamp(),
        zone in zone(),
        text in any::<String>(),
    ) {
        if let Ok(format) = JavaDateFormat::compile(&pattern) {
            let instant = DateTime::from_timestamp(secs, 0).expect("in chrono's range");
            let out = format.format(instant, &zone);
            // reserved once, never grown
            prop_assert_eq!(out.capacity(), format.compiled.max_len);
            let _ = format.parse(&out, &zone);
            let _ = format.parse(&text, &zone);
        }
    }

    #[test]
    fn parse_never_panics(text in any::<String>(), pattern in select(PATTERNS.to_vec()), zone in zone()) {
        let format = JavaDateFormat::compile(pattern).expect("valid pattern");
        let _ = format.parse(&text, &zone);
    }

    #[test]
    fn near_misses_never_panic_nor_misread(
        instant in instant(),
        zone in zone(),
        pattern in select(PATTERNS.to_vec()),
        at in any::<prop::sample::Index>(),
        edit in 0u8..3,
        ch in select("0123456789+-:.,ZzAPMT é\u{0}".chars().collect::<Vec<_>>()),
    ) {
        let format = JavaDateFormat::compile(pattern).expect("valid pattern");
        let text = format.format(instant, &zone);
        let mut chars: Vec<char> = text.chars().collect();
        let i = at.index(chars.len() + 1);
        match edit {
            0 if i < chars.len() => { chars[i] = ch; }
            1 if i < chars.len() => { chars.remove(i); }
            _ => chars.insert(i, ch),
        }
        let edited: String = chars.into_iter().collect();
        if let Ok(dt) = format.parse(&edited, &zone) {
            // a second opinion where there is one: chrono's RFC 3339 parser
            if pattern == PATTERNS[1]
                && let Ok(theirs) = DateTime::parse_from_rfc3339(&edited)
            {
                prop_assert_eq!(dt, theirs, "{}", edited);
            }
            // what we accept prints back to text that reads back to itself
            // (not for `SSSyMd`, whose variable-width numbers run together,
            // nor for the local mean times of the 1800s, whose offsets have
            // seconds that offset letters drop, as in Java)
            let whole_minutes = zone.offset_at(dt.with_timezone(&Utc)).local_minus_utc() % 60 == 0;
            if pattern != "SSSyMd" && whole_minutes {
                let again = format.format(dt.with_timezone(&Utc), &zone);
                let reread = format
                    .parse(&again, &zone)
                    .map(|d| format.format(d.with_timezone(&Utc), &zone));
                prop_assert_eq!(reread, Ok(again.clone()), "{} -> {}", edited, again);
            }
        }
    }
}

#[test]
fn instants_of_the_whole_chrono_range_format_in_every_zone() {
    let format = JavaDateFormat::compile(PATTERNS[7]).expect("valid pattern");
    for instant in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
        for zone in [Zone::Utc, Zone::Named(chrono_tz::Pacific::Kiritimati)] {
            let text = format.format(instant, &zone);
            let _ = format.parse(&text, &zone);
        }
    }
}
