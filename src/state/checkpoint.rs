//! A job's checkpoint and the keys of the compacted state topic.
//!
//! The state topic holds two kinds of records, told apart by key prefix:
//! `job/<instance>/<resource>` → [`Checkpoint`] (JSON) and
//! `token/<instance>` → an encrypted OAuth token set. Both parts are
//! percent-encoded so that no instance or resource name can make two keys
//! collide.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use serde::{Deserialize, Serialize};

/// Characters escaped inside a key part: the separator, the escape itself,
/// and anything that is not plain printable ASCII.
const KEY_PART: &AsciiSet = &CONTROLS.add(b'/').add(b'%').add(b' ');

/// One polling job: an instance × one of its resources.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobId {
    pub instance: String,
    pub resource: String,
}

impl JobId {
    pub fn new(instance: impl Into<String>, resource: impl Into<String>) -> Self {
        Self {
            instance: instance.into(),
            resource: resource.into(),
        }
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.instance, self.resource)
    }
}

/// The key of a state-topic record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StateKey {
    Job(JobId),
    Token { instance: String },
}

impl StateKey {
    pub fn encode(&self) -> String {
        let enc = |s: &str| utf8_percent_encode(s, KEY_PART).to_string();
        match self {
            StateKey::Job(job) => format!("job/{}/{}", enc(&job.instance), enc(&job.resource)),
            StateKey::Token { instance } => format!("token/{}", enc(instance)),
        }
    }

    /// `None` for keys this version does not know (written by a newer
    /// version, or by hand); restore skips those rather than failing.
    pub fn decode(key: &[u8]) -> Option<Self> {
        let key = std::str::from_utf8(key).ok()?;
        let dec = |s: &str| {
            percent_decode_str(s)
                .decode_utf8()
                .ok()
                .map(|c| c.into_owned())
        };
        let mut parts = key.split('/');
        let key = match (parts.next()?, parts.next(), parts.next()) {
            ("job", Some(i), Some(r)) => StateKey::Job(JobId::new(dec(i)?, dec(r)?)),
            ("token", Some(i), None) => StateKey::Token { instance: dec(i)? },
            _ => return None,
        };
        parts.next().is_none().then_some(key)
    }

    /// The instance whose partition this record lives in.
    pub fn instance(&self) -> &str {
        match self {
            StateKey::Job(job) => &job.instance,
            StateKey::Token { instance } => instance,
        }
    }
}

/// A published change: the pair that makes an event unique.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Published {
    /// Ordered by time first, so pruning below a bound is a range removal.
    pub updated_at: DateTime<Utc>,
    pub object_id: String,
}

/// What a job has durably published. Written in the same transaction as the
/// events it accounts for, so it can never run ahead of or behind them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Checkpoint {
    /// Format version; a reader refuses versions it does not know rather
    /// than misreading them.
    pub version: u32,
    pub job: JobId,
    /// Where the job began (now, or the configured backfill start). Fixed by
    /// the job's first checkpoint so a crash before the first poll cannot
    /// move it.
    pub started_from: DateTime<Utc>,
    /// The largest updated time published so far (or `started_from`).
    pub watermark: DateTime<Utc>,
    /// Every `(objectId, updatedAt)` published at or after the start of the
    /// next window. Windows overlap on purpose (poll delay, safety overlap,
    /// clock skew, equal timestamps at page boundaries); this set is what
    /// turns "seen twice" into "published once".
    pub seen: BTreeSet<Published>,
    /// Start of the last committed poll, by the worker's clock.
    pub last_poll_start: Option<DateTime<Utc>>,
    pub polls: u64,
    pub events: u64,
    pub dead_letters: u64,
}

pub const CHECKPOINT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint for {key}: {source}")]
    Decode {
        key: String,
        source: serde_json::Error,
    },
    #[error(
        "checkpoint for {key}: version {version} is not supported (this build reads {CHECKPOINT_VERSION})"
    )]
    Version { key: String, version: u32 },
}

