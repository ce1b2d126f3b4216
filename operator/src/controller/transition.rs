//! One reconcile of a job: validate, fetch, decide by the diff ladder,
//! take the final checkpoint a change needs, apply, checkpoint on schedule,
//! write status.

use std::time::Duration;

use eddy_api::{
    spec::{Phase, StreamJobSpec},
    StreamJob,
};
use jiff::Timestamp;
use kube::{
    runtime::{controller::Action, events::EventType},
    ResourceExt,
};

use super::{
    apply, observe, patch_status, phase_of, publish, requeue_for, status, timing, Context, Error,
    JobMemory,
};
use crate::build::{
    self,
    assignment::keep_or_spread,
    diff::{self, Change},
};
use crate::scheduler::Timing;

/// A change that moves state, in progress: a final checkpoint on every
/// pod, then an apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The generation being rolled out.
    pub generation: i64,
    pub change: Change,
    pub started: Timestamp,
    /// The final checkpoint's id, once asked for.
    pub final_id: Option<u64>,
    /// The final checkpoint completed, failed or was not possible: apply.
    pub checkpointed: bool,
}

/// How soon to look again while a change is in progress.
const STEP: Duration = Duration::from_secs(2);

pub(super) async fn reconcile_valid_or_not(
    job: &StreamJob,
    ctx: &Context,
    memory: &mut JobMemory,
) -> Result<Action, Error> {
    let now = (ctx.clock)();
    let mut problems: Vec<String> = eddy_api::validate::validate(&job.spec)
        .iter()
        .chain(build::cluster_problems(job).iter())
        .map(ToString::to_string)
        .collect();
    problems.dedup();
    if !problems.is_empty() {
        let was_valid =
            status::condition_status(job.status.as_ref(), status::SPEC_VALID) != Some("False");
        if was_valid {
            publish(
                ctx,
                job,
                EventType::Warning,
                "SpecInvalid",
                "Validate",
                problems.join("; "),
            )
            .await;
        }
        patch_status(ctx, job, status::invalid(job, &problems, now)).await?;
        return Ok(Action::await_change());
    }
    reconcile_valid(job, ctx, memory, now).await
}

async fn reconcile_valid(
    job: &StreamJob,
    ctx: &Context,
    memory: &mut JobMemory,
    now: Timestamp,
) -> Result<Action, Error> {
    let name = job.name_any();
    let namespace = job.namespace().unwrap_or_default();
    let generation = job.metadata.generation.unwrap_or(0);
    let previous = job.status.clone().unwrap_or_default();
    let observed = observe::fetch(&ctx.client, &namespace, &name).await?;
    let last: Option<StreamJobSpec> = previous
        .last_reconciled_spec
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok());
    let change = match &last {
        None => Change::Resume, // first apply: nothing runs yet
        Some(old) => diff::ladder(old, &job.spec),
    };
    let pods: Vec<String> = (0..observed.desired_pods().max(0) as u32)
        .map(|i| (ctx.pod_url)(job, i))
        .collect();
    let timing = timing(job);

    // A change that moves state: final checkpoint first, while pods run.
    let moves_state = matches!(change, Change::Scale | Change::Upgrade | Change::Suspend);
    let mut transition = None;
    if moves_state {
        let t = match memory.transition.take() {
            Some(t) if t.generation == generation && t.change == change => t,
            _ => {
                let (reason, what) = started_event(change);
                publish(
                    ctx,
                    job,
                    EventType::Normal,
                    reason,
                    "Checkpoint",
                    what.into(),
                )
                .await;
                Transition {
                    generation,
                    change,
                    started: now,
                    final_id: None,
                    checkpointed: observed.ready_pods() == 0,
                }
            }
        };
        let t = final_checkpoint(job, ctx, memory, t, &pods, timing, now).await;
        if !t.checkpointed {
            memory.transition = Some(t);
            let facts = facts(&observed, phase_of(change), memory, &previous, now);
            patch_status(ctx, job, status::compute(job, facts)).await?;
            return Ok(Action::requeue(STEP));
        }
        transition = Some(t);
    }

    // Volume claim templates cannot change in place, whatever rung of the
    // ladder carries the change (an upgrade, or a suspend or resume made in
    // the same edit): delete the StatefulSet once per generation, and apply
    // on the next pass.
    let applies = !matches!(change, Change::None | Change::Ignore);
    if applies
        && memory.recreated_for != Some(generation)
        && observed.stateful_set.is_some()
        && last
            .as_ref()
            .is_some_and(|old| diff::needs_recreate(old, &job.spec))
    {
        apply::delete_stateful_set(&ctx.client, &namespace, &name).await?;
        memory.recreated_for = Some(generation);
        memory.transition = transition;
        return Ok(Action::requeue(STEP));
    }

    // Apply: the children of the current spec.
    let replicas = build::statefulset::replicas(&job.spec);
    let assignment = keep_or_spread(
        &previous.assignment,
        job.spec.partitions,
        job.spec.parallelism,
    );
    let children = build::build(job, &assignment, &ctx.build)?;
    let applied = apply::apply_changed(&ctx.client, &namespace, children, &observed).await?;
    if !applied.is_empty() {
        for orphan in apply::delete_orphans(&ctx.client, &namespace, &name).await? {
            tracing::info!(job = %name, "deleted {orphan}, which the job no longer has");
        }
    }
    if let Some((reason, note)) = finished_event(change, &last, job, &applied) {
        publish(ctx, job, EventType::Normal, reason, "Apply", note).await;
    }
    memory.transition = None;

    // Checkpoints on schedule while running.
    let running = replicas > 0 && observed.ready_pods() > 0;
    if running && change != Change::Scale && change != Change::Upgrade {
        let outcome = ctx
            .scheduler
            .step(&pods, &mut memory.checkpoints, timing, false, now)
            .await;
        if outcome.started.is_some() {
            ctx.metrics.checkpoints_triggered.inc();
        }
        if let (Some(why), true) = (&outcome.failed, outcome.reachable == outcome.pods) {
            ctx.metrics.checkpoints_failed.inc();
            publish(
                ctx,
                job,
                EventType::Warning,
                "CheckpointFailed",
                "Checkpoint",
                why.clone(),
            )
            .await;
        }
    }

    let phase = if job.spec.suspend {
        Phase::Suspended
    } else if memory.checkpoints.round.is_some() {
        Phase::Checkpointing
    } else if replicas > 0 && observed.ready_pods() >= replicas as i32 {
        Phase::Running
    } else {
        Phase::Pending
    };
    let mut facts = facts(&observed, phase, memory, &previous, now);
    facts.assignment = assignment;
    // What was just applied, not what was there before.
    facts.desired_pods = replicas as i32;
    facts.reconciled_spec = serde_json::to_string(&job.spec).ok();
    let next = status::compute(job, facts);
    let was_healthy =
        status::condition_status(job.status.as_ref(), status::CHECKPOINTS_HEALTHY) != Some("False");
    if was_healthy
        && status::condition_status(Some(&next), status::CHECKPOINTS_HEALTHY) == Some("False")
    {
        let message = next
            .conditions
            .iter()
            .find(|c| c.type_ == status::CHECKPOINTS_HEALTHY)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        publish(
            ctx,
            job,
            EventType::Warning,
            "CheckpointLagHigh",
            "Checkpoint",
            message,
        )
        .await;
    }
    patch_status(ctx, job, next).await?;
    Ok(if job.spec.suspend {
        Action::requeue(Duration::from_secs(300))
    } else {
        requeue_for(job)
    })
}

