//! Change detection (DESIGN 4), pure: the records of one window and the
//! job's checkpoint in; changes, dead letters and the next checkpoint out.
//! No I/O, no clock: everything time-dependent is an argument.

use std::collections::HashSet;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::event::{Change, DeadRecord, EventType};
use crate::instance::{DateField, Resource, json_kind};
use crate::state::{Checkpoint, Published};

/// What a window comes to.
#[derive(Debug)]
pub struct Detected<'a> {
    pub changes: Vec<Change<'a>>,
    pub dead: Vec<DeadRecord<'a>>,
    /// The checkpoint to commit with the changes.
    pub next: Checkpoint,
    /// Records already published (by an earlier, overlapping window or
    /// earlier in this one).
    pub duplicates: u64,
    /// Records dated before the window start (an earlier window covered
    /// their time, and their pair may already be pruned, so publishing them
    /// could publish twice) or before the job began.
    pub before_window: u64,
    /// Records dated after the poll start with `filterByCurrentDate`: the
    /// next poll takes them.
    pub after_poll_start: u64,
}

/// Parameters of one poll.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Inclusive lower bound of the window (what the URL asked `since`).
    pub start: DateTime<Utc>,
    /// When the poll began, by the worker's clock.
    pub poll_start: DateTime<Utc>,
    /// How far the next window reaches back behind the watermark, besides
    /// `pollDelay`; see [`window_start`].
    pub overlap: TimeDelta,
    /// Records dated before this are older than the job: the job's start
    /// (now, or the backfill time) on the provider's clock. See
    /// [`job_start_on_provider_clock`].
    pub not_before: DateTime<Utc>,
}

/// How much earlier than the measured job start a record may be and still
/// count as the job's: the provider's `Date` header has whole seconds and
/// arrives after a request's latency.
pub const START_MARGIN: TimeDelta = TimeDelta::seconds(2);

/// The job's start on the provider's clock. Providers stamp records with
/// their own clock; if it runs 5 minutes behind ours, a change made right
/// after the job started carries a date 5 minutes before `started_from`.
/// The skew is measured per poll from the provider's `Date` header
/// (`provider_date`, received about when the poll began, `poll_start`).
pub fn job_start_on_provider_clock(
    started_from: DateTime<Utc>,
    poll_start: DateTime<Utc>,
    provider_date: Option<DateTime<Utc>>,
) -> DateTime<Utc> {
    let skew = provider_date.map_or(TimeDelta::zero(), |d| d - poll_start);
    started_from
        .checked_add_signed(skew - START_MARGIN)
        .unwrap_or(started_from)
}

/// The start of the next window: watermark − `pollDelay` − overlap. The
/// overlap re-reads recent time on purpose: providers stamp records with
/// their own (skewed) clock and some make changes visible late; the dedupe
/// set makes the re-read harmless.
pub fn window_start(
    watermark: DateTime<Utc>,
    resource: &Resource,
    overlap: TimeDelta,
) -> DateTime<Utc> {
    let delay = TimeDelta::from_std(resource.poll_delay).unwrap_or(TimeDelta::MAX);
    watermark
        .checked_sub_signed(delay)
        .and_then(|t| t.checked_sub_signed(overlap))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Runs detection over one window's records.
pub fn detect<'a>(
    resource: &Resource,
    checkpoint: &Checkpoint,
    window: Bounds,
    records: &'a [Box<RawValue>],
) -> Detected<'a> {
    let mut out = Detected {
        changes: Vec::new(),
        dead: Vec::new(),
        next: checkpoint.clone(),
        duplicates: 0,
        before_window: 0,
        after_poll_start: 0,
    };
    let mut in_window: HashSet<(String, DateTime<Utc>)> = HashSet::new();
    for raw in records {
        let read = match read_record(resource, raw) {
            Ok(read) => read,
            Err((object_id, reason)) => {
                out.dead.push(DeadRecord {
                    object_id,
                    reason,
                    raw,
                });
                continue;
            }
        };
        if read.filter_date < window.start || read.filter_date < window.not_before {
            out.before_window += 1;
            continue;
        }
        if resource.filter_by_current_date && read.filter_date > window.poll_start {
            out.after_poll_start += 1;
            continue;
        }
        if checkpoint.has_published(&read.object_id, read.filter_date)
            || !in_window.insert((read.object_id.clone(), read.filter_date))
        {
            out.duplicates += 1;
            continue;
        }
        out.changes.push(Change {
            object_id: read.object_id,
            event_type: read.event_type,
            filter_date: read.filter_date,
            raw,
        });
    }

    let next = &mut out.next;
    for c in &out.changes {
        // Only published records move the watermark, so it never passes a
        // record that was not published.
        next.watermark = next.watermark.max(c.filter_date);
        next.seen.insert(Published {
            updated_at: c.filter_date,
            object_id: c.object_id.clone(),
        });
    }
    next.prune_before(window_start(next.watermark, resource, window.overlap));
    next.last_poll_start = Some(window.poll_start);
    next.polls += 1;
    next.events += out.changes.len() as u64;
    next.dead_letters += out.dead.len() as u64;
    out
}

