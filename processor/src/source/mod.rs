//! Sources of records.

pub mod generator;

use std::time::Instant;

use serde_json::Value;

/// A record as a source hands it over.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceRecord {
    pub value: Value,
    /// When the record was ingested (epoch ms): what clock-skew checks
    /// compare its event time with.
    pub ingest_ms: i64,
}

/// What a source has for the engine right now.
#[derive(Debug, PartialEq)]
pub enum Poll {
    /// Records, in order.
    Ready(Vec<SourceRecord>),
    /// Nothing yet; ask again at this instant.
    Pending(Instant),
    /// The source is finite and has ended.
    End,
}