/// Drives the final checkpoint of a transition one step.
async fn final_checkpoint(
    job: &StreamJob,
    ctx: &Context,
    memory: &mut JobMemory,
    mut t: Transition,
    pods: &[String],
    timing: Timing,
    now: Timestamp,
) -> Transition {
    if t.checkpointed {
        return t;
    }
    let outcome = ctx
        .scheduler
        .step(pods, &mut memory.checkpoints, timing, true, now)
        .await;
    if let (Some(done), Some(id)) = (&outcome.completed, t.final_id) {
        if done.id >= id {
            t.checkpointed = true;
            return t;
        }
    }
    // A round this step starts is a final one (forced above).
    if let Some(id) = outcome.started {
        t.final_id = Some(id);
        ctx.metrics.checkpoints_triggered.inc();
    }
    let overdue = now.duration_since(t.started).unsigned_abs() > timing.timeout;
    if let Some(why) = outcome.failed.filter(|_| t.final_id.is_some()).or_else(|| {
        overdue.then(|| {
            format!(
                "no final checkpoint within {}",
                humantime::format_duration(timing.timeout)
            )
        })
    }) {
        ctx.metrics.checkpoints_failed.inc();
        // Given up: a round still open would hold back the periodic ones
        // until it times out, and count as failed a second time.
        memory.checkpoints.round = None;
        publish(
            ctx,
            job,
            EventType::Warning,
            "FinalCheckpointFailed",
            "Checkpoint",
            format!("{why}; going on: pods restore from the last completed checkpoint"),
        )
        .await;
        t.checkpointed = true;
    }
    t
}

fn facts(
    observed: &observe::Observed,
    phase: Phase,
    memory: &JobMemory,
    previous: &eddy_api::spec::StreamJobStatus,
    now: Timestamp,
) -> status::Facts {
    status::Facts {
        phase,
        pods: observed.pods(),
        ready_pods: observed.ready_pods(),
        desired_pods: observed.desired_pods(),
        assignment: previous.assignment.clone(),
        last_checkpoint: newest(
            memory.checkpoints.last_completed.clone(),
            previous.last_checkpoint.clone(),
        ),
        reconciled_spec: previous.last_reconciled_spec.clone(),
        now,
    }
}

fn newest(
    a: Option<eddy_api::spec::CheckpointRecord>,
    b: Option<eddy_api::spec::CheckpointRecord>,
) -> Option<eddy_api::spec::CheckpointRecord> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if a.id >= b.id { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn started_event(change: Change) -> (&'static str, &'static str) {
    match change {
        Change::Scale => (
            "RescaleStarted",
            "parallelism changed: final checkpoint on every pod, then the pods restart with the new assignment",
        ),
        Change::Suspend => (
            "Suspending",
            "spec.suspend is true: final checkpoint on every pod, then zero pods",
        ),
        _ => (
            "UpgradeStarted",
            "the spec changed: final checkpoint on every pod, then the pods restart from it",
        ),
    }
}

fn finished_event(
    change: Change,
    last: &Option<StreamJobSpec>,
    job: &StreamJob,
    applied: &[&str],
) -> Option<(&'static str, String)> {
    let n = job.spec.parallelism;
    match change {
        Change::Resume if last.is_none() => Some((
            "Created",
            format!("created {} for {n} pods", applied.join(", ")),
        )),
        Change::Resume => Some((
            "Resumed",
            format!("{n} pods restore from the last checkpoint"),
        )),
        Change::Suspend => Some((
            "Suspended",
            "scaled to zero pods after the final checkpoint".into(),
        )),
        Change::Scale => Some((
            "RescaleFinished",
            format!("{n} pods; they restore their partitions from the final checkpoint"),
        )),
        Change::Upgrade => Some((
            "UpgradeFinished",
            "applied the new spec; pods restore from the final checkpoint".into(),
        )),
        Change::None | Change::Ignore => None,
    }
}