struct Read {
    object_id: String,
    filter_date: DateTime<Utc>,
    event_type: EventType,
}

type Unreadable = (Option<String>, String);

fn read_record(resource: &Resource, raw: &RawValue) -> Result<Read, Unreadable> {
    let value: Value = serde_json::from_str(raw.get())
        .map_err(|e| (None, format!("record is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err((None, "record is not a JSON object".into()));
    }
    let object_id = match resource.id_field.get(&value) {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Null) | None => {
            return Err((
                None,
                format!("id field '{}' is missing", resource.id_field.as_str()),
            ));
        }
        Some(other) => {
            return Err((
                None,
                format!(
                    "id field '{}' is not a string or number: {}",
                    resource.id_field.as_str(),
                    json_kind(other)
                ),
            ));
        }
    };
    let with_id = |reason: String| (Some(object_id.clone()), reason);
    let updated = read_date(&resource.updated, &value).map_err(with_id)?;
    let created = match &resource.created {
        Some(field) => Some(read_date(field, &value).map_err(with_id)?),
        None => None,
    };
    let event_type = match created {
        Some(created) if within(created, updated, resource) => EventType::Created,
        _ => EventType::Updated,
    };
    let filter_date = match (created, resource.filter_by_updated_date) {
        (Some(created), false) => created,
        _ => updated,
    };
    Ok(Read {
        object_id,
        filter_date,
        event_type,
    })
}

fn within(created: DateTime<Utc>, updated: DateTime<Utc>, resource: &Resource) -> bool {
    let tolerance = TimeDelta::from_std(resource.created_check_tolerance).unwrap_or(TimeDelta::MAX);
    (updated - created).abs() <= tolerance
}

fn read_date(field: &DateField, record: &Value) -> Result<DateTime<Utc>, String> {
    match field.path.get(record) {
        Some(Value::String(text)) => field
            .format
            .parse(text, &field.zone)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| format!("date field '{}': {e}", field.path.as_str())),
        Some(Value::Null) | None => Err(format!("date field '{}' is missing", field.path.as_str())),
        Some(other) => Err(format!(
            "date field '{}' is not a string: {}",
            field.path.as_str(),
            json_kind(other)
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::instance::{Instance, parse_str};
    use crate::state::JobId;

    fn instance(extra: &str) -> Instance {
        let text = format!(
            r#"{{"element":{{"key":"infusionsoftecommerce"}},"name":"shop",
              "configuration":{{"event.notification.enabled":"true",
              "event.poller.configuration":{{"orders":{{
                "url":"/hubs/ecommerce/orders?where=since='${{date:yyyy-MM-dd'T'HH:mm:ssXXX}}'",
                "idField":"id" {extra},
                "datesConfiguration":{{
                  "updatedAtField":"modification_date","updatedAtFormat":"yyyy-MM-dd'T'HH:mm:ssXXX",
                  "createdAtField":"creation_date","createdAtFormat":"yyyy-MM-dd'T'HH:mm:ssXXX"}}}}}}}}}}"#
        );
        parse_str(Path::new("shop.json"), &text).unwrap()
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn rec(id: &str, created: &str, updated: &str) -> Box<RawValue> {
        RawValue::from_string(format!(
            r#"{{"id":{id},"creation_date":"{created}","modification_date":"{updated}","total":9.90}}"#
        ))
        .unwrap()
    }

    fn window(start: &str, poll_start: &str) -> Bounds {
        Bounds {
            start: t(start),
            poll_start: t(poll_start),
            overlap: TimeDelta::seconds(60),
            not_before: DateTime::<Utc>::MIN_UTC,
        }
    }

    fn start() -> Checkpoint {
        Checkpoint::starting(JobId::new("shop", "orders"), t("2024-01-01T00:00:00Z"))
    }

    #[test]
    fn created_and_updated_are_told_apart_within_the_tolerance() {
        let inst = instance("");
        let r = &inst.resources[0];
        let records = [
            rec("1", "2024-01-01T00:01:00Z", "2024-01-01T00:01:00Z"),
            rec("2", "2024-01-01T00:01:00Z", "2024-01-01T00:01:01Z"),
            rec("3", "2024-01-01T00:01:00Z", "2024-01-01T00:05:00Z"),
        ];
        let d = detect(
            r,
            &start(),
            window("2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z"),
            &records,
        );
        let types: Vec<_> = d
            .changes
            .iter()
            .map(|c| (c.object_id.as_str(), c.event_type))
            .collect();
        assert_eq!(
            types,
            [
                ("1", EventType::Created),
                ("2", EventType::Created),
                ("3", EventType::Updated)
            ]
        );
        assert_eq!(d.next.watermark, t("2024-01-01T00:05:00Z"));
        assert_eq!((d.next.polls, d.next.events), (1, 3));

        let strict = instance(r#","createdCheckTolerance":"0""#);
        let d = detect(
            &strict.resources[0],
            &start(),
            window("2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z"),
            &records,
        );
        assert_eq!(d.changes[1].event_type, EventType::Updated);
    }

    #[test]
    fn overlapping_windows_publish_each_change_once() {
        let inst = instance("");
        let r = &inst.resources[0];
        // Two records share a timestamp across what would be a page boundary.
        let first = [
            rec("1", "2024-01-01T00:01:00Z", "2024-01-01T00:02:00Z"),
            rec("2", "2024-01-01T00:01:00Z", "2024-01-01T00:02:00Z"),
        ];
        let d1 = detect(
            r,
            &start(),
            window("2024-01-01T00:00:00Z", "2024-01-01T00:03:00Z"),
            &first,
        );
        assert_eq!(d1.changes.len(), 2);
        let cp = d1.next;
        let next_start = window_start(cp.watermark, r, TimeDelta::seconds(60));
        assert_eq!(next_start, t("2024-01-01T00:01:00Z"));
        // The next window re-reads both, plus a third with the same time and
        // a newer version of record 1.
        let second = [
            rec("1", "2024-01-01T00:01:00Z", "2024-01-01T00:02:00Z"),
            rec("2", "2024-01-01T00:01:00Z", "2024-01-01T00:02:00Z"),
            rec("3", "2024-01-01T00:02:00Z", "2024-01-01T00:02:00Z"),
            rec("1", "2024-01-01T00:01:00Z", "2024-01-01T00:04:00Z"),
            rec("1", "2024-01-01T00:01:00Z", "2024-01-01T00:04:00Z"),
        ];
        let w = Bounds {
            start: next_start,
            poll_start: t("2024-01-01T00:05:00Z"),
            overlap: TimeDelta::seconds(60),
            not_before: DateTime::<Utc>::MIN_UTC,
        };
        let d2 = detect(r, &cp, w, &second);
        let got: Vec<_> = d2
            .changes
            .iter()
            .map(|c| (c.object_id.clone(), c.filter_date))
            .collect();
        assert_eq!(
            got,
            [
                ("3".to_string(), t("2024-01-01T00:02:00Z")),
                ("1".to_string(), t("2024-01-01T00:04:00Z"))
            ]
        );
        assert_eq!(d2.duplicates, 3);
        // Pairs older than the next window's start are forgotten.
        assert_eq!(d2.next.watermark, t("2024-01-01T00:04:00Z"));
        assert!(
            d2.next
                .seen
                .iter()
                .all(|s| s.updated_at >= t("2024-01-01T00:03:00Z"))
        );
    }

    #[test]
    fn unreadable_records_become_dead_letters_and_the_rest_still_publish() {
        let inst = instance("");
        let r = &inst.resources[0];
        let records = [
            RawValue::from_string(r#"{"title":"no id","modification_date":"2024-01-01T00:01:00Z"}"#.into()).unwrap(),
            RawValue::from_string(r#"{"id":5,"creation_date":"2024-01-01T00:01:00Z","modification_date":"yesterday"}"#.into()).unwrap(),
            RawValue::from_string(r#"[1,2]"#.into()).unwrap(),
            rec("6", "2024-01-01T00:01:00Z", "2024-01-01T00:09:00Z"),
        ];
        let d = detect(
            r,
            &start(),
            window("2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z"),
            &records,
        );
        assert_eq!(d.changes.len(), 1);
        assert_eq!(d.dead.len(), 3);
        assert!(
            d.dead[0].reason.contains("id field 'id' is missing"),
            "{}",
            d.dead[0].reason
        );
        assert_eq!(d.dead[1].object_id.as_deref(), Some("5"));
        assert!(
            d.dead[1].reason.contains("modification_date"),
            "{}",
            d.dead[1].reason
        );
        assert_eq!(d.next.dead_letters, 3);
        assert_eq!(d.next.watermark, t("2024-01-01T00:09:00Z"));
    }

    #[test]
    fn window_bounds_and_filter_date_are_honoured() {
        let records = [
            rec("1", "2023-12-31T23:00:00Z", "2023-12-31T23:59:00Z"),
            rec("2", "2024-01-01T00:30:00Z", "2024-01-01T00:30:00Z"),
            rec("3", "2024-01-01T00:10:00Z", "2024-01-01T02:00:00Z"),
        ];
        let w = window("2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z");
        let plain = instance("");
        let d = detect(&plain.resources[0], &start(), w, &records);
        assert_eq!(d.before_window, 1);
        assert_eq!(d.changes.len(), 2);

        let bounded = instance(r#","filterByCurrentDate":true"#);
        let d = detect(&bounded.resources[0], &start(), w, &records);
        assert_eq!((d.changes.len(), d.after_poll_start), (1, 1));
        assert_eq!(
            d.next.watermark,
            t("2024-01-01T00:30:00Z"),
            "never past an unpublished record"
        );

        // Nothing older than the job, measured on the provider's clock.
        let started = t("2024-01-01T00:40:00Z");
        let behind = job_start_on_provider_clock(
            started,
            t("2024-01-01T01:00:00Z"),
            Some(t("2024-01-01T00:55:00Z")),
        );
        assert_eq!(behind, t("2024-01-01T00:34:58Z"));
        let d = detect(
            &plain.resources[0],
            &start(),
            Bounds {
                not_before: behind,
                ..w
            },
            &records,
        );
        assert_eq!(d.changes.len(), 1, "only the change after the job began");
        assert_eq!(d.changes[0].object_id, "3");

        let by_created = instance(r#","filterByUpdatedDate":"false""#);
        let d = detect(&by_created.resources[0], &start(), w, &records);
        let got: Vec<_> = d
            .changes
            .iter()
            .map(|c| (c.object_id.as_str(), c.filter_date))
            .collect();
        assert_eq!(
            got,
            [
                ("2", t("2024-01-01T00:30:00Z")),
                ("3", t("2024-01-01T00:10:00Z"))
            ]
        );
    }
}
