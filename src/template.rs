//! URL templates: a resource's `url` with `${…}` placeholders, turned into the
//! relative URL of one poll.
//!
//! Open Connectors writes the "changed since" filter into the URL itself, e.g.
//! `/hubs/ecommerce/orders?where=since='${date:yyyy-MM-dd'T'HH:mm:ssXXX}'`.
//! Placeholders (DESIGN 2.3):
//!
//! | placeholder | value |
//! |---|---|
//! | `${date:FMT}` | reference time in the service's zone, Java pattern FMT |
//! | `${gmtDate:FMT}` | the same instant in GMT, whatever the service's zone |
//! | `${dateTimeZone:ZONE:FMT}` | the same instant in ZONE (IANA id, abbreviation or offset) |
//! | `${epoch}`, `${epoch:s}`, `${epoch:ms}`, `${epoch:us}` | Unix time, milliseconds by default |
//!
//! Parsing rules, chosen so that real patterns survive: a placeholder ends at
//! the first `}` (FMT may contain `:` and quotes, but not `}`); ZONE ends at
//! the first `:`, except that a signed hour offset followed by minutes
//! (`+05:30`, `GMT-03:30`) is kept whole, because an offset's own colon would
//! otherwise cut it in half. Patterns and zones are compiled once, at parse
//! time, so a bad template is a configuration problem, never a poll failure.
//!
//! Only rendered *values* are percent-encoded; the literal text of the template
//! is passed through as written (the seed wraps the value in literal quotes:
//! `since='${date:…}'`). The URL must be relative: the element supplies the
//! origin, so a template can never point the poller at another host.

use std::fmt;

use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::javadate::{JavaDateFormat, Zone};

/// Bytes percent-encoded in a rendered value: everything except the RFC 3986
/// unreserved characters and `:`.
///
/// The same set is used in the path and in the query. It is stricter than
/// either needs (a path segment may hold `+` and `=`), which costs nothing
/// because servers decode both forms alike, and it guarantees that a value can
/// never add a path segment, a query parameter (`&`, `=`), a fragment (`#`) or
/// a space-that-means-plus (`+` → `%2B`, the offset in `+05:30`). `:` stays
/// readable because every date with a time carries it and both the path and
/// the query allow it verbatim.
const VALUE_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':');

/// What is wrong with a URL template. Offsets are byte offsets in the string
/// given to [`UrlTemplate::parse`] (before trimming), pointing at the `$`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("the URL is empty")]
    Empty,
    #[error(
        "the URL must be relative to the element's base URL (start with `/`), \
         but it is absolute (has a scheme or starts with `//`)"
    )]
    Absolute,
    #[error("the URL must start with `/`: it is a path relative to the element's base URL")]
    NotRooted,
    #[error("control character at byte {offset}")]
    ControlCharacter { offset: usize },
    #[error("`${{` at byte {offset} is never closed by `}}`")]
    Unterminated { offset: usize },
    #[error(
        "unknown placeholder `{placeholder}` at byte {offset} (known: ${{date:FMT}}, \
         ${{gmtDate:FMT}}, ${{dateTimeZone:ZONE:FMT}}, ${{epoch}}, ${{epoch:s|ms|us}})"
    )]
    UnknownPlaceholder { placeholder: String, offset: usize },
    #[error("placeholder `{placeholder}` at byte {offset} needs {expected}")]
    MissingArgument {
        placeholder: String,
        offset: usize,
        expected: &'static str,
    },
    #[error("placeholder `{placeholder}` at byte {offset}: bad date pattern: {reason}")]
    BadPattern {
        placeholder: String,
        offset: usize,
        reason: String,
    },
    #[error("placeholder `{placeholder}` at byte {offset}: bad time zone: {reason}")]
    BadZone {
        placeholder: String,
        offset: usize,
        reason: String,
    },
    #[error("placeholder `{placeholder}` at byte {offset}: unknown epoch unit (use s, ms or us)")]
    BadEpochUnit { placeholder: String, offset: usize },
}

/// Unit of an `${epoch…}` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EpochUnit {
    Seconds,
    Millis,
    Micros,
}

