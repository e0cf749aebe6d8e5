//! Instance JSON → [`Instance`], collecting every problem of the document.
//!
//! The reader is lenient where Open Connectors is (strings for booleans and
//! numbers, stray whitespace, unknown keys, `event.poller.configuration` as a
//! JSON string, two spellings of the date keys) and strict where a mistake
//! would otherwise surface only at poll time (patterns, zones, URLs, ranges).
//! An empty or whitespace-only string counts as "not set" everywhere, as in
//! the seed's `"oauth.api.key": ""`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};

use super::field_path::json_kind;
use super::model::{
    Connection, DEFAULT_CREATED_CHECK_TOLERANCE, DEFAULT_REFRESH_INTERVAL, DateField, ExtraConfig,
    HubCredentials, IdOrigin, Instance, MAX_DURATION, OAuthConfig, Resource, VendorType,
};
use super::problem::{ConfigProblem, JsonPath, Problems, shown};
use super::values::{
    base_url, extra_value, field_path, http_url, object_at, read_choice, read_flag, read_secret,
    read_text, read_whole, rfc3339,
};
use crate::javadate::{JavaDateFormat, Zone};
use crate::template::UrlTemplate;

const OAUTH_CALLBACK_URL: &str = "oauth.callback.url";
const OAUTH_API_KEY: &str = "oauth.api.key";
const OAUTH_API_SECRET: &str = "oauth.api.secret";
const ENABLED: &str = "event.notification.enabled";
const CALLBACK_URL: &str = "event.notification.callback.url";
const VENDOR_TYPE: &str = "event.vendor.type";
const REFRESH_MINUTES: &str = "event.poller.refresh_interval";
const REFRESH_SECONDS: &str = "event.poller.refresh_interval_seconds";
const POLLER_CONFIGURATION: &str = "event.poller.configuration";
const BACKFILL_FROM: &str = "event.poller.backfill.from";
const BASE_URL: &str = "base.url";
const CONNECTION_MODE: &str = "connection.mode";
const HUB_USER_SECRET: &str = "hub.user.secret";
const HUB_ORGANIZATION_SECRET: &str = "hub.organization.secret";
const HUB_ELEMENT_TOKEN: &str = "hub.element.token";

/// `configuration` keys this model interprets; the rest go to
/// [`Instance::extra`].
const KNOWN_KEYS: [&str; 15] = [
    OAUTH_CALLBACK_URL,
    OAUTH_API_KEY,
    OAUTH_API_SECRET,
    ENABLED,
    CALLBACK_URL,
    VENDOR_TYPE,
    REFRESH_MINUTES,
    REFRESH_SECONDS,
    POLLER_CONFIGURATION,
    BACKFILL_FROM,
    BASE_URL,
    CONNECTION_MODE,
    HUB_USER_SECRET,
    HUB_ORGANIZATION_SECRET,
    HUB_ELEMENT_TOKEN,
];

const SECONDS: &str = "seconds";

/// Parses one instance document. `source` names it in problems and supplies
/// the id when the document has neither `id` nor `name`.
///
/// # Errors
/// Every problem found in the document, in document order.
pub fn parse_str(source: &Path, text: &str) -> Result<Instance, Vec<ConfigProblem>> {
    let mut problems = Problems::new(source);
    // Editors on Windows like to start UTF-8 files with a byte order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let instance = match serde_json::from_str::<Value>(text) {
        Ok(root) => read_instance(source, &root, &mut problems),
        Err(e) => {
            problems.add(&JsonPath::root(), format!("not valid JSON: {e}"));
            None
        }
    };
    match instance {
        Some(instance) if problems.is_empty() => Ok(instance),
        _ => {
            if problems.is_empty() {
                // Every path that yields no instance records why; this keeps a
                // future slip from turning into an unexplained rejection.
                problems.add(&JsonPath::root(), "not a usable instance");
            }
            Err(problems.into_vec())
        }
    }
}

