//! What the operator measured of a job, one look at a time: per partition
//! from the pods' metrics, plus checkpoint lag and the alerts firing for it
//! (Alertmanager webhooks are signals like these, never commands).

use std::collections::VecDeque;

/// One partition in one look.
#[derive(Clone, Debug, PartialEq)]
pub struct PartitionLoad {
    pub partition: u32,
    /// Events processed per second.
    pub rate: f64,
    /// Share of one pod's time spent on it, 0 to 1 (its pod's busy share
    /// times its part of the pod's events).
    pub busy: f64,
    /// Records waiting for it in the source.
    pub backlog: f64,
    /// Its heaviest key and that key's share of its events.
    pub top_key: Option<(String, f64)>,
}

/// One look at the job.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// When (epoch ms).
    pub at_ms: i64,
    pub partitions: Vec<PartitionLoad>,
    /// Seconds since the last completed checkpoint (the worst pod).
    pub checkpoint_lag_s: f64,
    /// Alerts firing for the job (by name) that say it lacks capacity.
    pub alerts: Vec<String>,
}

/// The looks kept: enough for the longest window the policy reads.
#[derive(Clone, Debug, Default)]
pub struct History {
    samples: VecDeque<Sample>,
}

impl History {
    /// Adds a look and forgets those older than `keep_ms` before it.
    pub fn push(&mut self, sample: Sample, keep_ms: i64) {
        let oldest = sample.at_ms - keep_ms;
        self.samples.push_back(sample);
        while self.samples.front().is_some_and(|s| s.at_ms < oldest) {
            self.samples.pop_front();
        }
    }

    /// The looks since `from_ms`, oldest first.
    pub fn since(&self, from_ms: i64) -> impl Iterator<Item = &Sample> + Clone {
        self.samples.iter().filter(move |s| s.at_ms >= from_ms)
    }

    /// Whether the looks reach back to `from_ms` (a window is covered).
    pub fn covers(&self, from_ms: i64) -> bool {
        self.samples.front().is_some_and(|s| s.at_ms <= from_ms)
    }

    pub fn latest(&self) -> Option<&Sample> {
        self.samples.back()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}
