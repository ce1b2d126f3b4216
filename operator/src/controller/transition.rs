//! One reconcile of a job: validate, fetch, decide by the diff ladder,
//! drive a change that moves state (checked, final checkpoint, applied,
//! pods replaced at once), apply, checkpoint on schedule, write status.
//!
//! A change in progress lives in `status.transition`, so an operator
//! restarted in its middle goes on where it stopped. Whatever can fail is
//! checked (the children built and accepted by a server-side dry run)
//! before any pod is paused, and a change that is abandoned (the spec goes
//! back, the apply is refused, the final checkpoint fails) resumes the pods
//! it paused.

use std::time::Duration;

use eddy_api::{
    spec::{FinishedStatus, Phase, PodAssignment, StreamJobSpec, TransitionStatus, UpgradeMode},
    StreamJob,
};
use jiff::Timestamp;
use kube::{
    runtime::{controller::Action, events::EventType},
    ResourceExt,
};

use super::{
    apply, autoscaler, observe, patch_status, publish, requeue_for, status, timing, Context, Error,
    JobMemory, PAUSE_ANNOTATION,
};
use crate::autoscale::moves::parallelism_override;
use crate::build::{
    self,
    assignment::{keep_or_spread, version_of},
    diff::{self, Change},
    Children, Runtime,
};
use crate::scheduler::{Outcome, Round, Timing};

/// How soon to look again while a change is in progress.
const STEP: Duration = Duration::from_secs(2);
/// First wait before a change whose final checkpoint failed is tried again
/// (doubling up to [`RETRY_MAX`]).
const RETRY_FIRST: Duration = Duration::from_secs(30);
const RETRY_MAX: Duration = Duration::from_secs(600);

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

/// What one pass knows about the job.
struct Pass<'a> {
    job: &'a StreamJob,
    ctx: &'a Context,
    name: String,
    namespace: String,
    uid: String,
    generation: i64,
    now: Timestamp,
    timing: Timing,
    observed: observe::Observed,
    previous: eddy_api::spec::StreamJobStatus,
}

