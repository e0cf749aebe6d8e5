//! English (Java `Locale.ENGLISH`) month, day and am/pm names, and the
//! case-insensitive matching used when parsing them.

pub(super) const MONTHS_SHORT: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

pub(super) const MONTHS_FULL: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Monday first, matching `chrono::Weekday::num_days_from_monday`.
pub(super) const DAYS_SHORT: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// Monday first, matching `chrono::Weekday::num_days_from_monday`.
pub(super) const DAYS_FULL: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

pub(super) const AM_PM: [&str; 2] = ["AM", "PM"];

/// Index of the name in `names` that `text` starts with (ASCII
/// case-insensitive), and its length in bytes. The longest match wins so that
/// no name can shadow a longer one sharing its prefix.
pub(super) fn match_name(text: &[u8], names: &[&str]) -> Option<(usize, usize)> {
    let mut best: Option<(usize, usize)> = None;
    for (index, name) in names.iter().enumerate() {
        let len = name.len();
        let matches = text
            .get(..len)
            .is_some_and(|head| head.eq_ignore_ascii_case(name.as_bytes()));
        if matches && best.is_none_or(|(_, best_len)| len > best_len) {
            best = Some((index, len));
        }
    }
    best
}
