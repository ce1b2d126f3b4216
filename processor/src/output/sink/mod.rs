//! Sinks: where results, late records and invalid records go. Every kind is
//! one [`Sink`], opened by [`open`], the one place that knows the kinds:
//! adding a sink is its own file, its field in the spec and a line there.
//!
//! A sink takes part in checkpoints through three calls, as a stateful
//! operator does in Arroyo or Flink's two-phase-commit sinks:
//! - [`Sink::prepare`] before the checkpoint's cut: everything written so
//!   far is made durable (files synced, rows and messages acknowledged), or
//!   put into the checkpoint's transaction, because a restore of this
//!   checkpoint will not produce it again;
//! - [`Sink::snapshot`]: what the checkpoint records to resume the sink
//!   exactly there (a file's length, to cut it back to on restore);
//! - [`Sink::committed`]: the checkpoint is complete in the store.
//!
//! The Kafka transaction that transactional topics share is the
//! checkpoint's other participant (see `output::transaction`).

#[cfg(feature = "kafka")]
pub mod kafka;
pub mod lines;
#[cfg(feature = "postgres")]
pub mod postgres;

use std::{future::Future, pin::Pin, sync::Arc};

use eddy_api::spec::SinkSpec;

use super::{record::JobId, transaction::Shared};
use crate::engine::WindowResult;

/// A sink's flush: writing what it buffers, and waiting for it.
pub type Flushing<'a> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>>;

/// What a sink's [`Sink::push`] did.
pub enum Pushed<'a> {
    /// Writes what it buffers and waits for it: a flush (timed as one).
    Flushing(Flushing<'a>),
    /// Waited for nothing (its writer sends on its own): the failures
    /// found so far.
    Looked(anyhow::Result<()>),
}

/// A flush that has nothing to wait for.
pub fn done<'a>(outcome: anyhow::Result<()>) -> Flushing<'a> {
    Box::pin(std::future::ready(outcome))
}

/// One record for a sink: its id (a result id, or a late or invalid
/// record's), its JSON line, and for a result its fields, kept when some
/// sink asked for them ([`wants_fields`]).
pub struct Item<'a> {
    pub id: &'a str,
    pub line: &'a [u8],
    pub result: Option<&'a WindowResult>,
    /// The names of the result's aggregates, in the order of its values.
    pub names: &'a [Arc<str>],
}

/// A destination of results or of late or invalid records.
pub trait Sink: Send {
    /// For messages: `file out.jsonl`, `postgres table results`, ...
    fn name(&self) -> String;

    /// Takes a record; a sink that buffers holds it until [`Sink::flush`].
    fn write(&mut self, item: &Item<'_>) -> anyhow::Result<()>;

    /// Watermarks of a two-phase job's first stage, after the results
    /// they cover: only the partials sink sends them on.
    fn mark(&mut self, marks: &[crate::partials::Mark]) -> anyhow::Result<()> {
        let _ = marks;
        Ok(())
    }

    /// Records buffered and not yet written: the run loop flushes a sink
    /// that holds too many (back-pressure from a slow destination).
    fn backlog(&self) -> usize {
        0
    }

    /// Whether it writes over the network; its flushes are timed for
    /// `/metrics`.
    fn remote(&self) -> bool {
        false
    }

    /// Writes what it buffers and waits until the destination has it.
    fn flush(&mut self) -> Flushing<'_>;

    /// The run loop's push, every second, so that results show within
    /// about that: what it buffers on its way, failures reported. A sink
    /// whose writer sends on its own (a Kafka producer, within its
    /// `linger.ms`) need not wait for it: that wait would stall the run
    /// loop, with both stages of a two-phase job. For most sinks, a flush.
    fn push(&mut self) -> Pushed<'_> {
        Pushed::Flushing(self.flush())
    }

    /// Writes what it buffers and makes it durable (a file synced to
    /// disk); for most sinks, a flush.
    fn sync(&mut self) -> Flushing<'_> {
        self.flush()
    }

    /// Before checkpoint `id`'s cut: everything written so far made
    /// durable, or put into the checkpoint's transaction.
    fn prepare(&mut self, id: u64) -> Flushing<'_> {
        let _ = id;
        self.sync()
    }

    /// What checkpoints record of it: a position to resume at, by name
    /// (a file's byte length, by path).
    fn snapshot(&self) -> Option<(String, u64)> {
        None
    }

    /// Checkpoint `id` is complete in the store.
    fn committed(&mut self, id: u64) -> anyhow::Result<()> {
        let _ = id;
        Ok(())
    }
}

/// What a sink is opened for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Role {
    Results,
    /// Late or invalid records (`late` or `invalid`).
    Records(&'static str),
}

/// What opening a sink may need besides its spec.
pub struct Opening<'a> {
    pub job: &'a JobId,
    /// Positions a restored checkpoint recorded ([`Sink::snapshot`]).
    pub positions: &'a std::collections::BTreeMap<String, u64>,
    /// The job's Kafka transaction, for transactional topics.
    pub transaction: Option<&'a Shared>,
}

/// Opens the sink `spec` names, for `role`: the one registration of sink
/// kinds.
pub fn open(spec: &SinkSpec, role: Role, at: &Opening<'_>) -> anyhow::Result<Box<dyn Sink>> {
    if let Some(k) = &spec.kafka {
        return kafka_sink(k, at);
    }
    if let Some(pg) = &spec.postgres {
        return postgres_sink(pg, role, at);
    }
    if let Some(f) = &spec.file {
        let length = at.positions.get(&f.path).copied().unwrap_or(0);
        return Ok(Box::new(lines::LineSink::file(&f.path, length)?));
    }
    Ok(Box::new(lines::LineSink::stream(spec)?))
}

/// A sink kind's name: in metrics (`<kind>-<index>`) and messages.
pub fn kind_of(spec: &SinkSpec) -> &'static str {
    if spec.kafka.is_some() {
        "kafka"
    } else if spec.postgres.is_some() {
        "postgres"
    } else if spec.file.is_some() {
        "file"
    } else if spec.stderr.is_some() {
        "stderr"
    } else {
        "stdout"
    }
}

/// Whether a result sink of this spec writes a result's fields, not only
/// its line (a table's columns).
pub fn wants_fields(spec: &SinkSpec) -> bool {
    spec.postgres.is_some()
}

#[cfg(feature = "kafka")]
fn kafka_sink(spec: &eddy_api::spec::KafkaSink, at: &Opening<'_>) -> anyhow::Result<Box<dyn Sink>> {
    Ok(Box::new(kafka::KafkaSink::open_spec(spec, at.transaction)?))
}

#[cfg(not(feature = "kafka"))]
fn kafka_sink(_: &eddy_api::spec::KafkaSink, _: &Opening<'_>) -> anyhow::Result<Box<dyn Sink>> {
    Err(crate::without::missing("kafka"))
}

#[cfg(feature = "postgres")]
fn postgres_sink(
    spec: &eddy_api::spec::PostgresSink,
    role: Role,
    at: &Opening<'_>,
) -> anyhow::Result<Box<dyn Sink>> {
    Ok(match role {
        Role::Results => Box::new(postgres::PostgresSink::open(spec, at.job)?),
        Role::Records(kind) => Box::new(postgres::RecordTable::open(spec, kind)?),
    })
}

#[cfg(not(feature = "postgres"))]
fn postgres_sink(
    _: &eddy_api::spec::PostgresSink,
    _: Role,
    _: &Opening<'_>,
) -> anyhow::Result<Box<dyn Sink>> {
    Err(crate::without::missing("postgres"))
}
