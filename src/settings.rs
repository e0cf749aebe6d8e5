//! Process settings: everything about *this worker* (Kafka, topics, where
//! instance files are, ops port, logging), read once from the environment.
//!
//! Typed fields are read with `envy` (variable = upper-cased field name).
//! Two schemes sit beside them because `envy` cannot express them:
//!
//! - `KAFKA_PROPERTY_<NAME>` passes any librdkafka property through, so SASL,
//!   TLS and tuning need no code change: `KAFKA_PROPERTY_SECURITY_PROTOCOL=SASL_SSL`
//!   sets `security.protocol` (`_` → `.`, lower-cased).
//! - `<VAR>_FILE` reads a secret from a file (Docker/Kubernetes secrets) for
//!   any `KAFKA_PROPERTY_*`; a trailing newline is dropped.
//!
//! Every invalid value fails start-up with a message naming the variable.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use rdkafka::ClientConfig;
use serde::Deserialize;

use crate::crypto::SealingKey;
use crate::javadate::Zone;
use crate::secret::Secret;

/// Prefix of the librdkafka pass-through variables.
pub const KAFKA_PROPERTY_PREFIX: &str = "KAFKA_PROPERTY_";

/// Properties the service sets itself because exactly-once depends on them;
/// passing them through would silently break the guarantee.
const MANAGED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "set KAFKA_BOOTSTRAP_SERVERS instead"),
    (
        "transactional.id",
        "each worker derives its transactional ids from the state-topic partitions it owns",
    ),
    (
        "enable.idempotence",
        "transactions require the idempotent producer",
    ),
    (
        "isolation.level",
        "checkpoints must be restored with read_committed",
    ),
    (
        "enable.auto.commit",
        "offsets are never auto-committed by the service",
    ),
    ("group.id", "set WORKER_GROUP_ID instead"),
    ("group.instance.id", "set WORKER_ID instead"),
];

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line, for log shippers.
    Json,
    /// Human-readable, for terminals.
    Pretty,
}

/// Settings read with `envy`. Field docs name the variable, the default and
/// why the default is what it is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvSettings {
    /// `KAFKA_BOOTSTRAP_SERVERS`: comma-separated `host:port` list.
    /// Default: the local broker of `make kafka-up`.
    #[serde(default = "default_bootstrap")]
    kafka_bootstrap_servers: String,
    /// `EVENTS_TOPIC`: where change events go.
    #[serde(default = "default_events_topic")]
    events_topic: String,
    /// `STATE_TOPIC`: compacted topic of checkpoints, key = job id.
    #[serde(default = "default_state_topic")]
    state_topic: String,
    /// `DLQ_TOPIC`: records whose id or dates cannot be read.
    #[serde(default = "default_dlq_topic")]
    dlq_topic: String,
    /// `INSTANCES_PATH`: one instance JSON file, or a directory of them
    /// (every `*.json` directly inside it).
    #[serde(default = "default_instances_path")]
    instances_path: PathBuf,
    /// `OPS_LISTEN`: address of `/metrics`, `/healthz`, `/readyz`.
    /// Default loopback: exposing it is the operator's choice.
    #[serde(default = "default_ops_listen")]
    ops_listen: SocketAddr,
    /// `LOG_FORMAT`: `json` or `pretty`.
    #[serde(default = "default_log_format")]
    log_format: LogFormat,
    /// `LOG_LEVEL`: a `tracing` filter directive such as `info` or
    /// `event_poller=debug,rdkafka=warn`.
    #[serde(default = "default_log_level")]
    log_level: String,
    /// `WORKER_GROUP_ID`: consumer group of the workers on the state topic;
    /// workers sharing it share the jobs.
    #[serde(default = "default_group_id")]
    worker_group_id: String,
    /// `TOPIC_PARTITIONS`: partitions of topics the service creates.
    #[serde(default = "default_topic_partitions")]
    topic_partitions: i32,
    /// `TOPIC_REPLICATION_FACTOR`: replication of topics the service creates;
    /// -1 takes the broker's `default.replication.factor`.
    #[serde(default = "default_replication_factor")]
    topic_replication_factor: i32,
    /// `MAX_CONCURRENT_POLLS`: bound on polls in flight in one worker, so a
    /// burst of due jobs cannot exhaust sockets or provider quotas.
    #[serde(default = "default_max_concurrent_polls")]
    max_concurrent_polls: usize,
    /// `SERVICE_TIMEZONE`: zone of `${date:…}` in URL templates (IANA id or
    /// offset), as Open Connectors' service zone.
    #[serde(default = "default_service_timezone")]
    service_timezone: String,
    /// `SAFETY_OVERLAP_SECONDS`: how far each window reaches back behind the
    /// watermark (besides `pollDelay`). It must cover the provider's clock
    /// skew and how late its changes become visible; 10 minutes covers the
    /// ±5 minutes of skew we test with, twice over. Re-read records cost a
    /// fetch, never a duplicate event.
    #[serde(default = "default_safety_overlap_seconds")]
    safety_overlap_seconds: u64,
    /// `STATE_ENCRYPTION_KEY` (or `STATE_ENCRYPTION_KEY_FILE`): base64 of 32
    /// bytes; seals OAuth tokens kept in the state topic. Required when an
    /// instance uses OAuth.
    #[serde(default)]
    state_encryption_key: Option<Secret>,
    /// `WORKER_ID`: optional stable identity of this worker (e.g. the pod
    /// name of a StatefulSet). Set, it is the group's static member id
    /// (`group.instance.id`): a restarted worker takes its partitions back at
    /// once instead of waiting for the old session to time out.
    #[serde(default)]
    worker_id: Option<String>,
    /// `TEST_HOLD_TRANSACTION_MS`: testing only (default 0). Holds every
    /// transaction open this long before committing, so that crash tests
    /// can kill a worker inside an open transaction.
    #[serde(default)]
    test_hold_transaction_ms: u64,
}

