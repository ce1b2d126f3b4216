//! The run loop: source → extraction → partition → skew guard → engine →
//! sinks, with a progress line every second, until the source ends or a
//! stop is asked.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use eddy_api::spec::LateDataPolicy;
use tokio::sync::watch;
use tracing::Instrument;

mod figures;

use crate::{
    admin::{Admin, CheckpointInfo, Command, Status},
    checkpoint::{self, Cut, Select, SourcePosition, Store},
    engine::{partition_of, Engine, Outcome, WindowResult},
    job::{JobPlan, Seed, SourcePlan},
    metrics::{CheckpointFigures, Publisher, SinkFigures},
    output::{
        kafka::{self, KafkaSink, Shared},
        postgres::{self, PostgresSink},
        record,
        records::{record_id, RecordSink},
        sink::LineSink,
        transaction::{restore_bound, Transaction, HELD_LIMIT},
    },
    progress::{self, Counters},
    source::{
        file::FileReader, generator::Generator, http::HttpIngest, kafka::KafkaReader, Batch,
        Origin, Payload, Poll, Source, SourceRecord,
    },
    state::StateStore,
};

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
                    tables.push(PostgresSink::new(
                        postgres::url_of(pg)?,
                        pg.table.clone(),
                        pg.create_table,
                    ));
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
    fn transaction(&self) -> Option<MutexGuard<'_, Transaction>> {
        self.transaction.as_deref().map(kafka::lock)
    }

    /// Puts checkpoint `id` into the Kafka transaction, if there is one.
    fn precommit(&mut self, id: u64) -> anyhow::Result<()> {
        self.transaction().map_or(Ok(()), |mut t| t.precommit(id))
    }

    /// Commits the Kafka transaction of checkpoint `id`, now in the store;
    /// false if there was nothing to commit.
    fn commit(&mut self, id: u64) -> anyhow::Result<bool> {
        self.transaction().map_or(Ok(false), |mut t| t.commit(id))
    }

    /// Whether the Kafka transaction holds so many results that the run
    /// loop must wait for the checkpoint in flight to commit.
    fn held_too_long(&self) -> bool {
        self.transaction().is_some_and(|t| t.held() >= HELD_LIMIT)
    }

    /// The sinks that take JSON lines: results, then late and invalid
    /// records when they go to lines.
    fn line_sinks(&mut self) -> impl Iterator<Item = &mut LineSink> {
        let records = [self.late.lines(), self.invalid.lines()];
        self.results.iter_mut().chain(records.into_iter().flatten())
    }

    /// Flushes every line sink and syncs files to disk.
    fn sync_files(&mut self) -> anyhow::Result<()> {
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
    async fn relieve(&mut self) -> anyhow::Result<()> {
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

    fn flush(&mut self) -> anyhow::Result<()> {
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

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The source ended and every window was emitted.
    Finished,
    /// A stop was asked; open windows were not emitted.
    Stopped,
}

/// What a run did.
#[derive(Debug)]
pub struct Report {
    pub ending: Ending,
    pub counters: Counters,
    /// Invalid records by kind of problem.
    pub invalid_by_kind: BTreeMap<&'static str, u64>,
    pub open_windows: usize,
    pub expired_windows: u64,
    pub elapsed: Duration,
    pub partitions: Vec<PartitionReport>,
}

/// Per-partition figures at the end of a run.
#[derive(Debug)]
pub struct PartitionReport {
    pub partition: u32,
    pub accepted: u64,
    pub late: u64,
    pub late_updates: u64,
    pub invalid: u64,
    pub lateness_p50_ms: Option<f64>,
    pub lateness_p99_ms: Option<f64>,
    pub state_bytes: u64,
    pub max_ahead_ms: i64,
    pub skew_rejected: u64,
    pub skew_clamped: u64,
    /// Heaviest keys with their share of the partition's recent events.
    pub hot_keys: Vec<(String, f64)>,
}

impl PartitionReport {
    /// One line for humans.
    pub fn line(&self) -> String {
        let q = |v: Option<f64>| {
            v.map_or("-".into(), |ms| {
                // Whole seconds above 10 s: the sketch is accurate to 1%.
                let ms = if ms >= 10_000.0 {
                    (ms / 1000.0).round() * 1000.0
                } else {
                    ms.round()
                };
                humantime::format_duration(Duration::from_millis(ms as u64)).to_string()
            })
        };
        let hot: Vec<String> = self
            .hot_keys
            .iter()
            .map(|(k, share)| format!("{k} {:.0}%", share * 100.0))
            .collect();
        let skew = if self.skew_rejected + self.skew_clamped > 0 || self.max_ahead_ms > 0 {
            format!(
                ", skew: up to {} ahead, {} rejected, {} clamped",
                q(Some(self.max_ahead_ms as f64)),
                self.skew_rejected,
                self.skew_clamped
            )
        } else {
            String::new()
        };
        format!(
            "partition {}: {} events, {} late (lateness p50 {}, p99 {}), {} revised by late events, {} invalid, state {} bytes, hot keys: {}{skew}",
            self.partition,
            self.accepted,
            self.late,
            q(self.lateness_p50_ms),
            q(self.lateness_p99_ms),
            self.late_updates,
            self.invalid,
            self.state_bytes,
            if hot.is_empty() { "-".into() } else { hot.join(", ") },
        )
    }
}

/// Runs a planned job with its state in `state_dir` until its source ends
/// or `stop` turns true: restores the newest complete checkpoint first,
/// checkpoints periodically in the background, and takes a last checkpoint
/// when stopped. Progress lines go to `progress_out` once a second.
/// The run loop's ends of the HTTP endpoints it serves, if any.
#[derive(Default)]
pub struct Endpoints {
    pub admin: Option<Admin>,
    pub metrics: Option<Publisher>,
}

pub async fn run(
    plan: JobPlan,
    state_dir: &Path,
    mut stop: watch::Receiver<bool>,
    endpoints: Endpoints,
    mut progress_out: impl FnMut(&str),
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let Endpoints { mut admin, metrics } = endpoints;
    let store = plan.checkpoints.store()?;
    // With a Kafka transaction, the checkpoint to restore is the one whose
    // results were committed last, even if a newer one is in the store.
    let (transaction, bound) = match &plan.transaction {
        Some(t) => {
            let (transaction, committed) = Transaction::open(t)?;
            let (bound, warning) = restore_bound(&committed);
            if let Some(w) = warning {
                progress_out(&w);
            }
            (Some(Arc::new(Mutex::new(transaction))), Some(bound))
        }
        None => (None, None),
    };
    let epoch = plan.checkpoints.epoch;
    let own = Select {
        max_id: bound,
        epoch: Some(epoch),
    };
    let restore_started = Instant::now();
    let mut restored = restore_all(&store, &plan.engine.partitions, state_dir, own).await?;
    // No checkpoint of its own (and never started over): the job may start
    // from another job's checkpoint.
    let mut seeded = false;
    if restored.cut.is_none() && epoch == 0 {
        if let Some((seed_store, seed)) = plan.checkpoints.seed_store()? {
            for line in &restored.lines {
                progress_out(line);
            }
            restored = restore_seed(&seed_store, seed, &plan, state_dir).await?;
            seeded = true;
        }
    }
    for line in &restored.lines {
        progress_out(line);
    }
    let restored_id = restored.cut.as_ref().map_or(0, |c| c.id);
    if let Some(b) = bound.filter(|b| *b > restored_id && !seeded) {
        progress_out(&format!(
            "checkpoint {b}, whose results the Kafka transaction committed, is not usable: \
             results after checkpoint {restored_id} will be committed again"
        ));
    }
    let empty = BTreeMap::new();
    let mut outputs = Outputs::open(
        &plan,
        restored.cut.as_ref().map_or(&empty, |c| &c.sink_lengths),
        transaction,
    )?;
    let mut checkpoints = Checkpoints::new(&plan, store, state_dir).await?;
    if bound == Some(0) && checkpoints.next_id > 1 && !seeded {
        progress_out(
            "the Kafka transaction never committed a checkpoint of these partitions: \
             starting from the beginning",
        );
    }
    if bound.is_some() && !seeded {
        checkpoints.committed = restored.cut.as_ref().map(|c| c.id);
    }
    let (mut job, mut source) = Pipeline::new(plan, state_dir, started).await?;
    if let Some(cut) = &restored.cut {
        job.engine.restore(&cut.max_event_times, cut.watermark)?;
        source.resume(&cut.source)?;
    }
    let fallbacks = restored.fallbacks;
    checkpoints.figures.restore_seconds = restore_started.elapsed().as_secs_f64();
    checkpoints.figures.restore_fallbacks = fallbacks;
    // Lag counts from the start until a first checkpoint completes, so a
    // job that never completes one is noticed too.
    checkpoints.figures.last_completed_ms = Some(crate::source::wall_clock_ms());
    let mut meter = figures::Meter::new();
    let publish_figures = |job: &Pipeline,
                           meter: &figures::Meter,
                           checkpoints: &Checkpoints,
                           outputs: &Outputs,
                           source: &Source,
                           admin: &Option<Admin>| {
        if let Some(m) = &metrics {
            m.publish(job.snapshot(meter, &checkpoints.figures, outputs, source));
        }
        if let Some(a) = admin {
            let stats = job.stats();
            a.status.send_modify(|s| s.stats = stats);
        }
    };
    publish_figures(&job, &meter, &checkpoints, &outputs, &source, &admin);
    let hold = job.plan.hold_when_finished;
    let mut paused = false;
    let mut draining = false;
    // The input ended and every window is out; only with `hold`.
    let mut finished = false;
    publish(&admin, &checkpoints, (paused, finished), fallbacks);
    let mut tick = Tick::new(started);
    let ending = loop {
        if let Source::Http(h) = &source {
            h.mark_durable(checkpoints.durable_http);
            if *stop.borrow() && !draining {
                // The application is going away: take no more events, finish
                // what is buffered, and emit every window.
                h.close();
                draining = true;
                progress_out("draining HTTP ingest: no new events, finishing the buffered ones");
            }
        }
        if *stop.borrow() && finished {
            // Checkpointed when it finished; nothing changed since.
            break Ending::Finished;
        }
        if *stop.borrow() && !draining {
            // A last checkpoint, so a restart resumes exactly here; after a
            // final checkpoint nothing changed since, and the operator may
            // already run the partitions elsewhere under the next id.
            checkpoints.wait(&mut progress_out, &mut outputs).await?;
            if !paused {
                checkpoints.take(&mut job, &source, &mut outputs).await?;
                checkpoints.wait(&mut progress_out, &mut outputs).await?;
            }
            break Ending::Stopped;
        }
        let mut changed = checkpoints.poll(&mut progress_out, &mut outputs).await?;
        if let Some(a) = admin.as_mut() {
            while let Ok(command) = a.commands.try_recv() {
                changed = true;
                match command {
                    Command::Checkpoint {
                        is_final,
                        id,
                        reply,
                    } => {
                        let answer = match checkpoints.admit(id) {
                            Admit::Take(id) => {
                                checkpoints.next_id = id;
                                checkpoints.take(&mut job, &source, &mut outputs).await
                            }
                            Admit::Again(id) => Ok(id),
                            Admit::Refuse(why) => {
                                let _ = reply.send(Err(why));
                                continue;
                            }
                        }?;
                        paused |= is_final;
                        if is_final {
                            // Not ready from the moment the 202 goes out.
                            a.status.send_modify(|s| s.paused = true);
                        }
                        let _ = reply.send(Ok(answer));
                    }
                    Command::Resume => paused = false,
                }
            }
        }
        if checkpoints.due() && !paused && !finished {
            checkpoints.take(&mut job, &source, &mut outputs).await?;
            changed = true;
        }
        if changed {
            publish(&admin, &checkpoints, (paused, finished), fallbacks);
        }
        if paused || finished {
            // After a final checkpoint: consume nothing until resumed.
            // Finished: nothing left to consume; answer the admin API.
            let waited = Instant::now();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = stop.changed() => {}
            }
            meter.idle(waited.elapsed());
            if tick.due(job.counters.events).is_some() {
                meter.tick();
                if finished {
                    // Its state is final and checkpointed: nothing lags.
                    checkpoints.figures.last_completed_ms = Some(crate::source::wall_clock_ms());
                }
                publish_figures(&job, &meter, &checkpoints, &outputs, &source, &admin);
            }
            continue;
        }
        match source.poll(Instant::now())? {
            Poll::Ready(batch) => {
                job.take(batch, source.clock(), &mut outputs)?;
                let waited = Instant::now();
                outputs.relieve().await?;
                if outputs.held_too_long() {
                    checkpoints.wait(&mut progress_out, &mut outputs).await?;
                }
                meter.backpressure(waited.elapsed());
                tokio::task::yield_now().await;
            }
            Poll::Pending(at) => {
                job.idle(source.clock(), &mut outputs)?;
                let waited = Instant::now();
                tokio::select! {
                    _ = tokio::time::sleep_until(at.min(tick.next).into()) => {}
                    _ = stop.changed() => {}
                }
                meter.idle(waited.elapsed());
            }
            Poll::End => {
                job.finish(&mut outputs)?;
                outputs.flush_tables().await?;
                outputs.sync_files()?;
                if let Source::Http(h) = &source {
                    // Every accepted event is in the written results.
                    h.mark_durable(h.position());
                }
                checkpoints.wait(&mut progress_out, &mut outputs).await?;
                if hold {
                    // The end, kept: a pod started again restores it, finds
                    // its input at the end and nothing left to emit.
                    checkpoints.take(&mut job, &source, &mut outputs).await?;
                    checkpoints.wait(&mut progress_out, &mut outputs).await?;
                    if *stop.borrow() {
                        break Ending::Finished;
                    }
                    finished = true;
                    publish(&admin, &checkpoints, (paused, finished), fallbacks);
                    publish_figures(&job, &meter, &checkpoints, &outputs, &source, &admin);
                    // Said once the endpoints show it.
                    progress_out("finished: every window is out; holding until stopped");
                    continue;
                }
                if outputs.transaction.is_some() {
                    // The last results commit with a checkpoint, like all
                    // others: a crash before the clear below restores it
                    // and has nothing left to write.
                    checkpoints.take(&mut job, &source, &mut outputs).await?;
                    checkpoints.wait(&mut progress_out, &mut outputs).await?;
                }
                // Every window is out: the job's state is spent, and a rerun
                // starts over.
                checkpoints.clear().await?;
                break Ending::Finished;
            }
        }
        if let Some(rate) = tick.due(job.counters.events) {
            progress_out(&progress::line(rate, job.engine.watermark(), &job.counters));
            outputs.flush()?;
            outputs.flush_tables().await?;
            meter.tick();
            publish_figures(&job, &meter, &checkpoints, &outputs, &source, &admin);
        }
    };
    outputs.flush()?;
    job.report(ending, started.elapsed())
}

/// The processing a run does, source-agnostic: records in, results out.
pub struct Pipeline {
    plan: JobPlan,
    /// `<namespace>/<name>`, computed once.
    job_path: String,
    engine: Engine,
    counters: Counters,
    invalid_by_kind: BTreeMap<&'static str, u64>,
    fired: Vec<WindowResult>,
    /// Results that revised an earlier one.
    revisions: u64,
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
            job_path: plan.id.path(),
            plan,
        };
        Ok((pipeline, source))
    }

    /// The synchronous part of a checkpoint: results out, sinks flushed,
    /// state written back and hard-linked, with the source position.
    pub async fn checkpoint(
        &mut self,
        id: u64,
        source: SourcePosition,
        outputs: &mut Outputs,
        local: &Path,
    ) -> anyhow::Result<checkpoint::Pending> {
        self.emit(outputs)?;
        outputs.sync_files()?;
        // Results emitted before the cut must be in the tables before the
        // cut counts: a restore will not emit them again.
        outputs.flush_tables().await?;
        outputs.precommit(id)?;
        self.engine.flush()?;
        let cut = Cut {
            id,
            job: self.job_path.clone(),
            source,
            max_event_times: self.engine.max_event_times(),
            watermark: Some(self.engine.watermark()).filter(|w| *w != i64::MIN),
            sink_lengths: outputs.file_lengths(),
            epoch: self.plan.checkpoints.epoch,
        };
        checkpoint::snapshot(self.engine.store(), cut, local)
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
            self.engine.advance(ingest_ms, &mut self.fired)?;
        }
        for partition in batch.finished {
            self.engine.finish_partition(partition);
        }
        self.idle(clock, outputs)
    }

    /// No records: the source clock alone may move the watermark (idle
    /// partitions).
    pub fn idle(&mut self, clock: i64, outputs: &mut Outputs) -> anyhow::Result<()> {
        self.engine.advance(clock, &mut self.fired)?;
        self.emit(outputs)
    }

    /// The input has ended: every window fires.
    pub fn finish(&mut self, outputs: &mut Outputs) -> anyhow::Result<()> {
        self.engine.finish(&mut self.fired)?;
        self.emit(outputs)
    }

    fn take_one(&mut self, record: SourceRecord, outputs: &mut Outputs) -> anyhow::Result<()> {
        let SourceRecord {
            payload,
            ingest_ms,
            partition,
            origin,
        } = record;
        let value = match payload {
            Payload::Json(value) => value,
            Payload::Unreadable { raw, reason } => {
                self.invalid(reason.kind(), partition);
                return self.write_invalid(outputs, &origin, |job, at| {
                    record::unreadable_line(job, &raw, &reason.to_string(), at)
                });
            }
        };
        let mut event = match self.plan.extractor.extract(value) {
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
                return self.reject(outputs, &origin, &event.record, &reason);
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
                        &event.record,
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
                self.reject(outputs, &origin, &event.record, &reason)?;
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
            let line = record::result_line(&self.plan.id, &id, &result);
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

/// Publishes the run loop's status to the admin API.
/// Publishes the run loop's state; `(paused, finished)`.
fn publish(
    admin: &Option<Admin>,
    checkpoints: &Checkpoints,
    (paused, finished): (bool, bool),
    fallbacks: u64,
) {
    if let Some(a) = admin {
        let stats = a.status.borrow().stats.clone();
        a.status.send_replace(Status {
            stats,
            ready: true,
            paused,
            finished,
            in_flight: checkpoints.in_flight_id(),
            failed: checkpoints.failed,
            restore_fallbacks: fallbacks,
            next_id: checkpoints.next_id,
            completed: checkpoints
                .completed
                .iter()
                .map(|c| CheckpointInfo {
                    id: c.id,
                    time: c.created_at.clone(),
                    duration_ms: c.total_duration.as_millis() as u64,
                    sync_duration_ms: c.sync_duration.as_millis() as u64,
                    bytes_uploaded: c.bytes_uploaded,
                    bytes_total: c.bytes_total,
                })
                .collect(),
        });
    }
}

/// What restoring a processor's partitions found.
struct RestoredAll {
    /// The common checkpoint all partitions were restored to, if any.
    cut: Option<Cut>,
    /// Checkpoints rejected as incomplete or corrupt.
    fallbacks: u64,
    /// What to tell the user.
    lines: Vec<String>,
}

/// Restores every owned partition to one common checkpoint: the newest id
/// every partition has complete and verified (partitions share the source
/// position, so they must resume from the same cut).
#[tracing::instrument(
    name = "restore",
    skip_all,
    fields(partitions = ?partitions, checkpoint = tracing::field::Empty)
)]
async fn restore_all(
    store: &Store,
    partitions: &[u32],
    state_dir: &Path,
    select: Select,
) -> anyhow::Result<RestoredAll> {
    let mut lines = Vec::new();
    let mut found = BTreeMap::new();
    let mut fallbacks = 0;
    for &p in partitions {
        let restored =
            checkpoint::restore(store, p, &crate::state::partition_dir(state_dir, p), select)
                .await?;
        for (id, why) in &restored.rejected {
            lines.push(format!("partition {p}: checkpoint {id} rejected: {why}"));
            fallbacks += 1;
        }
        found.insert(p, restored.manifest);
    }
    let ids: Vec<Option<u64>> = found.values().map(|m| m.as_ref().map(|m| m.id)).collect();
    if ids.iter().all(Option::is_none) {
        return Ok(RestoredAll {
            cut: None,
            fallbacks,
            lines,
        });
    }
    let fresh = |lines: &mut Vec<String>, why: String| -> anyhow::Result<RestoredAll> {
        for &p in partitions {
            let dir = crate::state::partition_dir(state_dir, p);
            if dir.exists() {
                std::fs::remove_dir_all(dir)?;
            }
        }
        lines.push(format!("starting from the beginning: {why}"));
        Ok(RestoredAll {
            cut: None,
            fallbacks,
            lines: std::mem::take(lines),
        })
    };
    if ids.iter().any(Option::is_none) {
        return fresh(
            &mut lines,
            "some partitions have no usable checkpoint".into(),
        );
    }
    // Walk down to the newest id every partition has: restoring a partition
    // "at most id N" may land below N, which lowers the target again.
    let mut common = ids.iter().flatten().copied().min().unwrap_or(0);
    loop {
        let mut lowest = common;
        for (&p, manifest) in found.iter_mut() {
            if manifest.as_ref().is_some_and(|m| m.id != common) {
                let dir = crate::state::partition_dir(state_dir, p);
                let at_most = Select {
                    max_id: Some(common),
                    ..select
                };
                *manifest = checkpoint::restore(store, p, &dir, at_most).await?.manifest;
            }
            match manifest.as_ref().map(|m| m.id) {
                None => {
                    return fresh(
                        &mut lines,
                        format!("partition {p} has no usable checkpoint at or before {common}"),
                    )
                }
                Some(id) => lowest = lowest.min(id),
            }
        }
        if lowest == common {
            break;
        }
        common = lowest;
    }
    let first = found
        .values()
        .flatten()
        .next()
        .expect("all partitions restored");
    lines.push(format!(
        "restored checkpoint {common} of {} partitions (taken {})",
        found.len(),
        first.created_at
    ));

    // Kafka partitions are read independently: each takes its offset from
    // its own partition's manifest.
    let source = match &first.source {
        SourcePosition::Kafka { .. } => SourcePosition::Kafka {
            offsets: found
                .iter()
                .filter_map(|(p, m)| {
                    let SourcePosition::Kafka { offsets } = &m.as_ref()?.source else {
                        return None;
                    };
                    offsets.iter().find(|(kp, _)| *kp == *p as i32).copied()
                })
                .collect(),
        },
        other => other.clone(),
    };
    tracing::Span::current().record("checkpoint", common);
    tracing::info!(checkpoint = common, fallbacks, "restored");
    Ok(RestoredAll {
        fallbacks,
        cut: Some(Cut {
            id: common,
            job: first.job.clone(),
            source,
            watermark: found.values().flatten().filter_map(|m| m.watermark).min(),
            max_event_times: found
                .iter()
                .map(|(p, m)| (*p, m.as_ref().and_then(|m| m.max_event_time)))
                .collect(),
            sink_lengths: first.sink_lengths.clone(),
            epoch: first.epoch,
        }),
        lines,
    })
}

