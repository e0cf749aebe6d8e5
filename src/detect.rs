//! Change detection (DESIGN 4), pure: the records of one window and the
//! job's checkpoint in; changes, dead letters and the next checkpoint out.
//! No I/O, no clock: everything time-dependent is an argument.

use std::collections::HashSet;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::event::{Change, DeadKind, DeadRecord, EventType};
use crate::instance::{DateField, Resource, json_kind};
use crate::record::Fields;
use crate::state::{Checkpoint, Resume};

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
    /// Records dated before what earlier windows covered (their pair may
    /// already be pruned, so publishing them could publish twice) or before
    /// the job began.
    pub before_window: u64,
    /// Records dated after the poll start with `filterByCurrentDate`: the
    /// next poll takes them.
    pub after_poll_start: u64,
    /// Records dated after the provider's clock (plus
    /// [`FUTURE_TOLERANCE`]), published (or dead-lettered) without moving
    /// the watermark.
    pub future_dated: u64,
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
    /// The latest date a record of this window can honestly carry: the
    /// provider's clock at its last answer plus [`FUTURE_TOLERANCE`].
    /// Later-dated records never move the watermark.
    pub provider_now: DateTime<Utc>,
    /// The provider's clock skew measured by this window, if it could be.
    pub skew: Option<TimeDelta>,
}

/// How much earlier than the measured job start a record may be and still
/// count as the job's: the provider's `Date` header has whole seconds.
pub const START_MARGIN: TimeDelta = TimeDelta::seconds(2);

/// How far past the provider's `Date` a record may be dated and still move
/// the watermark: `Date` has whole seconds, and a provider's API servers
/// and database may disagree by a few seconds. A record dated later is
/// future-dated (a data error or a zone mistake): if it moved the
/// watermark, every window after it would start in the future and every
/// real change would be lost.
pub const FUTURE_TOLERANCE: TimeDelta = TimeDelta::seconds(10);

/// The job's start on the provider's clock. Providers stamp records with
/// their own clock; if it runs 5 minutes behind ours, a change made right
/// after the job started carries a date 5 minutes before `started_from`.
pub fn job_start_on_provider_clock(
    started_from: DateTime<Utc>,
    skew: Option<TimeDelta>,
) -> DateTime<Utc> {
    started_from
        .checked_add_signed(skew.unwrap_or_default() - START_MARGIN)
        .unwrap_or(started_from)
}

/// The latest date a record served now can carry: the provider's clock
/// (its last `Date`, else ours) plus [`FUTURE_TOLERANCE`] and the second
/// `Date` truncates.
pub fn provider_now(provider_date: Option<DateTime<Utc>>, ours: DateTime<Utc>) -> DateTime<Utc> {
    let base = provider_date.map_or(ours, |d| d + TimeDelta::seconds(1));
    base.checked_add_signed(FUTURE_TOLERANCE).unwrap_or(base)
}

/// watermark − `pollDelay` − overlap. The overlap re-reads recent time on
/// purpose: providers stamp records with their own (skewed) clock and some
/// make changes visible late; the dedupe set makes the re-read harmless.
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

/// Where the next window after `checkpoint` starts: a pending resume's
/// start, else [`window_start`] of its watermark. Pruning uses the same
/// bound, so the dedupe set always covers what the next window re-reads.
pub fn next_window_start(
    checkpoint: &Checkpoint,
    resource: &Resource,
    overlap: TimeDelta,
) -> DateTime<Utc> {
    let by_watermark = window_start(checkpoint.watermark, resource, overlap);
    match &checkpoint.resume {
        Some(r) => by_watermark.min(r.start),
        None => by_watermark,
    }
}

