//! Status: computed from the job, what was observed and what the
//! controller did, as a pure function; written only when it changed.

use eddy_api::{
    spec::{
        CheckpointRecord, FinishedStatus, Phase, PodAssignment, StreamJobStatus, TransitionStatus,
        CHECKPOINT_HISTORY,
    },
    StreamJob,
};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::{build::names, scheduler};

/// Condition types.
pub const READY: &str = "Ready";
pub const CHECKPOINTS_HEALTHY: &str = "CheckpointsHealthy";
pub const SPEC_VALID: &str = "SpecValid";
pub const DEGRADED: &str = "Degraded";
pub const PAUSED: &str = "ReconciliationPaused";
/// Partitions move or pods change for the autoscaler (only while its mode
/// is not `disabled`).
pub const SCALING: &str = "Scaling";

/// What the status is computed from, besides the job.
#[derive(Clone, Debug)]
pub struct Facts {
    pub phase: Phase,
    /// Pods that exist and that are ready.
    pub pods: i32,
    pub ready_pods: i32,
    /// Pods the job should have now (0 when suspended).
    pub desired_pods: i32,
    /// The StatefulSet has rolled out its newest revision to every pod.
    pub rolled_out: bool,
    pub assignment: Vec<PodAssignment>,
    /// `status.assignmentVersion` (none while 0).
    pub assignment_version: u64,
    pub last_checkpoint: Option<CheckpointRecord>,
    /// The spec the pods run, as JSON.
    pub reconciled_spec: Option<String>,
    /// The generation whose children were applied.
    pub observed_generation: Option<i64>,
    pub transition: Option<TransitionStatus>,
    /// Something keeps failing: (reason, message).
    pub degraded: Option<(String, String)>,
    /// `eddy.dev/pause-reconciliation` is set.
    pub paused: bool,
    /// The state epoch the pods run in (see `status.stateEpoch`).
    pub state_epoch: Option<u64>,
    /// When every pod finished its finite input.
    pub finished: Option<FinishedStatus>,
    /// Hot keys and watermark advice from the pods.
    pub insight: super::insight::Insight,
    /// What the autoscaler measured and decided.
    pub autoscaling: Option<eddy_api::spec::AutoscalingStatus>,
    pub now: Timestamp,
}

/// Seconds since the last completed checkpoint (or since the job was
/// created), `None` while no pods run.
pub fn lag_seconds(job: &StreamJob, facts: &Facts) -> Option<i64> {
    let since = job
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(facts.now, |t| t.0);
    (!matches!(facts.phase, Phase::Suspended | Phase::Finished))
        .then(|| scheduler::lag_seconds(facts.last_checkpoint.as_ref(), since, facts.now))
}

