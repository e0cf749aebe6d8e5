//! Process settings: everything about *this worker* (Kafka, topics, where
//! instance files are, HTTP limits, ops port, logging), read once from the
//! environment into one struct.
//!
//! Each field of [`Settings`] is read with `envy` from the variable of the
//! same name, upper-cased (`safety_overlap_seconds` ←
//! `SAFETY_OVERLAP_SECONDS`); units are in the names. Variables that are
//! not fields are ignored (the environment holds `PATH`, `HOME`, …). Two
//! schemes sit beside the fields because `envy` cannot express them:
//!
//! - `KAFKA_PROPERTY_<NAME>` passes any librdkafka property through, so SASL,
//!   TLS and tuning need no code change: `KAFKA_PROPERTY_SECURITY_PROTOCOL=SASL_SSL`
//!   sets `security.protocol` (`_` → `.`, lower-cased). Properties the
//!   service manages ([`crate::kafka::MANAGED_PROPERTIES`]) are refused.
//! - `<VAR>_FILE` reads a secret from a file (Docker/Kubernetes secrets) for
//!   `STATE_ENCRYPTION_KEY` and any `KAFKA_PROPERTY_*`; a trailing newline is
//!   dropped.
//!
//! Since unknown variables are ignored, a misspelt one in a deployment
//! would go unnoticed at run time. [`known_variables`] and
//! [`check_variable_name`] say which names the binary reads, derived from
//! the struct and the pass-through rules above, so that deployment files
//! can be checked against them (`tests/deploy_drift.rs`).
//!
//! Every invalid value fails start-up with a message naming the variable,
//! never repeating its value (it could be a secret).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rdkafka::ClientConfig;
use serde::{Deserialize, Deserializer};
use serde_with::{DurationMilliSeconds, DurationSeconds, serde_as};

use crate::crypto::SealingKey;
use crate::fetch::FetchLimits;
use crate::javadate::Zone;
use crate::kafka::{GroupProtocol, KafkaClients, MANAGED_PROPERTIES, Tuning};
use crate::secret::Secret;

/// Prefix of the librdkafka pass-through variables.
pub const KAFKA_PROPERTY_PREFIX: &str = "KAFKA_PROPERTY_";

/// Settings that may come from a file named by `<VAR>_FILE` instead
/// (secrets). `KAFKA_PROPERTY_*` variables may too.
pub const SECRET_FILE_VARIABLES: &[&str] = &["STATE_ENCRYPTION_KEY"];

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line, for log shippers.
    Json,
    /// Human-readable, for terminals.
    Pretty,
}

