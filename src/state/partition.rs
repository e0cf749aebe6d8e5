//! The one function that maps a job's instance to a state-topic partition.
//!
//! It is used both to route checkpoint and token records and to decide which
//! worker owns a job, so the two can never disagree. It is Java Kafka's
//! default partitioner (`toPositive(murmur2(key)) % n`), chosen explicitly
//! because librdkafka's default (`consistent_random`, CRC32) differs: any
//! Java tool or future worker written in another client computes the same
//! owner.

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(&b) = tail.first() {
        h ^= u32::from(b);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The state-topic partition of an instance. All jobs (resources) of one
/// instance share a partition, so one worker owns the instance's OAuth
/// tokens and no two workers ever rotate the same refresh token.
///
/// `partitions` must be positive; a non-positive count maps to partition 0.
pub fn partition_for(instance_id: &str, partitions: i32) -> i32 {
    if partitions <= 0 {
        return 0;
    }
    (murmur2(instance_id.as_bytes()) & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values printed by Kafka 4.1's `Utils.murmur2` and
    /// `toPositive(murmur2) % 6` for the same UTF-8 bytes.
    #[test]
    fn matches_javas_murmur2() {
        let cases: &[(&str, i32, i32)] = &[
            ("21", -973_932_308, 0),
            ("foobar", -790_332_482, 0),
            ("a-little-bit-long-string", -985_981_536, 2),
            ("abc", 479_470_107, 3),
            ("", 275_646_681, 3),
            ("demo-shop", -1_411_601_900, 0),
            ("é-ü", -994_418_976, 2),
            ("x", 2_121_525_046, 4),
            ("xy", -1_884_506_471, 3),
            ("xyz", -2_021_271_510, 2),
            ("wxyz", -219_363_494, 0),
        ];
        for &(key, hash, p6) in cases {
            assert_eq!(murmur2(key.as_bytes()), hash, "murmur2({key:?})");
            assert_eq!(partition_for(key, 6), p6, "partition_for({key:?}, 6)");
        }
    }

    #[test]
    fn partition_is_in_range() {
        for p in 1..20 {
            for key in ["a", "bb", "some-instance", "ümlaut"] {
                let got = partition_for(key, p);
                assert!((0..p).contains(&got));
            }
        }
        assert_eq!(partition_for("a", 0), 0);
    }
}
