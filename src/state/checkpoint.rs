//! A job's checkpoint and the keys of the compacted state topic.
//!
//! The state topic holds two kinds of records, told apart by key prefix:
//! `job/<instance>/<resource>` → [`Checkpoint`] (JSON) and
//! `token/<instance>` → an encrypted OAuth token set. Both parts are
//! percent-encoded so that no instance or resource name can make two keys
//! collide.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
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
    Token {
        instance: String,
    },
    /// `meta/layout` in partition 0: the partition count the records were
    /// written under (see [`crate::state::layout`]).
    Layout,
    /// `meta/released`: an operator's command is done with the partition
    /// it fenced (see `admin::fenced`); its owner may take it back at once.
    Released,
    /// `seen/<instance>/<resource>/<n>`: part `n` of a job's dedupe set,
    /// when it is too large to travel inside the checkpoint record.
    SeenPart {
        job: JobId,
        part: u32,
    },
}

impl StateKey {
    pub fn encode(&self) -> String {
        let enc = |s: &str| utf8_percent_encode(s, KEY_PART).to_string();
        match self {
            StateKey::Job(job) => format!("job/{}/{}", enc(&job.instance), enc(&job.resource)),
            StateKey::Token { instance } => format!("token/{}", enc(instance)),
            StateKey::Layout => LAYOUT_KEY.to_string(),
            StateKey::Released => RELEASED_KEY.to_string(),
            StateKey::SeenPart { job, part } => {
                format!("seen/{}/{}/{part}", enc(&job.instance), enc(&job.resource))
            }
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
        if key == LAYOUT_KEY {
            return Some(StateKey::Layout);
        }
        if key == RELEASED_KEY {
            return Some(StateKey::Released);
        }
        let mut parts = key.split('/');
        let key = match (parts.next()?, parts.next(), parts.next()) {
            ("job", Some(i), Some(r)) => StateKey::Job(JobId::new(dec(i)?, dec(r)?)),
            ("token", Some(i), None) => StateKey::Token { instance: dec(i)? },
            ("seen", Some(i), Some(r)) => StateKey::SeenPart {
                job: JobId::new(dec(i)?, dec(r)?),
                part: parts.next()?.parse().ok()?,
            },
            _ => return None,
        };
        parts.next().is_none().then_some(key)
    }

    /// The instance whose partition this record lives in (`None` for the
    /// layout record, which lives in partition 0, and the release marker,
    /// which lives in the partition it releases).
    pub fn instance(&self) -> Option<&str> {
        match self {
            StateKey::Job(job) => Some(&job.instance),
            StateKey::Token { instance } => Some(instance),
            StateKey::SeenPart { job, .. } => Some(&job.instance),
            StateKey::Layout | StateKey::Released => None,
        }
    }
}

const LAYOUT_KEY: &str = "meta/layout";
const RELEASED_KEY: &str = "meta/released";

/// What a job has durably published. Written in the same transaction as the
/// events it accounts for, so it can never run ahead of or behind them.
///
/// Forward compatible: fields this build does not know are ignored, so a
/// newer release may add fields that are safe to ignore without a new
/// version; a change an older reader would misread bumps
/// [`CHECKPOINT_VERSION`], and readers refuse versions they do not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// Format version.
    pub version: u32,
    pub job: JobId,
    /// Where the job began (now, or the configured backfill start). Fixed by
    /// the job's first checkpoint so a crash before the first poll cannot
    /// move it.
    pub started_from: DateTime<Utc>,
    /// The largest updated time published so far (or `started_from`),
    /// never later than the provider's clock at the poll that set it.
    pub watermark: DateTime<Utc>,
    /// Every change published at or after [`Checkpoint::covered_before`].
    /// Windows overlap on purpose (poll delay, safety overlap, clock skew,
    /// equal timestamps at page boundaries); this set is what turns "seen
    /// twice" into "published once".
    #[serde(default, rename = "seenHashes")]
    pub seen: SeenSet,
    /// When non-zero, [`Checkpoint::seen`] is not in this record but in
    /// that many [`StateKey::SeenPart`] records written in the same
    /// transaction (see [`Checkpoint::records`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seen_parts: u32,
    /// Records dated before this were covered by committed windows and
    /// their pairs pruned: they are never published again, whatever the
    /// next window's start (a raised overlap reaches further back).
    /// `None` in checkpoints written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covered_before: Option<DateTime<Utc>>,
    /// The provider's clock minus ours, as last measured, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_skew_ms: Option<i64>,
    /// A window cut short by the page or record limit continues here; part
    /// of the checkpoint so a crash or a handover resumes it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
    /// Start of the last committed poll, by the worker's clock.
    pub last_poll_start: Option<DateTime<Utc>>,
    pub polls: u64,
    pub events: u64,
    pub dead_letters: u64,
}

