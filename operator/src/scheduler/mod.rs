//! Checkpoint scheduling: the operator, not each pod, decides when a job
//! checkpoints, so every pod checkpoints under the same id (partitions
//! checkpointed by different pods can then be restored together after a
//! rescale), and a job whose checkpoints stall is noticed.
//!
//! [`Scheduler::step`] is what the controller calls on every reconcile of
//! a running job. It reads every pod's `GET /checkpoints`, collects the
//! round in flight, and starts a new round (`POST /checkpoints {"id": N}` on
//! every pod, `N` above every pod's `nextId`) when the interval has passed.
//! Final checkpoints before a rescale, an upgrade or a suspension are
//! rounds too. The decisions are pure functions below; only `step` and the
//! [`client`] do I/O.

pub mod client;

use std::time::Duration;

use eddy_api::spec::CheckpointRecord;
use jiff::Timestamp;

pub use client::{AdminClient, Completed, Listing, PodPartitionLoad, PodPartitions, PodStats};

/// A checkpoint round: one id asked of every pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Round {
    pub id: u64,
    pub started: Timestamp,
    /// A final checkpoint: pods stop consuming once it is taken.
    pub is_final: bool,
}

/// What the scheduler remembers of one job between reconciles. Losing it
/// (an operator restart) is harmless: the next round starts one interval
/// after the last completed checkpoint, with an id above every pod's.
#[derive(Clone, Debug, Default)]
pub struct JobCheckpoints {
    pub round: Option<Round>,
    pub last_started: Option<Timestamp>,
    /// The newest checkpoint completed on every pod.
    pub last_completed: Option<CheckpointRecord>,
    /// Rounds that failed or timed out.
    pub failures: u64,
}

/// The timing a job's spec asks for.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub interval: Duration,
    pub timeout: Duration,
}

/// What one step saw and did.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    /// Pods that answered.
    pub reachable: usize,
    /// Pods asked.
    pub pods: usize,
    /// A round that completed on every pod in this step.
    pub completed: Option<CheckpointRecord>,
    /// A round started in this step.
    pub started: Option<u64>,
    /// Why a round failed in this step.
    pub failed: Option<String>,
    /// Pods that answered they finished their finite input.
    pub finished: usize,
}

impl Outcome {
    /// Every pod answered, and every one has finished.
    pub fn all_finished(&self) -> bool {
        self.pods > 0 && self.finished == self.pods
    }
}

/// The lowest id every pod accepts for a new checkpoint.
pub fn next_id(listings: &[Listing]) -> u64 {
    listings
        .iter()
        .flat_map(|l| {
            [l.next_id, l.in_flight.map_or(0, |i| i + 1)]
                .into_iter()
                .chain(l.checkpoints.iter().map(|c| c.id + 1))
        })
        .max()
        .unwrap_or(1)
        .max(1)
}

/// The newest checkpoint id every pod has completed, as one record: the
/// latest completion time, the longest duration, bytes summed over pods.
pub fn completed_on_all(listings: &[Listing]) -> Option<CheckpointRecord> {
    let first = listings.first()?;
    let id = first
        .checkpoints
        .iter()
        .map(|c| c.id)
        .filter(|id| {
            listings
                .iter()
                .all(|l| l.checkpoints.iter().any(|c| c.id == *id))
        })
        .max()?;
    let of_id: Vec<&Completed> = listings
        .iter()
        .filter_map(|l| l.checkpoints.iter().find(|c| c.id == id))
        .collect();
    Some(CheckpointRecord {
        id,
        time: of_id
            .iter()
            .map(|c| c.time.clone())
            .max()
            .unwrap_or_default(),
        duration_ms: of_id.iter().map(|c| c.duration_ms).max().unwrap_or(0),
        bytes_uploaded: of_id.iter().map(|c| c.bytes_uploaded).sum(),
        bytes_total: of_id.iter().map(|c| c.bytes_total).sum(),
    })
}

/// Whether a new periodic round is due: one interval after the later of
/// the last round started and the last checkpoint completed.
pub fn due(state: &JobCheckpoints, interval: Duration, now: Timestamp) -> bool {
    if state.round.is_some() {
        return false;
    }
    let completed = state
        .last_completed
        .as_ref()
        .and_then(|c| c.time.parse::<Timestamp>().ok());
    match state.last_started.max(completed) {
        None => true,
        Some(last) => now.duration_since(last).unsigned_abs() >= interval || now < last,
    }
}

/// Seconds since the last completed checkpoint, or since `since` (when the
/// job started running) when there is none.
pub fn lag_seconds(last: Option<&CheckpointRecord>, since: Timestamp, now: Timestamp) -> i64 {
    let from = last
        .and_then(|c| c.time.parse::<Timestamp>().ok())
        .unwrap_or(since);
    now.duration_since(from).as_secs().max(0)
}

/// Drives checkpoints of the jobs' pods through their admin APIs.
#[derive(Clone, Default)]
pub struct Scheduler {
    client: AdminClient,
}

impl Scheduler {
    /// Lists every pod; `None` for those that did not answer.
    pub async fn list_all(&self, pods: &[String]) -> Vec<Option<Listing>> {
        let calls = pods.iter().map(|p| self.client.list(p));
        futures::future::join_all(calls)
            .await
            .into_iter()
            .map(|r| {
                r.map_err(|e| tracing::debug!("checkpoint listing: {e}"))
                    .ok()
            })
            .collect()
    }

