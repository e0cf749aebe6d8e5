//! Change → Kafka record: key, JSON value and CloudEvents headers. Pure, so
//! a redone window produces byte-identical events (same `eventId`, same
//! value), which is what lets consumers and tests recognise them.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::state::JobId;

/// Namespace of our UUIDv5 event ids (a fixed random UUID: changing it
/// changes every event id).
const EVENT_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x5c1e_8a0e_3b7d_4f0a_9d2b_6e4f_a1c3_7b90);

/// The CloudEvents `type` prefix; the full type is `PREFIX.<objectType>.<eventType>`.
pub const CE_TYPE_PREFIX: &str = "io.event-poller";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventType {
    Created,
    Updated,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Created => "CREATED",
            EventType::Updated => "UPDATED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// What every record of one job shares.
#[derive(Debug, Clone)]
pub struct EventContext<'a> {
    pub job: &'a JobId,
    pub element_key: &'a str,
    /// The instance's `event.notification.callback.url`, passed on as a
    /// header for downstream delivery; empty means none.
    pub callback_url: Option<&'a str>,
}

/// A record ready to send: owned bytes, no Kafka types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    pub key: Option<String>,
    pub value: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl OutRecord {
    /// Key, value and headers: what counts against a message size limit.
    pub fn size(&self) -> usize {
        self.key.as_ref().map_or(0, String::len)
            + self.value.len()
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}

/// One change to publish, as detection found it.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    pub object_id: String,
    pub event_type: EventType,
    /// The filter date (updated, or created when `filterByUpdatedDate` is
    /// false): what the watermark and the dedupe set are made of, and the
    /// event's `eventDate`.
    pub filter_date: DateTime<Utc>,
    pub raw: &'a RawValue,
}

/// A record that cannot be read: it goes to the dead-letter topic, it never
/// blocks the rest of the window and never vanishes silently.
#[derive(Debug, Clone)]
pub struct DeadRecord<'a> {
    /// The record's id, when it could be read.
    pub object_id: Option<String>,
    pub kind: DeadKind,
    /// What is wrong, in words, naming the field.
    pub reason: String,
    pub raw: &'a RawValue,
}

/// Why a record is a dead letter (the `kind` field, for filtering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadKind {
    /// Its id or a date cannot be read.
    Unreadable,
    /// Its event would exceed the largest Kafka message; `raw` is cut.
    TooLarge,
    /// Dated after the provider's clock, and the resource asks for such
    /// records to be dead-lettered (`deadLetterFutureDated`).
    FutureDated,
}

impl DeadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadKind::Unreadable => "unreadable",
            DeadKind::TooLarge => "too_large",
            DeadKind::FutureDated => "future_dated",
        }
    }
}

/// The largest event record (key, value and headers) this service
/// produces: librdkafka's `message.max.bytes` default (1,000,000) less room
/// for the batch framing. A larger record is dead-lettered instead.
pub const MAX_EVENT_BYTES: usize = 950_000;

/// How much of a too-large record's raw text its dead letter keeps.
pub const CUT_RAW_BYTES: usize = 64 * 1024;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventValue<'a> {
    event_id: String,
    object_id: &'a str,
    object_type: &'a str,
    event_type: EventType,
    event_date: String,
    element_key: &'a str,
    instance_id: &'a str,
    raw: &'a RawValue,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeadLetterValue<'a> {
    kind: DeadKind,
    reason: &'a str,
    object_type: &'a str,
    element_key: &'a str,
    instance_id: &'a str,
    raw: DeadRaw<'a>,
    /// The raw record's size, when `raw` is cut.
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_bytes: Option<usize>,
}

