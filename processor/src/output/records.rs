//! Late and invalid records, which go to any sink (`output::sink`): JSON
//! lines (files, standard streams), a Kafka topic, or a PostgreSQL table. Each record carries an id
//! from the job, its kind and its source origin, so the same record written
//! again after a crash replaces itself: the table ignores it, and a
//! consumer of the topic can drop it by key.
//!
//! The table (created with `createTable: true`):
//!
//! ```sql
//! CREATE TABLE <table> (
//!   id         text PRIMARY KEY,  -- from job, kind and source origin
//!   kind       text NOT NULL,     -- late | invalid
//!   record     jsonb NOT NULL,    -- reason, the original event (or raw text), origin
//!   written_at timestamptz NOT NULL DEFAULT now()
//! )
//! ```

/// The id of a late or invalid record.
pub fn record_id(job: &str, kind: &str, origin: &str) -> String {
    let text = format!("{}\\0{job}\\0{kind}\\0{origin}", job.len());
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
}