/// Validated process settings. Field docs name the variable, the default
/// and where the default comes from.
#[serde_as]
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    // --- Kafka -----------------------------------------------------------
    /// `KAFKA_BOOTSTRAP_SERVERS`: comma-separated `host:port` list.
    /// Default: the local broker of `make kafka-up`.
    #[serde(default = "default_bootstrap")]
    pub kafka_bootstrap_servers: String,
    /// `KAFKA_SESSION_TIMEOUT_MS`: how long the worker group waits for a
    /// silent worker before handing its partitions (and jobs) to the
    /// others. Default 10 000 (librdkafka: 45 000): a dead worker's jobs
    /// resume within 10 s.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(default = "default_session_timeout")]
    pub kafka_session_timeout_ms: Duration,
    /// `KAFKA_HEARTBEAT_INTERVAL_MS`: how often a worker tells the group it
    /// lives; below the session timeout. Default 2 000, a fifth of the
    /// session timeout (librdkafka: 3 000 for 45 000).
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(default = "default_heartbeat_interval")]
    pub kafka_heartbeat_interval_ms: Duration,
    /// `KAFKA_LINGER_MS`: how long the transactional producers wait to fill
    /// a batch. Default 5 (librdkafka's default).
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(default = "default_linger")]
    pub kafka_linger_ms: Duration,
    /// `KAFKA_GROUP_PROTOCOL`: `classic` (default; cooperative-sticky
    /// rebalancing, session timeout above) or `consumer` (KIP-848, Kafka
    /// 4.0+; the broker's group session timeout applies).
    #[serde(default)]
    pub kafka_group_protocol: GroupProtocol,
    /// `KAFKA_TRANSACTION_TIMEOUT_MS`: how long the transaction coordinator
    /// lets a transaction stay open before aborting it. Default 60 000.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(default = "default_transaction_timeout")]
    pub kafka_transaction_timeout_ms: Duration,
    /// `KAFKA_COMMIT_TIMEOUT_MS`: how long a commit whose outcome is not
    /// confirmed (broker or coordinator away) is resumed before the
    /// partition's producer is replaced and its state restored again.
    /// Default 30 000; at most the transaction timeout.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(default = "default_commit_timeout")]
    pub kafka_commit_timeout_ms: Duration,
    /// librdkafka properties from `KAFKA_PROPERTY_*` (not an envy field).
    #[serde(skip)]
    pub kafka_properties: KafkaProperties,

    // --- Topics ----------------------------------------------------------
    /// `EVENTS_TOPIC`: where change events go.
    #[serde(default = "default_events_topic")]
    pub events_topic: String,
    /// `STATE_TOPIC`: compacted topic of checkpoints and sealed tokens.
    #[serde(default = "default_state_topic")]
    pub state_topic: String,
    /// `DLQ_TOPIC`: records whose id or dates cannot be read.
    #[serde(default = "default_dlq_topic")]
    pub dlq_topic: String,
    /// `TOPIC_PARTITIONS`: partitions of the topics the service creates.
    /// Default 6: up to six workers share the jobs.
    #[serde(default = "default_topic_partitions")]
    pub topic_partitions: i32,
    /// `TOPIC_REPLICATION_FACTOR`: replication of topics the service
    /// creates; -1 (default) takes the broker's `default.replication.factor`.
    #[serde(default = "default_replication_factor")]
    pub topic_replication_factor: i32,

    // --- Worker ----------------------------------------------------------
    /// `INSTANCES_PATH`: one instance JSON file, or a directory of them
    /// (every `*.json` directly inside it).
    #[serde(default = "default_instances_path")]
    pub instances_path: PathBuf,
    /// `WORKER_GROUP_ID`: consumer group of the workers on the state topic;
    /// workers sharing it share the jobs. Also prefixes transactional ids.
    #[serde(default = "default_group_id")]
    pub worker_group_id: String,
    /// `WORKER_ID`: optional stable identity of this worker (e.g. the pod
    /// name of a StatefulSet). Set, it is the group's static member id
    /// (`group.instance.id`): a restarted worker takes its partitions back at
    /// once instead of waiting for the old session to time out.
    #[serde(default)]
    pub worker_id: Option<String>,
    /// `MAX_CONCURRENT_POLLS`: bound on polls in flight in one worker, so a
    /// burst of due jobs cannot exhaust sockets or provider quotas; it is
    /// also the bound on provider connections (one request per poll at a
    /// time). Default 64: 10,000 jobs at 60 s need 167 polls a second,
    /// which 64 sustain up to ~380 ms per poll (fetch plus commit).
    #[serde(default = "default_max_concurrent_polls")]
    pub max_concurrent_polls: usize,
    /// `SERVICE_TIMEZONE`: zone of `${date:…}` in URL templates (IANA id or
    /// offset), as Open Connectors' service zone. Default UTC.
    #[serde(default = "default_service_timezone", deserialize_with = "zone")]
    pub service_timezone: Zone,
    /// `SAFETY_OVERLAP_SECONDS`: how far each window reaches back behind the
    /// watermark (besides `pollDelay`). It must cover the provider's clock
    /// skew and how late its changes become visible; 10 minutes covers the
    /// ±5 minutes of skew we test with, twice over. Re-read records cost a
    /// fetch, never a duplicate event.
    #[serde_as(as = "DurationSeconds<u64>")]
    #[serde(default = "default_safety_overlap")]
    pub safety_overlap_seconds: Duration,
    /// `STATE_RESTORE_TIMEOUT_SECONDS`: how long restoring one state
    /// partition may take before the takeover is retried. Default 120: a
    /// compacted partition of thousands of jobs reads in seconds.
    #[serde_as(as = "DurationSeconds<u64>")]
    #[serde(default = "default_restore_timeout")]
    pub state_restore_timeout_seconds: Duration,
    /// `STATE_ENCRYPTION_KEY` (or `STATE_ENCRYPTION_KEY_FILE`): base64 of 32
    /// bytes; seals OAuth tokens kept in the state topic. Required when an
    /// instance uses OAuth.
    #[serde(default, deserialize_with = "sealing_key")]
    pub state_encryption_key: Option<SealingKey>,

    // --- Provider HTTP ---------------------------------------------------
    /// `HTTP_REQUEST_TIMEOUT_SECONDS`: one request, from sending to the
    /// last body byte. Default 30: a 1000-order Keap page is a few MB and
    /// takes a second or two.
    #[serde_as(as = "DurationSeconds<u64>")]
    #[serde(default = "default_request_timeout")]
    pub http_request_timeout_seconds: Duration,
    /// `HTTP_CONNECT_TIMEOUT_SECONDS`: TCP + TLS connect. Default 10.
    #[serde_as(as = "DurationSeconds<u64>")]
    #[serde(default = "default_connect_timeout")]
    pub http_connect_timeout_seconds: Duration,
    /// `HTTP_MAX_BODY_BYTES`: largest response body read, enforced while
    /// streaming. Default 32 MiB: about six times a full Keap page of
    /// large orders.
    #[serde(default = "default_max_body_bytes")]
    pub http_max_body_bytes: u64,
    /// `MAX_PAGES_PER_POLL`: pages one poll reads before it publishes what
    /// it has and continues at once. Default 100.
    #[serde(default = "default_max_pages_per_poll")]
    pub max_pages_per_poll: u32,
    /// `MAX_RECORDS_PER_POLL`: records one poll reads before it publishes
    /// and continues (checked between pages). Default 5 000; with the body
    /// limit, a bound on a poll's memory.
    #[serde(default = "default_max_records_per_poll")]
    pub max_records_per_poll: usize,
    /// `MAX_BYTES_PER_POLL`: record bytes one window may hold before it is
    /// cut short and continued by the next poll. Default 8 MiB.
    #[serde(default = "default_max_bytes_per_poll")]
    pub max_bytes_per_poll: u64,

    // --- Operations ------------------------------------------------------
    /// `OPS_LISTEN`: address of `/metrics`, `/healthz`, `/readyz`. Default
    /// loopback: exposing it is the operator's choice.
    #[serde(default = "default_ops_listen")]
    pub ops_listen: SocketAddr,
    /// `LOG_FORMAT`: `json` or `pretty` (default).
    #[serde(default = "default_log_format")]
    pub log_format: LogFormat,
    /// `LOG_LEVEL`: a `tracing` filter directive such as `info` (default) or
    /// `event_poller=debug,rdkafka=warn`.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// `TEST_HOLD_TRANSACTION_MS`: testing only (default 0). Holds every
    /// poll transaction open this long before committing, so that crash
    /// tests can kill a worker inside an open transaction.
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    #[serde(default)]
    pub test_hold_transaction_ms: Duration,
}

