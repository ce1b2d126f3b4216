//! The run loop: source → extraction → partition → skew guard → engine →
//! sinks, with a progress line every second, until the source ends or a
//! stop is asked. The loop only decides what happens next; the
//! [`Pipeline`] turns records into results, [`checkpoints`] takes and
//! commits checkpoints, and `checkpoint::restore` walks back to one.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::watch;

mod checkpoints;
mod figures;
mod moves;
mod pipeline;
mod report;
mod stages;
mod worker;

use self::checkpoints::{Admit, Checkpoints};
pub use self::{
    pipeline::Pipeline,
    report::{Ending, PartitionReport, Report},
    stages::run_stages,
};
pub use crate::output::outputs::{sink_name, Outputs};
use crate::{
    admin::{Admin, CheckpointInfo, Command, PartitionLoad, Status},
    checkpoint::{
        restore::{restore_all, restore_seed},
        Select,
    },
    job::JobPlan,
    metrics::Publisher,
    output::transaction::{restore_bound, Transaction},
    partials::Stage,
    progress,
    source::{Poll, Source},
};

/// The run loop's ends of the HTTP endpoints it serves, if any.
#[derive(Default)]
pub struct Endpoints {
    pub admin: Option<Admin>,
    pub metrics: Option<Publisher>,
}

/// Runs a planned job with its state in `state_dir` until its source ends
/// or `stop` turns true: restores the newest complete checkpoint first,
/// checkpoints periodically in the background, and takes a last checkpoint
/// when stopped. Progress lines go to `progress_out` once a second.
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
    if let Some(partials) = plan
        .partials
        .as_ref()
        .filter(|_| plan.stage != Stage::Single)
    {
        ensure_partials_topic(partials, plan.partition_count).await?;
    }
    // With a Kafka transaction, the checkpoint to restore is the one whose
    // results were committed last, even if a newer one is in the store.
    let (transaction, bound, warning, bounds) = match &plan.transaction {
        Some(t) => {
            let (transaction, committed) = Transaction::open(t)?;
            let (bound, warning) = restore_bound(&committed);
            // Each partition at most at the checkpoint its results were
            // last committed with (after moves these differ).
            let bounds = committed
                .iter()
                .map(|(p, c)| (*p, c.unwrap_or(0)))
                .collect();
            let transaction = Some(Arc::new(Mutex::new(transaction)));
            (transaction, Some(bound), warning, bounds)
        }
        None => (None, None, None, BTreeMap::new()),
    };
    let epoch = plan.checkpoints.epoch;
    let own = Select {
        max_id: bound,
        epoch: Some(epoch),
    };
    let restore_started = Instant::now();
    let mut restored =
        restore_all(&store, &plan.engine.partitions, state_dir, own, &bounds).await?;
    // Partitions that walked down to one common checkpoint together:
    // those ahead of the lowest committed may commit results again.
    if let Some(w) = warning.filter(|_| !restored.each) {
        progress_out(&w);
    }
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
    for (p, b) in bounds.iter().filter(|_| !seeded) {
        let restored_id = restored.ids.get(p).copied().unwrap_or(0);
        if *b > restored_id {
            progress_out(&format!(
                "partition {p}: checkpoint {b}, whose results the Kafka transaction committed, \
                 is not usable: its results after checkpoint {restored_id} will be committed again"
            ));
        }
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
    if bound.is_some() {
        // Kept by garbage collection until a newer one commits.
        for p in &plan.engine.partitions {
            let from = restored.ids.get(p).copied().filter(|_| !seeded);
            checkpoints.keep(*p, from);
        }
    }
    let (mut job, mut source) = Pipeline::new(plan, state_dir, started).await?;
    if job.workers.len() > 1 {
        progress_out(&format!(
            "{} partitions on {} worker threads",
            job.plan.engine.partitions.len(),
            job.workers.len()
        ));
    }
    if let Some(cut) = &restored.cut {
        job.restore(cut)?;
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
        if metrics.is_none() && admin.is_none() {
            return;
        }
        // Once for both: the advice merges every partition's sketch.
        let stats = job.stats();
        let snapshot = job.snapshot(&stats, meter, &checkpoints.figures, outputs, source);
        if let Some(a) = admin {
            let loads = snapshot.partitions.iter().map(PartitionLoad::of).collect();
            a.status.send_modify(|s| {
                s.stats = stats;
                s.loads = loads;
            });
        }
        if let Some(m) = &metrics {
            m.publish(snapshot);
        }
    };
    publish_figures(&job, &meter, &checkpoints, &outputs, &source, &admin);
    let hold = job.plan.hold_when_finished;
    let mut paused = false;
    let mut draining = false;
    // The input ended and every window is out; only with `hold`.
    let mut finished = false;
    publish(&admin, &job, &checkpoints, (paused, finished), fallbacks);
    let mut tick = Tick::new(started);
    let mut moves = moves::Moves::default();
    // The merge stage: when it last looked whether every origin ended.
    let mut ends = EndCheck::default();
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
        if moves.busy() {
            changed |= moves
                .poll(&mut job, &mut source, &mut outputs, &mut checkpoints)
                .await?;
        }
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
                    Command::Release { reply, .. } if paused || finished => {
                        let _ = reply.send(Err(moves::still(finished)));
                    }
                    Command::Acquire { reply, .. } if paused || finished => {
                        let _ = reply.send(Err(moves::still(finished)));
                    }
                    Command::Release {
                        partition,
                        id,
                        assignment,
                        reply,
                    } => {
                        moves
                            .release(
                                partition,
                                (id, assignment),
                                reply,
                                &mut job,
                                &mut source,
                                &mut outputs,
                                &mut checkpoints,
                            )
                            .await?
                    }
                    Command::Acquire {
                        partition,
                        at_least,
                        assignment,
                        reply,
                    } => moves.acquire(
                        partition,
                        (at_least, assignment),
                        reply,
                        (&job, &source, &outputs),
                        &checkpoints,
                    ),
                }
            }
        }
        if checkpoints.due(job.writing_back()) && !paused && !finished {
            checkpoints.take(&mut job, &source, &mut outputs).await?;
            changed = true;
        }
        if changed {
            publish(&admin, &job, &checkpoints, (paused, finished), fallbacks);
        }
        moves.answer();
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
                job.settle(&mut outputs)?;
                meter.tick();
                if finished {
                    // Its state is final and checkpointed: nothing lags.
                    checkpoints.figures.last_completed_ms = Some(crate::source::wall_clock_ms());
                }
                publish_figures(&job, &meter, &checkpoints, &outputs, &source, &admin);
            }
            continue;
        }
        let polled = match source.poll(Instant::now())? {
            // The merge stage's input ends when every origin's does.
            Poll::Pending(_)
                if job.plan.stage.is_merge()
                    && ends.due()
                    && job.origins_finished(&mut outputs)? =>
            {
                Poll::End
            }
            polled => polled,
        };
        match polled {
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
                // Durable, as before a checkpoint's cut (the transaction's
                // part comes with the checkpoint below, if any).
                outputs.flush_durably().await?;
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
                    publish(&admin, &job, &checkpoints, (paused, finished), fallbacks);
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
                checkpoints.clear(&job.plan.engine.partitions).await?;
                // And its partials (every origin has ended): a rerun must not
                // read this run's.
                if let (true, Some(p)) = (job.plan.stage.is_merge(), &job.plan.partials) {
                    delete_partials_topic(p).await?;
                }
                break Ending::Finished;
            }
        }
        if let Some(rate) = tick.due(job.counters.events) {
            // The figures below read the workers' engines.
            job.settle(&mut outputs)?;
            progress_out(&progress::line(rate, job.watermark(), &job.counters));
            outputs.push().await?;
            meter.tick();
            publish_figures(&job, &meter, &checkpoints, &outputs, &source, &admin);
        }
    };
    job.settle(&mut outputs)?;
    outputs.flush().await?;
    job.report(ending, started.elapsed())
}

