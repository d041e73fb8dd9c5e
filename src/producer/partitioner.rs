//! Choosing a partition: Java's murmur2 for keyed records, uniform sticky for keyless ones.
//!
//! # References
//! - Java client `Utils.murmur2` and `BuiltInPartitioner` (the default since Kafka 3.3).
//! - KIP-480 (sticky partitioner), KIP-794 (uniform sticky partitioner).

use std::fmt;

/// Kafka's murmur2 (seed `0x9747b28c`), bit for bit as Java's `Utils.murmur2` computes it, so a
/// key lands on the same partition whichever client produced it.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
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
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Java's default partitioner picks for `key` among `partitions`:
/// `toPositive(murmur2(key)) % partitions`.
pub fn key_partition(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// Picks partitions for records that name none.
///
/// Return `Some(p)` to place the record on partition `p` (in `0..partitions`), or `None` to let
/// the producer place it on the topic's sticky partition (uniform sticky, KIP-794), which fills
/// one batch at a time and then moves on.
pub trait Partitioner: Send + Sync + fmt::Debug {
    /// The partition for a record of `topic` with `key`, given the topic's partition count.
    fn partition(&self, topic: &str, key: Option<&[u8]>, partitions: i32) -> Option<i32>;
}

/// Java's default: murmur2 of the key for keyed records, uniform sticky for keyless ones.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultPartitioner;

impl Partitioner for DefaultPartitioner {
    fn partition(&self, _topic: &str, key: Option<&[u8]>, partitions: i32) -> Option<i32> {
        key.map(|k| key_partition(k, partitions))
    }
}

/// Uniform sticky for every record, keyed or not (Java's `partitioner.ignore.keys=true`).
#[derive(Debug, Clone, Copy, Default)]
pub struct StickyPartitioner;

impl Partitioner for StickyPartitioner {
    fn partition(&self, _topic: &str, _key: Option<&[u8]>, _partitions: i32) -> Option<i32> {
        None
    }
}

/// Picks the next sticky partition: uniformly at random among the others (KIP-794 without the
/// queue-size weighting).
pub(crate) fn next_sticky(current: Option<i32>, partitions: i32) -> i32 {
    if partitions <= 1 {
        return 0;
    }
    match current {
        None => fastrand::i32(0..partitions),
        Some(c) => (c + fastrand::i32(1..partitions)) % partitions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Java's `UtilsTest.testMurmur2` cases, and the values Java's `Utils.murmur2` gives for
    /// "1" to "12345" (as other Java-compatible clients test them).
    #[test]
    fn murmur2_matches_javas_test_vectors() {
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
            (b"1", -1_993_445_489),
            (b"12", 126_087_238),
            (b"123", -267_702_483),
            (b"1234", -1_614_185_708),
            (b"12345", -1_188_365_604),
        ];
        for (key, want) in cases {
            assert_eq!(
                murmur2(key),
                *want,
                "murmur2({:?})",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn keyed_records_land_where_java_puts_them() {
        // toPositive(-973932308) = 1173551340; 1173551340 % 10 = 0.
        assert_eq!(key_partition(b"21", 10), 1_173_551_340 % 10);
        assert_eq!(key_partition(b"abc", 7), 479_470_107 % 7);
        for n in 1..50 {
            let p = key_partition(b"foobar", n);
            assert!((0..n).contains(&p));
        }
        assert_eq!(
            DefaultPartitioner.partition("t", Some(b"abc"), 7),
            Some(479_470_107 % 7)
        );
        assert_eq!(DefaultPartitioner.partition("t", None, 7), None);
        assert_eq!(StickyPartitioner.partition("t", Some(b"abc"), 7), None);
    }

    #[test]
    fn the_next_sticky_partition_is_another_one() {
        for _ in 0..1000 {
            let p = next_sticky(Some(3), 5);
            assert!((0..5).contains(&p) && p != 3);
            assert!((0..5).contains(&next_sticky(None, 5)));
        }
        assert_eq!(next_sticky(Some(0), 1), 0);
    }
}
