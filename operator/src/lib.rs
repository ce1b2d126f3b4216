//! The Eddy operator's library: everything the binary does, testable
//! without an API server.
//!
//! - [`build`]: the children of a StreamJob, as pure functions.
//! - [`controller`]: the reconcile pipeline (fetch, validate, build, apply,
//!   status), events, the finalizer.
//! - [`scheduler`]: checkpoint rounds over the processors' admin APIs.
//! - [`leader`]: leader election through a Lease.
//! - [`metrics`]: the operator's own Prometheus metrics.
//! - [`crd`]: the CustomResourceDefinition.

pub mod autoscale;
pub mod build;
pub mod controller;
pub mod crd;
pub mod leader;
pub mod metrics;
pub mod scheduler;