    /// The client the scheduler calls pods with.
    pub fn client(&self) -> &AdminClient {
        &self.client
    }

    /// `GET /partitions` of every pod; `None` for those that did not answer.
    pub async fn partitions_all(&self, pods: &[String]) -> Vec<Option<PodPartitions>> {
        let calls = pods.iter().map(|p| self.client.partitions(p));
        futures::future::join_all(calls)
            .await
            .into_iter()
            .map(|r| r.map_err(|e| tracing::debug!("partitions: {e}")).ok())
            .collect()
    }

    /// `GET /stats` of every pod; those that did not answer are left out.
    pub async fn stats_all(&self, pods: &[String]) -> Vec<PodStats> {
        let calls = pods.iter().map(|p| self.client.stats(p));
        futures::future::join_all(calls)
            .await
            .into_iter()
            .filter_map(Result::ok)
            .collect()
    }

    /// Resumes consumption on every pod (after a final checkpoint whose
    /// change was abandoned); the errors of pods that did not answer.
    pub async fn resume_all(&self, pods: &[String]) -> Vec<String> {
        let calls = pods.iter().map(|p| self.client.resume(p));
        futures::future::join_all(calls)
            .await
            .into_iter()
            .filter_map(|r| r.err().map(|e| e.to_string()))
            .collect()
    }

    /// One scheduling step for a job whose pods serve their admin APIs at
    /// `pods`: collect the round in flight, time it out, or start a new
    /// one when due (`force_final` starts a final round at once).
    pub async fn step(
        &self,
        pods: &[String],
        state: &mut JobCheckpoints,
        timing: Timing,
        force_final: bool,
        now: Timestamp,
    ) -> Outcome {
        let answers = self.list_all(pods).await;
        let mut outcome = Outcome {
            pods: pods.len(),
            reachable: answers.iter().filter(|a| a.is_some()).count(),
            finished: answers.iter().flatten().filter(|l| l.finished).count(),
            ..Outcome::default()
        };
        let answers_kept = answers.clone();
        let all: Option<Vec<Listing>> = answers.into_iter().collect();
        // A final round collected now ends the asking: the pods are paused
        // and the caller applies what the final checkpoint was for.
        let mut collected_final = false;
        if let Some(listings) = &all {
            if let Some(done) = completed_on_all(listings) {
                if state.last_completed.as_ref().is_none_or(|c| c.id < done.id) {
                    if let Some(round) = state.round.take_if(|r| done.id >= r.id) {
                        collected_final = round.is_final;
                        outcome.completed = Some(done.clone());
                    }
                    state.last_completed = Some(done);
                }
            }
        }
        // A pod that has the round neither in flight nor completed lost it
        // (it restarted, or its upload failed): it will never complete, so
        // the round fails now rather than at its timeout.
        let lost = state.round.as_ref().and_then(|round| {
            pods.iter()
                .zip(&answers_kept)
                .find(|(_, l)| {
                    l.as_ref().is_some_and(|l| {
                        l.in_flight != Some(round.id)
                            && !l.checkpoints.iter().any(|c| c.id == round.id)
                    })
                })
                .map(|(pod, _)| (round.id, pod.clone()))
        });
        if let Some((id, pod)) = lost {
            outcome.failed = Some(format!(
                "checkpoint {id} is neither in flight nor completed on {pod} (it restarted or \
                 its upload failed)"
            ));
            state.failures += 1;
            state.round = None;
        }
        if let Some(round) = &state.round {
            let age = now.duration_since(round.started).unsigned_abs();
            if age > timing.timeout {
                outcome.failed = Some(format!(
                    "checkpoint {} did not complete on every pod within {}",
                    round.id,
                    humantime::format_duration(timing.timeout)
                ));
                state.failures += 1;
                state.round = None;
            }
        }
        // Finished pods' state no longer changes: no periodic rounds.
        let wanted = state.round.is_none()
            && !collected_final
            && (force_final || (due(state, timing.interval, now) && !outcome.all_finished()));
        if !wanted || pods.is_empty() {
            return outcome;
        }
        let Some(listings) = all else {
            if outcome.failed.is_none() && !force_final {
                outcome.failed = Some(format!(
                    "{} of {} pods did not answer; no checkpoint started",
                    pods.len() - outcome.reachable,
                    pods.len()
                ));
            }
            return outcome;
        };
        let id = next_id(&listings);
        state.last_started = Some(now);
        let calls = pods.iter().map(|p| self.client.trigger(p, id, force_final));
        let errors: Vec<String> = futures::future::join_all(calls)
            .await
            .into_iter()
            .filter_map(|r| r.err().map(|e| e.to_string()))
            .collect();
        if errors.is_empty() {
            state.round = Some(Round {
                id,
                started: now,
                is_final: force_final,
            });
            outcome.started = Some(id);
        } else {
            state.failures += 1;
            outcome.failed = Some(format!(
                "checkpoint {id} could not start: {}",
                errors.join("; ")
            ));
        }
        outcome
    }
}

#[cfg(test)]
mod tests;
