//! What the run loop measures for `/metrics`: how busy it is, how long it
//! waits on sinks, and the snapshot of everything else.

use std::time::{Duration, Instant};

use eddy_api::spec::LateDataPolicy;

use super::{sink_name, Outputs, Pipeline};
use crate::{
    admin::{HotKeyInfo, Stats},
    engine::Engine,
    metrics::{CheckpointFigures, PartitionFigures, Snapshot},
    partials::Stage,
    source::{wall_clock_ms, Source},
};

/// Busy time and back-pressure, over ticks of the run loop.
pub(super) struct Meter {
    since: Instant,
    idle: Duration,
    busy_ratio: f64,
    backpressure: Duration,
}

impl Meter {
    pub(super) fn new() -> Self {
        Self {
            since: Instant::now(),
            idle: Duration::ZERO,
            busy_ratio: 0.0,
            backpressure: Duration::ZERO,
        }
    }

    /// The loop waited `d` for input (or while paused): not busy.
    pub(super) fn idle(&mut self, d: Duration) {
        self.idle += d;
    }

    /// The loop waited `d` on sinks: busy, and back-pressured.
    pub(super) fn backpressure(&mut self, d: Duration) {
        self.backpressure += d;
    }

    /// Closes the busy measurement over the time since the last tick.
    pub(super) fn tick(&mut self) {
        let elapsed = self.since.elapsed();
        if !elapsed.is_zero() {
            let idle = self.idle.min(elapsed);
            self.busy_ratio = 1.0 - idle.as_secs_f64() / elapsed.as_secs_f64();
        }
        self.since = Instant::now();
        self.idle = Duration::ZERO;
    }
}

impl Pipeline {
    /// The figures `/metrics` reports now; `summary` is what
    /// [`Pipeline::stats`] answered at the same moment.
    pub(super) fn snapshot(
        &self,
        summary: &Stats,
        meter: &Meter,
        checkpoints: &CheckpointFigures,
        outputs: &Outputs,
        source: &Source,
    ) -> Snapshot {
        let stats: Vec<_> = self.engines().flat_map(|e| e.stats()).collect();
        let now_ms = wall_clock_ms();
        let rates: Vec<f64> = stats
            .iter()
            .map(|s| s.events_per_second_at(now_ms))
            .collect();
        let recent: f64 = rates.iter().sum();
        let top_k = self.plan.engine.top_k;
        let mut partitions: Vec<PartitionFigures> = stats
            .iter()
            .zip(&rates)
            .filter_map(|(s, &rate)| {
                let p = s.partition;
                let engine = self.engine_of(p)?;
                let store = engine.store();
                let share = if recent > 0.0 {
                    rate / recent
                } else {
                    1.0 / stats.len().max(1) as f64
                };
                Some(PartitionFigures {
                    partition: p,
                    accepted: s.accepted,
                    late: s.late,
                    late_updates: s.late_updates,
                    skew_rejected: s.skew.rejected,
                    skew_clamped: s.skew.clamped,
                    watermark_ms: engine
                        .partition_watermark(p)
                        .filter(|w| *w != i64::MIN && *w != i64::MAX),
                    lateness_seconds: s.lateness_seconds.clone(),
                    events_per_second: rate,
                    busy_ratio: meter.busy_ratio * share,
                    backlog: source.backlog(p),
                    state_bytes: store.size_bytes(p).unwrap_or(0),
                    state_keys: store.estimated_keys(p).unwrap_or(0),
                    open_windows: engine.open_windows_in(p) as u64,
                    hot_key_shares: s.hot_keys(top_k).iter().map(|k| k.share).collect(),
                })
            })
            .collect();
        partitions.sort_by_key(|p| p.partition);
        let watermark = self.watermark();
        let results = self.counters.windows_emitted;
        Snapshot {
            job: self.plan.id.name.clone(),
            namespace: self.plan.id.namespace_or_default().to_string(),
            stage: (self.plan.stage != Stage::Single).then(|| self.plan.stage.name()),
            now_ms: wall_clock_ms(),
            events_read: summary.events_read,
            late_handling: match self.plan.late_policy {
                LateDataPolicy::Output => "output",
                _ => "dropped",
            },
            invalid_by_reason: self.invalid_by_kind.clone(),
            windows_fired: results,
            revisions: self.revisions,
            results_by_sink: self
                .plan
                .sinks
                .iter()
                .enumerate()
                .map(|(i, spec)| (sink_name(spec, i), results))
                .collect(),
            watermark_ms: (watermark != i64::MIN && watermark != i64::MAX).then_some(watermark),
            busy_ratio: meter.busy_ratio,
            http_buffer_fill: match source {
                Source::Http(h) => Some(h.fill_ratio()),
                _ => None,
            },
            ttl_expired: self.engines().map(|e| e.counters().expired_windows).sum(),
            partitions,
            checkpoints: checkpoints.clone(),
            sinks: outputs.figures(),
            backpressure_seconds: meter.backpressure.as_secs_f64(),
            advice: summary.advice.clone(),
            late_dropped_ratio: summary.late_dropped_ratio,
        }
    }
}

impl Pipeline {
    /// What `GET /stats` answers now.
    pub(super) fn stats(&self) -> Stats {
        let stats: Vec<_> = self.engines().flat_map(|e| e.stats()).collect();
        let late: u64 = stats.iter().map(|s| s.late).sum();
        let read = self.counters.events;
        Stats {
            events_read: read,
            late,
            late_dropped_ratio: if read == 0 {
                0.0
            } else {
                late as f64 / read as f64
            },
            hot_keys: stats
                .iter()
                .flat_map(|s| {
                    s.hot_keys(self.plan.engine.top_k)
                        .into_iter()
                        .map(|k| HotKeyInfo {
                            partition: s.partition,
                            key: k.key,
                            share: k.share,
                        })
                })
                .collect(),
            advice: Engine::advice(self.engines()),
            replayed: stats.iter().map(|s| s.replayed).sum(),
            watermark_ms: Some(self.watermark()).filter(|w| *w != i64::MIN && *w != i64::MAX),
            stages: Vec::new(),
        }
    }
}