#[derive(Debug, Clone)]
enum Part {
    Literal(String),
    /// `${date:FMT}`: the service's zone, known only at render time.
    Date(JavaDateFormat),
    /// `${gmtDate:FMT}`.
    GmtDate(JavaDateFormat),
    /// `${dateTimeZone:ZONE:FMT}`.
    ZonedDate(Zone, JavaDateFormat),
    Epoch(EpochUnit),
}

/// A parsed resource URL: literal text and compiled placeholders.
#[derive(Debug, Clone)]
pub struct UrlTemplate {
    /// The trimmed template as written, for messages and `Display`.
    source: String,
    parts: Vec<Part>,
}

impl UrlTemplate {
    /// Parses and checks a template; surrounding whitespace is ignored.
    ///
    /// # Errors
    /// An empty or absolute URL, one not starting with `/`, a control
    /// character, an unterminated `${`, an unknown placeholder, a missing or
    /// bad pattern, zone or epoch unit. The first problem found is returned.
    pub fn parse(s: &str) -> Result<UrlTemplate, TemplateError> {
        let lead = s.len() - s.trim_start().len();
        let text = s.trim();
        if text.is_empty() {
            return Err(TemplateError::Empty);
        }
        if is_absolute(text) {
            return Err(TemplateError::Absolute);
        }
        if !text.starts_with('/') {
            return Err(TemplateError::NotRooted);
        }
        if let Some((i, _)) = text.char_indices().find(|(_, c)| c.is_control()) {
            return Err(TemplateError::ControlCharacter { offset: lead + i });
        }

        let mut parts = Vec::new();
        let mut rest = 0;
        while let Some(found) = text[rest..].find("${") {
            let start = rest + found;
            if start > rest {
                parts.push(Part::Literal(text[rest..start].to_owned()));
            }
            let offset = lead + start;
            let body_start = start + 2;
            let Some(len) = text[body_start..].find('}') else {
                return Err(TemplateError::Unterminated { offset });
            };
            let body = &text[body_start..body_start + len];
            parts.push(parse_placeholder(body, offset)?);
            rest = body_start + len + 1;
        }
        if rest < text.len() {
            parts.push(Part::Literal(text[rest..].to_owned()));
        }
        Ok(UrlTemplate {
            source: text.to_owned(),
            parts,
        })
    }

    /// The URL for a poll whose reference time is `reference` (the last poll
    /// time minus `pollDelay`, computed by the caller). `service_zone` is the
    /// zone of `${date:…}`. Returns a URL relative to the element's base URL.
    pub fn render(&self, reference: DateTime<Utc>, service_zone: &Zone) -> String {
        let mut out = String::with_capacity(self.source.len() + 16);
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Date(format) => push_value(&mut out, &format.format(reference, service_zone)),
                Part::GmtDate(format) => {
                    push_value(&mut out, &format.format(reference, &Zone::Utc))
                }
                Part::ZonedDate(zone, format) => {
                    push_value(&mut out, &format.format(reference, zone))
                }
                Part::Epoch(unit) => {
                    let value = match unit {
                        EpochUnit::Seconds => reference.timestamp(),
                        EpochUnit::Millis => reference.timestamp_millis(),
                        EpochUnit::Micros => reference.timestamp_micros(),
                    };
                    out.push_str(&value.to_string());
                }
            }
        }
        out
    }

    /// The template as written (trimmed).
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Display for UrlTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl std::str::FromStr for UrlTemplate {
    type Err = TemplateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UrlTemplate::parse(s)
    }
}

fn push_value(out: &mut String, value: &str) {
    out.extend(utf8_percent_encode(value, VALUE_ENCODE));
}

