//! The processing a run does, whatever the source and the sinks: records
//! in, windows fired, results written.

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use eddy_api::spec::LateDataPolicy;

use super::{Ending, PartitionReport, Report};
use crate::{
    checkpoint::{self, Cut, SourcePosition},
    engine::{partition_of, Engine, Outcome, WindowResult},
    job::{JobPlan, SourcePlan},
    output::{outputs::Outputs, record, records::record_id},
    progress::Counters,
    source::{
        file::FileReader, generator::Generator, http::HttpIngest, kafka::KafkaReader, Batch,
        Origin, Payload, Source, SourceRecord,
    },
    state::StateStore,
};

/// Results held before they are written, at most (see `Pipeline::advance`).
const FIRE_CHUNK: usize = 4096;

/// The processing a run does, source-agnostic: records in, results out.
pub struct Pipeline {
    pub(super) plan: JobPlan,
    /// `<namespace>/<name>`, computed once.
    pub(super) job_path: String,
    pub(super) engine: Engine,
    pub(super) counters: Counters,
    pub(super) invalid_by_kind: BTreeMap<&'static str, u64>,
    pub(super) fired: Vec<WindowResult>,
    /// Results that revised an earlier one.
    pub(super) revisions: u64,
    encoder: record::ResultEncoder,
}

impl Pipeline {
    /// A pipeline with its state in `state_dir`, and the plan's source.
    pub async fn new(
        plan: JobPlan,
        state_dir: &Path,
        started: Instant,
    ) -> anyhow::Result<(Self, Source)> {
        let source = match &plan.source {
            SourcePlan::Generator(g) => {
                Source::Generator(Box::new(Generator::new(g.clone(), started)?))
            }
            SourcePlan::File(f) => Source::File(FileReader::open(f.clone())?),
            SourcePlan::Kafka(k) => Source::Kafka(Box::new(KafkaReader::open(k.clone())?)),
            SourcePlan::Http(h) => {
                let ingest = HttpIngest::open(h.clone()).await?;
                tracing::info!("HTTP ingest on http://{}/events", ingest.addr);
                eprintln!("HTTP ingest on http://{}/events", ingest.addr);
                Source::Http(Box::new(ingest))
            }
        };
        let store = StateStore::open(state_dir, &plan.engine.partitions, plan.memory_budget)?;
        let pipeline = Self {
            engine: Engine::new(plan.engine.clone(), store),
            counters: Counters::default(),
            invalid_by_kind: BTreeMap::new(),
            fired: Vec::new(),
            revisions: 0,
            encoder: record::ResultEncoder::default(),
            job_path: plan.id.path(),
            plan,
        };
        Ok((pipeline, source))
    }

    /// The part of a checkpoint that pauses processing: results out,
    /// sinks flushed, changed state encoded, with the source position.
    /// The snapshot returned writes and links the state off the run loop.
    pub async fn checkpoint(
        &mut self,
        id: u64,
        source: SourcePosition,
        outputs: &mut Outputs,
        local: &Path,
    ) -> anyhow::Result<checkpoint::Snapshot> {
        let started = Instant::now();
        self.emit(outputs)?;
        outputs.sync_files()?;
        // Results emitted before the cut must be in the tables before the
        // cut counts: a restore will not emit them again.
        outputs.flush_tables().await?;
        outputs.precommit(id)?;
        let (parts, landing) = self.engine.hand_over()?;
        let cut = Cut {
            id,
            job: self.job_path.clone(),
            source,
            max_event_times: self.engine.max_event_times(),
            watermark: Some(self.engine.watermark()).filter(|w| *w != i64::MIN),
            sink_lengths: outputs.file_lengths(),
            epoch: self.plan.checkpoints.epoch,
        };
        Ok(checkpoint::Snapshot::new(
            cut,
            parts,
            Some(landing),
            local,
            started,
        ))
    }

    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Takes a batch, moving the watermark after every record so that
    /// whether an event is late never depends on batch boundaries; then
    /// catches up with the source clock and writes what fired.
    pub fn take(&mut self, batch: Batch, clock: i64, outputs: &mut Outputs) -> anyhow::Result<()> {
        for record in batch.records {
            self.counters.events += 1;
            let ingest_ms = record.ingest_ms;
            self.take_one(record, outputs)?;
            self.advance(ingest_ms, outputs)?;
        }
        for partition in batch.finished {
            self.engine.finish_partition(partition);
        }
        self.idle(clock, outputs)
    }

    /// No records: the source clock alone may move the watermark (idle
    /// partitions).
    pub fn idle(&mut self, clock: i64, outputs: &mut Outputs) -> anyhow::Result<()> {
        self.advance(clock, outputs)?;
        self.emit(outputs)
    }

    /// The input has ended: every window fires.
    pub fn finish(&mut self, outputs: &mut Outputs) -> anyhow::Result<()> {
        while self.engine.finish_some(&mut self.fired, FIRE_CHUNK)? {
            self.emit(outputs)?;
        }
        self.emit(outputs)
    }

    /// Moves the engine to `clock`. What fires is written once a chunk of
    /// it is ready (else at the end of the batch): a window that ends for
    /// millions of keys at once never holds all their results in memory.
    fn advance(&mut self, clock: i64, outputs: &mut Outputs) -> anyhow::Result<()> {
        while self
            .engine
            .advance_some(clock, &mut self.fired, FIRE_CHUNK)?
        {
            self.emit(outputs)?;
        }
        Ok(())
    }

