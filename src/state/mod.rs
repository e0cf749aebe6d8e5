//! What the compacted state topic holds and how it is read back: job
//! checkpoints, the keys of its records, the job → partition function, and
//! the restore of one partition.
//!
//! - [`checkpoint`]: [`Checkpoint`], [`JobId`] and the record keys ([`StateKey`]).
//! - [`layout`]: the partition count the records were written under, checked at start-up.
//! - [`partition`]: Java's murmur2 partitioner, the one instance → partition map.
//! - [`restore`]: a partition read back with `read_committed` to its end.

pub mod checkpoint;
pub mod layout;
pub mod partition;
pub mod restore;

pub use checkpoint::{Checkpoint, JobId, Resume, RewindError, SeenSet, StateKey};
pub use partition::partition_for;
pub use restore::{Restored, restore_partition};