/// A dead letter's `raw`: the record as sent, or the start of its text.
#[derive(Serialize)]
#[serde(untagged)]
enum DeadRaw<'a> {
    Whole(&'a RawValue),
    Cut(&'a str),
}

/// Deterministic: instance, resource, objectId and updatedAt name a change.
pub fn event_id(job: &JobId, object_id: &str, updated_at: DateTime<Utc>) -> uuid::Uuid {
    let name = format!(
        "{}\0{}\0{}\0{}",
        job.instance,
        job.resource,
        object_id,
        rfc3339(updated_at)
    );
    uuid::Uuid::new_v5(&EVENT_ID_NAMESPACE, name.as_bytes())
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The event record for one change. `eventDate` is the record's updated
/// time (not the time of the poll) so that a redone window repeats it
/// exactly.
pub fn event_record(ctx: &EventContext<'_>, change: &Change<'_>) -> OutRecord {
    let id = event_id(ctx.job, &change.object_id, change.filter_date).to_string();
    let date = rfc3339(change.filter_date);
    let value = EventValue {
        event_id: id.clone(),
        object_id: &change.object_id,
        object_type: &ctx.job.resource,
        event_type: change.event_type,
        event_date: date.clone(),
        element_key: ctx.element_key,
        instance_id: &ctx.job.instance,
        raw: change.raw,
    };
    let ce_type = format!(
        "{CE_TYPE_PREFIX}.{}.{}",
        ctx.job.resource,
        change.event_type.as_str().to_ascii_lowercase()
    );
    OutRecord {
        key: Some(change.object_id.to_string()),
        value: to_vec(&value),
        headers: headers(ctx, id, ce_type, date, Some(&change.object_id)),
    }
}

/// A record that cannot be published as an event: its kind, the reason
/// and the raw record (cut, when it is too large), keyed by the object id
/// when it could be read. `ce_time` is the time of the poll's window start.
pub fn dead_letter_record(
    ctx: &EventContext<'_>,
    dead: &DeadRecord<'_>,
    window_start: DateTime<Utc>,
) -> OutRecord {
    let object_id = dead.object_id.as_deref();
    let text = dead.raw.get();
    // Stable across windows: the same record with the same problem gets
    // the same id, however many overlapping windows read it, so consumers
    // can drop repeats.
    let name = format!(
        "dead\0{}\0{}\0{}\0{}",
        ctx.job.instance,
        ctx.job.resource,
        dead.kind.as_str(),
        text
    );
    let id = uuid::Uuid::new_v5(&EVENT_ID_NAMESPACE, name.as_bytes()).to_string();
    let (raw, raw_bytes) = match dead.kind {
        DeadKind::TooLarge => (DeadRaw::Cut(cut(text, CUT_RAW_BYTES)), Some(text.len())),
        _ => (DeadRaw::Whole(dead.raw), None),
    };
    let value = DeadLetterValue {
        kind: dead.kind,
        reason: &dead.reason,
        object_type: &ctx.job.resource,
        element_key: ctx.element_key,
        instance_id: &ctx.job.instance,
        raw,
        raw_bytes,
    };
    let ce_type = format!("{CE_TYPE_PREFIX}.{}.deadletter", ctx.job.resource);
    OutRecord {
        key: object_id.map(str::to_string),
        value: to_vec(&value),
        headers: headers(ctx, id, ce_type, rfc3339(window_start), object_id),
    }
}

/// The longest prefix of `text` of at most `max` bytes, on a character
/// boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn to_vec<T: Serialize>(value: &T) -> Vec<u8> {
    // An empty value would be published as an event: rather stop here.
    serde_json::to_vec(value)
        .expect("structs of strings and already-valid raw JSON always serialise")
}

/// CloudEvents 1.0 Kafka protocol binding, binary mode.
fn headers(
    ctx: &EventContext<'_>,
    id: String,
    ce_type: String,
    time: String,
    subject: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("ce_specversion", "1.0".to_string()),
        ("ce_id", id),
        (
            "ce_source",
            format!("event-poller/{}/{}", ctx.element_key, ctx.job.instance),
        ),
        ("ce_type", ce_type),
        ("ce_time", time),
        ("content-type", "application/json".to_string()),
    ];
    if let Some(s) = subject {
        h.push(("ce_subject", s.to_string()));
    }
    if let Some(url) = ctx.callback_url.filter(|u| !u.is_empty()) {
        h.push(("callback-url", url.to_string()));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    fn context<'a>(job: &'a JobId, callback_url: Option<&'a str>) -> EventContext<'a> {
        EventContext {
            job,
            element_key: "infusionsoftecommerce",
            callback_url,
        }
    }

    #[test]
    fn event_value_keeps_the_raw_record_byte_for_byte() {
        let job = JobId::new("shop", "orders");
        let ctx = context(&job, Some("https://example.test/cb"));
        let r = raw(
            r#"{"id":7,"total":1.10,"big":12345678901234567890,"modification_date":"2024-01-01T00:00:00.000+0000"}"#,
        );
        let at = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let rec = event_record(
            &ctx,
            &Change {
                object_id: "7".into(),
                event_type: EventType::Updated,
                filter_date: at,
                raw: &r,
            },
        );
        let text = String::from_utf8(rec.value.clone()).unwrap();
        assert!(text.ends_with(&format!(r#""raw":{}}}"#, r.get())), "{text}");
        let v: serde_json::Value = serde_json::from_slice(&rec.value).unwrap();
        assert_eq!(v["objectId"], "7");
        assert_eq!(v["objectType"], "orders");
        assert_eq!(v["eventType"], "UPDATED");
        assert_eq!(v["eventDate"], "2024-01-01T00:00:00Z");
        assert_eq!(v["elementKey"], "infusionsoftecommerce");
        assert_eq!(v["instanceId"], "shop");
        assert_eq!(rec.key.as_deref(), Some("7"));
        let h: std::collections::HashMap<_, _> = rec.headers.iter().cloned().collect();
        assert_eq!(h["ce_specversion"], "1.0");
        assert_eq!(h["ce_id"], v["eventId"].as_str().unwrap());
        assert_eq!(h["ce_type"], "io.event-poller.orders.updated");
        assert_eq!(h["ce_subject"], "7");
        assert_eq!(h["callback-url"], "https://example.test/cb");

        // Same change, same bytes; a different updatedAt is a different event.
        let again = event_record(
            &ctx,
            &Change {
                object_id: "7".into(),
                event_type: EventType::Updated,
                filter_date: at,
                raw: &r,
            },
        );
        assert_eq!(again, rec);
        assert_ne!(
            event_id(&job, "7", at),
            event_id(&job, "7", at + chrono::Duration::milliseconds(1))
        );
    }

    #[test]
    fn a_dead_letter_keeps_its_id_across_windows_and_a_too_large_one_is_cut() {
        let job = JobId::new("shop", "orders");
        let ctx = context(&job, None);
        let r = raw(r#"{"id":9,"modification_date":"yesterday"}"#);
        let dead = DeadRecord {
            object_id: Some("9".into()),
            kind: DeadKind::Unreadable,
            reason: "date field 'modification_date'".into(),
            raw: &r,
        };
        let id = |rec: &OutRecord| {
            rec.headers
                .iter()
                .find(|(k, _)| *k == "ce_id")
                .map(|(_, v)| v.clone())
        };
        let t0 = Utc::now();
        let a = dead_letter_record(&ctx, &dead, t0);
        let b = dead_letter_record(&ctx, &dead, t0 + chrono::Duration::minutes(10));
        assert_eq!(id(&a), id(&b), "overlapping windows, same id");
        let other = DeadRecord {
            kind: DeadKind::FutureDated,
            ..dead.clone()
        };
        assert_ne!(id(&a), id(&dead_letter_record(&ctx, &other, t0)));

        let big_text = format!(r#"{{"id":10,"notes":"{}"}}"#, "é".repeat(100_000));
        let big = raw(&big_text);
        let too_large = DeadRecord {
            object_id: Some("10".into()),
            kind: DeadKind::TooLarge,
            reason: "too large".into(),
            raw: &big,
        };
        let rec = dead_letter_record(&ctx, &too_large, t0);
        let v: serde_json::Value = serde_json::from_slice(&rec.value).unwrap();
        assert_eq!(v["kind"], "too_large");
        assert_eq!(v["rawBytes"], big_text.len());
        let cut = v["raw"].as_str().unwrap();
        assert!(cut.len() <= CUT_RAW_BYTES && big_text.starts_with(cut));
        assert_eq!(rec.key.as_deref(), Some("10"));
    }

    #[test]
    fn dead_letters_carry_reason_and_raw() {
        let job = JobId::new("shop", "orders");
        let ctx = context(&job, None);
        let r = raw(r#"{"title":"no id"}"#);
        let dead = DeadRecord {
            object_id: None,
            kind: DeadKind::Unreadable,
            reason: "missing id field 'id'".into(),
            raw: &r,
        };
        let rec = dead_letter_record(&ctx, &dead, Utc::now());
        let v: serde_json::Value = serde_json::from_slice(&rec.value).unwrap();
        assert_eq!(v["reason"], "missing id field 'id'");
        assert_eq!(v["raw"]["title"], "no id");
        assert_eq!(rec.key, None);
        assert!(!rec.headers.iter().any(|(k, _)| *k == "callback-url"));
    }
}
