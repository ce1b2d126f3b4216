//! Destinations of late and invalid records: JSON lines (files, standard
//! streams), a Kafka topic, or a PostgreSQL table. Each record carries an id
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

use std::io;

use eddy_api::spec::SinkSpec;

use super::{kafka::KafkaSink, postgres::RecordTable, sink::LineSink, transaction::Shared};

pub enum RecordSink {
    Lines(LineSink),
    Topic(KafkaSink),
    Table(Box<RecordTable>),
}

/// The id of a late or invalid record.
pub fn record_id(job: &str, kind: &str, origin: &str) -> String {
    let text = format!("{}\\0{job}\\0{kind}\\0{origin}", job.len());
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
}

impl RecordSink {
    /// Opens the destination for records of `kind` (`late` or `invalid`); a
    /// file is cut to `file_length` like result files.
    /// A transactional Kafka destination writes in `transaction`.
    pub fn open(
        spec: &SinkSpec,
        file_length: u64,
        kind: &'static str,
        transaction: Option<&Shared>,
    ) -> anyhow::Result<Self> {
        if let Some(k) = &spec.kafka {
            return Ok(Self::Topic(KafkaSink::open_spec(k, transaction)?));
        }
        if let Some(pg) = &spec.postgres {
            return Ok(Self::Table(Box::new(RecordTable::open(pg, kind)?)));
        }
        Ok(Self::Lines(LineSink::open_at(spec, file_length)?))
    }

    pub fn name(&self) -> String {
        match self {
            Self::Lines(l) => l.name().to_string(),
            Self::Topic(t) => t.name(),
            Self::Table(t) => t.name().to_string(),
        }
    }

    pub fn write(&mut self, id: &str, line: &[u8]) -> io::Result<()> {
        match self {
            Self::Lines(l) => l.write_line(line),
            Self::Topic(t) => {
                t.push(id, line);
                Ok(())
            }
            Self::Table(t) => {
                t.push(id, line);
                Ok(())
            }
        }
    }

    pub fn lines(&mut self) -> Option<&mut LineSink> {
        match self {
            Self::Lines(l) => Some(l),
            _ => None,
        }
    }

    pub fn line_sink(&self) -> Option<&LineSink> {
        match self {
            Self::Lines(l) => Some(l),
            _ => None,
        }
    }

    /// Writes what a topic or table holds, and waits for it.
    pub async fn flush_remote(&mut self) -> anyhow::Result<()> {
        match self {
            Self::Lines(_) => Ok(()),
            Self::Topic(t) => t.flush(),
            Self::Table(t) => t.flush().await,
        }
    }
}
