//! Automatic scaling, as pure logic: what the job's measurements over time
//! say it needs, and what to do about it.
//!
//! The anchor is the Flink Kubernetes Operator's autoscaler (DS2): a
//! partition's true cost is the share of a pod's time it takes per event
//! (busy share over processed rate), so the capacity a job needs follows
//! from the rates it must reach (incoming, plus working off its backlog in
//! `catchUpWithin`), not from pod counts; pods are sized to
//! `targetUtilization`; a need must hold for the stabilization window
//! before anything happens, nothing happens again within the cooldown,
//! and scale-in waits for a sustained idle period. Beyond it: a hot
//! partition is isolated on a pod of its own, partitions are packed by
//! measured load moving as few as possible, a single hot key is reported
//! (more pods cannot split it) and never scaled for, and an action that did
//! not bring the throughput it promised is recorded and not repeated for a
//! while.
//!
//! - [`signals`]: what one look at the job measured, and the history.
//! - [`alerts`]: Alertmanager webhooks, deduplicated, as signals.
//! - [`demand`]: per-partition cost and demand over the metrics window.
//! - [`pack`]: placing partitions on pods by load, with few moves.
//! - [`policy`]: the decision.
//! - [`moves`]: what applying one changes (pods, partition moves).
//! - [`sample`]: one look, from what the pods answer.
//! - [`report`]: what a decision shows (status, Event, condition).

pub mod alerts;
pub mod demand;
pub mod moves;
pub mod pack;
pub mod policy;
pub mod report;
pub mod sample;
pub mod signals;

#[cfg(test)]
mod tests;

pub use policy::{decide, Action, Bounds, Decision, Memory};
pub use signals::{History, PartitionLoad, Sample};