/// Where a truncated window goes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resume {
    /// The truncated window's start.
    pub start: DateTime<Utc>,
    /// The provider's URL of the rest of the window.
    pub url: String,
}

/// The published `(objectId, updatedAt)` pairs that later windows may
/// fetch again, bounded in bytes: grouped by updated time, each object id
/// kept as the first 8 bytes of its SHA-1 (a whole pair costs about 11
/// bytes encoded instead of ~60, so a bulk change of 20,000 records at one
/// timestamp needs ~220 kB). Two ids of one timestamp collide with
/// probability n²/2⁶⁵, about 10⁻⁸ for 20,000; a collision would hide one
/// change, which is the price of a bounded checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeenSet {
    groups: BTreeMap<DateTime<Utc>, BTreeSet<u64>>,
}

impl SeenSet {
    fn id_hash(object_id: &str) -> u64 {
        let digest = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, object_id.as_bytes());
        let bytes = digest.as_bytes();
        u64::from_be_bytes([
            bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
        ])
    }

    pub fn contains(&self, object_id: &str, updated_at: DateTime<Utc>) -> bool {
        self.groups
            .get(&updated_at)
            .is_some_and(|g| g.contains(&Self::id_hash(object_id)))
    }

    /// `false` if the pair was there already.
    pub fn insert(&mut self, object_id: &str, updated_at: DateTime<Utc>) -> bool {
        self.groups
            .entry(updated_at)
            .or_default()
            .insert(Self::id_hash(object_id))
    }

    /// Pairs held.
    pub fn len(&self) -> usize {
        self.groups.values().map(BTreeSet::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Forgets pairs dated before `bound`.
    pub fn prune_before(&mut self, bound: DateTime<Utc>) {
        self.groups = self.groups.split_off(&bound);
    }

    /// Forgets pairs dated after `bound`.
    pub fn forget_after(&mut self, bound: DateTime<Utc>) {
        self.groups.retain(|at, _| *at <= bound);
    }

    /// The latest updated time held.
    pub fn latest(&self) -> Option<DateTime<Utc>> {
        self.groups.keys().next_back().copied()
    }

    /// Splits the set into pieces of at most `ids` pairs each (a group of
    /// one timestamp may be split across pieces).
    fn split(&self, ids: usize) -> Vec<SeenSet> {
        let mut out = vec![SeenSet::default()];
        let mut room = ids;
        for (at, hashes) in &self.groups {
            for h in hashes {
                if room == 0 {
                    out.push(SeenSet::default());
                    room = ids;
                }
                if let Some(last) = out.last_mut() {
                    last.groups.entry(*at).or_default().insert(*h);
                }
                room -= 1;
            }
        }
        out
    }

    /// Adds every pair of `other`.
    pub fn merge(&mut self, other: SeenSet) {
        for (at, hashes) in other.groups {
            self.groups.entry(at).or_default().extend(hashes);
        }
    }

    /// Decodes one [`StateKey::SeenPart`] record.
    ///
    /// # Errors
    /// Malformed JSON or ids.
    pub fn decode_part(bytes: &[u8]) -> Result<SeenSet, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Pairs a checkpoint record carries itself: about 11 bytes each encoded,
/// so at most ~260 kB; larger sets travel in parts of as many pairs.
pub const INLINE_SEEN_PAIRS: usize = 24_000;

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The encoded form: `[{"at": time, "ids": base64(sorted u64 big-endian)}]`.
#[derive(Serialize, Deserialize)]
struct SeenGroup {
    at: DateTime<Utc>,
    ids: String,
}

impl Serialize for SeenSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        s.collect_seq(self.groups.iter().map(|(at, ids)| {
            let bytes: Vec<u8> = ids.iter().flat_map(|h| h.to_be_bytes()).collect();
            SeenGroup {
                at: *at,
                ids: base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes),
            }
        }))
    }
}

