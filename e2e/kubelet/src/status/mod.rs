//! Pod status: container views and the pod status computed from them
//! (pure), and writing it through the `pods/status` subresource.

pub mod compute;
pub mod container;
pub mod write;

pub use compute::{compute, Observed};
pub use container::{ContainerView, Exit, State};
pub use write::StatusWriter;
