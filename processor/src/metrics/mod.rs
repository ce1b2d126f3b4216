//! The processor's Prometheus metrics (`docs/metrics.md` lists them): the
//! run loop publishes a [`Snapshot`] of plain figures once a second and at
//! every checkpoint; `GET /metrics`, on a port of its own, encodes the
//! newest one with `prometheus-client`. Processing never touches an atomic
//! or a lock for a metric, and a slow scrape never slows processing.

pub mod buckets;
mod encode;
mod serve;

use std::collections::BTreeMap;

pub use buckets::Buckets;
pub use encode::render;
pub use serve::{serve, Publisher};

/// Everything `/metrics` reports, as of one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub job: String,
    pub namespace: String,
    /// The stage of a two-phase job (`partial`, `merge`): a label on
    /// every sample; none in one stage.
    pub stage: Option<&'static str>,
    /// Wall clock when taken (ms): watermark lags count from it.
    pub now_ms: i64,
    pub events_read: u64,
    /// `dropped` or `output`: what `spec.lateData` does with late events.
    pub late_handling: &'static str,
    pub invalid_by_reason: BTreeMap<&'static str, u64>,
    pub windows_fired: u64,
    pub revisions: u64,
    /// Results handed to each result sink, by sink name.
    pub results_by_sink: Vec<(String, u64)>,
    /// This pod's watermark (ms), once there is one.
    pub watermark_ms: Option<i64>,
    pub busy_ratio: f64,
    pub http_buffer_fill: Option<f64>,
    pub ttl_expired: u64,
    pub partitions: Vec<PartitionFigures>,
    pub checkpoints: CheckpointFigures,
    pub sinks: Vec<SinkFigures>,
    pub backpressure_seconds: f64,
    pub advice: Vec<crate::engine::advice::Advice>,
    pub late_dropped_ratio: f64,
}

/// One partition's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct PartitionFigures {
    pub partition: u32,
    pub accepted: u64,
    pub late: u64,
    pub late_updates: u64,
    pub skew_rejected: u64,
    pub skew_clamped: u64,
    pub watermark_ms: Option<i64>,
    pub lateness_seconds: Buckets,
    pub events_per_second: f64,
    pub busy_ratio: f64,
    /// Kafka records behind the end of the partition, when known.
    pub backlog: Option<u64>,
    pub state_bytes: u64,
    pub state_keys: u64,
    pub open_windows: u64,
    /// Shares of the heaviest keys, heaviest first.
    pub hot_key_shares: Vec<f64>,
}

/// Checkpoints and the restore at start.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointFigures {
    pub completed: u64,
    pub failed: u64,
    /// When the newest checkpoint completed, or the process started
    /// before the first (ms).
    pub last_completed_ms: Option<i64>,
    pub sync_seconds: Buckets,
    pub total_seconds: Buckets,
    pub uploaded_bytes: u64,
    pub size_bytes: u64,
    pub restore_seconds: f64,
    pub restore_fallbacks: u64,
}

impl CheckpointFigures {
    /// Counts a completed checkpoint.
    pub fn record(&mut self, done: &crate::checkpoint::Completed) {
        self.completed += 1;
        self.last_completed_ms = Some(crate::source::wall_clock_ms());
        self.sync_seconds.observe(done.sync_duration.as_secs_f64());
        self.total_seconds
            .observe(done.total_duration.as_secs_f64());
        self.uploaded_bytes += done.bytes_uploaded;
        self.size_bytes = done.bytes_total;
    }
}

impl Default for CheckpointFigures {
    fn default() -> Self {
        Self {
            completed: 0,
            failed: 0,
            last_completed_ms: None,
            sync_seconds: Buckets::new(buckets::LATENCY),
            total_seconds: Buckets::new(buckets::LATENCY),
            uploaded_bytes: 0,
            size_bytes: 0,
            restore_seconds: 0.0,
            restore_fallbacks: 0,
        }
    }
}

/// A sink that buffers results and flushes them (tables, topics, remote
/// late and invalid outputs).
#[derive(Clone, Debug, PartialEq)]
pub struct SinkFigures {
    /// `<kind>-<index>`, e.g. `postgres-0`, or `late` / `invalid`.
    pub name: String,
    pub flushes: u64,
    pub errors: u64,
    pub flush_seconds: Buckets,
}

impl SinkFigures {
    pub fn new(name: String) -> Self {
        Self {
            name,
            flushes: 0,
            errors: 0,
            flush_seconds: Buckets::new(buckets::LATENCY),
        }
    }

    /// Counts a failure found without a flush.
    pub fn failed(&mut self) {
        self.errors += 1;
    }

    /// Counts a flush that took `took` and failed or not.
    pub fn record(&mut self, took: std::time::Duration, failed: bool) {
        self.flushes += 1;
        self.errors += u64::from(failed);
        self.flush_seconds.observe(took.as_secs_f64());
    }
}