/// Publishes the run loop's state to the admin API; `(paused, finished)`.
fn publish(
    admin: &Option<Admin>,
    job: &Pipeline,
    checkpoints: &Checkpoints,
    (paused, finished): (bool, bool),
    fallbacks: u64,
) {
    if let Some(a) = admin {
        let (stats, loads) = {
            let now = a.status.borrow();
            (now.stats.clone(), now.loads.clone())
        };
        a.status.send_replace(Status {
            stats,
            loads,
            ready: true,
            paused,
            finished,
            in_flight: checkpoints.in_flight_id(),
            failed: checkpoints.failed,
            restore_fallbacks: fallbacks,
            next_id: checkpoints.next_id,
            partitions: job.plan.engine.partitions.clone(),
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

/// How often an idle merge stage looks whether every origin ended: that
/// settles the workers (waits for all they were given), too costly for
/// every empty poll (one each 10 ms while the partials pause).
#[derive(Default)]
struct EndCheck {
    last: Option<Instant>,
}

impl EndCheck {
    const EVERY: Duration = Duration::from_millis(100);

    fn due(&mut self) -> bool {
        let now = Instant::now();
        let due = self
            .last
            .is_none_or(|l| now.duration_since(l) >= Self::EVERY);
        if due {
            self.last = Some(now);
        }
        due
    }
}

#[cfg(feature = "kafka")]
async fn ensure_partials_topic(
    partials: &eddy_api::spec::ResolvedPartials,
    partitions: u32,
) -> anyhow::Result<()> {
    crate::partials::sink::ensure_topic(partials, partitions).await
}

/// Deletes a two-phase job's partials topic (gone already: fine).
#[cfg(feature = "kafka")]
pub async fn delete_partials_topic(
    partials: &eddy_api::spec::ResolvedPartials,
) -> anyhow::Result<()> {
    crate::partials::sink::delete_topic(partials).await
}

#[cfg(not(feature = "kafka"))]
pub async fn delete_partials_topic(_: &eddy_api::spec::ResolvedPartials) -> anyhow::Result<()> {
    Err(crate::without::missing("kafka"))
}

#[cfg(not(feature = "kafka"))]
async fn ensure_partials_topic(_: &eddy_api::spec::ResolvedPartials, _: u32) -> anyhow::Result<()> {
    Err(crate::without::missing("kafka"))
}