/// Restores every owned partition from another job's checkpoint
/// (`spec.checkpoints.restoreFrom`). Unlike a job's own checkpoints,
/// nothing falls back: a seed that is missing, incomplete or partitioned
/// differently is an error, since starting empty instead would silently
/// drop the state the user asked for.
async fn restore_seed(
    store: &Store,
    seed: &Seed,
    plan: &JobPlan,
    state_dir: &Path,
) -> anyhow::Result<RestoredAll> {
    let what = format!("spec.checkpoints.restoreFrom: job {}", seed.job_path);
    let mut stored = checkpoint::stored_partitions(store).await?;
    stored.sort_unstable();
    let expected: Vec<u32> = (0..plan.partition_count).collect();
    if stored.is_empty() {
        anyhow::bail!("{what} has no checkpoints in {}", plan.checkpoints.url);
    }
    if stored != expected {
        anyhow::bail!(
            "{what} has checkpoints of partitions {stored:?}, this job has {} partitions: \
             a checkpoint restores only into a job with the same partitions",
            plan.partition_count
        );
    }
    let mut restored = restore_all(
        store,
        &plan.engine.partitions,
        state_dir,
        Select::at_most(seed.id),
    )
    .await?;
    let wanted = seed.id.map_or("a complete checkpoint".into(), |id| {
        format!("checkpoint {id}")
    });
    match (&restored.cut, seed.id) {
        (None, _) => anyhow::bail!(
            "{what} has no {wanted} of partitions {:?}: {}",
            plan.engine.partitions,
            restored.lines.join("; ")
        ),
        (Some(cut), Some(id)) if cut.id != id => anyhow::bail!(
            "{what}: {wanted} is not complete in every partition of {:?} (the newest that is \
             is {}); name that one or leave checkpointId out",
            plan.engine.partitions,
            cut.id
        ),
        (Some(cut), _) => restored.lines.push(format!(
            "started from checkpoint {} of job {} (spec.checkpoints.restoreFrom)",
            cut.id, seed.job_path
        )),
    }
    Ok(restored)
}

