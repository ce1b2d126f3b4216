//! The processing a run does, whatever the source and the sinks: records
//! in, windows fired, results written.

use std::{
    collections::{BTreeMap, VecDeque},
    path::Path,
    sync::{mpsc, Arc},
    time::{Duration, Instant},
};

use eddy_api::spec::LateDataPolicy;

use super::{
    worker::{Context, Step, Worker},
    Ending, PartitionReport, Report,
};
use crate::{
    checkpoint::{self, Cut, SourcePosition},
    engine::{partition_of, Engine},
    job::{JobPlan, SourcePlan},
    output::{
        outputs::Outputs,
        record, sink,
        staged::{Needs, ResultWriter, Staged},
    },
    partials::{salt_of, salted_partition, Stage},
    progress::Counters,
    source::{
        file::FileReader, generator::Generator, http::HttpIngest, kafka::KafkaReader, Batch,
        Payload, Source, SourceRecord,
    },
    state::{StateStore, WritesBehind},
};

/// The processing a run does, source-agnostic: records in, results out.
/// The run loop's thread reads and routes records and writes the results;
/// the workers (on a pool of threads, one each) turn records into results.
pub struct Pipeline {
    pub(super) plan: JobPlan,
    /// Empty while they run in the background (see [`Pipeline::settle`]).
    pub(super) workers: Vec<Worker>,
    /// Per worker: what it staged in its last run, written out while it
    /// runs again, and the writer that encodes its results.
    taken: Vec<(Staged, ResultWriter)>,
    /// Steps routed since the workers last took theirs, per worker.
    incoming: Vec<VecDeque<Step>>,
    /// The workers running in the background: they come back through it.
    away: Option<mpsc::Receiver<Returned>>,
    cx: Arc<Context>,
    /// Partition number → the worker that runs it (`NONE`: not owned).
    owner: Vec<u16>,
    /// Threads the workers run on, one each.
    pool: rayon::ThreadPool,
    pub(super) counters: Counters,
    pub(super) invalid_by_kind: BTreeMap<&'static str, u64>,
    /// Results that revised an earlier one.
    pub(super) revisions: u64,
    /// When the workers last ran through their steps.
    driven: Instant,
    /// Steps queued that make the workers run (see [`DRIVE_AT`]), from
    /// how fast they went through their last runs.
    drive_at: usize,
    /// When the workers running in the background started, with how many
    /// steps.
    launched: Option<(Instant, usize)>,
    /// Where every worker's partitions keep their RocksDB instances.
    state_dir: std::path::PathBuf,
    /// The workers' periodic write-backs in flight.
    writes_behind: WritesBehind,
}

/// Steps queued for the workers (all together) that make them run, at
/// most: thread wake-ups are then a small part of the work. Every worker
/// runs on a thread of its own, one worker too: the run loop's thread reads
/// the source and writes the results meanwhile.
const DRIVE_AT: usize = 16 * 1024;

/// Steps that make the workers run, at least.
const DRIVE_AT_LEAST: usize = 1024;

/// How long a run of the workers should take, about: a checkpoint waits
/// for the run under way and the steps queued behind it, so with slow
/// steps (state much larger than memory: a RocksDB read each) fewer are
/// queued at a time, and its pause stays short.
const RUN_FOR: Duration = Duration::from_millis(10);

/// How long steps may wait for the workers, at most (results and late
/// records are that much later).
const DRIVE_AFTER: Duration = Duration::from_millis(50);

/// Workers back from a run in the background, and whether each finished
/// its steps (or stopped with enough staged).
type Returned = (Vec<Worker>, anyhow::Result<Vec<bool>>);

