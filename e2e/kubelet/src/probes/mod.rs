//! Startup, liveness and readiness probes, and lifecycle hooks.

pub mod action;
pub mod check;
pub mod tracker;

pub use action::Action;
pub use check::{Checker, ExecContext};
pub use tracker::{Kind, Timing, Tracker};