fn default_bootstrap() -> String {
    "127.0.0.1:9092".into()
}
fn default_session_timeout() -> Duration {
    Tuning::default().session_timeout
}
fn default_heartbeat_interval() -> Duration {
    Tuning::default().heartbeat_interval
}
fn default_linger() -> Duration {
    Tuning::default().linger
}
fn default_transaction_timeout() -> Duration {
    Tuning::default().transaction_timeout
}
fn default_commit_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_events_topic() -> String {
    "event-poller.events".into()
}
fn default_state_topic() -> String {
    "event-poller.state".into()
}
fn default_dlq_topic() -> String {
    "event-poller.dlq".into()
}
fn default_topic_partitions() -> i32 {
    6
}
fn default_replication_factor() -> i32 {
    -1
}
fn default_instances_path() -> PathBuf {
    "instances".into()
}
fn default_group_id() -> String {
    "event-poller".into()
}
fn default_max_concurrent_polls() -> usize {
    64
}
fn default_service_timezone() -> Zone {
    Zone::Utc
}
fn default_safety_overlap() -> Duration {
    Duration::from_secs(600)
}
fn default_restore_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_request_timeout() -> Duration {
    FetchLimits::default().request_timeout
}
fn default_connect_timeout() -> Duration {
    FetchLimits::default().connect_timeout
}
fn default_max_body_bytes() -> u64 {
    FetchLimits::default().max_body_bytes
}
fn default_max_pages_per_poll() -> u32 {
    FetchLimits::default().max_pages_per_poll
}
fn default_max_records_per_poll() -> usize {
    FetchLimits::default().max_records_per_poll
}
fn default_max_bytes_per_poll() -> u64 {
    FetchLimits::default().max_bytes_per_poll
}
fn default_ops_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}
fn default_log_format() -> LogFormat {
    LogFormat::Pretty
}
fn default_log_level() -> String {
    "info".into()
}

fn zone<'de, D: Deserializer<'de>>(d: D) -> Result<Zone, D::Error> {
    let text = String::deserialize(d)?;
    Zone::parse(&text).map_err(serde::de::Error::custom)
}