impl Pass<'_> {
    /// The admin API of every pod the StatefulSet has now.
    fn pods(&self) -> Vec<String> {
        self.observed.pod_urls(
            &self.name,
            self.observed.desired_pods().max(0) as u32,
            self.ctx.admin_port,
        )
    }

    /// Resumes every pod (after a final checkpoint whose change did not
    /// happen, or once a change is done); pods that do not answer are
    /// logged: a replaced pod starts unpaused anyway.
    async fn resume_pods(&self) {
        for e in self.ctx.scheduler.resume_all(&self.pods()).await {
            tracing::info!(job = %self.name, "resume: {e}");
        }
    }

    fn facts(&self, phase: Phase, memory: &JobMemory) -> status::Facts {
        status::Facts {
            phase,
            pods: self.observed.pods(),
            ready_pods: self.observed.ready_pods(),
            desired_pods: self.observed.desired_pods(),
            rolled_out: self.observed.rolled_out(),
            assignment: self.previous.assignment.clone(),
            assignment_version: self.previous.assignment_version.unwrap_or(0),
            last_checkpoint: newest(
                memory.checkpoints.last_completed.clone(),
                self.previous.last_checkpoint.clone(),
            ),
            reconciled_spec: self.previous.last_reconciled_spec.clone(),
            observed_generation: self.previous.observed_generation,
            transition: self.previous.transition.clone(),
            degraded: memory.degraded.clone(),
            paused: false,
            state_epoch: self.previous.state_epoch,
            finished: self.previous.finished.clone(),
            insight: super::insight::Insight {
                hot_keys: self.previous.hot_keys.clone(),
                hot_key_summary: self.previous.hot_key_summary.clone(),
                advice: self.previous.watermark_advice.clone(),
                stages: self.previous.stages.clone(),
            },
            autoscaling: self.previous.autoscaling.clone(),
            now: self.now,
        }
    }

    /// The job's labels in the operator's metrics.
    fn labels(&self) -> crate::metrics::JobLabels {
        crate::metrics::JobLabels {
            namespace: self.namespace.clone(),
            job: self.name.clone(),
        }
    }

    async fn write(&self, facts: status::Facts) -> Result<(), Error> {
        let lag = status::lag_seconds(self.job, &facts);
        self.ctx
            .metrics
            .checkpoint_lag
            .get_or_create(&self.labels())
            .set(lag.unwrap_or(0));
        let next = status::compute(self.job, facts);
        let healthy = |s| status::condition_status(s, status::CHECKPOINTS_HEALTHY) != Some("False");
        if healthy(self.job.status.as_ref()) && !healthy(Some(&next)) {
            let message = next
                .conditions
                .iter()
                .find(|c| c.type_ == status::CHECKPOINTS_HEALTHY)
                .map(|c| c.message.clone())
                .unwrap_or_default();
            publish(
                self.ctx,
                self.job,
                EventType::Warning,
                "CheckpointLagHigh",
                "Checkpoint",
                message,
            )
            .await;
        }
        patch_status(self.ctx, self.job, next).await
    }

    /// Gives up on a change: pods it paused consume again, the reason shows
    /// in Degraded and an Event, and it is tried again after a back-off.
    async fn abandon(
        &self,
        memory: &mut JobMemory,
        t: Option<&TransitionStatus>,
        reason: &str,
        why: String,
    ) -> Result<Action, Error> {
        if t.is_some_and(|t| t.final_checkpoint.is_some()) {
            self.resume_pods().await;
        }
        memory.checkpoints.round = None;
        let wait = memory.back_off(RETRY_FIRST, RETRY_MAX);
        memory.retry_at = Some((self.generation, self.now + wait));
        memory.degraded = Some((reason.to_string(), why.clone()));
        publish(
            self.ctx,
            self.job,
            EventType::Warning,
            reason,
            "Abandon",
            format!(
                "{why}; the pods run on as before, the change is tried again in {}",
                humantime::format_duration(wait)
            ),
        )
        .await;
        let mut facts = self.facts(self.running_phase(), memory);
        facts.transition = None;
        self.write(facts).await?;
        Ok(Action::requeue(wait))
    }

    fn running_phase(&self) -> Phase {
        let want = self.observed.desired_pods();
        if want == 0 {
            Phase::Suspended
        } else if self.observed.ready_pods() >= want {
            Phase::Running
        } else {
            Phase::Pending
        }
    }
}

