//! `state list | show | rewind | reset`: the jobs' checkpoints in the state
//! topic. Reading needs no fence (`read_committed` sees only what owners
//! committed); changing fences the partition's owner first.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;

use crate::crypto::SealingKey;
use crate::fetch::TokenSet;
use crate::settings::Settings;
use crate::state::{Checkpoint, JobId, Restored, StateKey, partition_for};
use crate::worker::WorkerConfig;
use crate::worker::topics::partition_count;

use super::confirm::confirm;
use super::fenced::FencedPartition;
use super::{AdminError, read_partition, worker_config};

/// Partitions read at once by `list`.
const READ_AHEAD: usize = 4;

/// One job as the state topic holds it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRow {
    /// `instance/resource`.
    pub job: String,
    pub partition: i32,
    pub watermark: Option<DateTime<Utc>>,
    /// Now minus the watermark, in seconds.
    pub lag_seconds: Option<i64>,
    /// When the job's checkpoint was last written (its last commit).
    pub last_commit: Option<DateTime<Utc>>,
    pub last_poll_start: Option<DateTime<Utc>>,
    /// Pairs in the dedupe set.
    pub dedupe_set_size: Option<usize>,
    pub polls: Option<u64>,
    pub events: Option<u64>,
    /// A window cut short continues at the next poll.
    pub mid_window: bool,
    pub status: Status,
    /// Why the job is blocked, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Ok,
    /// The checkpoint cannot be read: the job does not poll.
    Unreadable,
    /// The provider refused the instance's grant: it needs a new code.
    NeedsAuthorization,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Unreadable => "unreadable",
            Status::NeedsAuthorization => "needs-authorization",
        }
    }
}

/// The state partition of `instance`, by the broker's partition count.
async fn partition_of(config: &WorkerConfig, instance: &str) -> Result<i32, AdminError> {
    let n = partition_count(&config.kafka, &config.topics.state).await?;
    Ok(partition_for(instance, n))
}

/// Every partition of the state topic, read back.
pub(super) async fn read_all(config: &WorkerConfig) -> Result<Vec<(i32, Restored)>, AdminError> {
    let n = partition_count(&config.kafka, &config.topics.state).await?;
    let reads = futures::stream::iter(0..n)
        .map(|p| async move { read_partition(config, p).await.map(|r| (p, r)) })
        .buffered(READ_AHEAD);
    let mut out = Vec::new();
    let mut reads = std::pin::pin!(reads);
    while let Some(r) = reads.next().await {
        out.push(r?);
    }
    Ok(out)
}

/// Instances whose stored tokens the provider refused, when the key to
/// open them is at hand (without it nobody can tell).
fn refused_instances(restored: &Restored, key: Option<&SealingKey>) -> Vec<String> {
    let Some(key) = key else {
        return Vec::new();
    };
    restored
        .tokens
        .iter()
        .filter(|(instance, sealed)| {
            open_tokens(key, instance, sealed).is_some_and(|t| t.refused_at.is_some())
        })
        .map(|(instance, _)| instance.clone())
        .collect()
}

/// A stored token set, opened; `None` if it cannot be (another key).
pub(super) fn open_tokens(key: &SealingKey, instance: &str, sealed: &[u8]) -> Option<TokenSet> {
    let aad = StateKey::Token {
        instance: instance.to_string(),
    }
    .encode();
    let plain = key.open(aad.as_bytes(), sealed).ok()?;
    serde_json::from_slice(&plain).ok()
}

fn rows(
    partition: i32,
    restored: &Restored,
    key: Option<&SealingKey>,
    now: DateTime<Utc>,
) -> Vec<JobRow> {
    let refused = refused_instances(restored, key);
    let mut out: BTreeMap<JobId, JobRow> = BTreeMap::new();
    for (job, c) in &restored.checkpoints {
        let status = if refused.contains(&job.instance) {
            Status::NeedsAuthorization
        } else {
            Status::Ok
        };
        out.insert(
            job.clone(),
            JobRow {
                job: job.to_string(),
                partition,
                watermark: Some(c.watermark),
                lag_seconds: Some((now - c.watermark).num_seconds()),
                last_commit: restored.written_at.get(job).copied(),
                last_poll_start: c.last_poll_start,
                dedupe_set_size: Some(c.seen.len()),
                polls: Some(c.polls),
                events: Some(c.events),
                mid_window: c.resume.is_some(),
                detail: (status == Status::NeedsAuthorization).then(|| {
                    "the provider refused the instance's grant: `auth exchange` with a new code"
                        .to_string()
                }),
                status,
            },
        );
    }
    for (job, why) in &restored.unreadable {
        out.insert(
            job.clone(),
            JobRow {
                job: job.to_string(),
                partition,
                watermark: None,
                lag_seconds: None,
                last_commit: None,
                last_poll_start: None,
                dedupe_set_size: None,
                polls: None,
                events: None,
                mid_window: false,
                status: Status::Unreadable,
                detail: Some(why.clone()),
            },
        );
    }
    out.into_values().collect()
}

