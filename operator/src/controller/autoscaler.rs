//! The autoscaler's part of a reconcile of a running job: look at the
//! pods (at most every [`SAMPLE_EVERY_MS`]), decide with the pure policy
//! ([`crate::autoscale`]), show the decision (status, Scaling condition,
//! one Event per new decision) and, in mode `apply`, carry it out by
//! moving partitions between running pods.
//!
//! A move: for each partition that changes pods, its old pod releases it
//! under a checkpoint of its own and its new pod, if it runs already,
//! acquires it from that checkpoint; pods a scale-out adds start with the
//! partitions released for them, and pods a scale-in removes are emptied
//! before the StatefulSet shrinks. Nothing else restarts. The move is kept
//! in `status.autoscaling.moving`, and both calls are idempotent on the
//! processor's side, so an operator restarted in its middle finishes it.

use eddy_api::{
    spec::{AutoscalingMode, AutoscalingStatus, MoveStatus, PodAssignment, ReleasedPartition},
    StreamJob,
};
use jiff::Timestamp;
use kube::runtime::events::EventType;

use super::{publish, Context};
use crate::{
    autoscale::{
        decide,
        moves::{moves, unrun},
        report::{self, same},
        sample::sample,
        Bounds, History, Memory,
    },
    scheduler::{client::CallError, next_id},
};

/// Least time between two looks at a job's pods.
pub const SAMPLE_EVERY_MS: i64 = 5_000;
/// How often the per-partition loads in the status are refreshed.
const LOADS_EVERY_MS: i64 = 60_000;
/// An alert no webhook repeated for this long is forgotten (route Eddy's
/// alerts with a shorter `repeat_interval`).
pub const ALERT_STALE_MS: i64 = 15 * 60_000;

/// What the autoscaler keeps of a job between reconciles. Losing it (an
/// operator restart) costs a metrics window of measurements before the
/// next decision; a move in progress is in the status.
#[derive(Clone, Debug, Default)]
pub struct AutoscaleMemory {
    pub history: History,
    pub policy: Memory,
    last_sample_ms: Option<i64>,
    /// The last decision an Event was considered for.
    last_event: Option<eddy_api::spec::ScalingDecision>,
    loads_at_ms: Option<i64>,
    /// The failure of the move in progress last reported.
    move_failure: Option<String>,
    /// Partitions no pod ran at the last look, with the pod assigned.
    unrun: Vec<(u32, u32)>,
}

/// What the reconcile needs to know of a job for the autoscaler.
pub(super) struct Look<'a> {
    pub ctx: &'a Context,
    pub job: &'a StreamJob,
    pub namespace: &'a str,
    pub name: &'a str,
    /// The admin API of each pod of the current assignment, by ordinal.
    pub pods: Vec<String>,
    pub assignment: &'a [PodAssignment],
    /// Its version (`status.assignmentVersion`).
    pub assignment_version: u64,
    pub checkpoint_lag_s: f64,
    pub now: Timestamp,
}

/// What a step leaves for the status.
#[derive(Debug, Default)]
pub(super) struct Stepped {
    pub status: Option<AutoscalingStatus>,
    /// A move finished: the assignment (and pods) it reached.
    pub assignment: Option<Vec<PodAssignment>>,
    /// A move is in progress: look again soon.
    pub moving: bool,
}

