//! Operator commands that look at or change what the workers keep in
//! Kafka, and try an instance without a worker. Every change goes through
//! the state partition's own transactional id, exactly as a worker taking
//! the partition over would: the live owner is fenced (its transaction in
//! flight aborted, its next commit refused), and once it takes the
//! partition back it restores what the command wrote. No second way into
//! the state topic, no coordination but Kafka's.
//!
//! - [`fenced`]: a state partition taken over for one change.
//! - [`state`]: `state list | show | rewind | reset`.
//! - [`auth`]: `auth exchange | status`.
//! - [`poll_once`]: one window, printed (`--dry-run`: no Kafka at all).
//! - [`confirm`]: the question before a change.

pub mod auth;
pub mod confirm;
mod fenced;
pub mod poll_once;
pub mod state;

use std::path::PathBuf;

use crate::instance::ConfigProblem;
use crate::publish::PublishError;
use crate::settings::Settings;
use crate::source::SourceError;
use crate::state::restore::RestoreError;
use crate::state::{JobId, RewindError};
use crate::worker::WorkerConfig;
use crate::worker::topics::TopicError;

/// Why an operator command failed; each names what to check.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Topic(#[from] TopicError),
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error("writing to state partition {partition}: {source}")]
    Publish {
        partition: i32,
        source: PublishError,
    },
    #[error(
        "the worker owning state partition {partition} took it back before this change committed; nothing was changed: run the command again"
    )]
    Raced { partition: i32 },
    #[error("no checkpoint for job {job} in state partition {partition} of {topic}{known}")]
    NoSuchJob {
        job: JobId,
        partition: i32,
        topic: String,
        /// `; jobs there: …` when the partition holds any.
        known: String,
    },
    #[error(
        "the checkpoint of job {job} cannot be read ({detail}); `state reset {job}` starts the job over"
    )]
    Unreadable { job: JobId, detail: String },
    #[error("{0}")]
    Rewind(#[from] RewindError),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Instance(Vec<ConfigProblem>),
    #[error("{file}: no resource '{resource}' (resources: {known})")]
    NoSuchResource {
        file: PathBuf,
        resource: String,
        known: String,
    },
    #[error("instance {instance}: {source}")]
    Source {
        instance: String,
        source: SourceError,
    },
    #[error("instance {instance}: {reason}")]
    Exchange { instance: String, reason: String },
    #[error("poll of {job} ended without publishing: {reason}")]
    Poll { job: JobId, reason: String },
    #[error("STATE_ENCRYPTION_KEY is not set; it is needed to {0}")]
    NoKey(&'static str),
    #[error("not confirmed; nothing was changed (pass --yes to skip the question)")]
    NotConfirmed,
    #[error("{0}")]
    Usage(String),
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

/// The worker's view of the settings (the same group, topics and
/// transactional ids as `run`).
fn worker_config(settings: &Settings) -> WorkerConfig {
    WorkerConfig::new(settings)
}

/// `partition` of the state topic, read back as a worker's restore reads it.
async fn read_partition(
    config: &WorkerConfig,
    partition: i32,
) -> Result<crate::state::Restored, AdminError> {
    Ok(crate::state::restore_partition(
        &config.kafka,
        &config.topics.state,
        partition,
        config.restore_timeout,
    )
    .await?)
}

/// `instance/resource` as `state` commands take it: the resource is after
/// the last `/` (instance ids may hold one, resource names do not).
///
/// # Errors
/// No `/`, or an empty part.
pub fn parse_job(text: &str) -> Result<JobId, AdminError> {
    match text.rsplit_once('/') {
        Some((i, r)) if !i.is_empty() && !r.is_empty() => Ok(JobId::new(i, r)),
        _ => Err(AdminError::Usage(format!(
            "job '{text}' is not INSTANCE/RESOURCE (as `state list` prints it, e.g. shop/orders)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_instance_slash_resource() {
        assert_eq!(
            parse_job("shop/orders").unwrap(),
            JobId::new("shop", "orders")
        );
        assert_eq!(
            parse_job("a/b/orders").unwrap(),
            JobId::new("a/b", "orders")
        );
        for bad in ["shop", "/orders", "shop/", ""] {
            let e = parse_job(bad).unwrap_err().to_string();
            assert!(e.contains("INSTANCE/RESOURCE"), "{bad}: {e}");
        }
    }
}
