//! Sources of records.

pub mod generator;

use std::time::Instant;

use serde_json::Value;

/// What a source has for the engine right now.
#[derive(Debug, PartialEq)]
pub enum Poll {
    /// Records, in order.
    Ready(Vec<Value>),
    /// Nothing yet; ask again at this instant.
    Pending(Instant),
    /// The source is finite and has ended.
    End,
}