fn read_instance(source: &Path, root: &Value, p: &mut Problems<'_>) -> Option<Instance> {
    let root_path = JsonPath::root();
    let Some(doc) = root.as_object() else {
        p.add(
            &root_path,
            format!("expected an instance object, got {}", json_kind(root)),
        );
        return None;
    };

    let id = read_id(source, doc, p);

    let element = object_at(doc, "element", &root_path, p);
    let element_key = p.required(
        &root_path.key("element").key("key"),
        read_text(element.and_then(|e| e.get("key"))),
        "the element key names the provider definition, e.g. infusionsoftecommerce",
    );

    let provider_data = object_at(doc, "providerData", &root_path, p);
    let code = p.optional(
        &root_path.key("providerData").key("code"),
        read_secret(provider_data.and_then(|d| d.get("code"))),
    );

    let cfg_path = root_path.key("configuration");
    let empty = Map::new();
    let cfg = object_at(doc, "configuration", &root_path, p).unwrap_or(&empty);
    let at = |key: &str| (cfg.get(key), cfg_path.key(key));

    let (v, path) = at(ENABLED);
    let enabled = p.optional(&path, read_flag(v)).unwrap_or(false);

    let (v, path) = at(VENDOR_TYPE);
    let vendor_type = p
        .optional(
            &path,
            read_choice(
                v,
                &[
                    ("polling", VendorType::Polling),
                    ("webhook", VendorType::Webhook),
                ],
            ),
        )
        .unwrap_or_default();

    let (v, path) = at(REFRESH_MINUTES);
    let minutes = p.optional(
        &path,
        read_whole(v, 1, MAX_DURATION.as_secs() / 60, "minutes"),
    );
    let (v, path) = at(REFRESH_SECONDS);
    let seconds = p.optional(&path, read_whole(v, 1, MAX_DURATION.as_secs(), SECONDS));
    let refresh_interval = seconds
        .or(minutes.map(|m| m * 60))
        .map_or(DEFAULT_REFRESH_INTERVAL, Duration::from_secs);

    let (v, path) = at(CALLBACK_URL);
    let callback_url = p.optional(
        &path,
        read_text(v).and_then(|u| u.map(http_url).transpose()),
    );

    let (v, path) = at(BASE_URL);
    let base_url = p.optional(
        &path,
        read_text(v).and_then(|u| u.map(base_url).transpose()),
    );

    let (v, path) = at(CONNECTION_MODE);
    let hub = p.optional(&path, read_choice(v, &[("direct", false), ("hub", true)]));
    let mut secret_at = |key: &str| {
        let (v, path) = at(key);
        p.optional(&path, read_secret(v))
    };
    let credentials = HubCredentials {
        user_secret: secret_at(HUB_USER_SECRET),
        organization_secret: secret_at(HUB_ORGANIZATION_SECRET),
        element_token: secret_at(HUB_ELEMENT_TOKEN),
    };
    let api_key = secret_at(OAUTH_API_KEY);
    let api_secret = secret_at(OAUTH_API_SECRET);
    // Credentials given in direct mode are ignored: they cannot be used.
    let connection = match hub {
        Some(true) => Connection::Hub(credentials),
        _ => Connection::Direct,
    };

    let (v, path) = at(OAUTH_CALLBACK_URL);
    let oauth = OAuthConfig {
        api_key,
        api_secret,
        callback_url: p.optional(&path, read_text(v)),
        code,
    };

    let (v, path) = at(BACKFILL_FROM);
    let backfill_from = p.optional(&path, read_text(v).and_then(|t| t.map(rfc3339).transpose()));

    let (v, path) = at(POLLER_CONFIGURATION);
    let resources = read_resources(v, &path, enabled && vendor_type == VendorType::Polling, p);

    let extra = ExtraConfig(
        cfg.iter()
            .filter(|(key, _)| !KNOWN_KEYS.contains(&key.as_str()))
            .map(|(key, value)| (key.clone(), extra_value(key, value)))
            .collect::<BTreeMap<_, _>>(),
    );

    let (id, id_origin) = id?;
    Some(Instance {
        source: source.to_owned(),
        id,
        id_origin,
        element_key: element_key?,
        enabled,
        vendor_type,
        refresh_interval,
        callback_url,
        base_url,
        connection,
        oauth,
        backfill_from,
        resources: resources?,
        extra,
    })
}

