//! What the engine needs to know about a job.

use super::{aggregate::Aggregate, window::Assigner};

/// How events are grouped in time.
#[derive(Clone, Debug)]
pub enum WindowKind {
    /// Windows fixed by the event time alone (tumbling, sliding, calendar).
    Fixed(Assigner),
    /// Per-key sessions: `gap` of inactivity closes one, none longer than
    /// `max_length`.
    Session { gap: i64, max_length: i64 },
}

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Partitions this engine owns.
    pub partitions: Vec<u32>,
    pub windows: WindowKind,
    pub max_out_of_orderness_ms: i64,
    pub idle_timeout_ms: i64,
    pub allowed_lateness_ms: i64,
    /// Output name and function of each aggregate, in result order.
    /// Output names (shared by every result) and their aggregates.
    pub aggregates: Vec<(std::sync::Arc<str>, Aggregate)>,
    /// Keyed state not updated for this long (source clock) is deleted.
    pub state_ttl_ms: i64,
    /// Heaviest keys tracked per partition.
    pub top_k: usize,
    /// Span over which hot keys are measured.
    pub hot_key_span_ms: i64,
    /// Keys held in memory (pre-aggregated) before state is written back.
    pub cache_keys: usize,
    /// Events between write-backs of the in-memory state to RocksDB.
    pub flush_every_events: u64,
    /// The whole job, or one stage of a two-phase job: the first emits
    /// partials, the second merges them.
    pub stage: crate::partials::Stage,
}

impl EngineConfig {
    /// Keys the in-memory cache holds for a memory budget: the part of the
    /// budget RocksDB does not get, at a conservative 1 KiB per key.
    pub fn cache_keys_for_budget(memory_budget: u64) -> usize {
        let bytes = memory_budget as f64 * (1.0 - crate::state::ROCKSDB_SHARE);
        ((bytes / 1024.0) as usize).max(1024)
    }
}