    fn take_one(&mut self, record: SourceRecord, outputs: &mut Outputs) -> anyhow::Result<()> {
        let SourceRecord {
            payload,
            ingest_ms,
            partition,
            origin,
        } = record;
        let extracted = match payload {
            Payload::Json(value) => self.plan.extractor.extract(value),
            Payload::Generated(g) => self.plan.extractor.extract_generated(g),
            Payload::Sparse(s) => self.plan.extractor.extract_sparse(s),
            Payload::Unreadable { raw, reason } => {
                self.invalid(reason.kind(), partition);
                return self.write_invalid(outputs, &origin, |job, at| {
                    record::unreadable_line(job, &raw, &reason.to_string(), at)
                });
            }
        };
        let mut event = match extracted {
            Ok(event) => event,
            Err((reason, value)) => {
                self.invalid(reason.kind(), partition);
                return self.reject(outputs, &origin, &value, &reason);
            }
        };
        let partition =
            partition.unwrap_or_else(|| partition_of(&event.key, self.plan.partition_count));
        if !self.engine.owns(partition) {
            self.counters.not_owned += 1;
            return Ok(());
        }
        match self.plan.skew.check(event.time_ms, ingest_ms) {
            Ok(time_ms) => {
                let clamped = time_ms != event.time_ms;
                self.engine
                    .record_skew(partition, event.time_ms, ingest_ms, clamped);
                event.time_ms = time_ms;
            }
            Err(reason) => {
                self.engine
                    .record_skew_rejected(partition, event.time_ms, ingest_ms);
                self.count_invalid(reason.kind());
                return self.reject(outputs, &origin, &event.record.to_value(), &reason);
            }
        }
        match self.engine.process(partition, &event, ingest_ms)? {
            Outcome::Accepted => self.counters.accepted += 1,
            Outcome::Late {
                lateness_ms,
                watermark,
            } => {
                self.counters.late += 1;
                if self.plan.late_policy == LateDataPolicy::Output {
                    let text = origin.to_string();
                    let line = record::late_line(
                        &self.plan.id.name,
                        &event.record.to_value(),
                        lateness_ms,
                        watermark,
                        &text,
                    );
                    let id = record_id(&self.job_path, "late", &text);
                    outputs.late.write(&id, &line)?;
                }
            }
            Outcome::Invalid(reason) => {
                self.count_invalid(reason.kind());
                self.reject(outputs, &origin, &event.record.to_value(), &reason)?;
            }
        }
        Ok(())
    }

    /// Writes an invalid event with the reason it was rejected.
    fn reject(
        &self,
        outputs: &mut Outputs,
        origin: &Origin,
        event: &serde_json::Value,
        reason: &dyn std::fmt::Display,
    ) -> anyhow::Result<()> {
        self.write_invalid(outputs, origin, |job, at| {
            record::invalid_line(job, event, &reason.to_string(), at)
        })
    }

    /// Writes the invalid record `line` makes of the job name and the
    /// origin, identified by that origin.
    fn write_invalid(
        &self,
        outputs: &mut Outputs,
        origin: &Origin,
        line: impl FnOnce(&str, &str) -> Vec<u8>,
    ) -> anyhow::Result<()> {
        let origin = origin.to_string();
        let id = record_id(&self.job_path, "invalid", &origin);
        let line = line(&self.plan.id.name, &origin);
        Ok(outputs.invalid.write(&id, &line)?)
    }

    fn count_invalid(&mut self, kind: &'static str) {
        self.counters.invalid += 1;
        *self.invalid_by_kind.entry(kind).or_default() += 1;
    }

    /// Counts an invalid record the engine never saw.
    fn invalid(&mut self, kind: &'static str, partition: Option<u32>) {
        self.count_invalid(kind);
        if let Some(p) = partition {
            self.engine.record_invalid(p);
        }
    }

    fn emit(&mut self, outputs: &mut Outputs) -> anyhow::Result<()> {
        for result in self.fired.drain(..) {
            let w = result.window;
            let id = record::result_id(&self.plan.id, &result.key, w.start, w.end);
            let line = self.encoder.line(&self.plan.id, &id, &result);
            for sink in &mut outputs.results {
                sink.write_line(&line)
                    .map_err(|e| anyhow::anyhow!("writing to {}: {e}", sink.name()))?;
            }
            for table in &mut outputs.tables {
                table.push(&self.plan.id, &id, &result);
            }
            for topic in &mut outputs.topics {
                topic.push(&id, &line);
            }
            self.counters.windows_emitted += 1;
            self.revisions += u64::from(result.revision > 1);
        }
        Ok(())
    }

    /// What the run did, with state sizes.
    pub fn report(mut self, ending: Ending, elapsed: Duration) -> anyhow::Result<Report> {
        let sizes: BTreeMap<u32, u64> = self.engine.state_sizes()?.into_iter().collect();
        let partitions = self
            .engine
            .stats()
            .iter()
            .map(|s| PartitionReport {
                partition: s.partition,
                accepted: s.accepted,
                late: s.late,
                late_updates: s.late_updates,
                invalid: s.invalid,
                lateness_p50_ms: s.lateness_quantile(0.5),
                lateness_p99_ms: s.lateness_quantile(0.99),
                state_bytes: sizes.get(&s.partition).copied().unwrap_or(0),
                max_ahead_ms: s.skew.max_ahead_ms,
                skew_rejected: s.skew.rejected,
                skew_clamped: s.skew.clamped,
                hot_keys: s
                    .hot_keys(3)
                    .into_iter()
                    .map(|h| (h.key, h.share))
                    .collect(),
            })
            .collect();
        Ok(Report {
            ending,
            counters: self.counters,
            invalid_by_kind: self.invalid_by_kind,
            open_windows: self.engine.open_windows(),
            expired_windows: self.engine.counters().expired_windows,
            elapsed,
            partitions,
        })
    }
}