/// Every job of the state topic, by job.
///
/// # Errors
/// The state topic cannot be read.
pub async fn list(settings: &Settings) -> Result<Vec<JobRow>, AdminError> {
    let config = worker_config(settings);
    let now = Utc::now();
    let mut out: Vec<JobRow> = read_all(&config)
        .await?
        .iter()
        .flat_map(|(p, r)| rows(*p, r, config.encryption_key.as_ref(), now))
        .collect();
    out.sort_by(|a, b| a.job.cmp(&b.job));
    Ok(out)
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".into(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

fn seconds(s: Option<i64>) -> String {
    s.map_or_else(|| "-".into(), |s| format!("{s}s"))
}

/// Prints `rows` as a table, or as one JSON object per line.
///
/// # Errors
/// Writing fails.
pub fn print_list(rows: &[JobRow], as_json: bool, out: &mut dyn Write) -> Result<(), AdminError> {
    if as_json {
        for r in rows {
            serde_json::to_writer(&mut *out, r).map_err(std::io::Error::other)?;
            writeln!(out)?;
        }
        return Ok(());
    }
    let width = rows.iter().map(|r| r.job.len()).max().unwrap_or(3).max(3);
    writeln!(
        out,
        "{:<width$}  {:>4}  {:<20}  {:>8}  {:<20}  {:>6}  STATUS",
        "JOB", "PART", "WATERMARK", "LAG", "LAST COMMIT", "DEDUPE"
    )?;
    for r in rows {
        let mut status = r.status.as_str().to_string();
        if r.mid_window {
            status.push_str(" (mid-window)");
        }
        if let Some(d) = &r.detail {
            status.push_str(": ");
            status.push_str(d);
        }
        writeln!(
            out,
            "{:<width$}  {:>4}  {:<20}  {:>8}  {:<20}  {:>6}  {status}",
            r.job,
            r.partition,
            time(r.watermark),
            seconds(r.lag_seconds),
            time(r.last_commit),
            r.dedupe_set_size
                .map_or_else(|| "-".into(), |n| n.to_string()),
        )?;
    }
    Ok(())
}

/// The checkpoint of `job` (tokens are not part of it).
fn find<'a>(
    restored: &'a Restored,
    job: &JobId,
    partition: i32,
    topic: &str,
) -> Result<&'a Checkpoint, AdminError> {
    if let Some(c) = restored.checkpoints.get(job) {
        return Ok(c);
    }
    if let Some(detail) = restored.unreadable.get(job) {
        return Err(AdminError::Unreadable {
            job: job.clone(),
            detail: detail.clone(),
        });
    }
    let mut known: Vec<String> = restored
        .checkpoints
        .keys()
        .map(ToString::to_string)
        .collect();
    known.sort();
    Err(AdminError::NoSuchJob {
        job: job.clone(),
        partition,
        topic: topic.to_string(),
        known: if known.is_empty() {
            String::new()
        } else {
            format!("; jobs there: {}", known.join(", "))
        },
    })
}

/// Prints `job`'s checkpoint as JSON, with where it lives.
///
/// # Errors
/// No such job, or the state topic cannot be read.
pub async fn show(settings: &Settings, job: &JobId, out: &mut dyn Write) -> Result<(), AdminError> {
    let config = worker_config(settings);
    let partition = partition_of(&config, &job.instance).await?;
    let restored = read_partition(&config, partition).await?;
    let checkpoint = find(&restored, job, partition, &config.topics.state)?;
    let doc = json!({
        "job": job.to_string(),
        "partition": partition,
        "lastCommit": restored.written_at.get(job),
        "dedupeSetSize": checkpoint.seen.len(),
        "tokensStored": restored.tokens.contains_key(&job.instance),
        "checkpoint": checkpoint,
    });
    serde_json::to_writer_pretty(&mut *out, &doc).map_err(std::io::Error::other)?;
    writeln!(out)?;
    Ok(())
}