impl<'de> Deserialize<'de> for SeenSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine as _;
        let groups = Vec::<SeenGroup>::deserialize(d)?;
        let mut out = SeenSet::default();
        for g in groups {
            let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(g.ids.as_bytes())
                .map_err(|e| serde::de::Error::custom(format!("seen ids at {}: {e}", g.at)))?;
            if bytes.len() % 8 != 0 {
                return Err(serde::de::Error::custom(format!(
                    "seen ids at {}: {} bytes is not a whole number of ids",
                    g.at,
                    bytes.len()
                )));
            }
            let set = out.groups.entry(g.at).or_default();
            for chunk in bytes.chunks_exact(8) {
                let mut b = [0u8; 8];
                b.copy_from_slice(chunk);
                set.insert(u64::from_be_bytes(b));
            }
        }
        Ok(out)
    }
}

/// The format this build writes. Version 1 (pairs in clear under `seen`)
/// is still read.
pub const CHECKPOINT_VERSION: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint for {key}: {source}")]
    Decode {
        key: String,
        source: serde_json::Error,
    },
    #[error(
        "checkpoint for {key}: version {version} is not supported (this build reads 1 and {CHECKPOINT_VERSION}): written by a newer release?"
    )]
    Version { key: String, version: u32 },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RewindError {
    #[error(
        "--to {to} is not before the job's watermark {watermark}: a rewind replays changes after a time the job has passed"
    )]
    NotBehind {
        to: DateTime<Utc>,
        watermark: DateTime<Utc>,
    },
}

/// Version 1's clear pairs.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct V1Seen {
    #[serde(default)]
    seen: Vec<V1Pair>,
}

#[derive(Deserialize)]
struct V1Pair {
    updated_at: DateTime<Utc>,
    object_id: String,
}

impl Checkpoint {
    /// The checkpoint of a job that has not polled yet.
    pub fn starting(job: JobId, from: DateTime<Utc>) -> Self {
        Self {
            version: CHECKPOINT_VERSION,
            job,
            started_from: from,
            watermark: from,
            seen: SeenSet::default(),
            seen_parts: 0,
            covered_before: None,
            provider_skew_ms: None,
            resume: None,
            last_poll_start: None,
            polls: 0,
            events: 0,
            dead_letters: 0,
        }
    }

    /// The state records that store this checkpoint: the checkpoint and,
    /// when its dedupe set holds more than [`INLINE_SEEN_PAIRS`], the parts
    /// holding it (each well under Kafka's 1 MB message limit), plus
    /// tombstones for the parts of the previous checkpoint (`previous_parts`)
    /// that are no longer used. All go into one transaction, so a reader
    /// never sees a checkpoint with another version's parts. Records how
    /// many parts were written in [`Checkpoint::seen_parts`].
    pub fn records(&mut self, previous_parts: u32) -> Vec<(String, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        let parts = if self.seen.len() <= INLINE_SEEN_PAIRS {
            self.seen_parts = 0;
            out.push((
                StateKey::Job(self.job.clone()).encode(),
                Some(self.encode()),
            ));
            0
        } else {
            let pieces = self.seen.split(INLINE_SEEN_PAIRS);
            let n = u32::try_from(pieces.len()).unwrap_or(u32::MAX);
            self.seen_parts = n;
            let mut head = self.clone();
            head.seen = SeenSet::default();
            out.push((
                StateKey::Job(self.job.clone()).encode(),
                Some(head.encode()),
            ));
            for (part, piece) in (0..n).zip(pieces) {
                let key = StateKey::SeenPart {
                    job: self.job.clone(),
                    part,
                };
                out.push((
                    key.encode(),
                    Some(serde_json::to_vec(&piece).unwrap_or_default()),
                ));
            }
            n
        };
        for part in parts..previous_parts {
            let key = StateKey::SeenPart {
                job: self.job.clone(),
                part,
            };
            out.push((key.encode(), None));
        }
        out
    }

    pub fn encode(&self) -> Vec<u8> {
        // Plain data with string keys: serialising cannot fail; an empty
        // record would be committed, so the fallback is unreachable.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// # Errors
    /// Malformed JSON or an unknown version, naming the record key.
    pub fn decode(key: &str, bytes: &[u8]) -> Result<Self, CheckpointError> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let decode = |source| CheckpointError::Decode {
            key: key.to_string(),
            source,
        };
        let v: Version = serde_json::from_slice(bytes).map_err(decode)?;
        match v.version {
            1 => {
                let mut c: Checkpoint = serde_json::from_slice(bytes).map_err(decode)?;
                let old: V1Seen = serde_json::from_slice(bytes).map_err(decode)?;
                for p in old.seen {
                    c.seen.insert(&p.object_id, p.updated_at);
                }
                c.version = CHECKPOINT_VERSION;
                Ok(c)
            }
            CHECKPOINT_VERSION => serde_json::from_slice(bytes).map_err(decode),
            version => Err(CheckpointError::Version {
                key: key.to_string(),
                version,
            }),
        }
    }