async fn reconcile_valid(
    job: &StreamJob,
    ctx: &Context,
    memory: &mut JobMemory,
    now: Timestamp,
) -> Result<Action, Error> {
    let name = job.name_any();
    let namespace = job.namespace().unwrap_or_default();
    let observed = observe::fetch(&ctx.client, &namespace, &name).await?;
    let pass = Pass {
        job,
        ctx,
        uid: job.uid().unwrap_or_default(),
        generation: job.metadata.generation.unwrap_or(0),
        now,
        timing: timing(job),
        observed,
        previous: job.status.clone().unwrap_or_default(),
        name,
        namespace,
    };
    let previous = &pass.previous;
    let last: Option<StreamJobSpec> = previous
        .last_reconciled_spec
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok());
    // The pods the autoscaler set, while spec.parallelism stays.
    let autoscaled = parallelism_override(&job.spec, job.status.as_ref());
    let assignment = keep_or_spread(
        &previous.assignment,
        job.spec.partitions,
        autoscaled.unwrap_or(job.spec.parallelism),
    );
    let moving_version = previous
        .autoscaling
        .as_ref()
        .and_then(|a| a.moving.as_ref())
        .map(|m| m.version);
    let version_for = |now: &[PodAssignment]| {
        version_of(
            now,
            &previous.assignment,
            previous.assignment_version.unwrap_or(0),
            moving_version,
        )
    };
    let assignment_version = version_for(&assignment);
    let built_for = (
        previous
            .transition
            .as_ref()
            .and_then(|t| t.state_epoch)
            .or(previous.state_epoch)
            .unwrap_or(0),
        previous.finished.is_some(),
    );
    let build_for = |(state_epoch, finished): (u64, bool)| {
        let runtime = Runtime {
            assignment: &assignment,
            assignment_version,
            state_epoch,
            finished,
            parallelism: autoscaled,
        };
        build::build_for(job, runtime, &ctx.build)
    };
    let mut children = build_for(built_for)?;
    let mut change = match &last {
        None => Change::Resume, // first apply: nothing runs yet
        Some(old) => diff::ladder(old, &job.spec),
    };
    // The same spec rendered into other pods (this operator's defaults
    // changed, e.g. its processor image): an upgrade like any other.
    if !change.moves_state() && pass.observed.desired_pods() > 0 {
        if let Some(live) = &pass.observed.stateful_set {
            if build::pod_template_hash(live) != build::pod_template_hash(&children.stateful_set)
                && apply::controlled_by(live, &pass.uid)
            {
                change = Change::Upgrade;
            }
        }
    }

    if paused(job) {
        return reconcile_paused(&pass, memory).await;
    }

    let mut transition = previous.transition.clone();
    // A change the spec no longer asks for, not yet applied: abandon it.
    if let Some(t) = transition.take_if(|t| !t.applied && !change.moves_state()) {
        if t.final_checkpoint.is_some() {
            pass.resume_pods().await;
        }
        memory.checkpoints.round = None;
        publish(
            ctx,
            job,
            EventType::Normal,
            "TransitionAbandoned",
            "Abandon",
            format!(
                "the spec no longer asks for the {} of generation {}; the pods consume again",
                t.change, t.generation
            ),
        )
        .await;
    }

    if change.moves_state() && !transition.as_ref().is_some_and(|t| t.applied) {
        match prepare(&pass, memory, transition.take(), change, &children).await? {
            Prepared::Ready(t) => transition = Some(t),
            Prepared::Wait(action) => return Ok(action),
        }
    }

    // A finished job stays finished (no pods) until its pods would change.
    let mut finished = previous
        .finished
        .clone()
        .filter(|_| matches!(change, Change::None | Change::Ignore));
    // The state epoch of a stateless change, once it is decided on.
    let mut state_epoch = previous.state_epoch;
    let runtime = (
        transition
            .as_ref()
            .and_then(|t| t.state_epoch)
            .or(state_epoch)
            .unwrap_or(0),
        finished.is_some(),
    );
    if runtime != built_for {
        children = build_for(runtime)?;
    }

    // Volume claim templates cannot change in place: delete the
    // StatefulSet once per generation, and apply on the next pass.
    let applies = change != Change::None || transition.is_some();
    if applies
        && memory.recreated_for != Some(pass.generation)
        && pass.observed.stateful_set.is_some()
        && last
            .as_ref()
            .is_some_and(|old| diff::needs_recreate(old, &job.spec))
    {
        apply::delete_stateful_set(&ctx.client, &pass.namespace, &pass.name).await?;
        memory.recreated_for = Some(pass.generation);
        return Ok(Action::requeue(STEP));
    }

    // Apply every child, every pass: unchanged ones are not written.
    let applied = match apply::apply_all(
        &ctx.client,
        &pass.namespace,
        &children,
        &pass.observed,
        &pass.uid,
        false,
    )
    .await
    {
        Ok(applied) => applied,
        Err(e) => {
            let reason = apply_reason(&e);
            return pass
                .abandon(memory, transition.as_ref(), reason, e.to_string())
                .await;
        }
    };
    if !applied.is_empty() {
        tracing::info!(job = %pass.name, "applied {}", applied.join(", "));
        let orphans = apply::delete_orphans(
            &ctx.client,
            &pass.namespace,
            &pass.name,
            &pass.uid,
            &children,
        )
        .await?;
        for orphan in orphans {
            tracing::info!(job = %pass.name, "deleted {orphan}, which the job no longer has");
        }
    }
    memory.degraded = None;
    memory.failures = 0;
    let fresh = previous.observed_generation != Some(pass.generation);
    if fresh && transition.is_none() && change != Change::None {
        if let Some((reason, note)) = finished_event(change.name(), last.is_none(), job, &applied) {
            publish(ctx, job, EventType::Normal, reason, "Apply", note).await;
        }
    }

    // A change applied: replace the pods of older revisions, all at once.
    if let Some(t) = transition.as_mut() {
        let first = !t.applied;
        t.applied = true;
        if !first {
            match pass.observed.stale_pods() {
                Some(stale) if !stale.is_empty() => {
                    apply::delete_pods(&ctx.client, &pass.namespace, &stale).await?;
                    publish(
                        ctx,
                        job,
                        EventType::Normal,
                        "PodsReplaced",
                        "Rollout",
                        format!(
                            "deleted {} at once; they restore from checkpoint {}",
                            stale.join(", "),
                            t.final_checkpoint
                                .map_or("(the newest)".into(), |id| id.to_string())
                        ),
                    )
                    .await;
                }
                Some(_) => {
                    // Pods the change did not replace were paused by the
                    // final checkpoint: they go on.
                    pass.resume_pods().await;
                    let change = t.change.clone();
                    state_epoch = t.state_epoch.or(state_epoch);
                    transition = None;
                    if let Some((reason, note)) = finished_event(&change, false, job, &applied) {
                        publish(ctx, job, EventType::Normal, reason, "Apply", note).await;
                    }
                }
                None => {}
            }
        }
    }

    // Checkpoints on schedule while running and not changing.
    let replicas = match build::statefulset::replicas(&job.spec) {
        _ if finished.is_some() => 0,
        0 => 0,
        n => autoscaled.unwrap_or(n),
    };
    let mut newly_finished = false;
    // Some pods, not all, finished their input: the rest usually follow.
    let mut finishing = false;
    let mut insight = None;
    if transition.is_none() && replicas > 0 && pass.observed.ready_pods() > 0 {
        let outcome = periodic_checkpoint(&pass, memory).await;
        if outcome.completed.is_some() {
            // At most once per checkpoint, like the status write it causes.
            insight = Some(observe_pods(&pass, memory).await);
        }
        finishing = outcome.finished > 0;
        if outcome.all_finished() && outcome.pods == replicas as usize {
            // The last look at the pods before they stop: the status keeps
            // their final figures (every stage finished, nothing behind).
            if insight.is_none() {
                insight = Some(observe_pods(&pass, memory).await);
            }
            finished = Some(FinishedStatus {
                generation: pass.generation,
                time: pass.now.to_string(),
            });
            newly_finished = true;
            publish(
                ctx,
                job,
                EventType::Normal,
                "Finished",
                "Finish",
                format!(
                    "all {replicas} pods reached the end of their input and emitted every \
                     window; they stop, and the job runs again only if its spec changes"
                ),
            )
            .await;
        }
    }

    // The autoscaler, once every pod runs the spec.
    let mut autoscaling = pass.previous.autoscaling.clone();
    let mut assignment = assignment;
    let mut assignment_version = assignment_version;
    let mut moving = false;
    // A move in progress goes on with pods not ready: one restarted on an
    // assignment older than the move waits (not ready) for the assignment
    // the move's end writes.
    let settled = transition.is_none()
        && finished.is_none()
        && replicas > 0
        && (moving_version.is_some()
            || pass.observed.rolled_out() && pass.observed.ready_pods() >= replicas as i32);
    if settled {
        let lag = crate::scheduler::lag_seconds(
            newest(
                memory.checkpoints.last_completed.clone(),
                previous.last_checkpoint.clone(),
            )
            .as_ref(),
            job.metadata
                .creation_timestamp
                .as_ref()
                .map_or(pass.now, |t| t.0),
            pass.now,
        );
        let look = autoscaler::Look {
            ctx,
            job,
            namespace: &pass.namespace,
            name: &pass.name,
            pods: pass
                .observed
                .pod_urls(&pass.name, assignment.len() as u32, ctx.admin_port),
            assignment: &assignment,
            assignment_version,
            checkpoint_lag_s: lag as f64,
            now: pass.now,
        };
        let stepped = autoscaler::step(&look, autoscaling.as_ref(), &mut memory.autoscale).await;
        autoscaling = stepped.status;
        moving = stepped.moving || stepped.assignment.is_some();
        if let Some(reached) = stepped.assignment {
            assignment_version = version_for(&reached);
            assignment = reached;
        }
    }

    let phase = match &transition {
        Some(t) => phase_of(&t.change),
        None if finished.is_some() => Phase::Finished,
        None if diff::suspended(&job.spec) => Phase::Suspended,
        None if replicas > 0 && pass.observed.ready_pods() >= replicas as i32 => Phase::Running,
        None => Phase::Pending,
    };
    let mut facts = pass.facts(phase, memory);
    facts.assignment = assignment;
    facts.assignment_version = assignment_version;
    facts.desired_pods = replicas as i32;
    facts.reconciled_spec = serde_json::to_string(&job.spec).ok();
    facts.observed_generation = Some(pass.generation);
    facts.transition = transition.clone();
    facts.state_epoch = state_epoch;
    facts.finished = finished.clone();
    if let Some(insight) = insight {
        facts.insight = insight;
    }
    facts.autoscaling = autoscaling;
    pass.write(facts).await?;
    Ok(if transition.is_some() || newly_finished || moving {
        // Newly finished: the next pass scales the StatefulSet to zero.
        Action::requeue(STEP)
    } else if diff::suspended(&job.spec) || finished.is_some() {
        Action::requeue(Duration::from_secs(300))
    } else {
        requeue_for(job, finishing)
    })
}