impl Checkpoint {
    /// The checkpoint of a job that has not polled yet.
    pub fn starting(job: JobId, from: DateTime<Utc>) -> Self {
        Self {
            version: CHECKPOINT_VERSION,
            job,
            started_from: from,
            watermark: from,
            seen: BTreeSet::new(),
            last_poll_start: None,
            polls: 0,
            events: 0,
            dead_letters: 0,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        // An empty checkpoint would be committed: rather stop here.
        serde_json::to_vec(self).expect("plain data with string keys always serialises")
    }

    /// # Errors
    /// Malformed JSON or an unknown version, naming the record key.
    pub fn decode(key: &str, bytes: &[u8]) -> Result<Self, CheckpointError> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let v: Version =
            serde_json::from_slice(bytes).map_err(|source| CheckpointError::Decode {
                key: key.to_string(),
                source,
            })?;
        if v.version != CHECKPOINT_VERSION {
            return Err(CheckpointError::Version {
                key: key.to_string(),
                version: v.version,
            });
        }
        serde_json::from_slice(bytes).map_err(|source| CheckpointError::Decode {
            key: key.to_string(),
            source,
        })
    }

    pub fn has_published(&self, object_id: &str, updated_at: DateTime<Utc>) -> bool {
        self.seen.contains(&Published {
            updated_at,
            object_id: object_id.to_string(),
        })
    }

    /// Forgets pairs older than `bound`: the next window starts at or after
    /// it, so they can never be fetched (and published) again.
    pub fn prune_before(&mut self, bound: DateTime<Utc>) {
        self.seen = self.seen.split_off(&Published {
            updated_at: bound,
            object_id: String::new(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn keys_round_trip_and_never_collide() {
        let a = StateKey::Job(JobId::new("a/b", "c"));
        let b = StateKey::Job(JobId::new("a", "b/c"));
        assert_ne!(a.encode(), b.encode());
        for key in [
            a,
            b,
            StateKey::Token {
                instance: "shop 1%".into(),
            },
            StateKey::Job(JobId::new("ümlaut", "orders")),
        ] {
            assert_eq!(StateKey::decode(key.encode().as_bytes()), Some(key));
        }
        assert_eq!(StateKey::decode(b"job/only-one"), None);
        assert_eq!(StateKey::decode(b"other/x"), None);
        assert_eq!(StateKey::decode(b"token/a/b"), None);
        assert_eq!(StateKey::decode(&[0xff, 0xfe]), None);
    }

    #[test]
    fn checkpoint_round_trips_and_prunes() {
        let mut c = Checkpoint::starting(JobId::new("shop", "orders"), t("2024-01-01T00:00:00Z"));
        c.seen.insert(Published {
            updated_at: t("2024-01-01T00:00:05Z"),
            object_id: "1".into(),
        });
        c.seen.insert(Published {
            updated_at: t("2024-01-01T00:10:00Z"),
            object_id: "2".into(),
        });
        let back = Checkpoint::decode("k", &c.encode()).unwrap();
        assert_eq!(back, c);
        assert!(back.has_published("1", t("2024-01-01T00:00:05Z")));
        assert!(!back.has_published("1", t("2024-01-01T00:00:06Z")));
        c.prune_before(t("2024-01-01T00:10:00Z"));
        assert_eq!(c.seen.len(), 1);
        assert!(c.has_published("2", t("2024-01-01T00:10:00Z")));
    }

    #[test]
    fn bad_checkpoints_are_refused_with_the_key() {
        let e = Checkpoint::decode("job/x/y", b"{not json").unwrap_err();
        assert!(e.to_string().contains("job/x/y"));
        let mut v: serde_json::Value = serde_json::from_slice(
            &Checkpoint::starting(JobId::new("x", "y"), Utc::now()).encode(),
        )
        .unwrap();
        v["version"] = 99.into();
        let e = Checkpoint::decode("job/x/y", v.to_string().as_bytes()).unwrap_err();
        assert!(e.to_string().contains("version 99"), "{e}");
    }
}
