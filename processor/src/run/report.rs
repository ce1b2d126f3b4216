//! What a run reports when it ends.

use std::{collections::BTreeMap, time::Duration};

use crate::progress::Counters;

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The source ended and every window was emitted.
    Finished,
    /// A stop was asked; open windows were not emitted.
    Stopped,
}

/// What a run did.
#[derive(Debug)]
pub struct Report {
    pub ending: Ending,
    pub counters: Counters,
    /// Invalid records by kind of problem.
    pub invalid_by_kind: BTreeMap<&'static str, u64>,
    pub open_windows: usize,
    pub expired_windows: u64,
    pub elapsed: Duration,
    pub partitions: Vec<PartitionReport>,
}

/// Per-partition figures at the end of a run.
#[derive(Debug)]
pub struct PartitionReport {
    pub partition: u32,
    pub accepted: u64,
    pub late: u64,
    pub late_updates: u64,
    pub invalid: u64,
    pub lateness_p50_ms: Option<f64>,
    pub lateness_p99_ms: Option<f64>,
    pub state_bytes: u64,
    pub max_ahead_ms: i64,
    pub skew_rejected: u64,
    pub skew_clamped: u64,
    /// Heaviest keys with their share of the partition's recent events.
    pub hot_keys: Vec<(String, f64)>,
}

impl PartitionReport {
    /// One line for humans.
    pub fn line(&self) -> String {
        let q = |v: Option<f64>| {
            v.map_or("-".into(), |ms| {
                // Whole seconds above 10 s: the sketch is accurate to 1%.
                let ms = if ms >= 10_000.0 {
                    (ms / 1000.0).round() * 1000.0
                } else {
                    ms.round()
                };
                humantime::format_duration(Duration::from_millis(ms as u64)).to_string()
            })
        };
        let hot: Vec<String> = self
            .hot_keys
            .iter()
            .map(|(k, share)| format!("{k} {:.0}%", share * 100.0))
            .collect();
        let skew = if self.skew_rejected + self.skew_clamped > 0 || self.max_ahead_ms > 0 {
            format!(
                ", skew: up to {} ahead, {} rejected, {} clamped",
                q(Some(self.max_ahead_ms as f64)),
                self.skew_rejected,
                self.skew_clamped
            )
        } else {
            String::new()
        };
        format!(
            "partition {}: {} events, {} late (lateness p50 {}, p99 {}), {} revised by late events, {} invalid, state {} bytes, hot keys: {}{skew}",
            self.partition,
            self.accepted,
            self.late,
            q(self.lateness_p50_ms),
            q(self.lateness_p99_ms),
            self.late_updates,
            self.invalid,
            self.state_bytes,
            if hot.is_empty() { "-".into() } else { hot.join(", ") },
        )
    }
}
