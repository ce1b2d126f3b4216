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
use tokio_postgres::types::ToSql;

use super::{
    kafka::{KafkaSink, Shared},
    postgres,
    sink::LineSink,
};

pub enum RecordSink {
    Lines(LineSink),
    Topic(KafkaSink),
    Table(Box<RecordTable>),
}

pub struct RecordTable {
    table: String,
    kind: &'static str,
    /// (record id, JSON line).
    rows: postgres::Batches<(String, String)>,
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
            let ddl = pg.create_table.then(|| {
                format!(
                    "CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, kind text NOT NULL, \
                     record jsonb NOT NULL, written_at timestamptz NOT NULL DEFAULT now())",
                    pg.table
                )
            });
            return Ok(Self::Table(Box::new(RecordTable {
                table: pg.table.clone(),
                kind,
                rows: postgres::Batches::new(postgres::url_of(pg)?, &pg.table, ddl),
            })));
        }
        Ok(Self::Lines(LineSink::open_at(spec, file_length)?))
    }

    pub fn name(&self) -> String {
        match self {
            Self::Lines(l) => l.name().to_string(),
            Self::Topic(t) => t.name(),
            Self::Table(t) => t.rows.name().to_string(),
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
                t.rows
                    .push((id.to_string(), String::from_utf8_lossy(line).into_owned()));
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

impl RecordTable {
    /// Writes the buffered records; a record already there (a replay) is
    /// left as it is.
    async fn flush(&mut self) -> anyhow::Result<()> {
        let (table, kind) = (&self.table, self.kind);
        self.rows
            .flush(async |client, rows| {
                let mut values = Vec::with_capacity(rows.len());
                let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(rows.len() * 3);
                for (i, (id, record)) in rows.iter().enumerate() {
                    values.push(format!(
                        "(${}, ${}, ${}::text::jsonb)",
                        i * 3 + 1,
                        i * 3 + 2,
                        i * 3 + 3
                    ));
                    params.extend([id as &(dyn ToSql + Sync), &kind, record]);
                }
                let sql = format!(
                    "INSERT INTO {table} (id, kind, record) VALUES {} ON CONFLICT (id) DO NOTHING",
                    values.join(", ")
                );
                client.execute(sql.as_str(), &params).await?;
                Ok(())
            })
            .await
    }
}
