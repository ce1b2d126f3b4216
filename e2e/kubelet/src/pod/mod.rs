//! Running the pods bound to this node: a manager that watches them, a
//! worker per pod, a runner per container.

pub mod container;
pub mod context;
pub mod history;
pub mod ips;
pub mod launch;
pub mod lifecycle;
pub mod manager;
pub mod probing;
pub mod worker;

pub use context::Node;