/// Empty means unset; the error never echoes the value.
fn sealing_key<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SealingKey>, D::Error> {
    let text = Secret::deserialize(d)?;
    if text.expose().trim().is_empty() {
        return Ok(None);
    }
    SealingKey::from_base64(text.expose())
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// librdkafka properties passed through from the environment. Values may be
/// credentials (`sasl.password`), so `Debug` shows names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaProperties(BTreeMap<String, Secret>);

impl KafkaProperties {
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// A setting that cannot be used. Messages name the variable; they never
/// repeat a value that could be a secret.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("invalid environment: {0}")]
    Env(String),
    #[error("{var}: {reason}")]
    Invalid { var: String, reason: String },
    #[error("{var}: cannot read secret file {path}: {source}")]
    SecretFile {
        var: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Settings {
    /// Reads the process environment.
    ///
    /// # Errors
    /// The first invalid variable, named.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads settings from `(name, value)` pairs; tests pass their own.
    ///
    /// # Errors
    /// The first invalid variable, named.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        let mut vars: Vec<(String, String)> = vars.into_iter().collect();
        for var in SECRET_FILE_VARIABLES {
            read_secret_file(&mut vars, var)?;
        }
        let mut settings: Settings =
            envy::from_iter(vars.iter().cloned()).map_err(|e| envy_error(&vars, &e))?;
        settings.kafka_properties = kafka_properties(&vars)?;
        settings.normalise();
        settings.check()?;
        Ok(settings)
    }

    /// Surrounding whitespace is a typo, never meant (values come from YAML
    /// and shell files).
    fn normalise(&mut self) {
        for text in [
            &mut self.kafka_bootstrap_servers,
            &mut self.events_topic,
            &mut self.state_topic,
            &mut self.dlq_topic,
            &mut self.worker_group_id,
        ] {
            *text = text.trim().to_string();
        }
        self.worker_id = self
            .worker_id
            .take()
            .map(|w| w.trim().to_string())
            .filter(|w| !w.is_empty());
    }

    fn check(&self) -> Result<(), SettingsError> {
        let invalid = |var: &str, reason: &str| {
            Err(SettingsError::Invalid {
                var: var.into(),
                reason: reason.into(),
            })
        };
        if self.kafka_bootstrap_servers.is_empty() {
            return invalid("KAFKA_BOOTSTRAP_SERVERS", "must not be empty");
        }
        if self.kafka_heartbeat_interval_ms >= self.kafka_session_timeout_ms {
            return invalid(
                "KAFKA_HEARTBEAT_INTERVAL_MS",
                "must be below KAFKA_SESSION_TIMEOUT_MS",
            );
        }
        if self.kafka_commit_timeout_ms > self.kafka_transaction_timeout_ms {
            return invalid(
                "KAFKA_COMMIT_TIMEOUT_MS",
                "must not exceed KAFKA_TRANSACTION_TIMEOUT_MS",
            );
        }
        if self.kafka_commit_timeout_ms < Duration::from_secs(1) {
            return invalid("KAFKA_COMMIT_TIMEOUT_MS", "must be at least 1000");
        }
        for (var, topic) in [
            ("EVENTS_TOPIC", &self.events_topic),
            ("STATE_TOPIC", &self.state_topic),
            ("DLQ_TOPIC", &self.dlq_topic),
        ] {
            if let Err(reason) = check_topic_name(topic) {
                return invalid(var, &reason);
            }
        }
        if self.state_topic == self.events_topic || self.state_topic == self.dlq_topic {
            return invalid(
                "STATE_TOPIC",
                "must differ from EVENTS_TOPIC and DLQ_TOPIC (it is compacted)",
            );
        }
        if self.worker_group_id.is_empty() {
            return invalid("WORKER_GROUP_ID", "must not be empty");
        }
        if self.topic_partitions < 1 {
            return invalid("TOPIC_PARTITIONS", "must be at least 1");
        }
        if self.topic_replication_factor == 0 || self.topic_replication_factor < -1 {
            return invalid(
                "TOPIC_REPLICATION_FACTOR",
                "must be -1 (broker default) or at least 1",
            );
        }
        for (var, zero) in [
            ("MAX_CONCURRENT_POLLS", self.max_concurrent_polls == 0),
            ("MAX_PAGES_PER_POLL", self.max_pages_per_poll == 0),
            ("MAX_RECORDS_PER_POLL", self.max_records_per_poll == 0),
            ("MAX_BYTES_PER_POLL", self.max_bytes_per_poll == 0),
            ("HTTP_MAX_BODY_BYTES", self.http_max_body_bytes == 0),
            (
                "HTTP_REQUEST_TIMEOUT_SECONDS",
                self.http_request_timeout_seconds.is_zero(),
            ),
            (
                "STATE_RESTORE_TIMEOUT_SECONDS",
                self.state_restore_timeout_seconds.is_zero(),
            ),
        ] {
            if zero {
                return invalid(var, "must be at least 1");
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return invalid("LOG_LEVEL", &format!("not a tracing filter: {e}"));
        }
        // Each property was judged alone as it was read; librdkafka may
        // still refuse a combination. Its message can quote a value, so
        // only the names are given.
        if self.kafka_config().create_native_config().is_err() {
            let names: Vec<&str> = self.kafka_properties.names().collect();
            return invalid(
                KAFKA_PROPERTY_PREFIX,
                &format!(
                    "librdkafka refuses these properties together: {}",
                    names.join(", ")
                ),
            );
        }
        Ok(())
    }

    /// The librdkafka configuration every client of this process starts from:
    /// bootstrap servers plus the pass-through properties.
    pub fn kafka_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.kafka_bootstrap_servers);
        for (name, value) in &self.kafka_properties.0 {
            config.set(name, value.expose());
        }
        config
    }

    /// The configuration of each Kafka client the worker makes.
    pub fn kafka_clients(&self) -> KafkaClients {
        KafkaClients::new(
            self.kafka_config(),
            Tuning {
                session_timeout: self.kafka_session_timeout_ms,
                heartbeat_interval: self.kafka_heartbeat_interval_ms,
                linger: self.kafka_linger_ms,
                group_protocol: self.kafka_group_protocol,
                transaction_timeout: self.kafka_transaction_timeout_ms,
            },
        )
    }

    /// Transactional call and commit timeouts.
    pub fn txn_timeouts(&self) -> crate::publish::TxnTimeouts {
        let commit = self.kafka_commit_timeout_ms;
        crate::publish::TxnTimeouts {
            call: crate::publish::TxnTimeouts::default().call.min(commit),
            commit,
        }
    }

    /// The bounds of one poll's HTTP work.
    pub fn fetch_limits(&self) -> FetchLimits {
        FetchLimits {
            request_timeout: self.http_request_timeout_seconds,
            connect_timeout: self.http_connect_timeout_seconds,
            max_body_bytes: self.http_max_body_bytes,
            max_pages_per_poll: self.max_pages_per_poll,
            max_records_per_poll: self.max_records_per_poll,
            max_bytes_per_poll: self.max_bytes_per_poll,
            ..FetchLimits::default()
        }
    }
}

/// Kafka's own rule: 1–249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn check_topic_name(topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic.len() > 249 {
        return Err("a topic name has 1 to 249 characters".into());
    }
    if topic == "." || topic == ".." {
        return Err("a topic name cannot be '.' or '..'".into());
    }
    if let Some(c) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "character {c:?} is not allowed in a topic name (use a-z A-Z 0-9 . _ -)"
        ));
    }
    Ok(())
}