fn default_bootstrap() -> String {
    "127.0.0.1:9092".into()
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
fn default_instances_path() -> PathBuf {
    "instances".into()
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
fn default_group_id() -> String {
    "event-poller".into()
}
fn default_topic_partitions() -> i32 {
    6
}
fn default_replication_factor() -> i32 {
    -1
}
fn default_max_concurrent_polls() -> usize {
    8
}
fn default_service_timezone() -> String {
    "UTC".into()
}
fn default_safety_overlap_seconds() -> u64 {
    600
}

/// Validated process settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub kafka_bootstrap_servers: String,
    pub events_topic: String,
    pub state_topic: String,
    pub dlq_topic: String,
    pub instances_path: PathBuf,
    pub ops_listen: SocketAddr,
    pub log_format: LogFormat,
    pub log_level: String,
    pub worker_group_id: String,
    pub topic_partitions: i32,
    pub topic_replication_factor: i32,
    pub max_concurrent_polls: usize,
    pub service_timezone: Zone,
    pub safety_overlap: std::time::Duration,
    pub state_encryption_key: Option<SealingKey>,
    pub worker_id: Option<String>,
    /// Testing only: `TEST_HOLD_TRANSACTION_MS`.
    pub test_hold_transaction: std::time::Duration,
    pub kafka_properties: KafkaProperties,
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
        read_secret_file(&mut vars, "STATE_ENCRYPTION_KEY")?;
        let known = known_vars();
        // envy with deny_unknown_fields would reject PATH, HOME, … so only our
        // own variables are handed to it.
        let ours: Vec<(String, String)> = vars
            .iter()
            .filter(|(k, _)| known.contains(&k.as_str()))
            .cloned()
            .collect();
        let env: EnvSettings =
            envy::from_iter(ours.iter().cloned()).map_err(|e| envy_error(&ours, &e))?;
        let kafka_properties = kafka_properties(&vars)?;
        let service_timezone =
            Zone::parse(&env.service_timezone).map_err(|e| SettingsError::Invalid {
                var: "SERVICE_TIMEZONE".into(),
                reason: e.to_string(),
            })?;
        let state_encryption_key = match &env.state_encryption_key {
            Some(s) if !s.expose().trim().is_empty() => Some(
                SealingKey::from_base64(s.expose()).map_err(|e| SettingsError::Invalid {
                    var: "STATE_ENCRYPTION_KEY".into(),
                    reason: e.to_string(),
                })?,
            ),
            _ => None,
        };
        let settings = Settings {
            kafka_bootstrap_servers: env.kafka_bootstrap_servers.trim().to_string(),
            events_topic: env.events_topic.trim().to_string(),
            state_topic: env.state_topic.trim().to_string(),
            dlq_topic: env.dlq_topic.trim().to_string(),
            instances_path: env.instances_path,
            ops_listen: env.ops_listen,
            log_format: env.log_format,
            log_level: env.log_level,
            worker_group_id: env.worker_group_id.trim().to_string(),
            topic_partitions: env.topic_partitions,
            topic_replication_factor: env.topic_replication_factor,
            max_concurrent_polls: env.max_concurrent_polls,
            service_timezone,
            safety_overlap: std::time::Duration::from_secs(env.safety_overlap_seconds),
            state_encryption_key,
            worker_id: env
                .worker_id
                .map(|w| w.trim().to_string())
                .filter(|w| !w.is_empty()),
            test_hold_transaction: std::time::Duration::from_millis(env.test_hold_transaction_ms),
            kafka_properties,
        };
        settings.check()?;
        Ok(settings)
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
        if self.max_concurrent_polls == 0 {
            return invalid("MAX_CONCURRENT_POLLS", "must be at least 1");
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return invalid("LOG_LEVEL", &format!("not a tracing filter: {e}"));
        }
        // librdkafka knows its own properties: let it judge names and values
        // now rather than at the first client creation.
        if let Err(e) = self.kafka_config().create_native_config() {
            return invalid(KAFKA_PROPERTY_PREFIX, &e.to_string());
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

fn known_vars() -> [&'static str; 17] {
    [
        "KAFKA_BOOTSTRAP_SERVERS",
        "EVENTS_TOPIC",
        "STATE_TOPIC",
        "DLQ_TOPIC",
        "INSTANCES_PATH",
        "OPS_LISTEN",
        "LOG_FORMAT",
        "LOG_LEVEL",
        "WORKER_GROUP_ID",
        "TOPIC_PARTITIONS",
        "TOPIC_REPLICATION_FACTOR",
        "MAX_CONCURRENT_POLLS",
        "SERVICE_TIMEZONE",
        "SAFETY_OVERLAP_SECONDS",
        "STATE_ENCRYPTION_KEY",
        "TEST_HOLD_TRANSACTION_MS",
        "WORKER_ID",
    ]
}

/// envy's messages do not always name the variable (a bad `OPS_LISTEN`
/// says only "invalid socket address syntax") and sometimes quote the value,
/// which could be a secret. So find the culprit by reading each variable on
/// its own, and report the reason without the value.
fn envy_error(ours: &[(String, String)], e: &envy::Error) -> SettingsError {
    for pair in ours {
        if let Err(alone) = envy::from_iter::<_, EnvSettings>([pair.clone()]) {
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

fn kafka_properties(vars: &[(String, String)]) -> Result<KafkaProperties, SettingsError> {
    let mut props = BTreeMap::new();
    for (var, value) in vars {
        let Some(rest) = var.strip_prefix(KAFKA_PROPERTY_PREFIX) else {
            continue;
        };
        let (rest, value) = match rest.strip_suffix("_FILE") {
            Some(base) => {
                let path = PathBuf::from(value);
                let text =
                    std::fs::read_to_string(&path).map_err(|source| SettingsError::SecretFile {
                        var: var.clone(),
                        path,
                        source,
                    })?;
                (base, text.trim_end_matches(['\n', '\r']).to_string())
            }
            None => (rest, value.clone()),
        };
        if rest.is_empty() {
            return Err(SettingsError::Invalid {
                var: var.clone(),
                reason: "names no property".into(),
            });
        }
        let name = rest.to_ascii_lowercase().replace('_', ".");
        if let Some((_, why)) = MANAGED_PROPERTIES.iter().find(|(n, _)| *n == name) {
            return Err(SettingsError::Invalid {
                var: var.clone(),
                reason: format!("{name} is managed by the service: {why}"),
            });
        }
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
        assert_eq!(s.test_hold_transaction.as_millis(), 300);
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
