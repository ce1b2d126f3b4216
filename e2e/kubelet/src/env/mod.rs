//! Container environments: `$(VAR)` expansion and the downward API (pure),
//! resolution from given objects (pure), and fetching those objects.

pub mod expand;
pub mod fetch;
pub mod field;
pub mod resolve;

pub use expand::expand;
pub use field::PodFacts;
