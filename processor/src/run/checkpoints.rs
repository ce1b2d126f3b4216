//! The run's checkpoints: one in flight at a time, its upload in the
//! background while processing goes on, ids the admin API may choose, and
//! the Kafka transaction committed with each.

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use tracing::Instrument;

use super::Pipeline;
use crate::{
    checkpoint::{self, SourcePosition, Store},
    job::JobPlan,
    metrics::CheckpointFigures,
    output::outputs::Outputs,
    source::Source,
};

/// Completed checkpoints remembered for the admin API.
const KEEP_COMPLETED: usize = 100;

/// What to do with a checkpoint the admin API asks for.
#[derive(Debug, PartialEq)]
pub(super) enum Admit {
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

/// How long a periodic checkpoint may wait past its time for a moment
/// without a write-back in flight. Write-backs come every million events
/// or so and take tens of milliseconds: one lands well within this.
const MAX_DEFER: Duration = Duration::from_secs(1);

/// Whether a checkpoint due at `next_at` is taken at `now` (see
/// [`Checkpoints::due`]).
fn due_at(next_at: Option<Instant>, now: Instant, writing_back: bool) -> bool {
    next_at.is_some_and(|at| now >= at && (!writing_back || now >= at + MAX_DEFER))
}

/// Periodic checkpoints, one in flight at a time, uploaded in the
/// background while processing goes on.
pub(super) struct Checkpoints {
    store: Store,
    interval: Option<Duration>,
    retain: usize,
    local: std::path::PathBuf,
    pub(super) next_id: u64,
    /// When the next periodic checkpoint is due; never without an interval.
    next_at: Option<Instant>,
    in_flight: Option<InFlight>,
    pub(super) completed: Vec<checkpoint::Completed>,
    pub(super) failed: u64,
    /// HTTP events covered by the newest completed checkpoint.
    pub(super) durable_http: u64,
    /// With a Kafka transaction: the checkpoint whose results it committed
    /// last.
    committed: Option<u64>,
    /// With a Kafka transaction, per owned partition, the checkpoint a
    /// restart would restore it from: the one its results were committed
    /// with last, so garbage collection keeps it besides the newest ones.
    /// It differs between partitions after moves (a partition that joined
    /// keeps its former owner's until this processor commits); `None` for
    /// one that never committed.
    kept: BTreeMap<u32, Option<u64>>,
    /// Kafka transactions this run committed.
    commits: u64,
    /// For `/metrics`.
    pub(super) figures: CheckpointFigures,
}

impl Checkpoints {
    pub(super) async fn new(
        plan: &JobPlan,
        store: Store,
        state_dir: &Path,
    ) -> anyhow::Result<Self> {
        let next_id = checkpoint::next_id(&store, &plan.engine.partitions).await?;
        Ok(Self {
            store,
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
            kept: Default::default(),
            commits: 0,
        })
    }

    pub(super) fn store(&self) -> &Store {
        &self.store
    }

    /// Makes the next checkpoint due now (a partition joined: until a
    /// checkpoint of this processor has it, its newest is another's).
    pub(super) fn soon(&mut self) {
        self.next_at = Some(Instant::now());
    }

    /// Whether the periodic checkpoint is to be taken now. While a worker's
    /// write-back is being written (`writing_back`), a checkpoint would
    /// pause processing until it lands (tens of milliseconds with a large
    /// cache): one due then waits, processing on, for a moment without one,
    /// but never more than [`MAX_DEFER`] past its time.
    pub(super) fn due(&self, writing_back: bool) -> bool {
        self.in_flight.is_none() && due_at(self.next_at, Instant::now(), writing_back)
    }

    pub(super) fn in_flight_id(&self) -> Option<u64> {
        self.in_flight.as_ref().map(|f| f.id)
    }

    /// Whether a checkpoint asked for through the admin API (with an id
    /// or without) can be taken now.
    pub(super) fn admit(&self, wanted: Option<u64>) -> Admit {
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
    pub(super) async fn take(
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
        let span = tracing::info_span!("checkpoint", id, partitions = ?job.plan.engine.partitions);
        let snapshot = job
            .checkpoint(id, position.clone(), outputs, &self.local)
            .instrument(span.clone())
            .await?;
        self.next_id += 1;
        let store = self.store.clone();
        let retain = self.retain;
        let also_keep: checkpoint::AlsoKeep = self
            .kept
            .iter()
            .filter_map(|(p, id)| Some((*p, (*id)?)))
            .collect();
        let upload = tracing::info_span!(
            parent: &span,
            "checkpoint.upload",
            id,
            bytes_uploaded = tracing::field::Empty,
            bytes_total = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        // Writing and linking the state runs beside the processing (which
        // writes nothing to RocksDB until it is done). Started here, not in
        // the task below: the run loop may wait for it before that task is
        // ever polled.
        let linked = tokio::task::spawn_blocking(move || snapshot.take());
        let handle = tokio::spawn(
            async move {
                let done = match linked.await {
                    Ok(Ok(pending)) => {
                        checkpoint::upload(pending, &store, retain, &also_keep).await
                    }
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(anyhow::anyhow!("the checkpoint thread failed: {e}")),
                };
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
    pub(super) async fn poll(
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
    pub(super) async fn wait(
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
                if let Some(recorded) = outputs.committed(done.id)? {
                    self.committed = Some(done.id);
                    self.commits += 1;
                    // Not those released since it was taken.
                    for p in recorded {
                        if let Some(kept) = self.kept.get_mut(&p) {
                            *kept = Some(done.id);
                        }
                    }
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

    /// With a Kafka transaction: `partition` runs here, restored from
    /// checkpoint `restored`, which its results were committed with last
    /// (none: it never committed any, a restart starts it over). Kept in the
    /// store until this processor commits a newer one of it.
    pub(super) fn keep(&mut self, partition: u32, restored: Option<u64>) {
        self.kept.insert(partition, restored);
    }

    /// `partition` no longer runs here: its checkpoints are its new
    /// owner's to keep.
    pub(super) fn forget(&mut self, partition: u32) {
        self.kept.remove(&partition);
    }

    /// Deletes the job's checkpoints of these partitions.
    pub(super) async fn clear(&self, partitions: &[u32]) -> anyhow::Result<()> {
        checkpoint::clear(&self.store, partitions).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_due_checkpoint_waits_for_a_write_back_but_not_for_long() {
        let at = Instant::now();
        let ms = Duration::from_millis;
        assert!(!due_at(None, at, false), "no interval: never due");
        assert!(!due_at(Some(at), at - ms(1), false), "not yet");
        assert!(due_at(Some(at), at, false));
        assert!(
            !due_at(Some(at), at + ms(30), true),
            "a write-back in flight"
        );
        assert!(!due_at(Some(at), at + MAX_DEFER - ms(1), true));
        assert!(due_at(Some(at), at + MAX_DEFER, true), "waited long enough");
    }
}
