//! Change detection (DESIGN 4), pure: the records of one window and the
//! job's checkpoint in; changes, dead letters and the next checkpoint out.
//! No I/O, no clock: everything time-dependent is an argument.

use std::collections::HashSet;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::checkpoint::{Checkpoint, Seen};
use crate::event::EventType;
use crate::instance::{DateField, Resource};

/// One change to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectedChange<'a> {
    pub object_id: String,
    pub event_type: EventType,
    /// The filter date (updated, or created when `filterByUpdatedDate` is
    /// false): what the watermark and the dedupe set are made of.
    pub updated_at: DateTime<Utc>,
    pub raw: &'a RawValue,
}

/// A record that cannot be read: it goes to the dead-letter topic, it never
/// blocks the rest of the window and never vanishes silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadRecord<'a> {
    pub object_id: Option<String>,
    pub reason: String,
    pub raw: &'a RawValue,
}

/// What a window comes to.
#[derive(Debug)]
pub struct Detected<'a> {
    pub changes: Vec<DetectedChange<'a>>,
    pub dead: Vec<DeadRecord<'a>>,
    /// The checkpoint to commit with the changes.
    pub next: Checkpoint,
    /// Records already published (by an earlier, overlapping window or
    /// earlier in this one).
    pub duplicates: u64,
    /// Records dated before the window start: an earlier window covered
    /// their time, and their pair may already be pruned, so publishing them
    /// could publish twice.
    pub before_window: u64,
    /// Records dated after the poll start with `filterByCurrentDate`: the
    /// next poll takes them.
    pub after_poll_start: u64,
}

/// Parameters of one poll.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Inclusive lower bound of the window (what the URL asked `since`).
    pub start: DateTime<Utc>,
    /// When the poll began, by the worker's clock.
    pub poll_start: DateTime<Utc>,
    /// How far the next window reaches back behind the watermark, besides
    /// `pollDelay`; see [`window_start`].
    pub overlap: TimeDelta,
}

/// The start of the next window: watermark − `pollDelay` − overlap. The
/// overlap re-reads recent time on purpose: providers stamp records with
/// their own (skewed) clock and some make changes visible late; the dedupe
/// set makes the re-read harmless.
pub fn window_start(watermark: DateTime<Utc>, resource: &Resource, overlap: TimeDelta) -> DateTime<Utc> {
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
    window: Window,
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
        if read.filter_date < window.start {
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
        out.changes.push(DetectedChange {
            object_id: read.object_id,
            event_type: read.event_type,
            updated_at: read.filter_date,
            raw,
        });
    }

    let next = &mut out.next;
    for c in &out.changes {
        // Only published records move the watermark, so it never passes a
        // record that was not published.
        next.watermark = next.watermark.max(c.updated_at);
        next.seen.insert(Seen {
            updated_at: c.updated_at,
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
                    kind(other)
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
            kind(other)
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