/// envy's messages do not always name the variable (a bad `OPS_LISTEN`
/// says only "invalid socket address syntax") and sometimes quote the value,
/// which could be a secret. So find the culprit by reading each variable on
/// its own (all but one are ignored as unknown then), and report the reason
/// without the value.
fn envy_error(vars: &[(String, String)], e: &envy::Error) -> SettingsError {
    for pair in vars {
        if let Err(alone) = envy::from_iter::<_, Settings>([pair.clone()]) {
            let text = alone.to_string();
            let reason = text
                .split(" while parsing value")
                .next()
                .unwrap_or("invalid value")
                .trim()
                .to_string();
            return SettingsError::Invalid {
                var: pair.0.clone(),
                reason,
            };
        }
    }
    SettingsError::Env(e.to_string())
}

/// `<VAR>_FILE=path` → `<VAR>=contents` (trailing newline dropped); both
/// set is an error, since one would silently win.
fn read_secret_file(vars: &mut Vec<(String, String)>, var: &str) -> Result<(), SettingsError> {
    let file_var = format!("{var}_FILE");
    let Some(path) = vars
        .iter()
        .find(|(k, _)| *k == file_var)
        .map(|(_, v)| PathBuf::from(v))
    else {
        return Ok(());
    };
    if vars.iter().any(|(k, _)| k == var) {
        return Err(SettingsError::Invalid {
            var: file_var,
            reason: format!("{var} is set too; set only one"),
        });
    }
    let text = std::fs::read_to_string(&path).map_err(|source| SettingsError::SecretFile {
        var: file_var.clone(),
        path,
        source,
    })?;
    vars.push((
        var.to_string(),
        text.trim_end_matches(['\n', '\r']).to_string(),
    ));
    Ok(())
}

/// Why librdkafka refuses `name` = `value`, in words that never include
/// the value (librdkafka's own message may quote it, and it can be a
/// password).
fn refused_by_librdkafka(name: &str, value: &str) -> Option<String> {
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaConfRes;
    let mut one = ClientConfig::new();
    one.set(name, value);
    match one.create_native_config() {
        Ok(_) => None,
        Err(KafkaError::ClientConfig(RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN, ..)) => {
            Some(unknown_property(name))
        }
        Err(KafkaError::ClientConfig(RDKafkaConfRes::RD_KAFKA_CONF_INVALID, ..)) => {
            Some(format!("librdkafka refuses the value of {name}"))
        }
        Err(_) => Some(format!("librdkafka refuses {name}")),
    }
}

/// What a `KAFKA_PROPERTY_<NAME>[_FILE]` variable sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyVariable {
    /// The librdkafka property: `<NAME>` lower-cased, `_` → `.`.
    pub property: String,
    /// `_FILE`: the value is the path of a file holding it.
    pub from_file: bool,
}

/// The librdkafka property `var` passes through: `None` if `var` is not a
/// `KAFKA_PROPERTY_*` variable. Judges the name alone (no value is read),
/// so deployment files can be checked with it too.
///
/// # Errors
/// `var` names no property, one the service manages, or one librdkafka
/// does not have.
pub fn kafka_property_variable(var: &str) -> Option<Result<PropertyVariable, SettingsError>> {
    let rest = var.strip_prefix(KAFKA_PROPERTY_PREFIX)?;
    let invalid = |reason: String| {
        Some(Err(SettingsError::Invalid {
            var: var.to_string(),
            reason,
        }))
    };
    let (rest, from_file) = match rest.strip_suffix("_FILE") {
        Some(base) => (base, true),
        None => (rest, false),
    };
    if rest.is_empty() {
        return invalid("names no property".into());
    }
    let property = rest.to_ascii_lowercase().replace('_', ".");
    if let Some((_, why)) = MANAGED_PROPERTIES.iter().find(|(n, _)| *n == property) {
        return invalid(format!("{property} is managed by the service: {why}"));
    }
    if unknown_to_librdkafka(&property) {
        return invalid(unknown_property(&property));
    }
    Some(Ok(PropertyVariable {
        property,
        from_file,
    }))
}

