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
pub mod job;
pub mod metrics;
pub mod output;
pub mod placement;
pub mod progress;
pub mod run;
pub mod secrets;
pub mod source;
pub mod state;