    pub fn has_published(&self, object_id: &str, updated_at: DateTime<Utc>) -> bool {
        self.seen.contains(object_id, updated_at)
    }

    /// Forgets pairs older than `bound`, and remembers that records dated
    /// before it are covered: the next window starts at or after it.
    pub fn prune_before(&mut self, bound: DateTime<Utc>) {
        self.seen.prune_before(bound);
        self.covered_before = Some(self.covered_before.map_or(bound, |c| c.max(bound)));
    }

    /// This checkpoint moved back to `to`, for a deliberate replay: every
    /// change dated after `to` is published once more, nothing dated at
    /// or before it is. The watermark goes back to `to` (the next window
    /// starts an overlap before it, as always); pairs dated after `to`
    /// leave the dedupe set, those at or before it stay, so the overlap's
    /// re-read publishes nothing twice; records older than the dedupe set
    /// reaches are covered. A window cut short is abandoned (its resume
    /// points past `to`). Counters and the poll rhythm stay.
    ///
    /// # Errors
    /// `to` is not before the watermark (that would skip changes, not
    /// replay them).
    pub fn rewound_to(&self, to: DateTime<Utc>) -> Result<Checkpoint, RewindError> {
        if to >= self.watermark {
            return Err(RewindError::NotBehind {
                to,
                watermark: self.watermark,
            });
        }
        let mut c = self.clone();
        c.watermark = to;
        c.started_from = c.started_from.min(to);
        c.seen.forget_after(to);
        c.resume = None;
        // The dedupe set holds every pair from `covered_before` on, so
        // records between it and `to` are told apart by the set; when `to`
        // is older than that, nothing at or before `to` is known to be
        // unpublished, and the first record after `to` is the bound.
        c.covered_before = Some(match self.covered_before {
            Some(covered) if covered <= to => covered,
            _ => to
                .checked_add_signed(TimeDelta::nanoseconds(1))
                .unwrap_or(to),
        });
        Ok(c)
    }

    /// The provider's measured clock skew.
    pub fn provider_skew(&self) -> Option<TimeDelta> {
        self.provider_skew_ms.map(TimeDelta::milliseconds)
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
            StateKey::Layout,
            StateKey::Released,
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
        c.seen.insert("1", t("2024-01-01T00:00:05Z"));
        c.seen.insert("2", t("2024-01-01T00:10:00Z"));
        let back = Checkpoint::decode("k", &c.encode()).unwrap();
        assert_eq!(back, c);
        assert!(back.has_published("1", t("2024-01-01T00:00:05Z")));
        assert!(!back.has_published("1", t("2024-01-01T00:00:06Z")));
        c.prune_before(t("2024-01-01T00:10:00Z"));
        assert_eq!(c.seen.len(), 1);
        assert!(c.has_published("2", t("2024-01-01T00:10:00Z")));
    }