/// Every variable name the binary reads besides `KAFKA_PROPERTY_*`: each
/// field of [`Settings`] upper-cased, and `<VAR>_FILE` for
/// [`SECRET_FILE_VARIABLES`]. The fields are asked of `Settings`'
/// `Deserialize` implementation, the very list `envy` looks up, so a new
/// setting is listed without anyone having to remember it.
pub fn known_variables() -> Vec<String> {
    let mut fields = Vec::new();
    // Always an error: the recorder answers no value, only listens.
    let _ = Settings::deserialize(FieldNames(&mut fields));
    let mut names: Vec<String> = fields.iter().map(|f| f.to_ascii_uppercase()).collect();
    names.extend(SECRET_FILE_VARIABLES.iter().map(|v| format!("{v}_FILE")));
    names.sort();
    names.dedup();
    names
}

/// Whether `var` is a variable the binary reads: one of
/// [`known_variables`], or a `KAFKA_PROPERTY_*` that
/// [`kafka_property_variable`] accepts.
///
/// # Errors
/// Why the binary would ignore or refuse `var`.
pub fn check_variable_name(var: &str) -> Result<(), SettingsError> {
    if known_variables().iter().any(|k| k == var) {
        return Ok(());
    }
    match kafka_property_variable(var) {
        Some(checked) => checked.map(|_| ()),
        None => Err(SettingsError::Invalid {
            var: var.to_string(),
            reason: "not a variable event-poller reads (it would be ignored)".into(),
        }),
    }
}