/// Completed checkpoints remembered for the admin API.
const KEEP_COMPLETED: usize = 100;

/// What to do with a checkpoint the admin API asks for.
#[derive(Debug, PartialEq)]
enum Admit {
    /// Take it, with this id.
    Take(u64),
    /// Already in flight or completed under this id: answer as if taken.
    Again(u64),
    /// Cannot: why.
    Refuse(String),
}

/// A checkpoint whose upload runs in the background.
struct InFlight {
    id: u64,
    /// The source position of its cut: HTTP events up to it become durable
    /// when the upload completes.
    position: SourcePosition,
    handle: tokio::task::JoinHandle<anyhow::Result<checkpoint::Completed>>,
}

/// Periodic checkpoints, one in flight at a time, uploaded in the
/// background while processing goes on.
struct Checkpoints {
    store: Store,
    partitions: Vec<u32>,
    interval: Option<Duration>,
    retain: usize,
    local: std::path::PathBuf,
    next_id: u64,
    /// When the next periodic checkpoint is due; never without an interval.
    next_at: Option<Instant>,
    in_flight: Option<InFlight>,
    completed: Vec<checkpoint::Completed>,
    failed: u64,
    /// HTTP events covered by the newest completed checkpoint.
    durable_http: u64,
    /// With a Kafka transaction: the checkpoint whose results it committed
    /// last. Restores go back to it, so garbage collection keeps it, besides
    /// the newest ones.
    committed: Option<u64>,
    /// Kafka transactions this run committed.
    commits: u64,
    /// For `/metrics`.
    figures: CheckpointFigures,
}