/// Not owned, in [`Pipeline::owner`].
const NONE: u16 = u16::MAX;

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
        // Partitions dealt out in turns: with a Kafka topic's partitions or
        // hashed keys, each worker gets about the same share.
        let count = plan.workers.clamp(1, plan.engine.partitions.len().max(1));
        let mut groups = vec![Vec::new(); count];
        let mut owner = vec![NONE; plan.partition_count as usize];
        for (i, p) in plan.engine.partitions.iter().enumerate() {
            groups[i % count].push(*p);
            if let Some(o) = owner.get_mut(*p as usize) {
                *o = (i % count) as u16;
            }
        }
        let writes_behind = WritesBehind::default();
        let workers: Vec<Worker> = store
            .split(&groups)
            .into_iter()
            .zip(&groups)
            .map(|(store, partitions)| {
                let mut config = plan.engine.clone();
                config.partitions = partitions.clone();
                config.cache_keys = (config.cache_keys / count).max(1024);
                let mut engine = Engine::new(config, store);
                engine.count_writes_behind(&writes_behind);
                Worker::new(engine)
            })
            .collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(count)
            .thread_name(|i| format!("eddy-worker-{i}"))
            .build()?;
        let names: Arc<[Arc<str>]> = plan
            .engine
            .aggregates
            .iter()
            .map(|(n, _)| n.clone())
            .collect();
        // The partials sink of a first stage writes a result's fields.
        let needs = if plan.stage == Stage::Partial {
            Needs::Fields
        } else if plan.sinks.iter().any(sink::wants_fields) {
            Needs::LineAndFields
        } else {
            Needs::Line
        };
        let pipeline = Self {
            workers,
            owner,
            pool,
            incoming: (0..count).map(|_| VecDeque::new()).collect(),
            away: None,
            cx: Arc::new(Context {
                id: plan.id.clone(),
                job_path: plan.id.path(),
                late_output: plan.late_policy == LateDataPolicy::Output,
                marks: plan.stage == Stage::Partial,
                epoch: plan.checkpoints.epoch,
            }),
            taken: (0..count)
                .map(|_| {
                    let writer = ResultWriter::new(plan.id.clone(), names.clone(), needs);
                    (Staged::default(), writer)
                })
                .collect(),
            counters: Counters::default(),
            invalid_by_kind: BTreeMap::new(),
            revisions: 0,
            driven: Instant::now(),
            drive_at: DRIVE_AT,
            launched: None,
            state_dir: state_dir.to_path_buf(),
            writes_behind,
            plan,
        };
        Ok((pipeline, source))
    }

    /// After the store was restored from checkpoint `cut`: every worker's
    /// timers and watermarks from it.
    pub fn restore(&mut self, cut: &Cut) -> anyhow::Result<()> {
        for w in &mut self.workers {
            w.engine.restore(
                &cut.max_event_times,
                cut.watermark,
                &cut.floors,
                &cut.origin_marks,
            )?;
        }
        Ok(())
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
        self.drive(outputs)?;
        // Results emitted before the cut must be in the sinks before the
        // cut counts: a restore will not emit them again.
        outputs.prepare(id).await?;
        let handed = each(&self.pool, &mut self.workers, |w| w.engine.hand_over())?;
        let (parts, landings): (Vec<_>, Vec<_>) = handed.into_iter().unzip();
        let cut = Cut {
            id,
            job: self.cx.job_path.clone(),
            source,
            max_event_times: self.engines().flat_map(|e| e.max_event_times()).collect(),
            watermark: Some(self.watermark()).filter(|w| *w != i64::MIN),
            floors: self.engines().flat_map(|e| e.partition_floors()).collect(),
            origin_marks: self.engines().flat_map(|e| e.origin_marks()).collect(),
            sink_lengths: outputs.snapshot(),
            epoch: self.plan.checkpoints.epoch,
            assignment: self.plan.checkpoints.assignment,
        };
        Ok(checkpoint::Snapshot::new(
            cut,
            parts.into_iter().flatten().collect(),
            landings,
            local,
            started,
        ))
    }

    /// Whether a worker's write-back is being written: a checkpoint taken
    /// now would wait for it (see [`Pipeline::checkpoint`]). Read without
    /// the workers, while they run.
    pub fn writing_back(&self) -> bool {
        self.writes_behind.in_flight() > 0
    }

    /// The workers' engines (none while they run in the background: see
    /// [`Pipeline::settle`]).
    pub fn engines(&self) -> impl Iterator<Item = &Engine> + Clone {
        debug_assert!(self.away.is_none(), "the workers are away");
        self.workers.iter().map(|w| &w.engine)
    }

    /// The engine that runs `partition`.
    pub fn engine_of(&self, partition: u32) -> Option<&Engine> {
        let w = self.worker_of(partition)?;
        self.workers.get(w).map(|w| &w.engine)
    }

    /// The processor's watermark: the lowest of its workers'.
    /// The merge stage: every origin of every partition sent the end of
    /// its input (after the workers took what they were given).
    pub fn origins_finished(&mut self, outputs: &mut Outputs) -> anyhow::Result<bool> {
        self.settle(outputs)?;
        Ok(self.engines().all(Engine::origins_finished))
    }

    pub fn watermark(&self) -> i64 {
        self.engines()
            .map(Engine::watermark)
            .min()
            .unwrap_or(i64::MIN)
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Takes a batch: each record goes to the worker of its partition,
    /// whose watermark moves after every record, so whether an event is
    /// late never depends on batch boundaries; then every worker catches up
    /// with the source clock and what fired is written.
    pub fn take(&mut self, batch: Batch, clock: i64, outputs: &mut Outputs) -> anyhow::Result<()> {
        for record in batch.records {
            self.counters.events += 1;
            self.route(record)?;
        }
        for partition in batch.finished {
            if let Some(w) = self.worker_of(partition) {
                self.incoming[w].push_back(Step::Finished(partition));
            }
        }
        self.clock_all(clock);
        // Workers work on what is queued while this thread reads the next
        // records. Back already (they stopped with enough staged, or were
        // quicker than the source), they start again at once: a worker that
        // waits for the next batch is time lost. Still running, they are
        // waited for once a good amount of work is queued (their wake-ups a
        // small part of it) or results have waited about `DRIVE_AFTER`.
        let queued: usize = self.incoming.iter().map(VecDeque::len).sum();
        if queued >= self.drive_at || self.driven.elapsed() >= DRIVE_AFTER || self.back()? {
            self.launch(outputs)?;
        }
        Ok(())
    }

    /// No records: the source clock alone may move the watermark (idle
    /// partitions).
    pub fn idle(&mut self, clock: i64, outputs: &mut Outputs) -> anyhow::Result<()> {
        self.clock_all(clock);
        self.drive(outputs)
    }

    /// The input has ended: every window fires.
    pub fn finish(&mut self, outputs: &mut Outputs) -> anyhow::Result<()> {
        for queue in &mut self.incoming {
            queue.push_back(Step::End);
        }
        self.drive(outputs)
    }

    /// Whether a worker runs `partition`.
    pub fn owns(&self, partition: u32) -> bool {
        self.worker_of(partition).is_some()
    }

    /// Where `partition`'s RocksDB instance is (restored into before it is
    /// acquired).
    pub fn partition_dir(&self, partition: u32) -> std::path::PathBuf {
        crate::state::partition_dir(&self.state_dir, partition)
    }

    /// Stops running `partition`, right after a checkpoint took it (see
    /// `Engine::release`); its directory stays until that checkpoint is
    /// done with it.
    pub fn release(&mut self, partition: u32) -> anyhow::Result<()> {
        debug_assert!(self.away.is_none(), "a checkpoint brought the workers back");
        let Some(w) = self.worker_of(partition) else {
            anyhow::bail!("partition {partition} is not run here");
        };
        self.workers[w].engine.release(partition)?;
        self.owner[partition as usize] = NONE;
        self.plan.engine.partitions.retain(|p| *p != partition);
        Ok(())
    }

    /// Starts running `partition`, restored into [`Pipeline::partition_dir`]
    /// (or new), on the worker with the fewest partitions; its watermark
    /// from `max_event_time`.
    pub fn acquire(
        &mut self,
        partition: u32,
        (max_event_time, floor): (Option<i64>, Option<i64>),
        outputs: &mut Outputs,
    ) -> anyhow::Result<()> {
        let Some(slot) = self.owner.get_mut(partition as usize) else {
            anyhow::bail!(
                "the job has partitions 0 to {}",
                self.plan.partition_count.saturating_sub(1)
            );
        };
        if *slot != NONE {
            anyhow::bail!("partition {partition} is run here already");
        }
        self.settle(outputs)?;
        let w = (0..self.workers.len())
            .min_by_key(|w| self.workers[*w].engine.partitions().len())
            .expect("a pipeline has a worker");
        self.workers[w]
            .engine
            .acquire(partition, max_event_time, floor)?;
        self.owner[partition as usize] = w as u16;
        self.plan.engine.partitions.push(partition);
        self.plan.engine.partitions.sort_unstable();
        Ok(())
    }

    fn worker_of(&self, partition: u32) -> Option<usize> {
        match self.owner.get(partition as usize) {
            Some(&w) if w != NONE => Some(usize::from(w)),
            _ => None,
        }
    }

    /// Every worker's clock moves to `clock` (a record none of them takes).
    fn clock_all(&mut self, clock: i64) {
        for queue in &mut self.incoming {
            // Moves in a row come to the same as the last one.
            match queue.back_mut() {
                Some(Step::Clock(c)) => *c = (*c).max(clock),
                _ => queue.push_back(Step::Clock(clock)),
            }
        }
    }

    /// A record rejected before the engine: its invalid record goes out
    /// through the worker of its partition (the first worker when it has
    /// none), in order with that worker's output, and every other worker's
    /// clock moves when no partition is known.
    fn rejected(
        &mut self,
        partition: Option<u32>,
        skewed_time_ms: Option<i64>,
        ingest_ms: i64,
        (id, line): (String, Vec<u8>),
    ) {
        let owner = partition.and_then(|p| self.worker_of(p));
        if owner.is_none() {
            self.clock_all(ingest_ms);
        }
        self.incoming[owner.unwrap_or(0)].push_back(Step::Rejected {
            partition: partition.filter(|_| owner.is_some()),
            skewed_time_ms,
            ingest_ms,
            id,
            line,
        });
    }

    /// Runs every worker through every step routed so far, and writes
    /// what they staged.
    fn drive(&mut self, outputs: &mut Outputs) -> anyhow::Result<()> {
        self.settle(outputs)?;
        self.hand_steps();
        self.run_all(outputs)
    }

    /// Starts the workers, in the background, on every step routed so far,
    /// and writes out what their last run staged while they run.
    fn launch(&mut self, outputs: &mut Outputs) -> anyhow::Result<()> {
        self.join()?;
        self.take_staged();
        self.hand_steps();
        let steps = self.workers.iter().map(|w| w.queue.len()).sum();
        self.launched = Some((Instant::now(), steps));
        let mut workers = std::mem::take(&mut self.workers);
        let cx = self.cx.clone();
        let (back, away) = mpsc::sync_channel(1);
        self.pool.spawn(move || {
            use rayon::prelude::*;
            let done = workers.par_iter_mut().map(|w| w.drive(&cx)).collect();
            // The pipeline may be gone (its run failed): nothing to return.
            let _ = back.send((workers, done));
        });
        self.away = Some(away);
        self.write_taken(outputs)
    }

    /// Waits for the workers running in the background, if they are, and
    /// writes what they staged. Their engines are here again after it (the
    /// run loop settles before it reads figures).
    pub fn settle(&mut self, outputs: &mut Outputs) -> anyhow::Result<()> {
        self.join()?;
        self.collect(outputs)
    }

    /// Takes the workers back from the background, if they are there; what
    /// they staged stays staged.
    fn join(&mut self) -> anyhow::Result<()> {
        let Some(away) = self.away.take() else {
            return Ok(());
        };
        let returned = away
            .recv()
            .map_err(|_| anyhow::anyhow!("a worker thread stopped without returning"))?;
        self.returned(returned)
    }

    /// Whether the workers are here: back from the background (taken back
    /// if they just came), or never away.
    fn back(&mut self) -> anyhow::Result<bool> {
        let Some(away) = &self.away else {
            return Ok(true);
        };
        match away.try_recv() {
            Ok(returned) => {
                self.away = None;
                self.returned(returned)?;
                Ok(true)
            }
            Err(mpsc::TryRecvError::Empty) => Ok(false),
            Err(mpsc::TryRecvError::Disconnected) => {
                anyhow::bail!("a worker thread stopped without returning")
            }
        }
    }

    fn returned(&mut self, (workers, done): Returned) -> anyhow::Result<()> {
        self.workers = workers;
        self.pace();
        // Steps a worker did not get to stay queued for its next run.
        done.map(drop)
    }

    /// After a run in the background: how many steps the next may queue,
    /// from how many this one got through in how long (halfway from the
    /// last figure, so one odd run does not swing it).
    fn pace(&mut self) {
        let Some((started, steps)) = self.launched.take() else {
            return;
        };
        let left: usize = self.workers.iter().map(|w| w.queue.len()).sum();
        let took = started.elapsed().as_secs_f64();
        if took < 1e-4 {
            return;
        }
        let per_run = (steps.saturating_sub(left) as f64 / took * RUN_FOR.as_secs_f64()) as usize;
        let target = per_run.clamp(DRIVE_AT_LEAST, DRIVE_AT);
        self.drive_at = (self.drive_at + target) / 2;
    }

    /// Gives every worker the steps routed to it since its last run.
    fn hand_steps(&mut self) {
        self.driven = Instant::now();
        for (w, queue) in self.workers.iter_mut().zip(&mut self.incoming) {
            if w.queue.is_empty() {
                // The usual case: the buffers change places, no step moves.
                std::mem::swap(&mut w.queue, queue);
            } else {
                w.queue.append(queue);
            }
        }
    }

    /// Runs every worker here (side by side on the pool) through its
    /// steps, writing what they stage, until all are done.
    fn run_all(&mut self, outputs: &mut Outputs) -> anyhow::Result<()> {
        let cx = self.cx.clone();
        loop {
            let done = each(&self.pool, &mut self.workers, |w| w.drive(&cx))?;
            self.collect(outputs)?;
            if done.into_iter().all(|d| d) {
                return Ok(());
            }
        }
    }

    /// Writes what the workers staged and adds up their counts.
    fn collect(&mut self, outputs: &mut Outputs) -> anyhow::Result<()> {
        self.take_staged();
        self.write_taken(outputs)
    }

    /// Writes what [`Pipeline::take_staged`] took, encoding the results.
    fn write_taken(&mut self, outputs: &mut Outputs) -> anyhow::Result<()> {
        for (staged, writer) in &mut self.taken {
            staged.write_to(outputs, writer)?;
        }
        Ok(())
    }

    /// Takes what the workers staged (to be written by
    /// [`Pipeline::write_taken`]; the buffers change places), and adds up
    /// their counts.
    fn take_staged(&mut self) {
        for (w, (taken, _)) in self.workers.iter_mut().zip(&mut self.taken) {
            debug_assert!(taken.is_empty(), "taken before it was written");
            std::mem::swap(&mut w.staged, taken);
            w.free_spent();
            let tally = std::mem::take(&mut w.tally);
            self.counters.accepted += tally.accepted;
            self.counters.late += tally.late;
            self.counters.windows_emitted += tally.windows_emitted;
            self.revisions += tally.revisions;
            for (kind, n) in tally.invalid {
                self.counters.invalid += n;
                *self.invalid_by_kind.entry(kind).or_default() += n;
            }
        }
    }

    /// Reads a record as far as routing needs and hands it to the worker
    /// of its partition (invalid ones as their invalid record).
    fn route(&mut self, record: SourceRecord) -> anyhow::Result<()> {
        let SourceRecord {
            payload,
            ingest_ms,
            partition,
            origin,
        } = record;
        let extracted = match payload {
            Payload::Partial(bytes) => {
                let Some(w) = partition.and_then(|p| self.worker_of(p)) else {
                    self.counters.not_owned += 1;
                    self.clock_all(ingest_ms);
                    return Ok(());
                };
                self.incoming[w].push_back(Step::Partial {
                    partition: partition.unwrap_or_default(),
                    bytes,
                    ingest_ms,
                    origin,
                });
                return Ok(());
            }
            Payload::Json(value) => self.plan.extractor.extract(value),
            Payload::Generated(g) => self.plan.extractor.extract_generated(g),
            Payload::Sparse(s) => self.plan.extractor.extract_sparse(s),
            Payload::Unreadable { raw, reason } => {
                self.count_invalid(reason.kind());
                let record = self.cx.record("invalid", &origin, |job, at| {
                    record::unreadable_line(job, &raw, &reason.to_string(), at)
                });
                self.rejected(partition, None, ingest_ms, record);
                return Ok(());
            }
        };
        let mut event = match extracted {
            Ok(event) => event,
            Err((reason, value)) => {
                self.count_invalid(reason.kind());
                let record = self.cx.record("invalid", &origin, |job, at| {
                    record::invalid_line(job, &value, &reason.to_string(), at)
                });
                self.rejected(partition, None, ingest_ms, record);
                return Ok(());
            }
        };
        let partition = partition.unwrap_or_else(|| {
            let count = self.plan.partition_count;
            let own = partition_of(&event.key, count);
            match self.plan.salt_buckets {
                // The first stage of a two-phase job spreads each key.
                Some(buckets) => salted_partition(own, salt_of(&origin, buckets), count),
                None => own,
            }
        });
        let Some(w) = self.worker_of(partition) else {
            self.counters.not_owned += 1;
            self.clock_all(ingest_ms);
            return Ok(());
        };
        let raw_time_ms = event.time_ms;
        match self.plan.skew.check(event.time_ms, ingest_ms) {
            Ok(time_ms) => {
                event.time_ms = time_ms;
                self.incoming[w].push_back(Step::Event {
                    partition,
                    event,
                    raw_time_ms,
                    ingest_ms,
                    origin,
                });
            }
            Err(reason) => {
                self.count_invalid(reason.kind());
                let value = event.record.to_value();
                let record = self.cx.record("invalid", &origin, |job, at| {
                    record::invalid_line(job, &value, &reason.to_string(), at)
                });
                self.rejected(Some(partition), Some(raw_time_ms), ingest_ms, record);
            }
        }
        Ok(())
    }

    fn count_invalid(&mut self, kind: &'static str) {
        self.counters.invalid += 1;
        *self.invalid_by_kind.entry(kind).or_default() += 1;
    }

    /// State size per partition in bytes, after writing every cache back.
    pub fn state_sizes(&mut self) -> anyhow::Result<BTreeMap<u32, u64>> {
        self.join()?;
        let sizes = each(&self.pool, &mut self.workers, |w| w.engine.state_sizes())?;
        Ok(sizes.into_iter().flatten().collect())
    }

    /// What the run did, with state sizes.
    pub fn report(mut self, ending: Ending, elapsed: Duration) -> anyhow::Result<Report> {
        let sizes = self.state_sizes()?;
        let mut partitions: Vec<PartitionReport> = self
            .engines()
            .flat_map(|e| e.stats())
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
        partitions.sort_by_key(|p| p.partition);
        Ok(Report {
            ending,
            open_windows: self.engines().map(Engine::open_windows).sum(),
            expired_windows: self.engines().map(|e| e.counters().expired_windows).sum(),
            counters: self.counters,
            invalid_by_kind: self.invalid_by_kind,
            elapsed,
            partitions,
        })
    }
}

/// Runs `f` on every worker, side by side on the pool. The first error
/// wins.
fn each<T: Send>(
    pool: &rayon::ThreadPool,
    workers: &mut [Worker],
    f: impl Fn(&mut Worker) -> anyhow::Result<T> + Sync + Send,
) -> anyhow::Result<Vec<T>> {
    use rayon::prelude::*;
    pool.install(|| workers.par_iter_mut().map(&f).collect())
}
