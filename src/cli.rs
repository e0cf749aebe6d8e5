//! Command-line definitions (clap); behaviour lives in the library.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

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
    Run,
    /// Print committed events of a topic as they arrive (read_committed).
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
    /// Check instance files; print one `FILE: JSON_PATH: REASON` line per
    /// problem and exit 1 if any file is invalid.
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

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("not an RFC 3339 time such as 2024-05-01T12:00:00Z: {e}"))
}
