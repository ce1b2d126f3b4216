//! Partitions moving in and out of a running processor, for the admin API
//! (`POST /partitions/{p}/release` and `/acquire`), while the others go
//! on.
//!
//! Out: a checkpoint is taken and the partition stops at its cut (engine,
//! state and source), in the same pause. Its RocksDB directory stays until
//! the upload is done: if the checkpoint fails, the partition is taken back
//! from it and the source resumes at the cut, as if it never left.
//!
//! In: its newest complete checkpoint is downloaded in the background;
//! then the partition joins a worker and its source resumes at the offset
//! that checkpoint recorded for it.

use tokio::sync::oneshot;

use super::{
    checkpoints::{Admit, Checkpoints},
    Pipeline,
};
use crate::{
    admin::Refusal,
    checkpoint::{self, Manifest, Select, SourcePosition},
    output::outputs::Outputs,
    source::Source,
};

/// A release waiting for its checkpoint to complete.
struct Releasing {
    partition: u32,
    id: u64,
    /// Where the source was at the cut, to resume there if it fails.
    position: SourcePosition,
    /// Its largest event time and deciding watermark at the cut.
    marks: (Option<i64>, Option<i64>),
    reply: oneshot::Sender<Result<u64, Refusal>>,
}

/// What the download of an acquired partition's checkpoint found: its
/// manifest (none: the partition has no checkpoint) and the lowest id a
/// new checkpoint of it may take.
type Download = anyhow::Result<(Option<Manifest>, u64)>;

/// An acquisition waiting for its download.
struct Acquiring {
    partition: u32,
    at_least: Option<u64>,
    /// The assignment version it is part of, if the operator said.
    assignment: Option<u64>,
    download: tokio::task::JoinHandle<Download>,
    reply: oneshot::Sender<Result<Option<u64>, Refusal>>,
}

/// A move's answer, sent once the status shows its outcome.
enum Answer {
    Released(oneshot::Sender<Result<u64, Refusal>>, Result<u64, Refusal>),
    Acquired(
        oneshot::Sender<Result<Option<u64>, Refusal>>,
        Result<Option<u64>, Refusal>,
    ),
}

/// Moves in progress, and the partitions released, by the checkpoint they
/// were released with (for retries).
#[derive(Default)]
pub(super) struct Moves {
    releasing: Vec<Releasing>,
    acquiring: Vec<Acquiring>,
    released: Vec<(u32, u64)>,
    answers: Vec<Answer>,
}

/// Why no partition moves now: the processor is paused after a final
/// checkpoint, or finished.
pub(super) fn still(finished: bool) -> Refusal {
    Refusal::Conflict(if finished {
        "the job finished: its partitions do not move".into()
    } else {
        "paused after a final checkpoint: partitions move once resumed".into()
    })
}

/// Raises the assignment version this processor's checkpoints record to
/// `assignment`, the one a move it takes part in belongs to: restarted on
/// an older assignment, it then waits for the newer one (see `placement`).
fn raise(job: &mut Pipeline, assignment: Option<u64>) {
    let ours = &mut job.plan.checkpoints.assignment;
    *ours = (*ours).max(assignment.unwrap_or(0));
}

/// Why partitions of this processor cannot move at all, if they cannot:
/// its source has one position for all of them, or an output is a file of
/// its own (a restore cuts it back to one checkpoint's length, which
/// partitions restored from checkpoints of several processors do not
/// share).
fn immovable(source: &Source, outputs: &Outputs) -> Option<String> {
    if let Some(file) = outputs.snapshot().keys().next() {
        return Some(format!(
            "output {file} is a file of this processor: the results of partitions that move \
             cannot follow them (write to a table or a topic)"
        ));
    }
    source.fixed_partitions()
}

/// With a Kafka transaction, `partition` (running here again, or for the
/// first time) is recorded by its commits from now on, and the checkpoint
/// its results were committed with last is kept until one of ours is.
fn join_transaction(
    partition: u32,
    outputs: &mut Outputs,
    checkpoints: &mut Checkpoints,
) -> anyhow::Result<()> {
    if let Some(mut t) = outputs.transaction() {
        checkpoints.keep(partition, t.acquire(partition)?);
    }
    Ok(())
}

