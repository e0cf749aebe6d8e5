//! Command-line definitions (clap); behaviour lives in the library.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use event_poller::secret::Secret;

#[derive(Debug, Parser)]
#[command(
    name = "event-poller",
    version,
    about = "Polls SaaS APIs for changed records and publishes change events to Kafka, exactly once."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the poll worker: settings from the environment (see README),
    /// instances from INSTANCES_PATH. SIGTERM/SIGINT stop it cleanly.
    #[command(
        after_help = "Example:\n  KAFKA_BOOTSTRAP_SERVERS=kafka:9092 INSTANCES_PATH=instances/ \\\n    STATE_ENCRYPTION_KEY_FILE=/run/secrets/key event-poller run"
    )]
    Run,
    /// Print committed events of a topic as they arrive (read_committed).
    #[command(after_help = "Example:\n  event-poller tail --from-beginning --json --exit-at-end")]
    Tail {
        /// Topic to read; default EVENTS_TOPIC.
        #[arg(long)]
        topic: Option<String>,
        /// Start from the oldest retained event instead of new ones.
        #[arg(long)]
        from_beginning: bool,
        /// Print each event's JSON value instead of a summary line.
        #[arg(long)]
        json: bool,
        /// Stop after this many events.
        #[arg(long)]
        max: Option<u64>,
        /// Stop once every partition has been read to its end.
        #[arg(long)]
        exit_at_end: bool,
    },
    /// Run one window of one job and print its events as JSON lines on
    /// stdout (dead letters on stderr), exactly as `run` builds them.
    /// Without --dry-run the window is the job's next one and is committed
    /// (events, checkpoint) through its state partition, fencing the
    /// worker that owns it; with --dry-run nothing touches Kafka.
    #[command(after_help = "Examples:\n  \
        event-poller poll-once --instance instances/shop.json --resource orders --dry-run\n  \
        event-poller poll-once --instance instances/shop.json --resource orders --dry-run --since 2026-12-01T00:00:00Z")]
    PollOnce {
        /// The instance JSON file.
        #[arg(long)]
        instance: PathBuf,
        /// The resource of `event.poller.configuration` (e.g. orders).
        #[arg(long)]
        resource: String,
        /// Dry runs: where the window starts (RFC 3339). Default: the
        /// instance's event.poller.backfill.from, else one interval ago.
        #[arg(long, value_parser = parse_time)]
        since: Option<DateTime<Utc>>,
        /// Touch no Kafka and no checkpoint; OAuth tokens stay in memory
        /// (an OAuth instance spends its providerData.code).
        #[arg(long)]
        dry_run: bool,
    },
    /// Look at or change the jobs' checkpoints in the state topic.
    #[command(
        subcommand,
        after_help = "Examples:\n  event-poller state list\n  event-poller state rewind shop/orders --to 2026-12-01T00:00:00Z"
    )]
    State(StateCommand),
    /// OAuth tokens in the state topic: re-authorize, or see their state.
    #[command(
        subcommand,
        after_help = "Examples:\n  event-poller auth status\n  AUTH_CODE=... event-poller auth exchange --instance instances/shop.json"
    )]
    Auth(AuthCommand),
    /// Check instance files; print one `FILE: JSON_PATH: REASON` line per
    /// problem and exit 1 if any file is invalid.
    #[command(
        after_help = "Example:\n  event-poller validate instances/ --at 2026-12-01T12:00:00Z"
    )]
    Validate {
        /// Instance JSON files or directories of them.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also print `FILE RESOURCE URL`: each resource's URL as it would be
        /// called after a poll at this time (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        at: Option<DateTime<Utc>>,
        /// Zone of `${date:…}` placeholders (IANA id or offset).
        #[arg(long, env = "SERVICE_TIMEZONE", default_value = "UTC")]
        zone: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Every job: watermark, lag, last commit, dedupe-set size, state
    /// partition and whether it is blocked.
    #[command(after_help = "Example:\n  event-poller state list --json")]
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One job's checkpoint as JSON (no tokens).
    #[command(after_help = "Example:\n  event-poller state show shop/orders")]
    Show {
        /// INSTANCE/RESOURCE, as `state list` prints it.
        job: String,
    },
    /// Move a job's checkpoint back: every change dated after TIME is
    /// published once more, nothing else. Written through the partition's
    /// transactional id: the owning worker is fenced and resumes from it.
    #[command(
        after_help = "Example:\n  event-poller state rewind shop/orders --to 2026-12-01T00:00:00Z --yes"
    )]
    Rewind {
        /// INSTANCE/RESOURCE, as `state list` prints it.
        job: String,
        /// RFC 3339; must be before the job's watermark.
        #[arg(long, value_parser = parse_time)]
        to: DateTime<Utc>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Delete a job's checkpoint: it starts over as a new job (from now,
    /// or from the instance's backfill start). Unblocks an unreadable one.
    #[command(after_help = "Example:\n  event-poller state reset shop/orders --yes")]
    Reset {
        /// INSTANCE/RESOURCE, as `state list` prints it.
        job: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Exchange a new authorization code for the instance and store the
    /// sealed tokens in its state partition (fencing its owner), so a
    /// stranded instance polls again without a restart.
    #[command(
        after_help = "Example:\n  AUTH_CODE=... event-poller auth exchange --instance instances/shop.json"
    )]
    Exchange {
        /// The instance JSON file (its OAuth client and redirect URI).
        #[arg(long)]
        instance: PathBuf,
        /// The authorization code from the provider's redirect.
        #[arg(long, env = "AUTH_CODE", hide_env_values = true, value_parser = parse_secret)]
        code: Secret,
    },
    /// Per instance: last refresh, token age, expiry, and whether it needs
    /// re-authorization.
    #[command(after_help = "Example:\n  event-poller auth status --json")]
    Status {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Trimmed (a pasted code often ends in a newline) and redacted from then
/// on, `Debug` included.
fn parse_secret(s: &str) -> Result<Secret, String> {
    match s.trim() {
        "" => Err("empty".into()),
        code => Ok(Secret::new(code)),
    }
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("not an RFC 3339 time such as 2024-05-01T12:00:00Z: {e}"))
}
