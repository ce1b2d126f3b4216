//! The `StreamJob` API (`eddy.dev/v1alpha1`), shared by the operator, which
//! renders it into pods, and the processor, which runs it.
//!
//! - [`spec`]: the custom resource types; their doc comments are what
//!   `kubectl explain streamjob.spec` shows.
//! - [`validate()`]: every problem with a spec at once, with field paths.
//! - [`load`]: reading a `StreamJob` manifest from YAML.
//! - [`values`]: human-readable durations and byte sizes.

pub mod load;
pub mod spec;
pub mod validate;
pub mod values;

pub use spec::{StreamJob, StreamJobSpec, StreamJobStatus};
pub use validate::{validate, Problem};
pub use values::{ByteSize, HumanDuration};

/// API group of the StreamJob resource.
pub const GROUP: &str = "eddy.dev";
/// API version of the StreamJob resource.
pub const VERSION: &str = "v1alpha1";