impl Checkpoints {
    async fn new(plan: &JobPlan, store: Store, state_dir: &Path) -> anyhow::Result<Self> {
        let partitions = plan.engine.partitions.clone();
        let next_id = checkpoint::next_id(&store, &partitions).await?;
        Ok(Self {
            store,
            partitions,
            interval: plan.checkpoints.interval,
            retain: plan.checkpoints.retain,
            local: state_dir.join("checkpoints"),
            next_id,
            next_at: plan
                .checkpoints
                .interval
                .map(|every| Instant::now() + every),
            in_flight: None,
            completed: Vec::new(),
            failed: 0,
            figures: CheckpointFigures::default(),
            durable_http: 0,
            committed: None,
            commits: 0,
        })
    }

    fn due(&self) -> bool {
        self.in_flight.is_none() && self.next_at.is_some_and(|at| Instant::now() >= at)
    }

    fn in_flight_id(&self) -> Option<u64> {
        self.in_flight.as_ref().map(|f| f.id)
    }

    /// Whether a checkpoint asked for through the admin API (with an id
    /// or without) can be taken now.
    fn admit(&self, wanted: Option<u64>) -> Admit {
        let done = |id: u64| self.completed.iter().any(|c| c.id == id);
        match (wanted, self.in_flight_id()) {
            (Some(id), Some(flying)) if id == flying => Admit::Again(id),
            (Some(id), _) if done(id) => Admit::Again(id),
            (_, Some(flying)) => Admit::Refuse(format!("checkpoint {flying} is in flight")),
            (Some(id), None) if id < self.next_id => Admit::Refuse(format!(
                "checkpoint id {id} is taken: the next id must be at least {}",
                self.next_id
            )),
            (Some(id), None) => Admit::Take(id),
            (None, None) => Admit::Take(self.next_id),
        }
    }