/// One step; `previous` is `status.autoscaling`.
pub(super) async fn step(
    look: &Look<'_>,
    previous: Option<&AutoscalingStatus>,
    memory: &mut AutoscaleMemory,
) -> Stepped {
    let spec = &look.job.spec.autoscaling;
    let mut status = previous.cloned().unwrap_or_default();
    status.mode = spec.mode;
    if status.moving.is_some() {
        // Also after the mode changed: released partitions must land.
        return advance(look, status, memory).await;
    }
    if spec.mode == AutoscalingMode::Disabled {
        // Only the pods it set remain, until spec.parallelism changes.
        let kept = status.parallelism.map(|_| AutoscalingStatus {
            mode: spec.mode,
            parallelism: status.parallelism,
            based_on: status.based_on,
            ..AutoscalingStatus::default()
        });
        *memory = AutoscaleMemory::default();
        return Stepped {
            status: kept,
            ..Stepped::default()
        };
    }
    let now_ms = look.now.as_millisecond();
    let due = memory
        .last_sample_ms
        .is_none_or(|t| now_ms - t >= SAMPLE_EVERY_MS || now_ms < t);
    if !due {
        return Stepped {
            status: Some(status),
            ..Stepped::default()
        };
    }
    memory.last_sample_ms = Some(now_ms);
    let bounds = Bounds::of(spec, look.job.spec.partitions);
    let scheduler = &look.ctx.scheduler;
    let (partitions, stats) = futures::join!(
        scheduler.partitions_all(&look.pods),
        scheduler.stats_all(&look.pods)
    );
    let alerts = match look.ctx.alerts.lock() {
        Ok(mut alerts) => {
            alerts.forget_stale(now_ms, ALERT_STALE_MS);
            alerts.capacity(look.namespace, look.name)
        }
        Err(_) => Vec::new(),
    };
    let Some(sample) = sample(now_ms, &partitions, &stats, look.checkpoint_lag_s, alerts) else {
        // A pod did not answer: no look this time.
        return Stepped {
            status: Some(status),
            ..Stepped::default()
        };
    };
    if spec.mode == AutoscalingMode::Apply {
        reattach(look, &partitions, memory).await;
    }
    memory
        .history
        .push(sample, bounds.history_ms() + 2 * SAMPLE_EVERY_MS);
    let d = decide(
        &memory.history,
        look.assignment,
        &bounds,
        &memory.policy,
        now_ms,
    );
    let pods = look.assignment.len() as u32;
    let applies = spec.mode == AutoscalingMode::Apply && d.action.changes();
    let record = report::record(&d, pods, look.now.to_string(), applies);
    // Changes are remembered (cooldown, judging their effect) only when
    // carried out; a recommendation stays visible while it holds.
    if applies || !d.action.changes() {
        memory.policy.record(&d);
    }
    if memory.last_event.as_ref().is_none_or(|l| !same(l, &record))
        && record.action != report::NO_CHANGE
    {
        let type_ = match report::is_warning(&d.action) {
            true => EventType::Warning,
            false => EventType::Normal,
        };
        let note = report::note(&record, applies);
        publish(look.ctx, look.job, type_, &record.action, "Autoscale", note).await;
    }
    memory.last_event = Some(record.clone());
    status.recommended_parallelism = Some(d.recommended);
    report::remember(&mut status, record.clone());
    let refresh = memory
        .loads_at_ms
        .is_none_or(|t| now_ms - t >= LOADS_EVERY_MS);
    if let (true, Some(latest)) = (refresh, memory.history.latest()) {
        status.partitions = report::loads(&d, latest, look.assignment);
        memory.loads_at_ms = Some(now_ms);
    }
    match d.assignment.filter(|_| applies) {
        Some(target) => {
            status.moving = Some(MoveStatus {
                action: record.action,
                started: look.now.to_string(),
                pods: target.len() as u32,
                target,
                // Told to the pods that take part, before the ConfigMap.
                version: look.assignment_version + 1,
                released: Vec::new(),
                moved: Vec::new(),
            });
            advance(look, status, memory).await
        }
        None => Stepped {
            status: Some(status),
            ..Stepped::default()
        },
    }
}

/// Gives a partition that no pod ran at two looks in a row back to the pod
/// the assignment gives it (see [`unrun`]).
async fn reattach(
    look: &Look<'_>,
    running: &[Option<crate::scheduler::PodPartitions>],
    memory: &mut AutoscaleMemory,
) {
    let running: Option<Vec<Vec<u32>>> = running
        .iter()
        .map(|pod| pod.as_ref().map(|p| p.partitions.clone()))
        .collect();
    let Some(running) = running else {
        return;
    };
    let now = unrun(look.assignment, &running);
    let seen = std::mem::replace(&mut memory.unrun, now.clone());
    let client = look.ctx.scheduler.client();
    for (partition, ordinal) in now.into_iter().filter(|u| seen.contains(u)) {
        let Some(pod) = look.pods.get(ordinal as usize) else {
            continue;
        };
        let (type_, reason, note) =
            match client.acquire(pod, partition, 0, look.assignment_version).await {
                Ok(at) => (
                    EventType::Warning,
                    "PartitionReattached",
                    format!(
                        "partition {partition} was run by no pod (pod {ordinal} restarted on an                          assignment from before it moved there?); pod {ordinal} took it over from                          checkpoint {at}"
                    ),
                ),
                Err(e) => (
                    EventType::Warning,
                    "PartitionMoveFailed",
                    format!(
                        "partition {partition} is run by no pod, and pod {ordinal} could not take                          it over: {e}; tried again on the next look"
                    ),
                ),
            };
        publish(look.ctx, look.job, type_, reason, "Autoscale", note).await;
    }
}