/// What [`prepare`] decided.
enum Prepared {
    /// The final checkpoint is done (or not needed): apply.
    Ready(TransitionStatus),
    /// Look again later.
    Wait(Action),
}

/// Takes a change that moves state up to the point where it can be
/// applied: checks it first (nothing is paused for a change the API server
/// would refuse), then the final checkpoint the upgrade mode asks for.
async fn prepare(
    pass: &Pass<'_>,
    memory: &mut JobMemory,
    ongoing: Option<TransitionStatus>,
    change: Change,
    children: &Children,
) -> Result<Prepared, Error> {
    let (ctx, job, now) = (pass.ctx, pass.job, pass.now);
    let mut t = match ongoing {
        Some(t) => t,
        None => {
            let retry = memory.retry_at.filter(|(g, _)| *g == pass.generation);
            if let Some((_, at)) = retry.filter(|(_, at)| *at > now) {
                let wait = at.duration_since(now).unsigned_abs();
                return Ok(Prepared::Wait(Action::requeue(wait)));
            }
            if let Err(e) = apply::apply_all(
                &ctx.client,
                &pass.namespace,
                children,
                &pass.observed,
                &pass.uid,
                true,
            )
            .await
            {
                let reason = apply_reason(&e);
                return pass
                    .abandon(memory, None, reason, format!("{}: {e}", change.name()))
                    .await
                    .map(Prepared::Wait);
            }
            let (reason, what) = started_event(change, job.spec.upgrade_mode);
            let labels = crate::metrics::TransitionLabels {
                namespace: pass.namespace.clone(),
                job: pass.name.clone(),
                change: change.name(),
            };
            ctx.metrics.transitions.get_or_create(&labels).inc();
            publish(ctx, job, EventType::Normal, reason, "Checkpoint", what).await;
            TransitionStatus {
                generation: pass.generation,
                change: change.name().into(),
                started: now.to_string(),
                final_checkpoint: None,
                checkpointed: pass.observed.pods() == 0,
                applied: false,
                state_epoch: None,
            }
        }
    };
    // `lastState` and `stateless` take no final checkpoint; set while one
    // is awaited (pods that cannot answer), they end the wait.
    if job.spec.upgrade_mode != UpgradeMode::Checkpoint && !t.checkpointed {
        t.checkpointed = true;
        memory.checkpoints.round = None;
    }
    if job.spec.upgrade_mode == UpgradeMode::Stateless && t.state_epoch.is_none() {
        t.state_epoch = Some(pass.previous.state_epoch.unwrap_or(0) + 1);
    }
    // The newest spec is what gets applied; a final checkpoint already
    // taken serves it as well (the pods have not consumed since).
    t.generation = pass.generation;
    t.change = change.name().into();
    if t.checkpointed {
        return Ok(Prepared::Ready(t));
    }
    // An operator restarted since the round started: pick it up again.
    if memory.checkpoints.round.is_none() {
        if let Some(id) = t.final_checkpoint {
            memory.checkpoints.round = Some(Round {
                id,
                started: t.started.parse().unwrap_or(now),
                is_final: true,
            });
        }
    }
    let outcome = ctx
        .scheduler
        .step(
            &pass.pods(),
            &mut memory.checkpoints,
            pass.timing,
            true,
            now,
        )
        .await;
    if let (Some(done), Some(id)) = (&outcome.completed, t.final_checkpoint) {
        if done.id >= id {
            t.checkpointed = true;
            memory.failures = 0;
            return Ok(Prepared::Ready(t));
        }
    }
    // A round that failed and was replaced in the same step (a pod lost
    // it) is no reason to give up: the new one is the final one.
    let replaced = outcome.started.is_some();
    if let Some(id) = outcome.started {
        t.final_checkpoint = Some(id);
        ctx.metrics
            .checkpoints_triggered
            .get_or_create(&pass.labels())
            .inc();
    }
    let started: Timestamp = t.started.parse().unwrap_or(now);
    let overdue = now.duration_since(started).unsigned_abs() > pass.timing.timeout;
    let failed = outcome
        .failed
        .filter(|_| t.final_checkpoint.is_some() && !replaced)
        .or_else(|| {
            overdue.then(|| {
                format!(
                    "no final checkpoint within spec.checkpoints.timeout ({}); {} of {} pods answered",
                    humantime::format_duration(pass.timing.timeout),
                    outcome.reachable,
                    outcome.pods
                )
            })
        });
    if let Some(why) = failed {
        ctx.metrics
            .checkpoints_failed
            .get_or_create(&pass.labels())
            .inc();
        let why = format!(
            "{why} (spec.upgradeMode: lastState goes on from the last completed checkpoint \
             without asking the pods)"
        );
        return pass
            .abandon(memory, Some(&t), "FinalCheckpointFailed", why)
            .await
            .map(Prepared::Wait);
    }
    let mut facts = pass.facts(phase_of(&t.change), memory);
    facts.transition = Some(t);
    pass.write(facts).await?;
    Ok(Prepared::Wait(Action::requeue(STEP)))
}

