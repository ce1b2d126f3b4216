//! Two-phase (salted, hierarchical) aggregation, for keys too hot for one
//! pod: what travels between the two stages, and how the first spreads a
//! key over partitions.
//!
//! The first stage (`partial`) reads the job's source and aggregates, per
//! partition, what it holds of each key and window; instead of results it
//! emits each window's accumulators (a [`Partial`]), with a revision of its
//! own, onto a Kafka topic whose partition is the key's partition. Between
//! partials it sends its watermark ([`Mark`]) to every partition of the
//! topic. The second stage (`merge`) keeps, per key and window, the latest
//! partial of every first-stage partition (its *origin*), merges them in
//! origin order, and fires, revises and closes windows by the lowest
//! watermark of all origins: the results a job in one stage would write.
//! A partial replaces its origin's last one, never adds to it, so a partial
//! delivered twice (a first-stage pod replayed its input) counts once.

mod message;
#[cfg(feature = "kafka")]
pub mod sink;

pub use message::{decode, Mark, Message, Partial};

/// Which part of a job a processor runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stage {
    /// The whole job, in one stage.
    #[default]
    Single,
    /// The first of two: partials out.
    Partial,
    /// The second of two: partials in, from this many origins (the
    /// first stage's partitions), results out.
    Merge { origins: u32 },
}

impl Stage {
    pub fn is_merge(&self) -> bool {
        matches!(self, Self::Merge { .. })
    }

    /// The name `--stage` takes.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Partial => "partial",
            Self::Merge { .. } => "merge",
        }
    }
}

/// The partition an event of `key` goes to in the first stage, among
/// `partitions`: `salt` (0 to `buckets` - 1) partitions on from the key's
/// own, so a key's events spread evenly over `buckets` partitions (all of
/// them when there are no more).
pub fn salted_partition(key_partition: u32, salt: u64, partitions: u32) -> u32 {
    let partitions = u64::from(partitions.max(1));
    ((u64::from(key_partition) + salt) % partitions) as u32
}

/// The salt of an event from where it came (`origin`, unique within the
/// input and the same on every replay): never random.
pub fn salt_of(origin: &crate::source::Origin, buckets: u32) -> u64 {
    use crate::source::Origin;
    let (kind, a, b) = match *origin {
        Origin::Unknown => (0u8, 0, 0),
        Origin::Generator(n) => (1, n, 0),
        Origin::File { file, line } => (2, file as u64, line),
        Origin::Kafka { partition, offset } => (3, partition as u64, offset as u64),
        Origin::Http(seq) => (4, seq, 0),
    };
    let mut bytes = [0u8; 17];
    bytes[0] = kind;
    bytes[1..9].copy_from_slice(&a.to_le_bytes());
    bytes[9..].copy_from_slice(&b.to_le_bytes());
    xxhash_rust::xxh3::xxh3_64(&bytes) % u64::from(buckets.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Origin;

    #[test]
    fn a_key_spreads_evenly_over_its_buckets() {
        let mut hits = [0u32; 8];
        for n in 0..80_000 {
            let salt = salt_of(&Origin::Generator(n), 4);
            hits[salted_partition(6, salt, 8) as usize] += 1;
        }
        // Partitions 6, 7, 0 and 1: a quarter each, within 2%.
        for p in [6, 7, 0, 1] {
            assert!((19_600..20_400).contains(&hits[p]), "{hits:?}");
        }
        for p in [2, 3, 4, 5] {
            assert_eq!(hits[p], 0, "{hits:?}");
        }
    }

    #[test]
    fn the_salt_is_the_same_on_every_replay() {
        let origin = Origin::File { file: 1, line: 42 };
        assert_eq!(salt_of(&origin, 8), salt_of(&origin, 8));
        let salts: std::collections::BTreeSet<u64> = (0..100)
            .map(|line| salt_of(&Origin::File { file: 0, line }, 8))
            .collect();
        assert_eq!(salts.len(), 8, "every bucket is used");
    }
}