/// Carries the move in `status.moving` on as far as it goes now.
async fn advance(
    look: &Look<'_>,
    mut status: AutoscalingStatus,
    memory: &mut AutoscaleMemory,
) -> Stepped {
    let Some(mut mv) = status.moving.take() else {
        return Stepped {
            status: Some(status),
            ..Stepped::default()
        };
    };
    let result = carry_out(look, &mut mv).await;
    match result {
        Ok(()) => {
            memory.move_failure = None;
            status.parallelism = Some(mv.pods);
            status.based_on = Some(look.job.spec.parallelism);
            publish(
                look.ctx,
                look.job,
                EventType::Normal,
                "PartitionsMoved",
                "Autoscale",
                format!(
                    "{} partitions moved ({}); the job runs on {} pods, none of the others \
                     restarted",
                    mv.moved.len(),
                    list(&mv.moved),
                    mv.pods
                ),
            )
            .await;
            Stepped {
                status: Some(status),
                assignment: Some(mv.target),
                moving: false,
            }
        }
        // Refused before anything moved (e.g. a source whose partitions
        // share one position): given up, and not tried again for a while.
        Err(Failure::Refused(why)) if mv.released.is_empty() => {
            let cooldown = Bounds::of(&look.job.spec.autoscaling, look.job.spec.partitions)
                .cooldown_ms
                .max(60_000);
            let until = look.now.as_millisecond() + 3 * cooldown;
            for kind in ["scale-out", "scale-in", "isolate", "rebalance"] {
                memory.policy.ineffective.push((kind, until));
            }
            // Not carried out: not judged for its effect either.
            if let Some(last) = &mut memory.policy.last {
                last.judged = true;
            }
            let note = format!(
                "partitions cannot move, so the {} is not applied: {why}",
                mv.action
            );
            publish(
                look.ctx,
                look.job,
                EventType::Warning,
                "ScalingBlocked",
                "Autoscale",
                note,
            )
            .await;
            Stepped {
                status: Some(status),
                ..Stepped::default()
            }
        }
        Err(failure) => {
            let why = failure.to_string();
            if memory.move_failure.as_ref() != Some(&why) {
                let note = format!(
                    "moving partitions for the {} stopped ({} of them moved): {why}; tried again \
                     on the next look",
                    mv.action,
                    mv.moved.len()
                );
                publish(
                    look.ctx,
                    look.job,
                    EventType::Warning,
                    "PartitionMoveFailed",
                    "Autoscale",
                    note,
                )
                .await;
                memory.move_failure = Some(why);
            }
            status.moving = Some(mv);
            Stepped {
                status: Some(status),
                assignment: None,
                moving: true,
            }
        }
    }
}

/// Why a move stopped.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// A processor refused to let a partition go (409).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Call(#[from] CallError),
    #[error("{0}")]
    Other(String),
}

/// Releases and acquires every partition of the move not done yet.
async fn carry_out(look: &Look<'_>, mv: &mut MoveStatus) -> Result<(), Failure> {
    let client = look.ctx.scheduler.client();
    let pod = |ordinal: u32| {
        look.pods
            .get(ordinal as usize)
            .ok_or_else(|| Failure::Other(format!("pod {ordinal} is not in the assignment")))
    };
    // Pods that do not answer (one restarted on an older assignment waits
    // for this move's end) fail only a call they are asked.
    let listings = look.ctx.scheduler.list_all(&look.pods).await;
    let listings: Vec<_> = listings.into_iter().flatten().collect();
    let mut id = next_id(&listings);
    for m in moves(look.assignment, &mv.target) {
        if mv.moved.contains(&m.partition) {
            continue;
        }
        let released = mv.released.iter().find(|r| r.partition == m.partition);
        let checkpoint = match released {
            Some(r) => r.checkpoint,
            None => {
                let at = match client
                    .release(pod(m.from)?, m.partition, id, mv.version)
                    .await
                {
                    Ok(at) => at,
                    Err(CallError::Status {
                        status: 409, body, ..
                    }) => return Err(Failure::Refused(body)),
                    Err(e) => return Err(e.into()),
                };
                id = id.max(at + 1);
                mv.released.push(ReleasedPartition {
                    partition: m.partition,
                    checkpoint: at,
                });
                tracing::info!(job = %look.name, partition = m.partition, checkpoint = at, "released");
                at
            }
        };
        // A pod a scale-out adds starts with it; one running takes it now.
        if (m.to as usize) < look.pods.len() {
            match client
                .acquire(pod(m.to)?, m.partition, checkpoint, mv.version)
                .await
            {
                Ok(_) => {}
                // Asked again after an answer that was lost.
                Err(CallError::Status {
                    status: 409, body, ..
                }) if body.contains("is run here already") => {}
                Err(e) => return Err(e.into()),
            }
            tracing::info!(job = %look.name, partition = m.partition, pod = m.to, "acquired");
        }
        mv.moved.push(m.partition);
    }
    Ok(())
}

fn list(partitions: &[u32]) -> String {
    let all: Vec<String> = partitions.iter().map(u32::to_string).collect();
    all.join(", ")
}