/// A job with the pause annotation: nothing is applied and no change
/// starts or goes on; checkpoints go on, so its state stays recoverable.
async fn reconcile_paused(pass: &Pass<'_>, memory: &mut JobMemory) -> Result<Action, Error> {
    let running = pass.previous.transition.is_none() && pass.observed.ready_pods() > 0;
    if running {
        periodic_checkpoint(pass, memory).await;
    }
    let phase = pass.previous.phase.unwrap_or_else(|| pass.running_phase());
    let mut facts = pass.facts(phase, memory);
    facts.paused = true;
    pass.write(facts).await?;
    Ok(requeue_for(pass.job, false))
}

async fn periodic_checkpoint(pass: &Pass<'_>, memory: &mut JobMemory) -> Outcome {
    let ctx = pass.ctx;
    let outcome = ctx
        .scheduler
        .step(
            &pass.pods(),
            &mut memory.checkpoints,
            pass.timing,
            false,
            pass.now,
        )
        .await;
    if outcome.started.is_some() {
        ctx.metrics
            .checkpoints_triggered
            .get_or_create(&pass.labels())
            .inc();
    }
    if let (Some(why), true) = (&outcome.failed, outcome.reachable == outcome.pods) {
        ctx.metrics
            .checkpoints_failed
            .get_or_create(&pass.labels())
            .inc();
        publish(
            ctx,
            pass.job,
            EventType::Warning,
            "CheckpointFailed",
            "Checkpoint",
            why.clone(),
        )
        .await;
    }
    outcome
}

