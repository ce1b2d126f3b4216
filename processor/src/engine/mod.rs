//! The event-time engine: assigns events to keyed windows, keeps their
//! aggregates, tracks the watermark and fires windows when it passes their
//! end. Pure and synchronous: sources and sinks live elsewhere.

pub mod aggregate;
pub mod skew;
pub mod watermark;
pub mod window;

use std::collections::BTreeMap;

use serde_json::Value;

use self::{
    aggregate::{Accumulator, Aggregate},
    watermark::BoundedOutOfOrderness,
    window::{Tumbling, Window},
};
use crate::event::{Event, Invalid};

/// What the engine needs to know about a job.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub partitions: u32,
    pub window_size_ms: i64,
    pub max_out_of_orderness_ms: i64,
    /// Output name and function of each aggregate, in result order.
    pub aggregates: Vec<(String, Aggregate)>,
}

/// What happened to one event.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Accepted,
    /// Its window had already fired: `lateness_ms` is how far behind the
    /// watermark its time was.
    Late {
        lateness_ms: i64,
        watermark: i64,
    },
    Invalid(Invalid),
}

/// A fired window.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowResult {
    pub partition: u32,
    pub key: String,
    pub window: Window,
    pub aggregates: Vec<(String, Value)>,
    pub revision: u32,
    /// No further revision of this result will follow.
    pub is_final: bool,
}

struct OpenWindow {
    partition: u32,
    window: Window,
    accumulators: Vec<Accumulator>,
}

pub struct Engine {
    config: EngineConfig,
    windows: Tumbling,
    watermark: BoundedOutOfOrderness,
    /// Open windows ordered by (end, key): firing pops from the front, so
    /// results come out in a deterministic order.
    open: BTreeMap<(i64, String), OpenWindow>,
}

/// The stable partition of a key: xxh3 of its bytes modulo the partition
/// count. Never changes across versions or runs.
pub fn partition_of(key: &str, partitions: u32) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % u64::from(partitions.max(1))) as u32
}

impl Engine {
    pub fn new(config: EngineConfig) -> Self {
        Self {
            windows: Tumbling::new(config.window_size_ms),
            watermark: BoundedOutOfOrderness::new(config.max_out_of_orderness_ms),
            open: BTreeMap::new(),
            config,
        }
    }

    pub fn watermark(&self) -> i64 {
        self.watermark.current()
    }

    pub fn open_windows(&self) -> usize {
        self.open.len()
    }

    /// Adds one event to its window.
    pub fn process(&mut self, event: &Event) -> Outcome {
        let window = self.windows.assign(event.time_ms);
        let watermark = self.watermark.current();
        if window.end <= watermark {
            return Outcome::Late {
                lateness_ms: watermark - event.time_ms,
                watermark,
            };
        }
        let mut inputs = Vec::with_capacity(self.config.aggregates.len());
        for (name, aggregate) in &self.config.aggregates {
            match aggregate.input(&event.record, name) {
                Ok(input) => inputs.push(input),
                Err(reason) => return Outcome::Invalid(reason),
            }
        }
        let aggregates = &self.config.aggregates;
        let partitions = self.config.partitions;
        let open = self
            .open
            .entry((window.end, event.key.clone()))
            .or_insert_with(|| OpenWindow {
                partition: partition_of(&event.key, partitions),
                window,
                accumulators: aggregates.iter().map(|(_, a)| a.empty()).collect(),
            });
        for (acc, input) in open.accumulators.iter_mut().zip(inputs) {
            acc.add(input);
        }
        self.watermark.observe(event.time_ms);
        Outcome::Accepted
    }

    /// Fires every window the watermark has passed, in (end, key) order.
    pub fn fire(&mut self, out: &mut Vec<WindowResult>) {
        let watermark = self.watermark.current();
        while let Some(entry) = self.open.first_entry() {
            if entry.key().0 > watermark {
                break;
            }
            let ((_, key), open) = entry.remove_entry();
            out.push(self.result(key, open));
        }
    }

    /// Fires every open window: the input has ended, nothing more will come.
    pub fn fire_all(&mut self, out: &mut Vec<WindowResult>) {
        while let Some(((_, key), open)) = self.open.pop_first() {
            out.push(self.result(key, open));
        }
    }

    fn result(&self, key: String, open: OpenWindow) -> WindowResult {
        WindowResult {
            partition: open.partition,
            key,
            window: open.window,
            aggregates: self
                .config
                .aggregates
                .iter()
                .zip(&open.accumulators)
                .map(|((name, _), acc)| (name.clone(), acc.to_json()))
                .collect(),
            revision: 1,
            is_final: true,
        }
    }
}

#[cfg(test)]
mod tests;