/// What an operator is asked to confirm, and what the command then says.
fn describe_rewind(job: &JobId, partition: i32, from: &Checkpoint, to: DateTime<Utc>) -> String {
    format!(
        "Rewind {job} (state partition {partition}) from watermark {} to {}: every change dated after {} is published once more. The worker owning the partition is fenced and resumes from there.",
        from.watermark.to_rfc3339(),
        to.to_rfc3339(),
        to.to_rfc3339()
    )
}

/// Moves `job`'s checkpoint back to `to` (see [`Checkpoint::rewound_to`]).
///
/// # Errors
/// No such job, `to` not before its watermark, not confirmed, or Kafka.
pub async fn rewind(
    settings: &Settings,
    job: &JobId,
    to: DateTime<Utc>,
    yes: bool,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let config = worker_config(settings);
    let partition = partition_of(&config, &job.instance).await?;
    // Asked before the fence: a question waiting for a person must not
    // hold the owner's partition.
    let before = read_partition(&config, partition).await?;
    let current = find(&before, job, partition, &config.topics.state)?;
    current.rewound_to(to)?;
    confirm(
        &describe_rewind(job, partition, current, to),
        yes,
        input,
        out,
    )?;

    let taken = FencedPartition::take(&config, partition).await?;
    let current = find(&taken.restored, job, partition, &config.topics.state)?;
    let mut rewound = current.rewound_to(to)?;
    let forgotten = current.seen.len() - rewound.seen.len();
    taken
        .commit(crate::publish::Batch {
            state: rewound.records(current.seen_parts),
            ..Default::default()
        })
        .await?;
    taken.release("state rewind").await;
    writeln!(
        out,
        "Rewound {job} (state partition {partition}) to {}: {forgotten} published change(s) after it will be published again, with any others after it, at the job's next poll.",
        to.to_rfc3339()
    )?;
    Ok(())
}

/// Deletes `job`'s checkpoint (and its dedupe-set parts): the job starts
/// over as a new one, from now or from the instance's backfill start.
///
/// # Errors
/// Not confirmed, or Kafka.
pub async fn reset(
    settings: &Settings,
    job: &JobId,
    yes: bool,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let config = worker_config(settings);
    let partition = partition_of(&config, &job.instance).await?;
    let before = read_partition(&config, partition).await?;
    // An unreadable checkpoint is what a reset is for.
    if !before.unreadable.contains_key(job) {
        find(&before, job, partition, &config.topics.state)?;
    }
    confirm(
        &format!(
            "Reset {job} (state partition {partition}): its checkpoint and dedupe set are deleted and the job starts over as new, from now (or the instance's event.poller.backfill.from, replaying everything since). The worker owning the partition is fenced."
        ),
        yes,
        input,
        out,
    )?;
    let taken = FencedPartition::take(&config, partition).await?;
    let parts = taken
        .restored
        .checkpoints
        .get(job)
        .map_or(0, |c| c.seen_parts)
        .max(taken.restored.part_ends.get(job).copied().unwrap_or(0));
    let mut state = vec![(StateKey::Job(job.clone()).encode(), None)];
    state.extend((0..parts).map(|part| {
        (
            StateKey::SeenPart {
                job: job.clone(),
                part,
            }
            .encode(),
            None,
        )
    }));
    taken
        .commit(crate::publish::Batch {
            state,
            ..Default::default()
        })
        .await?;
    taken.release("state reset").await;
    writeln!(
        out,
        "Reset {job} (state partition {partition}): it starts over at its next poll."
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_show_blocked_jobs_with_why() {
        let now = Utc::now();
        let mut r = Restored::default();
        let ok = JobId::new("shop", "orders");
        let mut c = Checkpoint::starting(ok.clone(), now - chrono::TimeDelta::seconds(90));
        c.seen.insert("1", now);
        r.checkpoints.insert(ok, c);
        r.unreadable.insert(
            JobId::new("shop", "contacts"),
            "version 9 is not supported".into(),
        );
        let rows = rows(2, &r, None, now);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].job, "shop/contacts");
        assert_eq!(rows[0].status, Status::Unreadable);
        assert_eq!(rows[1].lag_seconds, Some(90));
        assert_eq!(rows[1].dedupe_set_size, Some(1));
        let mut out = Vec::new();
        print_list(&rows, false, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("unreadable: version 9"), "{text}");
        let mut out = Vec::new();
        print_list(&rows, true, &mut out).unwrap();
        let line: serde_json::Value =
            serde_json::from_str(String::from_utf8(out).unwrap().lines().nth(1).unwrap()).unwrap();
        assert_eq!(line["job"], "shop/orders");
        assert_eq!(line["partition"], 2);
        assert_eq!(line["status"], "ok");
    }
}