/// The pods' hot keys and watermark advice; warns (LateEventsDropped)
/// when the share of events dropped as late stays above
/// [`insight::DROPPED_WARNING`] over two checkpoints.
async fn observe_pods(pass: &Pass<'_>, memory: &mut JobMemory) -> super::insight::Insight {
    use super::insight::{self, DROPPED_WARNING};
    let stats = pass.ctx.scheduler.stats_all(&pass.pods()).await;
    let now = insight::insight(&stats, pass.job.spec.autoscaling.hot_key_share);
    let share = |a: Option<&eddy_api::spec::WatermarkAdvice>| a.map_or(0.0, |a| a.dropped_share);
    let dropped = share(now.advice.as_ref());
    let before = share(pass.previous.watermark_advice.as_ref());
    if dropped <= DROPPED_WARNING {
        memory.late_warned = false;
    } else if before > DROPPED_WARNING && !memory.late_warned {
        memory.late_warned = true;
        let keep = now
            .advice
            .as_ref()
            .and_then(|a| a.settings.first())
            .map(|s| {
                format!(
                    "; to keep {} of events set eventTime.maxOutOfOrderness to {} or \
                     allowedLateness to {} (about {} windows open)",
                    s.keep, s.max_out_of_orderness, s.allowed_lateness, s.open_windows
                )
            })
            .unwrap_or_default();
        publish(
            pass.ctx,
            pass.job,
            EventType::Warning,
            "LateEventsDropped",
            "Observe",
            format!(
                "{:.2}% of events arrived too late to count (every aggregate undercounts by \
                 about as much){keep}",
                dropped * 100.0
            ),
        )
        .await;
    }
    now
}