/// The status of a job whose spec is valid. Every field is a fact that
/// changes only when something happens (no ages or counters), so an idle
/// job's status stays byte-identical and is not written.
pub fn compute(job: &StreamJob, facts: Facts) -> StreamJobStatus {
    let previous = job.status.clone().unwrap_or_default();
    let generation = job.metadata.generation;
    let name = job.metadata.name.clone().unwrap_or_default();
    let suspended = facts.phase == Phase::Suspended;
    let lag = lag_seconds(job, &facts);
    let threshold = job
        .spec
        .checkpoints
        .lag_threshold
        .parse()
        .map_or(i64::MAX, |d: std::time::Duration| d.as_secs() as i64);
    let pods_ready = format!("{} of {} pods ready", facts.ready_pods, facts.desired_pods);
    let ready = if let (Phase::Finished, Some(f)) = (facts.phase, &facts.finished) {
        // Done, like a completed Job: kstatus tools read it as current.
        (
            true,
            "Finished",
            format!(
                "every pod reached the end of its input and emitted every window at {}; no \
                 pods run, and the job runs again only if its spec changes",
                f.time
            ),
        )
    } else if suspended {
        (
            false,
            "Suspended",
            "spec.suspend is true or spec.parallelism is 0: no pods run".to_string(),
        )
    } else if let Some(t) = &facts.transition {
        (
            false,
            "TransitionInProgress",
            format!(
                "{} of generation {} in progress since {}",
                t.change, t.generation, t.started
            ),
        )
    } else if facts.rolled_out && facts.ready_pods >= facts.desired_pods && facts.desired_pods > 0 {
        (true, "AllPodsReady", pods_ready)
    } else if facts.rolled_out {
        (false, "PodsNotReady", pods_ready)
    } else {
        (
            false,
            "RolloutInProgress",
            format!("{pods_ready}; the StatefulSet is rolling out its newest revision"),
        )
    };
    let healthy = match lag {
        None => (true, "NoPods", "no pods, no checkpoints due".to_string()),
        Some(lag) if lag > threshold => (
            false,
            "CheckpointLagHigh",
            match &facts.last_checkpoint {
                Some(c) => format!(
                    "the last completed checkpoint, {} at {}, is older than \
                     spec.checkpoints.lagThreshold ({})",
                    c.id, c.time, job.spec.checkpoints.lag_threshold
                ),
                None => format!(
                    "no checkpoint completed within spec.checkpoints.lagThreshold ({}) of the \
                     job's start",
                    job.spec.checkpoints.lag_threshold
                ),
            },
        ),
        Some(_) => (
            true,
            "CheckpointsCompleting",
            match &facts.last_checkpoint {
                Some(c) => format!("checkpoint {} completed at {}", c.id, c.time),
                None => "no checkpoint yet; the first is due one interval after the start".into(),
            },
        ),
    };
    let degraded = match &facts.degraded {
        Some((reason, message)) => (true, reason.as_str(), message.clone()),
        None => (false, "AsExpected", "reconciles succeed".to_string()),
    };
    let paused = if facts.paused {
        (
            true,
            "Annotated",
            format!(
                "{}: \"true\": the operator changes nothing (checkpoints go on)",
                super::PAUSE_ANNOTATION
            ),
        )
    } else {
        (false, "NotAnnotated", "reconciling".to_string())
    };
    let c = |type_, value| condition(&previous.conditions, type_, value, generation, facts.now);
    let mut conditions = vec![
        c(READY, ready),
        c(CHECKPOINTS_HEALTHY, healthy),
        c(
            SPEC_VALID,
            (true, "Valid", "the spec passed validation".into()),
        ),
        c(DEGRADED, degraded),
        c(PAUSED, paused),
    ];
    let scaling = facts
        .autoscaling
        .as_ref()
        .filter(|a| a.mode != eddy_api::spec::AutoscalingMode::Disabled);
    if let Some(a) = scaling {
        let (moving, reason, message) = crate::autoscale::report::condition(a);
        conditions.push(c(SCALING, (moving, &reason, message)));
    }
    StreamJobStatus {
        observed_generation: facts.observed_generation,
        phase: Some(facts.phase),
        replicas: facts.pods,
        ready_replicas: facts.ready_pods,
        selector: Some(names::selector_string(&name)),
        assignment: facts.assignment,
        assignment_version: Some(facts.assignment_version).filter(|v| *v > 0),
        checkpoint_history: history(&previous.checkpoint_history, facts.last_checkpoint.as_ref()),
        last_checkpoint: facts.last_checkpoint,
        transition: facts.transition,
        conditions,
        last_reconciled_spec: facts.reconciled_spec,
        hot_keys: facts.insight.hot_keys,
        hot_key_summary: facts.insight.hot_key_summary,
        watermark_advice: facts.insight.advice,
        stages: facts.insight.stages,
        state_epoch: facts.state_epoch.filter(|e| *e > 0),
        finished: facts.finished,
        autoscaling: facts.autoscaling,
    }
}

/// The checkpoint history with `last` in front, newest first, at most
/// [`CHECKPOINT_HISTORY`] long.
fn history(
    previous: &[CheckpointRecord],
    last: Option<&CheckpointRecord>,
) -> Vec<CheckpointRecord> {
    let mut all: Vec<CheckpointRecord> = last.into_iter().cloned().collect();
    all.extend(
        previous
            .iter()
            .filter(|c| last.is_none_or(|l| c.id < l.id))
            .cloned(),
    );
    all.truncate(CHECKPOINT_HISTORY);
    all
}

