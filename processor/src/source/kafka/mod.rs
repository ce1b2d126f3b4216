//! The Kafka source: an explicit list of partitions of a topic, assigned
//! (not balanced by a consumer group: partition ownership belongs to the
//! job), starting from checkpointed offsets, or earliest/latest per spec.
//! Offsets are never committed to the broker; checkpoints hold them.
//!
//! What to read is planned in every build; the reader needs the `kafka`
//! feature (librdkafka).

#[cfg(feature = "kafka")]
mod reader;

use std::collections::BTreeMap;

use eddy_api::spec::StartFrom;

#[cfg(feature = "kafka")]
pub use self::reader::KafkaReader;
use super::json::Wanted;
#[cfg(not(feature = "kafka"))]
pub use crate::without::kafka::KafkaReader;

#[derive(Clone, Debug)]
pub struct KafkaConfig {
    pub brokers: String,
    pub topic: String,
    /// Kafka partitions this processor reads (= the job partitions it owns).
    pub partitions: Vec<i32>,
    pub start_from: StartFrom,
    /// Put the message key into this field of the record.
    pub key_into: Option<String>,
    /// Put the message timestamp (epoch ms) into this field of the record.
    pub timestamp_into: Option<String>,
    pub properties: BTreeMap<String, String>,
    pub stop_at_end: bool,
    /// librdkafka's prefetch queue limit per partition
    /// (`queued.max.messages.kbytes`), unless the properties set it.
    pub prefetch_kbytes: u64,
    /// The fields the job reads from a record; the rest is only checked.
    pub fields: Wanted,
    /// The topic holds a two-phase job's partials, not JSON records.
    pub partials: bool,
}

/// Prefetched messages may take an eighth of the memory budget, spread over
/// the partitions read, between 1 MiB and librdkafka's own 64 MiB default
/// per partition. The default alone could hold 64 MiB for each of a pod's
/// partitions outside the budget when the job is slowed by a sink.
pub fn prefetch_kbytes(memory_budget: u64, partitions: usize) -> u64 {
    (memory_budget / 8 / 1024 / partitions.max(1) as u64).clamp(1024, 65_536)
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefetch_is_an_eighth_of_the_budget_within_bounds() {
        let mib = 1024 * 1024;
        assert_eq!(super::prefetch_kbytes(256 * mib, 4), 8 * 1024);
        assert_eq!(super::prefetch_kbytes(64 * mib, 64), 1024, "at least 1 MiB");
        assert_eq!(
            super::prefetch_kbytes(64 * 1024 * mib, 1),
            65_536,
            "at most 64 MiB"
        );
    }
}
