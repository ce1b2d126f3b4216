//! The Eddy operator's library: everything the binary does, testable
//! without an API server.

pub mod build;
pub mod crd;
