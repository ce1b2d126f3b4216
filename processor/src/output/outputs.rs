//! Everything a run writes to: the result sinks and the late and invalid
//! outputs, each a [`Sink`], and the Kafka transaction transactional topics
//! share. A checkpoint goes through them all in the same three steps
//! (`prepare`, `snapshot`, `committed`; see `output::sink`).

use std::{collections::BTreeMap, sync::MutexGuard, time::Instant};

use super::{
    sink::{self, Item, Opening, Pushed, Role, Sink},
    staged::StagedResult,
    transaction::{self, Shared, Transaction, HELD_LIMIT},
};
use crate::{job::JobPlan, metrics::SinkFigures};

/// Records a sink may buffer before the run loop stops to write them
/// (back-pressure: a slow database slows consumption).
const BACKLOG: usize = 2_000;

/// A sink, with its flush figures when it writes over the network.
struct Opened {
    sink: Box<dyn Sink>,
    figures: Option<SinkFigures>,
}

impl Opened {
    fn new(sink: Box<dyn Sink>, name: String) -> Self {
        let figures = sink.remote().then(|| SinkFigures::new(name));
        Self { sink, figures }
    }

    /// Runs a flush of the sink, timed when it is remote (a push that
    /// waited for nothing is no flush: only its failure counts).
    async fn timed(&mut self, how: Flush) -> anyhow::Result<()> {
        let started = Instant::now();
        let flushing = match how {
            Flush::Pushed => match self.sink.push() {
                Pushed::Flushing(flushing) => flushing,
                Pushed::Looked(found) => {
                    if let (Err(_), Some(f)) = (&found, &mut self.figures) {
                        f.failed();
                    }
                    return found;
                }
            },
            Flush::Written => self.sink.flush(),
            Flush::Durable => self.sink.sync(),
            Flush::Prepared(id) => self.sink.prepare(id),
        };
        let flushed = flushing.await;
        if let Some(f) = &mut self.figures {
            f.record(started.elapsed(), flushed.is_err());
        }
        flushed
    }
}

/// How far a flush goes.
#[derive(Clone, Copy)]
enum Flush {
    /// What a sink buffers on its way ([`Sink::push`]).
    Pushed,
    /// What a sink buffers written.
    Written,
    /// And durable.
    Durable,
    /// Prepared for checkpoint `id`.
    Prepared(u64),
}

/// Where everything goes.
pub struct Outputs {
    /// The result sinks, in spec order.
    results: Vec<Opened>,
    late: Opened,
    invalid: Opened,
    /// The transaction the transactional Kafka outputs write in.
    pub transaction: Option<Shared>,
}

impl Outputs {
    /// Opens the sinks the plan names, resumed where a restored checkpoint
    /// left them (file sinks cut to their recorded lengths; to nothing on a
    /// fresh start), so every record is in them exactly once.
    pub fn open(
        plan: &JobPlan,
        positions: &BTreeMap<String, u64>,
        transaction: Option<Shared>,
    ) -> anyhow::Result<Self> {
        let at = Opening {
            job: &plan.id,
            positions,
            transaction: transaction.as_ref(),
        };
        let results = match (plan.stage, &plan.partials) {
            (crate::partials::Stage::Partial, Some(partials)) => {
                vec![Opened::new(
                    partials_sink(partials, plan.partition_count, plan.checkpoints.epoch)?,
                    "partials".into(),
                )]
            }
            _ => plan
                .sinks
                .iter()
                .enumerate()
                .map(|(i, spec)| {
                    let opened = sink::open(spec, Role::Results, &at)?;
                    Ok(Opened::new(opened, sink_name(spec, i)))
                })
                .collect::<anyhow::Result<_>>()?,
        };
        let records = |spec, kind| -> anyhow::Result<Opened> {
            Ok(Opened::new(
                sink::open(spec, Role::Records(kind), &at)?,
                kind.to_string(),
            ))
        };
        Ok(Self {
            results,
            late: records(&plan.late_output, "late")?,
            invalid: records(&plan.invalid_output, "invalid")?,
            transaction,
        })
    }

    /// Outputs on sinks already open (benchmarks, tests).
    pub fn of(results: Vec<Box<dyn Sink>>, late: Box<dyn Sink>, invalid: Box<dyn Sink>) -> Self {
        let opened = |(i, s): (usize, Box<dyn Sink>)| Opened::new(s, format!("sink-{i}"));
        Self {
            results: results.into_iter().enumerate().map(opened).collect(),
            late: Opened::new(late, "late".into()),
            invalid: Opened::new(invalid, "invalid".into()),
            transaction: None,
        }
    }

    /// Every sink: results, then late and invalid records.
    fn all(&mut self) -> impl Iterator<Item = &mut Opened> {
        let records = [&mut self.late, &mut self.invalid];
        self.results.iter_mut().chain(records)
    }