/// `id` (number or string), else non-empty `name`, else the file stem.
fn read_id(
    source: &Path,
    doc: &Map<String, Value>,
    p: &mut Problems<'_>,
) -> Option<(String, IdOrigin)> {
    let root = JsonPath::root();
    let id = match doc.get("id") {
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(_) | Value::Array(_) | Value::Object(_)) => {
            p.add(&root.key("id"), "expected a string or a number");
            None
        }
        other => p.optional(&root.key("id"), read_text(other)),
    };
    if let Some(id) = id {
        return Some((id, IdOrigin::Id));
    }
    if let Some(name) = p.optional(&root.key("name"), read_text(doc.get("name"))) {
        return Some((name, IdOrigin::Name));
    }
    match source
        .file_stem()
        .map(|s| s.to_string_lossy().trim().to_owned())
    {
        Some(stem) if !stem.is_empty() => Some((stem, IdOrigin::FileStem)),
        _ => {
            p.add(
                &root,
                "the instance has no identity: set `id` or a non-empty `name`",
            );
            None
        }
    }
}

/// `event.poller.configuration`: an object of resources, a string holding
/// one, or empty. `None` when a problem was recorded.
fn read_resources(
    value: Option<&Value>,
    path: &JsonPath,
    polled: bool,
    p: &mut Problems<'_>,
) -> Option<Vec<Resource>> {
    let config: Option<Cow<'_, Value>> = match value {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => match serde_json::from_str(s) {
            Ok(parsed) => Some(Cow::Owned(parsed)),
            Err(e) => {
                p.add(
                    path,
                    format!("a string that is not valid JSON: {e} (inside the string)"),
                );
                return None;
            }
        },
        Some(other) => Some(Cow::Borrowed(other)),
    };
    let empty = Map::new();
    let resources = match config.as_deref() {
        None => &empty,
        Some(Value::Object(map)) => map,
        Some(other) => {
            p.add(
                path,
                format!(
                    "expected an object of resources (or a string holding one), got {}",
                    json_kind(other)
                ),
            );
            return None;
        }
    };
    if resources.is_empty() && polled {
        p.add(
            path,
            "events are enabled for polling but there are no resources to poll",
        );
        return None;
    }
    let before = resources.len();
    let read: Vec<Resource> = resources
        .iter()
        .filter_map(|(name, value)| read_resource(name, value, &path.key(name), p))
        .collect();
    (read.len() == before).then_some(read)
}