/// A deserializer that answers no value but records the field names a
/// derived `Deserialize` asks for. Fields marked `#[serde(skip)]` are not
/// asked for, as `envy` does not read them.
struct FieldNames<'a>(&'a mut Vec<&'static str>);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("only field names are recorded"))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.extend_from_slice(fields);
        Err(serde::de::Error::custom("only field names are recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

fn unknown_property(name: &str) -> String {
    format!(
        "librdkafka has no property {name} (Java-only client properties such as sasl.jaas.config have librdkafka equivalents: see its CONFIGURATION.md)"
    )
}

/// librdkafka looks a property's name up before it judges the value, so
/// any value tells whether the name exists.
fn unknown_to_librdkafka(name: &str) -> bool {
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaConfRes;
    let mut one = ClientConfig::new();
    one.set(name, "");
    matches!(
        one.create_native_config(),
        Err(KafkaError::ClientConfig(
            RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN,
            ..
        ))
    )
}

fn kafka_properties(vars: &[(String, String)]) -> Result<KafkaProperties, SettingsError> {
    let mut props = BTreeMap::new();
    for (var, value) in vars {
        let Some(checked) = kafka_property_variable(var) else {
            continue;
        };
        let PropertyVariable {
            property: name,
            from_file,
        } = checked?;
        let value = if from_file {
            let path = PathBuf::from(value);
            let text =
                std::fs::read_to_string(&path).map_err(|source| SettingsError::SecretFile {
                    var: var.clone(),
                    path,
                    source,
                })?;
            text.trim_end_matches(['\n', '\r']).to_string()
        } else {
            value.clone()
        };
        refused_by_librdkafka(&name, &value).map_or(Ok(()), |reason| {
            Err(SettingsError::Invalid {
                var: var.clone(),
                reason,
            })
        })?;
        if props.insert(name.clone(), Secret::new(value)).is_some() {
            return Err(SettingsError::Invalid {
                var: var.clone(),
                reason: format!("{name} is set both directly and through a _FILE variable"),
            });
        }
    }
    Ok(KafkaProperties(props))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn err(pairs: &[(&str, &str)]) -> String {
        match Settings::from_vars(vars(pairs)) {
            Ok(s) => panic!("expected an error, got {s:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_apply_and_foreign_variables_are_ignored() {
        let s = Settings::from_vars(vars(&[("PATH", "/bin"), ("HOME", "/root")])).unwrap();
        assert_eq!(s.kafka_bootstrap_servers, "127.0.0.1:9092");
        assert_eq!(s.events_topic, "event-poller.events");
        assert_eq!(s.state_topic, "event-poller.state");
        assert_eq!(s.dlq_topic, "event-poller.dlq");
        assert_eq!(s.log_format, LogFormat::Pretty);
        assert_eq!(s.ops_listen, "127.0.0.1:9464".parse().unwrap());
        assert!(s.kafka_properties.is_empty());
    }

    #[test]
    fn values_are_read() {
        let s = Settings::from_vars(vars(&[
            ("KAFKA_BOOTSTRAP_SERVERS", "a:1,b:2"),
            ("EVENTS_TOPIC", "ev"),
            ("STATE_TOPIC", "st"),
            ("DLQ_TOPIC", "dl"),
            ("INSTANCES_PATH", "/etc/instances"),
            ("OPS_LISTEN", "0.0.0.0:8080"),
            ("LOG_FORMAT", "json"),
            ("TOPIC_PARTITIONS", "12"),
            ("TOPIC_REPLICATION_FACTOR", "3"),
            ("TEST_HOLD_TRANSACTION_MS", "300"),
            ("WORKER_ID", " pod-0 "),
        ]))
        .unwrap();
        assert_eq!(s.test_hold_transaction_ms.as_millis(), 300);
        assert_eq!(s.worker_id.as_deref(), Some("pod-0"));
        assert_eq!(s.kafka_bootstrap_servers, "a:1,b:2");
        assert_eq!(
            (&*s.events_topic, &*s.state_topic, &*s.dlq_topic),
            ("ev", "st", "dl")
        );
        assert_eq!(s.instances_path, PathBuf::from("/etc/instances"));
        assert_eq!(s.ops_listen.port(), 8080);
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!((s.topic_partitions, s.topic_replication_factor), (12, 3));
    }

    #[test]
    fn invalid_values_name_the_variable() {
        assert!(err(&[("OPS_LISTEN", "nowhere")]).contains("OPS_LISTEN"));
        assert!(err(&[("LOG_FORMAT", "xml")]).contains("LOG_FORMAT"));
        assert!(err(&[("TOPIC_PARTITIONS", "many")]).contains("TOPIC_PARTITIONS"));
        assert!(err(&[("TOPIC_PARTITIONS", "0")]).contains("TOPIC_PARTITIONS"));
        assert!(err(&[("EVENTS_TOPIC", "bad topic")]).contains("EVENTS_TOPIC"));
        assert!(err(&[("STATE_TOPIC", "event-poller.events")]).contains("STATE_TOPIC"));
        assert!(err(&[("LOG_LEVEL", "info,[[[")]).contains("LOG_LEVEL"));
        assert!(err(&[("TOPIC_REPLICATION_FACTOR", "0")]).contains("TOPIC_REPLICATION_FACTOR"));
        assert!(err(&[("SERVICE_TIMEZONE", "Mars/Base")]).contains("SERVICE_TIMEZONE"));
        let e = err(&[("STATE_ENCRYPTION_KEY", "too-short-secret")]);
        assert!(
            e.contains("STATE_ENCRYPTION_KEY") && !e.contains("too-short-secret"),
            "{e}"
        );
    }

    #[test]
    fn durations_and_client_tuning_are_read_with_their_units() {
        let s = Settings::from_vars(vars(&[])).unwrap();
        assert_eq!(s.safety_overlap_seconds, Duration::from_secs(600));
        assert_eq!(s.state_restore_timeout_seconds, Duration::from_secs(120));
        assert_eq!(s.fetch_limits(), FetchLimits::default());
        let s = Settings::from_vars(vars(&[
            ("SAFETY_OVERLAP_SECONDS", "30"),
            ("KAFKA_SESSION_TIMEOUT_MS", "30000"),
            ("KAFKA_HEARTBEAT_INTERVAL_MS", "3000"),
            ("KAFKA_LINGER_MS", "0"),
            ("HTTP_REQUEST_TIMEOUT_SECONDS", "5"),
            ("MAX_PAGES_PER_POLL", "7"),
        ]))
        .unwrap();
        assert_eq!(s.safety_overlap_seconds, Duration::from_secs(30));
        let clients = s.kafka_clients();
        let member = clients.group_member("g", None);
        assert_eq!(member.get("session.timeout.ms"), Some("30000"));
        assert_eq!(member.get("heartbeat.interval.ms"), Some("3000"));
        assert_eq!(clients.producer("t").get("linger.ms"), Some("0"));
        let limits = s.fetch_limits();
        assert_eq!(limits.request_timeout, Duration::from_secs(5));
        assert_eq!(limits.max_pages_per_poll, 7);
        let e = err(&[
            ("KAFKA_SESSION_TIMEOUT_MS", "2000"),
            ("KAFKA_HEARTBEAT_INTERVAL_MS", "2000"),
        ]);
        assert!(e.contains("KAFKA_HEARTBEAT_INTERVAL_MS"), "{e}");
        assert!(err(&[("KAFKA_LINGER_MS", "soon")]).contains("KAFKA_LINGER_MS"));
        assert!(err(&[("MAX_PAGES_PER_POLL", "0")]).contains("MAX_PAGES_PER_POLL"));
        // Tuning has one spelling: the setting, not a pass-through.
        let e = err(&[("KAFKA_PROPERTY_SESSION_TIMEOUT_MS", "30000")]);
        assert!(e.contains("KAFKA_SESSION_TIMEOUT_MS instead"), "{e}");
        let e = err(&[("KAFKA_PROPERTY_PARTITION_ASSIGNMENT_STRATEGY", "range")]);
        assert!(e.contains("managed by the service"), "{e}");
    }

    #[test]
    fn kafka_properties_pass_through_and_are_checked_by_librdkafka() {
        let s = Settings::from_vars(vars(&[
            ("KAFKA_PROPERTY_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KAFKA_PROPERTY_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_PROPERTY_SASL_PASSWORD", "hunter2"),
        ]))
        .unwrap();
        let config = s.kafka_config();
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(config.get("sasl.password"), Some("hunter2"));
        let e = err(&[("KAFKA_PROPERTY_NO_SUCH_THING", "1")]);
        assert!(e.contains("no.such.thing"), "{e}");
        let e = err(&[("KAFKA_PROPERTY_ENABLE_IDEMPOTENCE", "false")]);
        assert!(e.contains("KAFKA_PROPERTY_ENABLE_IDEMPOTENCE"), "{e}");
    }

    /// The top-level field names of `Settings`' derived `Debug`
    /// (`Settings { name: value, … }`): a view of the struct independent of
    /// serde's.
    fn debug_field_names(s: &Settings) -> Vec<String> {
        let text = format!("{s:?}");
        let body = text
            .strip_prefix("Settings {")
            .and_then(|b| b.strip_suffix('}'))
            .expect("a braced struct");
        let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
        let mut fields = vec![String::new()];
        for c in body.chars() {
            if quoted {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => quoted = false,
                    _ => {}
                }
            } else {
                match c {
                    '"' => quoted = true,
                    '{' | '(' | '[' => depth += 1,
                    '}' | ')' | ']' => depth -= 1,
                    ',' if depth == 0 => {
                        fields.push(String::new());
                        continue;
                    }
                    _ => {}
                }
            }
            fields.last_mut().expect("never empty").push(c);
        }
        fields
            .iter()
            .filter_map(|f| f.split_once(':').map(|(name, _)| name.trim().to_string()))
            .collect()
    }

    #[test]
    fn known_variables_are_every_field_envy_reads() {
        let known = known_variables();
        let s = Settings::from_vars(vars(&[])).unwrap();
        let mut fields: Vec<String> = debug_field_names(&s)
            .into_iter()
            // Filled from KAFKA_PROPERTY_*, not a variable of its own.
            .filter(|f| f != "kafka_properties")
            .map(|f| f.to_ascii_uppercase())
            .collect();
        assert!(fields.len() > 20, "{fields:?}");
        fields.extend(SECRET_FILE_VARIABLES.iter().map(|v| format!("{v}_FILE")));
        fields.sort();
        assert_eq!(known, fields);
        for var in &known {
            check_variable_name(var).unwrap();
        }
    }

    #[test]
    fn variable_names_are_checked_like_the_settings_read_them() {
        for ok in [
            "WORKER_ID",
            "STATE_ENCRYPTION_KEY_FILE",
            "KAFKA_PROPERTY_SECURITY_PROTOCOL",
            "KAFKA_PROPERTY_SASL_PASSWORD_FILE",
            "KAFKA_PROPERTY_SSL_CA_LOCATION",
        ] {
            check_variable_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, says) in [
            ("KAFKA_BOOTSTRAP_SERVER", "not a variable"),
            ("OPS_LISTEN_FILE", "not a variable"),
            ("KAFKA_PROPERTY_NO_SUCH_THING", "no.such.thing"),
            ("KAFKA_PROPERTY_GROUP_ID", "WORKER_GROUP_ID instead"),
            ("KAFKA_PROPERTY__FILE", "names no property"),
        ] {
            let e = check_variable_name(bad).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains(says), "{bad}: {e}");
        }
        assert_eq!(
            kafka_property_variable("KAFKA_PROPERTY_SASL_PASSWORD_FILE")
                .unwrap()
                .unwrap(),
            PropertyVariable {
                property: "sasl.password".into(),
                from_file: true
            }
        );
        assert!(kafka_property_variable("LOG_LEVEL").is_none());
    }

    #[test]
    fn the_readme_documents_every_variable() {
        let readme = include_str!("../README.md");
        let table = readme
            .split("## Settings (environment)")
            .nth(1)
            .and_then(|t| t.split("\n## ").next())
            .expect("README has a settings section");
        let mut documented = Vec::new();
        for row in table.lines().filter(|l| l.starts_with("| `")) {
            let first = row.split('|').nth(1).unwrap_or_default();
            for name in first.split('`').skip(1).step_by(2) {
                if name.starts_with(KAFKA_PROPERTY_PREFIX) {
                    continue;
                }
                if name == "_FILE" {
                    let base = first.split('`').nth(1).unwrap_or_default();
                    documented.push(format!("{base}_FILE"));
                } else {
                    documented.push(name.to_string());
                }
            }
        }
        documented.sort();
        assert_eq!(documented, known_variables());
    }

    #[test]
    fn secrets_come_from_files_and_never_reach_debug_or_errors() {
        let dir = std::env::temp_dir().join(format!("ep-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "s3cret-from-file\n").unwrap();
        let s = Settings::from_vars(vars(&[(
            "KAFKA_PROPERTY_SASL_PASSWORD_FILE",
            file.to_str().unwrap(),
        )]))
        .unwrap();
        assert_eq!(
            s.kafka_config().get("sasl.password"),
            Some("s3cret-from-file")
        );
        let debug = format!("{s:?}");
        assert!(
            debug.contains("sasl.password") && !debug.contains("s3cret"),
            "{debug}"
        );

        let e = err(&[("KAFKA_PROPERTY_SASL_PASSWORD_FILE", "/nonexistent/pw")]);
        assert!(e.contains("KAFKA_PROPERTY_SASL_PASSWORD_FILE"), "{e}");
        // An invalid value must not be echoed: it could be a credential.
        let e = err(&[("MAX_CONCURRENT_POLLS", "s3cret")]);
        assert!(
            e.contains("MAX_CONCURRENT_POLLS") && !e.contains("s3cret"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