/// A scheme (`https:`, `mailto:`) before the first `/`, `?` or `#`, or a
/// network-path reference (`//host`, and `/\host`, which WHATWG URL parsers
/// treat alike): anything that could choose the host.
fn is_absolute(text: &str) -> bool {
    if text.starts_with("//") || text.starts_with("/\\") || text.starts_with('\\') {
        return true;
    }
    let head_end = text.find(['/', '?', '#']).unwrap_or(text.len());
    match text[..head_end].split_once(':') {
        Some((scheme, _)) => {
            let mut chars = scheme.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

fn parse_placeholder(body: &str, offset: usize) -> Result<Part, TemplateError> {
    let placeholder = || format!("${{{body}}}");
    let (name, arg) = match body.split_once(':') {
        Some((name, arg)) => (name, Some(arg)),
        None => (body, None),
    };
    let pattern = |arg: Option<&str>, expected| match arg {
        Some(p) if !p.is_empty() => {
            JavaDateFormat::compile(p).map_err(|e| TemplateError::BadPattern {
                placeholder: placeholder(),
                offset,
                reason: e.to_string(),
            })
        }
        _ => Err(TemplateError::MissingArgument {
            placeholder: placeholder(),
            offset,
            expected,
        }),
    };
    match name {
        "date" => pattern(arg, "a date pattern: ${date:FMT}").map(Part::Date),
        "gmtDate" => pattern(arg, "a date pattern: ${gmtDate:FMT}").map(Part::GmtDate),
        "dateTimeZone" => {
            const EXPECTED: &str = "a zone and a date pattern: ${dateTimeZone:ZONE:FMT}";
            let Some((zone, fmt)) = arg.and_then(split_zone) else {
                return Err(TemplateError::MissingArgument {
                    placeholder: placeholder(),
                    offset,
                    expected: EXPECTED,
                });
            };
            let zone = zone.trim();
            if zone.is_empty() {
                return Err(TemplateError::MissingArgument {
                    placeholder: placeholder(),
                    offset,
                    expected: EXPECTED,
                });
            }
            let zone = Zone::parse(zone).map_err(|e| TemplateError::BadZone {
                placeholder: placeholder(),
                offset,
                reason: e.to_string(),
            })?;
            Ok(Part::ZonedDate(zone, pattern(Some(fmt), EXPECTED)?))
        }
        "epoch" => match arg {
            None | Some("ms") => Ok(Part::Epoch(EpochUnit::Millis)),
            Some("s") => Ok(Part::Epoch(EpochUnit::Seconds)),
            Some("us") => Ok(Part::Epoch(EpochUnit::Micros)),
            Some(_) => Err(TemplateError::BadEpochUnit {
                placeholder: placeholder(),
                offset,
            }),
        },
        _ => Err(TemplateError::UnknownPlaceholder {
            placeholder: placeholder(),
            offset,
        }),
    }
}

/// Splits `ZONE:FMT` at the first `:`, keeping `+05:30`-style offsets whole.
fn split_zone(arg: &str) -> Option<(&str, &str)> {
    let (zone, rest) = arg.split_once(':')?;
    let minutes = rest.as_bytes();
    if is_signed_hours(zone.trim())
        && minutes.len() >= 3
        && minutes[0].is_ascii_digit()
        && minutes[1].is_ascii_digit()
        && minutes[2] == b':'
    {
        let zone_end = zone.len() + 3;
        return Some((&arg[..zone_end], &arg[zone_end + 1..]));
    }
    Some((zone, rest))
}

/// `+05`, `-3`, `GMT+05`, `UTC-08`: an offset whose minutes may follow a `:`.
fn is_signed_hours(zone: &str) -> bool {
    let bare = zone
        .strip_prefix("GMT")
        .or_else(|| zone.strip_prefix("UTC"))
        .unwrap_or(zone);
    match bare.strip_prefix(['+', '-']) {
        Some(hours) => (1..=2).contains(&hours.len()) && hours.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    const ISO: &str = "yyyy-MM-dd'T'HH:mm:ssXXX";

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn zone(s: &str) -> Zone {
        Zone::parse(s).unwrap()
    }

    fn render(template: &str, reference: DateTime<Utc>, service_zone: &Zone) -> String {
        UrlTemplate::parse(template)
            .unwrap()
            .render(reference, service_zone)
    }

    #[test]
    fn literal_only_passes_through() {
        let t = "/crm/rest/v1/orders?order=id&limit=50";
        assert_eq!(render(t, at(2024, 1, 2, 3, 4, 5), &Zone::Utc), t);
    }

    #[test]
    fn seed_template_keeps_literal_quotes_and_drops_the_trailing_space() {
        let t = "/hubs/ecommerce/orders?where=since='${date:yyyy-MM-dd'T'HH:mm:ssXXX}' ";
        let parsed = UrlTemplate::parse(t).unwrap();
        assert_eq!(parsed.as_str(), t.trim_end());
        assert_eq!(
            parsed.render(at(2024, 1, 2, 3, 4, 5), &Zone::Utc),
            "/hubs/ecommerce/orders?where=since='2024-01-02T03:04:05Z'"
        );
    }

    #[test]
    fn date_uses_the_service_zone_and_encodes_the_plus_of_a_half_hour_offset() {
        let url = render(
            "/orders?since=${date:yyyy-MM-dd'T'HH:mm:ssXXX}",
            at(2024, 1, 2, 3, 4, 5),
            &zone("Asia/Kolkata"),
        );
        assert_eq!(url, "/orders?since=2024-01-02T08:34:05%2B05:30");
    }

    #[test]
    fn date_in_a_45_minute_zone() {
        let url = render(
            &format!("/orders?since=${{date:{ISO}}}"),
            at(2024, 1, 2, 3, 4, 5),
            &zone("Asia/Kathmandu"),
        );
        assert_eq!(url, "/orders?since=2024-01-02T08:49:05%2B05:45");
    }

    #[test]
    fn date_follows_daylight_saving_time() {
        let ny = zone("America/New_York");
        let t = format!("/orders?since=${{date:{ISO}}}");
        // The minus sign is unreserved: it stays as is.
        assert_eq!(
            render(&t, at(2024, 7, 1, 12, 0, 0), &ny),
            "/orders?since=2024-07-01T08:00:00-04:00"
        );
        assert_eq!(
            render(&t, at(2024, 1, 15, 12, 0, 0), &ny),
            "/orders?since=2024-01-15T07:00:00-05:00"
        );
    }

    #[test]
    fn gmt_date_ignores_the_service_zone() {
        let t = format!("/orders?since=${{gmtDate:{ISO}}}");
        for service in ["Asia/Kolkata", "America/New_York", "UTC"] {
            assert_eq!(
                render(&t, at(2024, 7, 1, 12, 0, 0), &zone(service)),
                "/orders?since=2024-07-01T12:00:00Z",
                "service zone {service}"
            );
        }
    }

    #[test]
    fn date_time_zone_uses_its_own_zone() {
        let reference = at(2024, 7, 1, 12, 0, 0);
        let service = zone("America/New_York");
        assert_eq!(
            render(
                &format!("/o?since=${{dateTimeZone:Asia/Kathmandu:{ISO}}}"),
                reference,
                &service
            ),
            "/o?since=2024-07-01T17:45:00%2B05:45"
        );
        assert_eq!(
            render(
                "/o?since=${dateTimeZone:America/New_York:yyyy-MM-dd HH:mm:ss}",
                reference,
                &Zone::Utc
            ),
            "/o?since=2024-07-01%2008:00:00"
        );
    }

    #[test]
    fn date_time_zone_keeps_an_offset_with_minutes_whole() {
        let reference = at(2024, 1, 2, 3, 4, 5);
        assert_eq!(
            render(
                &format!("/o?since=${{dateTimeZone:+05:30:{ISO}}}"),
                reference,
                &Zone::Utc
            ),
            "/o?since=2024-01-02T08:34:05%2B05:30"
        );
        assert_eq!(
            render("/o?d=${dateTimeZone:-03:yyyyMMdd}", reference, &Zone::Utc),
            "/o?d=20240102"
        );
    }

    #[test]
    fn epoch_variants() {
        let reference = at(2024, 1, 2, 3, 4, 5) + chrono::Duration::microseconds(123_456);
        let secs = 1_704_164_645_i64;
        let cases = [
            ("/o?t=${epoch}", format!("/o?t={}", secs * 1000 + 123)),
            ("/o?t=${epoch:ms}", format!("/o?t={}", secs * 1000 + 123)),
            ("/o?t=${epoch:s}", format!("/o?t={secs}")),
            (
                "/o?t=${epoch:us}",
                format!("/o?t={}", secs * 1_000_000 + 123_456),
            ),
        ];
        for (template, expected) in cases {
            assert_eq!(render(template, reference, &zone("Asia/Kolkata")), expected);
        }
    }

    #[test]
    fn values_cannot_add_parameters_or_fragments() {
        let url = render(
            "/o?q=${gmtDate:yyyy'&=#% +/?'MM}",
            at(2024, 1, 2, 3, 4, 5),
            &Zone::Utc,
        );
        assert_eq!(url, "/o?q=2024%26%3D%23%25%20%2B%2F%3F01");
    }

    #[test]
    fn values_in_the_path_are_encoded_too() {
        let url = render(
            "/reports/${date:yyyy-MM-dd HH:mm:ss}/orders",
            at(2024, 1, 2, 3, 4, 5),
            &Zone::Utc,
        );
        assert_eq!(url, "/reports/2024-01-02%2003:04:05/orders");
    }

    #[test]
    fn several_placeholders_and_dollar_signs() {
        let url = render(
            "/o?from=${gmtDate:yyyyMMdd}&price=$5&to=${epoch:s}",
            at(2024, 1, 2, 3, 4, 5),
            &Zone::Utc,
        );
        assert_eq!(url, "/o?from=20240102&price=$5&to=1704164645");
    }

    #[test]
    fn errors_name_the_placeholder_and_its_offset() {
        let err = |t: &str| UrlTemplate::parse(t).unwrap_err();
        assert_eq!(
            err("/o?since=${since}"),
            TemplateError::UnknownPlaceholder {
                placeholder: "${since}".into(),
                offset: 9
            }
        );
        // The offset counts from the untrimmed input.
        assert_eq!(
            err("  /o?x=${date:yyyy"),
            TemplateError::Unterminated { offset: 7 }
        );
        assert!(matches!(
            err("/o?x=${date:yyyy-MM-ddTHH:mm:ss}"),
            TemplateError::BadPattern { offset: 5, .. }
        ));
        assert!(matches!(
            err("/o?x=${dateTimeZone:Mars/Olympus:yyyy}"),
            TemplateError::BadZone { offset: 5, .. }
        ));
        for missing in [
            "/o?x=${date}",
            "/o?x=${date:}",
            "/o?x=${gmtDate}",
            "/o?x=${dateTimeZone:UTC}",
            "/o?x=${dateTimeZone::yyyy}",
        ] {
            assert!(
                matches!(
                    err(missing),
                    TemplateError::MissingArgument { offset: 5, .. }
                ),
                "{missing}"
            );
        }
        assert_eq!(
            err("/o?x=${epoch:ns}"),
            TemplateError::BadEpochUnit {
                placeholder: "${epoch:ns}".into(),
                offset: 5
            }
        );
        let message = err("/o?since=${since}").to_string();
        assert!(
            message.contains("${since}") && message.contains("byte 9"),
            "{message}"
        );
    }

    #[test]
    fn absolute_and_unrooted_urls_are_refused() {
        for absolute in [
            "https://evil.example/orders",
            "http://evil.example",
            "HTTPS://evil.example/x",
            "//evil.example/orders",
            "/\\evil.example/orders",
            "mailto:someone@example.com",
        ] {
            assert_eq!(
                UrlTemplate::parse(absolute).unwrap_err(),
                TemplateError::Absolute,
                "{absolute}"
            );
        }
        assert_eq!(
            UrlTemplate::parse("hubs/ecommerce/orders").unwrap_err(),
            TemplateError::NotRooted
        );
        assert_eq!(UrlTemplate::parse("   ").unwrap_err(), TemplateError::Empty);
        assert_eq!(
            UrlTemplate::parse("/o?x=a\nb").unwrap_err(),
            TemplateError::ControlCharacter { offset: 6 }
        );
        // A colon after the first slash is not a scheme.
        assert!(UrlTemplate::parse("/o?since=a:b").is_ok());
    }

    proptest! {
        #[test]
        fn parse_and_render_never_panic(
            text in r"[ /a-z$\{\}:'TdMyHmsSX+\-05]{0,40}",
            secs in -2_000_000_000_i64..4_000_000_000,
        ) {
            if let Ok(t) = UrlTemplate::parse(&text) {
                let reference = DateTime::from_timestamp(secs, 0).unwrap();
                let _ = t.render(reference, &Zone::Utc);
                let _ = t.render(reference, &zone("Asia/Kathmandu"));
            }
        }
    }
}
