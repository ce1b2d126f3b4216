//! Per-partition statistics the rest of the processor (metrics, status,
//! the operator's alerts) reads: event rates, late events and their
//! lateness distribution, clock skew, and hot keys.

use sketches_ddsketch::{Config, DDSketch};

use super::{
    hotkeys::{HotKey, SpaceSaving},
    sample::Sampler,
};
use crate::metrics::{buckets, Buckets};

/// Statistics of one partition.
#[derive(Clone)]
pub struct PartitionStats {
    pub partition: u32,
    /// Events accepted into windows.
    pub accepted: u64,
    /// Events beyond the allowed lateness.
    pub late: u64,
    /// Late events within the allowed lateness that revised a result.
    pub late_updates: u64,
    /// Records rejected to the invalid output.
    pub invalid: u64,
    /// The merge stage: partials replayed for windows already closed
    /// ([`super::Outcome::Replayed`]), and records the job sent before it
    /// started over (another state epoch), dropped.
    pub replayed: u64,
    /// Lateness (ms behind the watermark) of every late event.
    lateness: DDSketch,
    /// The same, in seconds, in fixed buckets (for `/metrics`).
    pub lateness_seconds: Buckets,
    /// How far behind the partition's largest event time so far each
    /// event was (ms), for the events that were behind at all.
    delays: DDSketch,
    /// Which delays the sketch records (most events are behind).
    delay_sampler: Sampler,
    /// Events at or ahead of the largest event time so far.
    pub in_order: u64,
    pub skew: SkewStats,
    hot: SpaceSaving,
    rate_window_start: Option<i64>,
    rate_events: u64,
    /// Events per second over the last full second of source clock.
    pub events_per_second: f64,
}

/// How far event times are from ingestion times.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SkewStats {
    /// Largest amount an event was stamped ahead of its ingestion (ms).
    pub max_ahead_ms: i64,
    /// Largest amount an event was stamped behind its ingestion (ms).
    pub max_behind_ms: i64,
    /// Events beyond the allowed skew that were rejected.
    pub rejected: u64,
    /// Events beyond the allowed skew whose time was clamped.
    pub clamped: u64,
}

impl PartitionStats {
    pub fn new(partition: u32, top_k: usize, hot_span_ms: i64) -> Self {
        Self {
            partition,
            accepted: 0,
            late: 0,
            late_updates: 0,
            replayed: 0,
            invalid: 0,
            lateness: DDSketch::new(Config::defaults()),
            lateness_seconds: Buckets::new(buckets::LATENESS),
            delays: DDSketch::new(Config::defaults()),
            delay_sampler: Sampler::default(),
            in_order: 0,
            skew: SkewStats::default(),
            // Track a few more keys than reported, for accuracy.
            hot: SpaceSaving::new(top_k * 4, hot_span_ms),
            rate_window_start: None,
            rate_events: 0,
            events_per_second: 0.0,
        }
    }

    /// Counts an event of `key` for load and hot keys.
    pub fn record_event(&mut self, key: &str, now_ms: i64) {
        self.hot.add(key, now_ms);
        let start = *self.rate_window_start.get_or_insert(now_ms);
        if now_ms - start >= 1_000 {
            self.events_per_second = self.rate_events as f64 * 1_000.0 / (now_ms - start) as f64;
            self.rate_window_start = Some(now_ms);
            self.rate_events = 0;
        }
        self.rate_events += 1;
    }

    /// Events per second as of `now_ms` (wall clock): the last whole
    /// second's, or, once no event closed a second for two, what the
    /// second still open has seen over its length, so an idle partition
    /// reads near zero instead of its last busy second.
    pub fn events_per_second_at(&self, now_ms: i64) -> f64 {
        match self.rate_window_start {
            Some(start) if now_ms - start >= 2_000 => {
                self.rate_events as f64 * 1_000.0 / (now_ms - start) as f64
            }
            _ => self.events_per_second,
        }
    }

    pub fn record_late(&mut self, lateness_ms: i64) {
        self.late += 1;
        self.lateness.add(lateness_ms.max(0) as f64);
        self.lateness_seconds
            .observe(lateness_ms.max(0) as f64 / 1000.0);
    }

    /// Records how far an event's time is behind the largest seen before
    /// it (ms; zero or less: in order).
    pub fn record_delay(&mut self, delay_ms: i64) {
        if delay_ms <= 0 {
            self.in_order += 1;
        } else {
            let weight = self.delay_sampler.weight();
            if weight > 0 {
                self.delays.add_with_count(delay_ms as f64, weight);
            }
        }
    }

    /// The delays of out-of-order events, and how many events were in
    /// order (for `advice`).
    pub fn delays(&self) -> (&DDSketch, u64) {
        (&self.delays, self.in_order)
    }

    pub fn record_skew(&mut self, time_ms: i64, ingest_ms: i64) {
        let ahead = time_ms.saturating_sub(ingest_ms);
        if ahead > 0 {
            self.skew.max_ahead_ms = self.skew.max_ahead_ms.max(ahead);
        } else {
            self.skew.max_behind_ms = self.skew.max_behind_ms.max(-ahead);
        }
    }

    /// Lateness quantile (ms) of late events, e.g. 0.5 or 0.99.
    pub fn lateness_quantile(&self, q: f64) -> Option<f64> {
        self.lateness.quantile(q).ok().flatten()
    }

    /// The heaviest keys over the hot-key span.
    pub fn hot_keys(&self, n: usize) -> Vec<HotKey> {
        self.hot.top(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_quantiles() {
        let mut s = PartitionStats::new(0, 10, 60_000);
        for ms in 1..=1000 {
            s.record_late(ms);
        }
        assert_eq!(s.late, 1000);
        let p50 = s.lateness_quantile(0.5).unwrap();
        let p99 = s.lateness_quantile(0.99).unwrap();
        assert!((p50 - 500.0).abs() <= 10.0, "{p50}");
        assert!((p99 - 990.0).abs() <= 15.0, "{p99}");
    }

    #[test]
    fn rate_over_the_last_second() {
        let mut s = PartitionStats::new(0, 10, 60_000);
        for i in 0..3000 {
            s.record_event("k", i); // 1000 events per second of clock
        }
        assert!(
            (s.events_per_second - 1000.0).abs() < 1.0,
            "{}",
            s.events_per_second
        );
    }

    #[test]
    fn an_idle_partition_reads_near_zero() {
        let mut s = PartitionStats::new(0, 10, 60_000);
        for i in 0..3000 {
            s.record_event("k", i);
        }
        assert!((s.events_per_second_at(3_500) - 1000.0).abs() < 1.0);
        let idle = s.events_per_second_at(3_000 + 60_000);
        assert!(idle < 20.0, "{idle}");
    }

    #[test]
    fn skew_extremes() {
        let mut s = PartitionStats::new(0, 10, 60_000);
        s.record_skew(1_500, 1_000);
        s.record_skew(200, 1_000);
        s.record_skew(1_100, 1_000);
        assert_eq!(s.skew.max_ahead_ms, 500);
        assert_eq!(s.skew.max_behind_ms, 800);
    }
}