/// Whether the job carries `eddy.dev/pause-reconciliation: "true"`.
pub(super) fn paused(job: &StreamJob) -> bool {
    job.annotations()
        .get(PAUSE_ANNOTATION)
        .is_some_and(|v| v == "true")
}

fn apply_reason(e: &apply::ApplyError) -> &'static str {
    match e {
        apply::ApplyError::NotOwned { .. } => "ChildNotOwned",
        apply::ApplyError::Refused { .. } => "ApplyRefused",
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

/// The phase a change in progress shows.
fn phase_of(change: &str) -> Phase {
    match change {
        "Rescale" => Phase::Rescaling,
        "Suspend" => Phase::Checkpointing,
        _ => Phase::Upgrading,
    }
}

fn started_event(change: Change, mode: UpgradeMode) -> (&'static str, String) {
    let (reason, what, then) = match change {
        Change::Scale => (
            "RescaleStarted",
            "parallelism changed",
            "every pod restarts at once with the new assignment",
        ),
        Change::Suspend => (
            "Suspending",
            "suspend is true or parallelism is 0",
            "zero pods",
        ),
        _ => (
            "UpgradeStarted",
            "the pods change",
            "every pod restarts at once",
        ),
    };
    let how = match mode {
        UpgradeMode::Checkpoint => {
            format!("final checkpoint on every pod, then {then}; they restore from it")
        }
        UpgradeMode::LastState => format!(
            "(upgradeMode lastState) {then} at once; they restore from the last completed \
             checkpoint"
        ),
        UpgradeMode::Stateless => format!(
            "(upgradeMode stateless) {then} at once with empty state and the sources at their \
             start; no earlier checkpoint is restored again"
        ),
    };
    (reason, format!("{what}: {how}"))
}

/// The Event for a change that is done: `change` is a [`Change::name`],
/// `created` tells a first apply from a resume.
fn finished_event(
    change: &str,
    created: bool,
    job: &StreamJob,
    applied: &[&str],
) -> Option<(&'static str, String)> {
    let n = job.spec.parallelism;
    match change {
        "Resume" if created => Some((
            "Created",
            format!("created {} for {n} pods", applied.join(", ")),
        )),
        "Resume" => Some((
            "Resumed",
            format!("{n} pods restore from the last checkpoint"),
        )),
        "Ignore" => Some((
            "SpecRecorded",
            "only operator-side settings changed; no pod restarts".into(),
        )),
        "Suspend" => Some((
            "Suspended",
            "zero pods; the job resumes from its last checkpoint".into(),
        )),
        "Rescale" => Some((
            "RescaleFinished",
            format!("{n} pods run with their new partitions"),
        )),
        "Upgrade" => Some(("UpgradeFinished", "every pod runs the new spec".into())),
        _ => None,
    }
}