    /// Takes the synchronous part and starts the upload; returns the id
    /// (of the checkpoint already in flight, if there is one).
    async fn take(
        &mut self,
        job: &mut Pipeline,
        source: &Source,
        outputs: &mut Outputs,
    ) -> anyhow::Result<u64> {
        if let Some(id) = self.in_flight_id() {
            return Ok(id);
        }
        let id = self.next_id;
        let position = source.position();
        let span = tracing::info_span!("checkpoint", id, partitions = ?self.partitions);
        let pending = job
            .checkpoint(id, position.clone(), outputs, &self.local)
            .instrument(span.clone())
            .await?;
        self.next_id += 1;
        let store = self.store.clone();
        let retain = self.retain;
        let also_keep = self.committed;
        let upload = tracing::info_span!(
            parent: &span,
            "checkpoint.upload",
            id,
            bytes_uploaded = tracing::field::Empty,
            bytes_total = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let handle = tokio::spawn(
            async move {
                let done = checkpoint::upload(pending, &store, retain, also_keep).await;
                // The run loop reports the outcome; the span only carries it.
                let span = tracing::Span::current();
                match &done {
                    Ok(done) => {
                        span.record("bytes_uploaded", done.bytes_uploaded);
                        span.record("bytes_total", done.bytes_total);
                    }
                    Err(e) => {
                        span.record("error", format!("{e:#}"));
                    }
                }
                done
            }
            .instrument(upload),
        );
        self.in_flight = Some(InFlight {
            id,
            position,
            handle,
        });
        self.next_at = self.interval.map(|every| Instant::now() + every);
        Ok(id)
    }

    /// Collects a finished upload; true if one finished.
    async fn poll(
        &mut self,
        out: &mut impl FnMut(&str),
        outputs: &mut Outputs,
    ) -> anyhow::Result<bool> {
        if self
            .in_flight
            .as_ref()
            .is_some_and(|f| f.handle.is_finished())
        {
            self.wait(out, outputs).await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Waits for the upload in flight, then commits the Kafka transaction
    /// with it. A failed upload is counted and processing goes on, except
    /// with a Kafka transaction: its results cannot be committed without
    /// their checkpoint, so the run fails and a restart restores the last
    /// committed one.
    async fn wait(
        &mut self,
        out: &mut impl FnMut(&str),
        outputs: &mut Outputs,
    ) -> anyhow::Result<()> {
        let Some(flight) = self.in_flight.take() else {
            return Ok(());
        };
        let outcome = match flight.handle.await {
            Ok(done) => done,
            Err(e) => Err(anyhow::anyhow!("checkpoint task failed: {e}")),
        };
        if let Err(e) = &outcome {
            if outputs.transaction.is_some() {
                anyhow::bail!(
                    "checkpoint {} failed, so its Kafka transaction cannot commit: {e:#}",
                    flight.id
                );
            }
        }
        match outcome {
            Ok(done) => {
                if outputs
                    .transaction()
                    .is_some_and(|t| t.commits_results(done.id))
                {
                    crash_point(done.id, self.commits, self.committed);
                }
                if outputs.commit(done.id)? {
                    self.committed = Some(done.id);
                    self.commits += 1;
                }
                if let SourcePosition::Http { taken } = flight.position {
                    self.durable_http = self.durable_http.max(taken);
                }
                out(&format!(
                    "checkpoint {}: {} of {} bytes uploaded, {} ms paused, {} ms in all",
                    done.id,
                    done.bytes_uploaded,
                    done.bytes_total,
                    done.sync_duration.as_millis(),
                    done.total_duration.as_millis()
                ));
                self.figures.record(&done);
                self.completed.push(done);
                if self.completed.len() > KEEP_COMPLETED {
                    self.completed.remove(0);
                }
            }
            Err(e) => {
                self.failed += 1;
                self.figures.failed += 1;
                out(&format!("checkpoint failed: {e:#}"));
            }
        }
        Ok(())
    }

    /// Deletes the job's checkpoints of these partitions.
    async fn clear(&self) -> anyhow::Result<()> {
        checkpoint::clear(&self.store, &self.partitions).await
    }
}

/// For tests: `EDDY_TEST_CRASH_BEFORE_COMMIT=<n>` aborts the process when
/// the checkpoint of the run's `<n>`th Kafka transaction with results is in
/// the store, before the transaction commits: a moment no SIGKILL can be
/// aimed at. `commits` were committed before, the last with `last`.
fn crash_point(id: u64, commits: u64, last: Option<u64>) {
    let nth = std::env::var("EDDY_TEST_CRASH_BEFORE_COMMIT").ok();
    if nth.and_then(|n| n.parse::<u64>().ok()) == Some(commits + 1) {
        eprintln!(
            "EDDY_TEST_CRASH_BEFORE_COMMIT: aborting before committing checkpoint {id}; \
             last committed: {}",
            last.map_or("none".into(), |l| l.to_string())
        );
        std::process::abort();
    }
}

/// Once-a-second timer that also measures the event rate between ticks.
struct Tick {
    next: Instant,
    last: Instant,
    last_events: u64,
}

impl Tick {
    fn new(now: Instant) -> Self {
        Self {
            next: now + Duration::from_secs(1),
            last: now,
            last_events: 0,
        }
    }

    /// The events/s since the last tick, when a tick is due.
    fn due(&mut self, events: u64) -> Option<f64> {
        let now = Instant::now();
        if now < self.next {
            return None;
        }
        let secs = now.duration_since(self.last).as_secs_f64().max(1e-9);
        let rate = (events - self.last_events) as f64 / secs;
        self.last = now;
        self.last_events = events;
        self.next = now + Duration::from_secs(1);
        Some(rate)
    }
}