/// Runs detection over one window's records. `resume` is where the window
/// goes on if it was cut short (it becomes part of the next checkpoint).
pub fn detect<'a>(
    resource: &Resource,
    checkpoint: &Checkpoint,
    window: Bounds,
    records: &'a [Box<RawValue>],
    resume: Option<Resume>,
) -> Detected<'a> {
    let mut out = Detected {
        changes: Vec::new(),
        dead: Vec::new(),
        next: checkpoint.clone(),
        duplicates: 0,
        before_window: 0,
        after_poll_start: 0,
        future_dated: 0,
    };
    // Records dated before this were handled by committed windows.
    let covered = checkpoint
        .covered_before
        .unwrap_or(window.start)
        .max(window.not_before);
    let mut in_window: HashSet<(String, DateTime<Utc>)> = HashSet::new();
    let mut future_dead = Vec::new();
    for raw in records {
        let read = match read_record(resource, raw) {
            Ok(read) => read,
            Err((object_id, reason)) => {
                out.dead.push(DeadRecord {
                    object_id,
                    kind: DeadKind::Unreadable,
                    reason,
                    raw,
                });
                continue;
            }
        };
        if read.filter_date < covered {
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
        if read.filter_date > window.provider_now {
            out.future_dated += 1;
            if resource.dead_letter_future_dated {
                future_dead.push((read.object_id.clone(), read.filter_date));
                out.dead.push(DeadRecord {
                    reason: format!(
                        "dated {} , after the provider's clock ({})",
                        read.filter_date.to_rfc3339(),
                        (window.provider_now - FUTURE_TOLERANCE).to_rfc3339()
                    ),
                    object_id: Some(read.object_id),
                    kind: DeadKind::FutureDated,
                    raw,
                });
                continue;
            }
        }
        out.changes.push(Change {
            object_id: read.object_id,
            event_type: read.event_type,
            filter_date: read.filter_date,
            raw,
        });
    }

    let next = &mut out.next;
    let mut moved = false;
    for c in &out.changes {
        // Only published records move the watermark, so it never passes a
        // record that was not published; and never past the provider's
        // clock, so one future-dated record cannot hide later changes. Its
        // pair stays in the dedupe set until the watermark passes its date.
        if c.filter_date <= window.provider_now {
            next.watermark = next.watermark.max(c.filter_date);
            moved = true;
        }
        next.seen.insert(&c.object_id, c.filter_date);
    }
    for (id, at) in &future_dead {
        next.seen.insert(id, *at);
    }
    if checkpoint.events == 0 && !moved {
        // Nothing published yet: the watermark is the job's start, on the
        // provider's clock as measured, so a provider behind by more than
        // the overlap loses nothing made right after the start.
        next.watermark = next.started_from.min(window.not_before);
    }
    if window.skew.is_some() {
        next.provider_skew_ms = window.skew.map(|s| s.num_milliseconds());
    }
    next.resume = resume;
    next.prune_before(next_window_start(next, resource, window.overlap));
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
    let fields = Fields::read(raw).map_err(|reason| (None, reason))?;
    let object_id = match fields.get(&resource.id_field) {
        Some(Value::String(s)) if !s.trim().is_empty() => s,
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
                    json_kind(&other)
                ),
            ));
        }
    };
    let with_id = |reason: String| (Some(object_id.clone()), reason);
    let updated = read_date(&resource.updated, &fields).map_err(with_id)?;
    let created = match &resource.created {
        Some(field) => Some(read_date(field, &fields).map_err(with_id)?),
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

fn read_date(field: &DateField, record: &Fields<'_>) -> Result<DateTime<Utc>, String> {
    match record.get(&field.path) {
        Some(Value::String(text)) => field
            .format
            .parse(&text, &field.zone)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| format!("date field '{}': {e}", field.path.as_str())),
        Some(Value::Null) | None => Err(format!("date field '{}' is missing", field.path.as_str())),
        Some(other) => Err(format!(
            "date field '{}' is not a string: {}",
            field.path.as_str(),
            json_kind(&other)
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
            provider_now: t("2100-01-01T00:00:00Z"),
            skew: None,
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
            None,
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
            None,
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
            None,
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
            provider_now: t("2100-01-01T00:00:00Z"),
            skew: None,
        };
        let d2 = detect(r, &cp, w, &second, None);
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
        assert!(!d2.next.has_published("3", t("2024-01-01T00:02:00Z")));
        assert!(d2.next.has_published("1", t("2024-01-01T00:04:00Z")));
        assert_eq!(d2.next.covered_before, Some(t("2024-01-01T00:03:00Z")));
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
            None,
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
        let d = detect(&plain.resources[0], &start(), w, &records, None);
        assert_eq!(d.before_window, 1);
        assert_eq!(d.changes.len(), 2);

        let bounded = instance(r#","filterByCurrentDate":true"#);
        let d = detect(&bounded.resources[0], &start(), w, &records, None);
        assert_eq!((d.changes.len(), d.after_poll_start), (1, 1));
        assert_eq!(
            d.next.watermark,
            t("2024-01-01T00:30:00Z"),
            "never past an unpublished record"
        );

        // Nothing older than the job, measured on the provider's clock.
        let started = t("2024-01-01T00:40:00Z");
        let behind = job_start_on_provider_clock(started, Some(TimeDelta::minutes(-5)));
        assert_eq!(behind, t("2024-01-01T00:34:58Z"));
        let d = detect(
            &plain.resources[0],
            &start(),
            Bounds {
                not_before: behind,
                ..w
            },
            &records,
            None,
        );
        assert_eq!(d.changes.len(), 1, "only the change after the job began");
        assert_eq!(d.changes[0].object_id, "3");

        let by_created = instance(r#","filterByUpdatedDate":"false""#);
        let d = detect(&by_created.resources[0], &start(), w, &records, None);
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
