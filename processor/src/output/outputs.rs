//! Everything a run writes to: result sinks (lines, tables, topics), the
//! late and invalid outputs, and the Kafka transaction they may share, with
//! what a checkpoint needs of them (flush, sync, lengths, precommit and
//! commit).

use std::{collections::BTreeMap, sync::MutexGuard, time::Instant};

use super::{
    kafka::KafkaSink,
    postgres::PostgresSink,
    records::RecordSink,
    sink::LineSink,
    transaction::{self, Shared, Transaction, HELD_LIMIT},
};
use crate::{job::JobPlan, metrics::SinkFigures};

/// Rows a table sink may hold before the run loop stops to write them
/// (back-pressure: a slow database slows consumption).
const TABLE_BACKLOG: usize = 2_000;

/// Where everything goes.
pub struct Outputs {
    /// Result sinks that take JSON lines.
    pub results: Vec<LineSink>,
    /// Result sinks that are database tables.
    pub tables: Vec<PostgresSink>,
    /// Result sinks that are Kafka topics.
    pub topics: Vec<KafkaSink>,
    pub late: RecordSink,
    pub invalid: RecordSink,
    /// The transaction the transactional Kafka outputs write in.
    pub transaction: Option<Shared>,
    /// Flushes of `tables` and `topics`, in that order, for `/metrics`.
    pub flushes: Vec<SinkFigures>,
}

impl Outputs {
    /// Opens the sinks the plan names, file sinks cut to the lengths a
    /// restored checkpoint recorded (to nothing on a fresh start), so every
    /// record is in them exactly once.
    pub fn open(
        plan: &JobPlan,
        file_lengths: &BTreeMap<String, u64>,
        transaction: Option<Shared>,
    ) -> anyhow::Result<Self> {
        let length_of = |spec: &eddy_api::spec::SinkSpec| {
            spec.file
                .as_ref()
                .and_then(|f| file_lengths.get(&f.path))
                .copied()
                .unwrap_or(0)
        };
        let open = |spec: &eddy_api::spec::SinkSpec| LineSink::open_at(spec, length_of(spec));
        let mut results = Vec::new();
        let mut tables = Vec::new();
        let mut topics = Vec::new();
        let (mut table_flushes, mut topic_flushes) = (Vec::new(), Vec::new());
        for (i, spec) in plan.sinks.iter().enumerate() {
            if let Some(k) = &spec.kafka {
                topics.push(KafkaSink::open_spec(k, transaction.as_ref())?);
                topic_flushes.push(SinkFigures::new(sink_name(spec, i)));
                continue;
            }
            match &spec.postgres {
                Some(pg) => {
                    tables.push(PostgresSink::open(pg)?);
                    table_flushes.push(SinkFigures::new(sink_name(spec, i)));
                }
                None => results.push(open(spec)?),
            }
        }
        table_flushes.extend(topic_flushes);
        Ok(Self {
            results,
            tables,
            topics,
            late: RecordSink::open(
                &plan.late_output,
                length_of(&plan.late_output),
                "late",
                transaction.as_ref(),
            )?,
            invalid: RecordSink::open(
                &plan.invalid_output,
                length_of(&plan.invalid_output),
                "invalid",
                transaction.as_ref(),
            )?,
            transaction,
            flushes: table_flushes,
        })
    }

    /// The Kafka transaction, if there is one.
    pub(crate) fn transaction(&self) -> Option<MutexGuard<'_, Transaction>> {
        self.transaction.as_deref().map(transaction::lock)
    }

    /// Puts checkpoint `id` into the Kafka transaction, if there is one.
    pub(crate) fn precommit(&mut self, id: u64) -> anyhow::Result<()> {
        self.transaction().map_or(Ok(()), |mut t| t.precommit(id))
    }

    /// Commits the Kafka transaction of checkpoint `id`, now in the store;
    /// false if there was nothing to commit.
    pub(crate) fn commit(&mut self, id: u64) -> anyhow::Result<bool> {
        self.transaction().map_or(Ok(false), |mut t| t.commit(id))
    }

    /// Whether the Kafka transaction holds so many results that the run
    /// loop must wait for the checkpoint in flight to commit.
    pub(crate) fn held_too_long(&self) -> bool {
        self.transaction().is_some_and(|t| t.held() >= HELD_LIMIT)
    }

    /// The sinks that take JSON lines: results, then late and invalid
    /// records when they go to lines.
    fn line_sinks(&mut self) -> impl Iterator<Item = &mut LineSink> {
        let records = [self.late.lines(), self.invalid.lines()];
        self.results.iter_mut().chain(records.into_iter().flatten())
    }

    /// Flushes every line sink and syncs files to disk.
    pub(crate) fn sync_files(&mut self) -> anyhow::Result<()> {
        for sink in self.line_sinks() {
            sink.sync()
                .map_err(|e| anyhow::anyhow!("syncing {}: {e}", sink.name()))?;
        }
        Ok(())
    }

    /// Writes what the table and topic sinks hold, and waits for it.
    pub async fn flush_tables(&mut self) -> anyhow::Result<()> {
        let mut figures = self.flushes.iter_mut();
        for table in &mut self.tables {
            let figures = figures.next();
            if table.pending() == 0 {
                continue;
            }
            let started = Instant::now();
            let flushed = table.flush().await;
            if let Some(f) = figures {
                f.record(started.elapsed(), flushed.is_err());
            }
            flushed?;
        }
        for topic in &mut self.topics {
            let started = Instant::now();
            let flushed = topic.flush();
            if let Some(f) = figures.next() {
                f.record(started.elapsed(), flushed.is_err());
            }
            flushed?;
        }
        self.late.flush_remote().await?;
        self.invalid.flush_remote().await?;
        Ok(())
    }

    /// Writes the table sinks when they hold too much.
    pub(crate) async fn relieve(&mut self) -> anyhow::Result<()> {
        if self.tables.iter().any(|t| t.pending() >= TABLE_BACKLOG) {
            self.flush_tables().await?;
        }
        Ok(())
    }

    /// Byte lengths of the file sinks, by path.
    pub fn file_lengths(&self) -> BTreeMap<String, u64> {
        let records = [self.late.line_sink(), self.invalid.line_sink()];
        self.results
            .iter()
            .chain(records.into_iter().flatten())
            .filter_map(|s| s.file_length())
            .map(|(p, l)| (p.to_string(), l))
            .collect()
    }

    pub(crate) fn flush(&mut self) -> anyhow::Result<()> {
        for sink in self.line_sinks() {
            sink.flush()
                .map_err(|e| anyhow::anyhow!("flushing {}: {e}", sink.name()))?;
        }
        Ok(())
    }
}

/// A result sink's name in metrics: `<kind>-<index in spec.sinks>`.
pub fn sink_name(spec: &eddy_api::spec::SinkSpec, index: usize) -> String {
    let kind = if spec.kafka.is_some() {
        "kafka"
    } else if spec.postgres.is_some() {
        "postgres"
    } else if spec.file.is_some() {
        "file"
    } else if spec.stderr.is_some() {
        "stderr"
    } else {
        "stdout"
    };
    format!("{kind}-{index}")
}