    /// Writes a result to every result sink.
    pub fn write_result(&mut self, r: &StagedResult) -> anyhow::Result<()> {
        let item = Item {
            id: &r.id,
            line: &r.line,
            result: r.result.as_ref(),
            names: &r.names,
        };
        self.results
            .iter_mut()
            .try_for_each(|o| o.sink.write(&item))
    }

    /// Writes watermarks of a two-phase job's first stage (to the
    /// partials sink, its only result sink).
    pub fn write_marks(&mut self, marks: &[crate::partials::Mark]) -> anyhow::Result<()> {
        self.results.iter_mut().try_for_each(|o| o.sink.mark(marks))
    }

    /// Writes a late record.
    pub fn write_late(&mut self, id: &str, line: &[u8]) -> anyhow::Result<()> {
        self.late.sink.write(&record(id, line))
    }

    /// Writes an invalid record.
    pub fn write_invalid(&mut self, id: &str, line: &[u8]) -> anyhow::Result<()> {
        self.invalid.sink.write(&record(id, line))
    }

    /// The Kafka transaction, if there is one.
    pub(crate) fn transaction(&self) -> Option<MutexGuard<'_, Transaction>> {
        self.transaction.as_deref().map(transaction::lock)
    }

    /// Whether the Kafka transaction holds so many results that the run
    /// loop must wait for the checkpoint in flight to commit.
    pub(crate) fn held_too_long(&self) -> bool {
        self.transaction().is_some_and(|t| t.held() >= HELD_LIMIT)
    }

    /// Writes what every sink buffers, and waits for it.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        self.flush_all(Flush::Written).await
    }

    /// Sends what every sink buffers on its way, waiting only where a sink
    /// must (the run loop's periodic push: [`Sink::push`]).
    pub async fn push(&mut self) -> anyhow::Result<()> {
        self.flush_all(Flush::Pushed).await
    }

    /// Writes what every sink buffers, made durable (files synced).
    pub async fn flush_durably(&mut self) -> anyhow::Result<()> {
        self.flush_all(Flush::Durable).await
    }

    async fn flush_all(&mut self, how: Flush) -> anyhow::Result<()> {
        for o in self.all() {
            o.timed(how).await?;
        }
        Ok(())
    }

    /// Writes the sinks that buffer too much.
    pub(crate) async fn relieve(&mut self) -> anyhow::Result<()> {
        for o in self.all() {
            if o.sink.backlog() >= BACKLOG {
                o.timed(Flush::Written).await?;
            }
        }
        Ok(())
    }

    /// Before checkpoint `id`'s cut: every sink prepared (what was written
    /// is durable: a restore will not emit it again), then the checkpoint
    /// put into the Kafka transaction.
    pub(crate) async fn prepare(&mut self, id: u64) -> anyhow::Result<()> {
        self.flush_all(Flush::Prepared(id)).await?;
        self.transaction().map_or(Ok(()), |mut t| t.precommit(id))
    }

    /// What the checkpoint records of the sinks: their positions by name.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        let records = [&self.late, &self.invalid];
        self.results
            .iter()
            .chain(records)
            .filter_map(|o| o.sink.snapshot())
            .collect()
    }

    /// Checkpoint `id` is in the store: every sink told, and the Kafka
    /// transaction committed. Returns the partitions the transaction
    /// recorded `id` for, `None` if it had nothing to commit.
    pub(crate) fn committed(&mut self, id: u64) -> anyhow::Result<Option<Vec<u32>>> {
        for o in self.all() {
            o.sink.committed(id)?;
        }
        self.transaction().map_or(Ok(None), |mut t| t.commit(id))
    }

    /// Flush figures of the remote sinks, for `/metrics`.
    pub fn figures(&self) -> Vec<SinkFigures> {
        let records = [&self.late, &self.invalid];
        self.results
            .iter()
            .chain(records)
            .filter_map(|o| o.figures.clone())
            .collect()
    }
}

/// A late or invalid record as a sink takes it.
fn record<'a>(id: &'a str, line: &'a [u8]) -> Item<'a> {
    Item {
        id,
        line,
        result: None,
        names: &[],
    }
}

/// A result sink's name in metrics: `<kind>-<index in spec.sinks>`.
pub fn sink_name(spec: &eddy_api::spec::SinkSpec, index: usize) -> String {
    format!("{}-{index}", sink::kind_of(spec))
}

#[cfg(test)]
#[path = "outputs_tests.rs"]
mod tests;

/// The first stage's one result sink: the partials topic.
#[cfg(feature = "kafka")]
fn partials_sink(
    partials: &eddy_api::spec::ResolvedPartials,
    partitions: u32,
    epoch: u64,
) -> anyhow::Result<Box<dyn Sink>> {
    Ok(Box::new(crate::partials::sink::PartialsSink::open(
        partials, partitions, epoch,
    )?))
}

#[cfg(not(feature = "kafka"))]
fn partials_sink(
    _: &eddy_api::spec::ResolvedPartials,
    _: u32,
    _: u64,
) -> anyhow::Result<Box<dyn Sink>> {
    Err(crate::without::missing("kafka"))
}