fn read_resource(
    name: &str,
    value: &Value,
    path: &JsonPath,
    p: &mut Problems<'_>,
) -> Option<Resource> {
    let name = name.trim();
    if name.is_empty() {
        p.add(
            path,
            "the resource name is empty; it becomes the events' objectType",
        );
        return None;
    }
    let Some(r) = value.as_object() else {
        p.add(
            path,
            format!(
                "expected a resource object with url, idField and datesConfiguration, got {}",
                json_kind(value)
            ),
        );
        return None;
    };
    let at = |key: &str| (r.get(key), path.key(key));

    let (v, key_path) = at("url");
    let url = p.required(
        &key_path,
        read_text(v).and_then(|t| {
            t.map(|t| UrlTemplate::parse(&t).map_err(|e| e.to_string()))
                .transpose()
        }),
        "the request URL of the resource, relative to the element's base URL",
    );

    let (v, key_path) = at("idField");
    let id_field = p.required(
        &key_path,
        read_text(v).and_then(|t| t.map(field_path).transpose()),
        "the record field holding the record's id, e.g. id",
    );

    let dates_path = path.key("datesConfiguration");
    let (updated, created) = match r.get("datesConfiguration") {
        Some(Value::Object(dates)) => (
            read_date_field(dates, &UPDATED, &dates_path, p),
            read_date_field(dates, &CREATED, &dates_path, p),
        ),
        None | Some(Value::Null) => {
            p.add(
                &dates_path,
                "missing: it must name the updated date field (updatedDateField or updatedAtField), which drives change detection",
            );
            (DateRead::Failed, DateRead::Absent)
        }
        Some(other) => {
            p.add(
                &dates_path,
                format!("expected an object, got {}", json_kind(other)),
            );
            (DateRead::Failed, DateRead::Absent)
        }
    };

    let (v, key_path) = at("pageSize");
    let page_size = p
        .optional(&key_path, read_whole(v, 1, u64::from(u32::MAX), "records"))
        .and_then(|n| u32::try_from(n).ok());
    let (v, key_path) = at("pollDelay");
    let poll_delay = p.optional(&key_path, read_whole(v, 0, MAX_DURATION.as_secs(), SECONDS));
    let (v, key_path) = at("filterByUpdatedDate");
    let filter_by_updated_date = p.optional(&key_path, read_flag(v)).unwrap_or(true);
    let (v, key_path) = at("filterByCurrentDate");
    let filter_by_current_date = p.optional(&key_path, read_flag(v)).unwrap_or(false);
    let (v, key_path) = at("deadLetterFutureDated");
    let dead_letter_future_dated = p.optional(&key_path, read_flag(v)).unwrap_or(false);
    let (v, key_path) = at("createdCheckTolerance");
    let tolerance = p.optional(&key_path, read_whole(v, 0, MAX_DURATION.as_secs(), SECONDS));

    if !filter_by_updated_date && matches!(created, DateRead::Absent) {
        p.add(
            &path.key("filterByUpdatedDate"),
            "false makes the created date the filter, but no created date field is configured",
        );
    }

    let DateRead::Read(updated) = updated else {
        return None;
    };
    let created = match created {
        DateRead::Read(created) => Some(created),
        DateRead::Absent => None,
        DateRead::Failed => return None,
    };
    Some(Resource {
        name: name.to_owned(),
        url: url?,
        id_field: id_field?,
        updated,
        created,
        page_size,
        poll_delay: poll_delay.map_or(Duration::ZERO, Duration::from_secs),
        filter_by_updated_date,
        filter_by_current_date,
        dead_letter_future_dated,
        created_check_tolerance: tolerance
            .map_or(DEFAULT_CREATED_CHECK_TOLERANCE, Duration::from_secs),
    })
}

/// The key names of one date in `datesConfiguration`, in both spellings.
///
/// The seed spells the keys `updatedAt…`, the documentation `updatedDate…`.
/// Only the documentation names a zone key (`updatedDateTimezone`); its
/// seed-style twin `updatedAtTimezone` is accepted too, because a zone key
/// that were silently ignored would shift every date of that field by hours.
struct DateKeys {
    /// What the date is for, in messages.
    role: &'static str,
    required: bool,
    field: &'static str,
    field_seed: &'static str,
    format: &'static str,
    format_seed: &'static str,
    zone: &'static str,
    zone_seed: &'static str,
}

const UPDATED: DateKeys = DateKeys {
    role: "the updated date field drives change detection",
    required: true,
    field: "updatedDateField",
    field_seed: "updatedAtField",
    format: "updatedDateFormat",
    format_seed: "updatedAtFormat",
    zone: "updatedDateTimezone",
    zone_seed: "updatedAtTimezone",
};

const CREATED: DateKeys = DateKeys {
    role: "the created date tells CREATED from UPDATED",
    required: false,
    field: "createdDateField",
    field_seed: "createdAtField",
    format: "createdDateFormat",
    format_seed: "createdAtFormat",
    zone: "createdDateTimezone",
    zone_seed: "createdAtTimezone",
};

enum DateRead {
    Read(DateField),
    Absent,
    /// A problem was recorded.
    Failed,
}