/// The status of a job whose spec is invalid: SpecValid=False listing
/// every problem, phase Failed; what was running is left as it is.
pub fn invalid(job: &StreamJob, problems: &[String], now: Timestamp) -> StreamJobStatus {
    let previous = job.status.clone().unwrap_or_default();
    let generation = job.metadata.generation;
    let mut conditions: Vec<Condition> = previous
        .conditions
        .iter()
        .filter(|c| c.type_ != SPEC_VALID)
        .cloned()
        .collect();
    conditions.push(condition(
        &previous.conditions,
        SPEC_VALID,
        (false, "Invalid", problems.join("; ")),
        generation,
        now,
    ));
    StreamJobStatus {
        observed_generation: generation,
        phase: Some(Phase::Failed),
        conditions,
        ..previous
    }
}

/// A condition; its transition time moves only when its status changes.
fn condition(
    previous: &[Condition],
    type_: &str,
    (ok, reason, message): (bool, &str, String),
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or(Time(now), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

/// The status of condition `type_`, if set.
pub fn condition_status<'a>(status: Option<&'a StreamJobStatus>, type_: &str) -> Option<&'a str> {
    status?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(status: Option<StreamJobStatus>) -> StreamJob {
        let mut job: StreamJob = serde_yaml_ng::from_str(
            "apiVersion: eddy.dev/v1alpha1
kind: StreamJob
metadata: {name: orders, namespace: shop, generation: 3, creationTimestamp: '2026-11-21T10:00:00Z'}
spec:
  source: {generator: {}}
  keyField: user
  eventTime: {field: ts}
  window: {tumbling: {size: 1m}}
  checkpoints: {lagThreshold: 5m}
",
        )
        .unwrap();
        job.status = status;
        job
    }

    fn facts(now: &str, last: Option<&str>) -> Facts {
        Facts {
            phase: Phase::Running,
            pods: 2,
            ready_pods: 2,
            desired_pods: 2,
            assignment: vec![],
            assignment_version: 0,
            last_checkpoint: last.map(|t| CheckpointRecord {
                id: 4,
                time: t.into(),
                duration_ms: 10,
                bytes_uploaded: 1,
                bytes_total: 2,
            }),
            reconciled_spec: None,
            rolled_out: true,
            observed_generation: Some(3),
            transition: None,
            degraded: None,
            paused: false,
            state_epoch: None,
            finished: None,
            insight: Default::default(),
            autoscaling: None,
            now: now.parse().unwrap(),
        }
    }

    fn get<'a>(s: &'a StreamJobStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn checkpoints_turn_unhealthy_past_the_lag_threshold() {
        let fresh = compute(
            &job(None),
            facts("2026-11-21T10:10:00Z", Some("2026-11-21T10:09:00Z")),
        );
        assert_eq!(
            get(&fresh, CHECKPOINTS_HEALTHY).message,
            "checkpoint 4 completed at 2026-11-21T10:09:00Z"
        );
        assert_eq!(get(&fresh, CHECKPOINTS_HEALTHY).status, "True");
        assert_eq!(get(&fresh, READY).status, "True");
        assert_eq!(fresh.observed_generation, Some(3));
        assert_eq!(
            fresh.selector.as_deref(),
            Some("app.kubernetes.io/instance=orders,app.kubernetes.io/name=eddy-processor")
        );

        let stale = compute(
            &job(Some(fresh.clone())),
            facts("2026-11-21T10:20:00Z", Some("2026-11-21T10:09:00Z")),
        );
        let c = get(&stale, CHECKPOINTS_HEALTHY);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "CheckpointLagHigh")
        );
        assert!(c.message.contains("older than"), "{}", c.message);
        assert_eq!(
            c.last_transition_time.0,
            "2026-11-21T10:20:00Z".parse().unwrap()
        );
        // Ready did not change: its transition time stays.
        assert_eq!(
            get(&stale, READY).last_transition_time,
            get(&fresh, READY).last_transition_time
        );
    }

    #[test]
    fn without_any_checkpoint_lag_counts_from_creation() {
        let s = compute(&job(None), facts("2026-11-21T10:07:00Z", None));
        assert_eq!(get(&s, CHECKPOINTS_HEALTHY).status, "False");
    }

    #[test]
    fn an_idle_job_computes_the_same_status_every_time() {
        let first = compute(
            &job(None),
            facts("2026-11-21T10:10:00Z", Some("2026-11-21T10:09:30Z")),
        );
        let later = compute(
            &job(Some(first.clone())),
            facts("2026-11-21T10:10:40Z", Some("2026-11-21T10:09:30Z")),
        );
        assert_eq!(first, later, "nothing happened, nothing changes");
    }

    #[test]
    fn ready_waits_for_the_rollout_and_any_transition() {
        let mut f = facts("2026-11-21T10:10:00Z", Some("2026-11-21T10:09:30Z"));
        f.rolled_out = false;
        let s = compute(&job(None), f.clone());
        assert_eq!(
            (
                get(&s, READY).status.as_str(),
                get(&s, READY).reason.as_str()
            ),
            ("False", "RolloutInProgress")
        );
        f.rolled_out = true;
        f.transition = Some(TransitionStatus {
            generation: 3,
            change: "Upgrade".into(),
            started: "2026-11-21T10:09:50Z".into(),
            final_checkpoint: Some(7),
            checkpointed: false,
            applied: false,
            state_epoch: None,
        });
        let s = compute(&job(None), f);
        assert_eq!(get(&s, READY).reason, "TransitionInProgress");
    }

    #[test]
    fn a_finished_job_is_ready_without_pods_and_owes_no_checkpoints() {
        let mut f = facts("2026-11-21T12:00:00Z", Some("2026-11-21T10:09:00Z"));
        f.phase = Phase::Finished;
        (f.pods, f.ready_pods, f.desired_pods) = (0, 0, 0);
        f.finished = Some(FinishedStatus {
            generation: 3,
            time: "2026-11-21T10:10:00Z".into(),
        });
        let s = compute(&job(None), f);
        assert_eq!(s.phase, Some(Phase::Finished));
        assert_eq!(s.finished.as_ref().map(|f| f.generation), Some(3));
        let ready = get(&s, READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Finished")
        );
        assert!(
            ready.message.contains("2026-11-21T10:10:00Z"),
            "{}",
            ready.message
        );
        assert_eq!(
            get(&s, CHECKPOINTS_HEALTHY).status,
            "True",
            "two hours after the last checkpoint, but nothing runs"
        );
    }

    #[test]
    fn the_history_keeps_the_newest_five_newest_first() {
        let record = |id| CheckpointRecord {
            id,
            time: format!("2026-11-21T10:0{id}:00Z"),
            duration_ms: 1,
            bytes_uploaded: 1,
            bytes_total: 1,
        };
        let mut kept = Vec::new();
        for id in 1..=7 {
            kept = history(&kept, Some(&record(id)));
            kept = history(&kept, Some(&record(id)));
        }
        let ids: Vec<u64> = kept.iter().map(|c| c.id).collect();
        assert_eq!(ids, [7, 6, 5, 4, 3]);
    }

    #[test]
    fn an_invalid_spec_keeps_the_rest_of_the_status() {
        let running = compute(
            &job(None),
            facts("2026-11-21T10:10:00Z", Some("2026-11-21T10:09:00Z")),
        );
        let s = invalid(
            &job(Some(running.clone())),
            &["spec.window: set one".into(), "spec.keyField: empty".into()],
            "2026-11-21T10:11:00Z".parse().unwrap(),
        );
        assert_eq!(s.phase, Some(Phase::Failed));
        let c = get(&s, SPEC_VALID);
        assert_eq!(
            (c.status.as_str(), c.message.as_str()),
            ("False", "spec.window: set one; spec.keyField: empty")
        );
        assert_eq!(s.last_checkpoint, running.last_checkpoint);
        assert_eq!(get(&s, READY), get(&running, READY));
    }
}