    #[test]
    fn version_1_checkpoints_are_read_and_unknown_fields_ignored() {
        let v1 = r#"{"version":1,"job":{"instance":"shop","resource":"orders"},
            "startedFrom":"2024-01-01T00:00:00Z","watermark":"2024-01-01T00:10:00Z",
            "seen":[{"updated_at":"2024-01-01T00:10:00Z","object_id":"7"}],
            "lastPollStart":null,"polls":3,"events":4,"deadLetters":0,"addedLater":{"x":1}}"#;
        let c = Checkpoint::decode("k", v1.as_bytes()).unwrap();
        assert_eq!(c.version, CHECKPOINT_VERSION);
        assert!(c.has_published("7", t("2024-01-01T00:10:00Z")));
        assert!(!c.has_published("8", t("2024-01-01T00:10:00Z")));
        assert_eq!(c.polls, 3);
        let v2 = Checkpoint::decode("k", &c.encode()).unwrap();
        assert_eq!(v2, c);
    }

    #[test]
    fn a_large_dedupe_set_travels_in_parts_and_old_parts_are_deleted() {
        let mut c = Checkpoint::starting(JobId::new("shop", "orders"), t("2024-01-01T00:00:00Z"));
        let at = t("2024-01-01T00:10:00Z");
        for id in 0..200_000 {
            c.seen.insert(&id.to_string(), at);
        }
        let records = c.records(0);
        assert_eq!(c.seen_parts, 9, "200,000 pairs in parts of 24,000");
        assert_eq!(records.len(), 10);
        assert!(
            records
                .iter()
                .all(|(_, v)| v.as_ref().is_some_and(|v| v.len() < 400_000))
        );
        // Read back the way restore does: the head, then every part.
        let mut back = Checkpoint::decode("k", records[0].1.as_deref().unwrap()).unwrap();
        assert!(back.seen.is_empty());
        for (key, value) in &records[1..] {
            assert!(matches!(
                StateKey::decode(key.as_bytes()),
                Some(StateKey::SeenPart { .. })
            ));
            back.seen
                .merge(SeenSet::decode_part(value.as_deref().unwrap()).unwrap());
        }
        assert_eq!(back.seen, c.seen);
        // Shrunk below the inline size: the parts are deleted.
        c.prune_before(t("2024-01-01T00:20:00Z"));
        let records = c.records(9);
        assert_eq!(c.seen_parts, 0);
        assert_eq!(records.len(), 10);
        assert!(records[1..].iter().all(|(_, v)| v.is_none()));
    }

    #[test]
    fn twenty_thousand_pairs_at_one_timestamp_stay_small() {
        let mut c = Checkpoint::starting(JobId::new("shop", "orders"), t("2024-01-01T00:00:00Z"));
        let at = t("2024-01-01T00:10:00Z");
        for id in 0..20_000 {
            assert!(c.seen.insert(&id.to_string(), at));
        }
        assert!(!c.seen.insert("7", at), "a repeat is not new");
        let bytes = c.encode();
        assert!(bytes.len() < 230_000, "{} bytes", bytes.len());
        let back = Checkpoint::decode("k", &bytes).unwrap();
        assert_eq!(back.seen.len(), 20_000);
        assert!((0..20_000).all(|id| back.has_published(&id.to_string(), at)));
        assert!(!back.has_published("20000", at));
    }

    #[test]
    fn a_rewind_forgets_exactly_the_pairs_after_its_time() {
        let mut c = Checkpoint::starting(JobId::new("shop", "orders"), t("2024-01-01T00:00:00Z"));
        c.seen.insert("a", t("2024-01-01T00:05:00Z"));
        c.seen.insert("b", t("2024-01-01T00:06:00Z"));
        c.seen.insert("c", t("2024-01-01T00:07:00Z"));
        c.watermark = t("2024-01-01T00:07:00Z");
        c.covered_before = Some(t("2024-01-01T00:04:00Z"));
        c.resume = Some(Resume {
            start: t("2024-01-01T00:06:30Z"),
            url: "https://x.test/next".into(),
        });
        let r = c.rewound_to(t("2024-01-01T00:06:00Z")).unwrap();
        assert_eq!(r.watermark, t("2024-01-01T00:06:00Z"));
        assert!(r.has_published("a", t("2024-01-01T00:05:00Z")));
        assert!(
            r.has_published("b", t("2024-01-01T00:06:00Z")),
            "at T: kept"
        );
        assert!(
            !r.has_published("c", t("2024-01-01T00:07:00Z")),
            "after T: replayed"
        );
        assert_eq!(r.covered_before, Some(t("2024-01-01T00:04:00Z")));
        assert_eq!(r.resume, None);
        assert_eq!((r.polls, r.events), (c.polls, c.events));

        // Older than the dedupe set reaches: covered from just after T.
        let r = c.rewound_to(t("2024-01-01T00:01:00Z")).unwrap();
        assert_eq!(
            r.covered_before,
            Some(t("2024-01-01T00:01:00Z") + TimeDelta::nanoseconds(1))
        );
        assert!(r.seen.is_empty());
        // Before the job's start: the start moves too, or the replay
        // would be cut at it.
        let r = c.rewound_to(t("2023-12-31T23:00:00Z")).unwrap();
        assert_eq!(r.started_from, t("2023-12-31T23:00:00Z"));

        assert!(matches!(
            c.rewound_to(t("2024-01-01T00:07:00Z")),
            Err(RewindError::NotBehind { .. })
        ));
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
