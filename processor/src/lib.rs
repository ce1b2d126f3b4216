//! The Eddy processor: reads a StreamJob, runs its source through keyed
//! event-time windows, and writes results to its sinks.
//!
//! Layout: [`event`] turns records into events; [`engine`] holds the pure
//! window, watermark and aggregate logic; [`source`] and [`output`] do the
//! I/O; [`job`] resolves a StreamJob into a plan; [`run`] is the loop.

pub mod admin;
pub mod checkpoint;
pub mod engine;
pub mod event;
mod interned;
pub mod job;
pub mod metrics;
pub mod output;
pub mod partials;
pub mod placement;
pub mod progress;
pub mod run;
pub mod secrets;
pub mod source;
pub mod state;
mod without;

/// A hash map for the per-event path: foldhash instead of SipHash (keys are
/// short; a random seed per process keeps collisions unpredictable).
pub type FastMap<K, V> = hashbrown::HashMap<K, V, foldhash::fast::RandomState>;
/// A hash set with the same hasher.
pub type FastSet<K> = hashbrown::HashSet<K, foldhash::fast::RandomState>;