/// The value of a key that has two spellings.
enum Spelled {
    Absent,
    /// A problem was recorded.
    Failed,
    /// The value and the key it came from.
    Value(String, &'static str),
}

fn spelled(
    dates: &Map<String, Value>,
    documented: &'static str,
    seed: &'static str,
    dates_path: &JsonPath,
    p: &mut Problems<'_>,
) -> Spelled {
    let read = |key: &'static str| read_text(dates.get(key)).map(|v| v.map(|v| (v, key)));
    match (read(documented), read(seed)) {
        (Err(reason), _) => {
            p.add(&dates_path.key(documented), reason);
            Spelled::Failed
        }
        (_, Err(reason)) => {
            p.add(&dates_path.key(seed), reason);
            Spelled::Failed
        }
        (Ok(Some((a, _))), Ok(Some((b, _)))) if a != b => {
            p.add(
                &dates_path.key(documented),
                format!(
                    "conflicts with {seed} ({} vs {}): both spellings are accepted, keep one",
                    shown(&a),
                    shown(&b)
                ),
            );
            Spelled::Failed
        }
        (Ok(Some((value, key))), _) | (Ok(None), Ok(Some((value, key)))) => {
            Spelled::Value(value, key)
        }
        (Ok(None), Ok(None)) => Spelled::Absent,
    }
}

/// Converts a [`Spelled`] value with `convert`, recording a failure at the
/// key the value came from. `Err(())` means a problem was recorded; `Ok`
/// keeps the key for later messages.
fn converted<T>(
    spelled: Spelled,
    dates_path: &JsonPath,
    p: &mut Problems<'_>,
    convert: impl FnOnce(String) -> Result<T, String>,
) -> Result<Option<(T, &'static str)>, ()> {
    match spelled {
        Spelled::Absent => Ok(None),
        Spelled::Failed => Err(()),
        Spelled::Value(value, key) => match convert(value) {
            Ok(converted) => Ok(Some((converted, key))),
            Err(reason) => {
                p.add(&dates_path.key(key), reason);
                Err(())
            }
        },
    }
}

fn read_date_field(
    dates: &Map<String, Value>,
    keys: &DateKeys,
    dates_path: &JsonPath,
    p: &mut Problems<'_>,
) -> DateRead {
    // Name missing keys in the spelling the document already uses.
    let seed_spelling = dates
        .keys()
        .any(|k| k.starts_with("updatedAt") || k.starts_with("createdAt"));
    let pick = |documented, seed| if seed_spelling { seed } else { documented };

    // Check all three keys before giving up, so that every problem is reported.
    let field = spelled(dates, keys.field, keys.field_seed, dates_path, p);
    let field = converted(field, dates_path, p, field_path);
    let format = spelled(dates, keys.format, keys.format_seed, dates_path, p);
    let format = converted(format, dates_path, p, |pattern| {
        JavaDateFormat::compile(&pattern)
            .map_err(|e| format!("bad date pattern {}: {e}", shown(&pattern)))
    });
    let zone = spelled(dates, keys.zone, keys.zone_seed, dates_path, p);
    let zone = converted(zone, dates_path, p, |zone| {
        Zone::parse(&zone).map_err(|e| format!("bad time zone: {e}"))
    });

    if keys.required && matches!(field, Ok(None)) {
        p.add(
            &dates_path.key(pick(keys.field, keys.field_seed)),
            format!(
                "missing: {} ({} or {} names the record field)",
                keys.role, keys.field, keys.field_seed
            ),
        );
        return DateRead::Failed;
    }
    let (Ok(field), Ok(format), Ok(zone)) = (field, format, zone) else {
        return DateRead::Failed;
    };
    let without_field = |what: &str| {
        format!(
            "a {what} without a field: set {} (or {}) too, or remove the {what}",
            keys.field, keys.field_seed
        )
    };
    match (field, format, zone) {
        (Some((path, _)), Some((format, _)), zone) => DateRead::Read(DateField {
            path,
            format,
            zone: zone.map(|(zone, _)| zone).unwrap_or_default(),
        }),
        (Some((path, _)), None, _) => {
            p.add(
                &dates_path.key(pick(keys.format, keys.format_seed)),
                format!(
                    "missing: the Java date pattern of field {}, e.g. yyyy-MM-dd'T'HH:mm:ssXXX",
                    shown(path.as_str())
                ),
            );
            DateRead::Failed
        }
        (None, Some((_, key)), _) => {
            p.add(&dates_path.key(key), without_field("date pattern"));
            DateRead::Failed
        }
        (None, None, Some((_, key))) => {
            p.add(&dates_path.key(key), without_field("time zone"));
            DateRead::Failed
        }
        (None, None, None) => DateRead::Absent,
    }
}