impl Moves {
    /// Takes the release checkpoint of `partition` and stops it at the cut;
    /// the reply waits for the checkpoint (see [`Moves::poll`]).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn release(
        &mut self,
        partition: u32,
        (id, assignment): (Option<u64>, Option<u64>),
        reply: oneshot::Sender<Result<u64, Refusal>>,
        job: &mut Pipeline,
        source: &mut Source,
        outputs: &mut Outputs,
        checkpoints: &mut Checkpoints,
    ) -> anyhow::Result<()> {
        if !job.owns(partition) {
            let answer = match self.released.iter().find(|(p, _)| *p == partition) {
                Some((_, id)) => Ok(*id),
                None => Err(Refusal::Conflict(format!(
                    "partition {partition} is not run here"
                ))),
            };
            let _ = reply.send(answer);
            return Ok(());
        }
        if let Some(why) = immovable(source, outputs) {
            let _ = reply.send(Err(Refusal::Conflict(why)));
            return Ok(());
        }
        // The one in flight first: the release needs a checkpoint of its own.
        let mut quiet = |_: &str| {};
        checkpoints.wait(&mut quiet, outputs).await?;
        let id = match checkpoints.admit(id) {
            Admit::Take(id) => id,
            Admit::Again(id) => {
                let why = format!("checkpoint {id} is taken already: ask with a new id");
                let _ = reply.send(Err(Refusal::Conflict(why)));
                return Ok(());
            }
            Admit::Refuse(why) => {
                let _ = reply.send(Err(Refusal::Conflict(why)));
                return Ok(());
            }
        };
        checkpoints.next_id = id;
        // The release checkpoint and every later one carry the version of
        // the assignment that no longer has the partition here.
        raise(job, assignment);
        let position = source.position();
        // The release checkpoint's results and the partition's record of it
        // are in the Kafka transaction now (precommitted); later ones are
        // its new owner's to record.
        checkpoints.take(job, source, outputs).await?;
        if let Some(mut t) = outputs.transaction() {
            t.release(partition);
        }
        checkpoints.forget(partition);
        let marks = job
            .engine_of(partition)
            .and_then(|e| e.marks_of(partition))
            .unwrap_or_default();
        job.release(partition)?;
        source.release(partition)?;
        tracing::info!(partition, checkpoint = id, "partition released");
        self.releasing.push(Releasing {
            partition,
            id,
            position,
            marks,
            reply,
        });
        Ok(())
    }

    /// Starts downloading `partition`'s checkpoint; the reply waits until
    /// it runs (see [`Moves::poll`]).
    pub(super) fn acquire(
        &mut self,
        partition: u32,
        (at_least, assignment): (Option<u64>, Option<u64>),
        reply: oneshot::Sender<Result<Option<u64>, Refusal>>,
        (job, source, outputs): (&Pipeline, &Source, &Outputs),
        checkpoints: &Checkpoints,
    ) {
        let count = job.plan.partition_count;
        let refusal = if partition >= count {
            Some(Refusal::BadRequest(format!(
                "the job has partitions 0 to {}",
                count.saturating_sub(1)
            )))
        } else if job.owns(partition) || self.acquiring.iter().any(|a| a.partition == partition) {
            Some(Refusal::Conflict(format!(
                "partition {partition} is run here already"
            )))
        } else if self.releasing.iter().any(|r| r.partition == partition) {
            Some(Refusal::Conflict(format!(
                "partition {partition} is being released here"
            )))
        } else {
            immovable(source, outputs).map(Refusal::Conflict)
        };
        if let Some(refusal) = refusal {
            let _ = reply.send(Err(refusal));
            return;
        }
        let store = checkpoints.store().clone();
        let target = job.partition_dir(partition);
        let select = Select {
            max_id: None,
            epoch: Some(job.plan.checkpoints.epoch),
        };
        let download = tokio::spawn(async move {
            let restored = checkpoint::restore(&store, partition, &target, select).await?;
            for (id, why) in &restored.rejected {
                tracing::warn!(partition, checkpoint = id, "rejected: {why}");
            }
            let next_id = checkpoint::next_id(&store, &[partition]).await?;
            Ok((restored.manifest, next_id))
        });
        self.acquiring.push(Acquiring {
            partition,
            at_least,
            assignment,
            download,
            reply,
        });
    }

    /// Finishes the moves whose checkpoint or download is done; true if
    /// one was.
    pub(super) async fn poll(
        &mut self,
        job: &mut Pipeline,
        source: &mut Source,
        outputs: &mut Outputs,
        checkpoints: &mut Checkpoints,
    ) -> anyhow::Result<bool> {
        let mut changed = false;
        while let Some(at) = self
            .releasing
            .iter()
            .position(|r| checkpoints.in_flight_id() != Some(r.id))
        {
            let r = self.releasing.remove(at);
            changed = true;
            let dir = job.partition_dir(r.partition);
            if checkpoints.completed.iter().any(|c| c.id == r.id) {
                std::fs::remove_dir_all(&dir).ok();
                self.released.push((r.partition, r.id));
                self.answers.push(Answer::Released(r.reply, Ok(r.id)));
                continue;
            }
            // Its checkpoint failed: the partition goes on here from the
            // cut, which its directory still holds.
            job.acquire(r.partition, r.marks, outputs)?;
            source.acquire(r.partition, Some(&r.position))?;
            join_transaction(r.partition, outputs, checkpoints)?;
            let why = format!(
                "checkpoint {} failed, so partition {} was not released: it runs here still",
                r.id, r.partition
            );
            self.answers
                .push(Answer::Released(r.reply, Err(Refusal::Kept(why))));
        }
        while let Some(at) = self.acquiring.iter().position(|a| a.download.is_finished()) {
            let a = self.acquiring.remove(at);
            changed = true;
            let answer = match a.download.await {
                Ok(Ok(found)) => self.join(
                    a.partition,
                    a.at_least,
                    found,
                    job,
                    source,
                    outputs,
                    checkpoints,
                ),
                Ok(Err(e)) => Err(format!("{e:#}")),
                Err(e) => Err(format!("the download failed: {e}")),
            };
            if answer.is_ok() {
                raise(job, a.assignment);
            }
            let answer = answer
                .map_err(|why| Refusal::Conflict(format!("partition {}: {why}", a.partition)));
            self.answers.push(Answer::Acquired(a.reply, answer));
        }
        Ok(changed)
    }

    /// The partition downloaded, if its checkpoint is new enough, joins.
    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        partition: u32,
        at_least: Option<u64>,
        (manifest, next_id): (Option<Manifest>, u64),
        job: &mut Pipeline,
        source: &mut Source,
        outputs: &mut Outputs,
        checkpoints: &mut Checkpoints,
    ) -> Result<Option<u64>, String> {
        let id = manifest.as_ref().map(|m| m.id);
        if let Some(wanted) = at_least.filter(|w| id.is_none_or(|id| id < *w)) {
            std::fs::remove_dir_all(job.partition_dir(partition)).ok();
            return Err(format!(
                "its newest complete checkpoint is {}, not at least {wanted}",
                id.map_or("none".into(), |id| id.to_string())
            ));
        }
        let marks = manifest
            .as_ref()
            .map_or((None, None), |m| (m.max_event_time, m.watermark));
        let position = manifest.as_ref().map(|m| &m.source);
        let joined = job
            .acquire(partition, marks, outputs)
            .and_then(|()| source.acquire(partition, position))
            .and_then(|()| join_transaction(partition, outputs, checkpoints));
        if let Err(e) = joined {
            // Not half joined: out of the engine again, if it got there.
            if job.owns(partition) {
                job.release(partition).ok();
                source.release(partition).ok();
            }
            return Err(format!("{e:#}"));
        }
        checkpoints.next_id = checkpoints.next_id.max(next_id);
        checkpoints.soon();
        self.released.retain(|(p, _)| *p != partition);
        tracing::info!(partition, checkpoint = ?id, "partition acquired");
        Ok(id)
    }

    /// Sends the answers of the moves [`Moves::poll`] finished: after the
    /// status shows them, so a client that asks next sees what it was told.
    pub(super) fn answer(&mut self) {
        for answer in self.answers.drain(..) {
            match answer {
                Answer::Released(reply, r) => drop(reply.send(r)),
                Answer::Acquired(reply, r) => drop(reply.send(r)),
            }
        }
    }

    /// Whether a move waits for something.
    pub(super) fn busy(&self) -> bool {
        !self.releasing.is_empty() || !self.acquiring.is_empty()
    }
}
