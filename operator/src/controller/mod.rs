//! The reconcile pipeline: fetch → validate → build → apply → status.
//!
//! Validate and build are pure ([`crate::build`]); [`observe`] fetches,
//! [`apply`] writes children, and the status is computed by [`status`] and
//! written only when it changed. Changes that move state (rescale, upgrade,
//! suspend) first take a final checkpoint on every pod through the
//! [`Scheduler`], then apply; the pods restore from it. Running jobs are
//! checkpointed by the same scheduler every `spec.checkpoints.interval`.

pub mod apply;
mod autoscaler;
mod cleanup;
pub mod insight;
pub mod observe;
pub mod run;
pub mod status;
mod transition;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use eddy_api::StreamJob;
use jiff::Timestamp;
use kube::{
    api::{Patch, PatchParams},
    runtime::{
        controller::Action,
        events::{Event, EventType, Recorder},
        finalizer::{finalizer, Event as Finalized},
    },
    Api, Client, Resource, ResourceExt,
};

use crate::{
    build,
    metrics::Metrics,
    scheduler::{JobCheckpoints, Scheduler, Timing},
};

/// The finalizer the operator puts on a StreamJob whose checkpoints are
/// deleted with it (`spec.checkpoints.deleteOnJobDeletion`); other jobs
/// carry none, so deleting them (or their namespace) never waits on the
/// operator.
pub const FINALIZER: &str = "eddy.dev/checkpoints";

/// With the value `"true"`, the operator changes nothing of the job (it
/// keeps checkpointing it), as the Flink operator's
/// `suspend-reconciliation`; shown as the ReconciliationPaused condition.
pub const PAUSE_ANNOTATION: &str = "eddy.dev/pause-reconciliation";

/// Longest Event note: the events API refuses notes above 1 kB.
const NOTE_LIMIT: usize = 1024;

/// What one job needs remembered between reconciles. Losing it (an
/// operator restart) is harmless: what must survive is in the status.
#[derive(Clone, Debug, Default)]
pub struct JobMemory {
    pub checkpoints: JobCheckpoints,
    /// The generation for which the StatefulSet was deleted to change its
    /// volume claim templates (so it is deleted once, not again after the
    /// re-creation).
    pub recreated_for: Option<i64>,
    /// What keeps failing, for the Degraded condition.
    pub degraded: Option<(String, String)>,
    /// Failures in a row, for the back-off.
    pub failures: u32,
    /// No change that moves state starts before this, while the spec
    /// stays at this generation (a new spec is tried at once).
    pub retry_at: Option<(i64, Timestamp)>,
    /// A LateEventsDropped warning was sent and the share has not fallen
    /// below the threshold since.
    pub late_warned: bool,
    /// The autoscaler's measurements and decisions.
    pub autoscale: autoscaler::AutoscaleMemory,
}

impl JobMemory {
    /// Counts a failure; the wait before the next try: `first`, doubling
    /// with each failure in a row, at most `max`.
    pub fn back_off(&mut self, first: Duration, max: Duration) -> Duration {
        let wait = first.saturating_mul(1 << self.failures.min(16)).min(max);
        self.failures = self.failures.saturating_add(1);
        wait
    }
}

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub build: build::Context,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub scheduler: Scheduler,
    /// Port of the processors' admin API.
    pub admin_port: i32,
    pub clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
    /// Per job uid.
    pub jobs: Mutex<HashMap<String, JobMemory>>,
    /// Alertmanager's alerts, as its webhooks deliver them.
    pub alerts: Arc<Mutex<crate::autoscale::alerts::Alerts>>,
}

impl Context {
    pub fn new(client: Client, recorder: Recorder, metrics: Arc<Metrics>) -> Self {
        Self {
            client,
            build: build::Context::default(),
            recorder,
            metrics,
            scheduler: Scheduler::default(),
            admin_port: build::service::ADMIN_PORT,
            clock: Arc::new(Timestamp::now),
            jobs: Mutex::default(),
            alerts: Arc::default(),
        }
    }

    fn with_memory<T>(&self, uid: &str, f: impl FnOnce(&mut JobMemory) -> T) -> T {
        let mut memory = self.take(uid);
        let out = f(&mut memory);
        self.keep(uid, memory);
        out
    }

    fn take(&self, uid: &str) -> JobMemory {
        self.jobs
            .lock()
            .map(|mut jobs| jobs.remove(uid).unwrap_or_default())
            .unwrap_or_default()
    }

    fn keep(&self, uid: &str, memory: JobMemory) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.insert(uid.to_string(), memory);
        }
    }
}

/// Why a reconcile failed. Variant names are the `error` label of the
/// failure metric and the reason of Warning Events.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    KubeApi(#[from] kube::Error),
    #[error("building children: {0}")]
    Build(#[from] build::BuildError),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("the StreamJob has no namespace")]
    NoNamespace,
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// A short, fixed name: that of the error inside a failed finalizer
    /// step.
    pub fn kind(&self) -> &'static str {
        use kube::runtime::finalizer::Error as F;
        match self {
            Self::KubeApi(_) => "KubeApi",
            Self::Build(e) => e.reason(),
            Self::Finalizer(inner) => match inner.as_ref() {
                F::ApplyFailed(e) | F::CleanupFailed(e) => e.kind(),
                _ => "Finalizer",
            },
            Self::NoNamespace => "NoNamespace",
            Self::Internal(_) => "Internal",
        }
    }
}

/// Reconciles one StreamJob.
pub async fn reconcile(job: Arc<StreamJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _measure = ctx.metrics.measure();
    let namespace = job.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<StreamJob> = Api::namespaced(ctx.client.clone(), &namespace);
    let has_finalizer = job.finalizers().iter().any(|f| f == FINALIZER);
    let deleting = job.metadata.deletion_timestamp.is_some();
    if deleting && has_finalizer {
        if let Some(waiting) = cleanup::progress(&job, &ctx).await? {
            return Ok(waiting);
        }
    }
    // Only a job whose checkpoints go with it needs a finalizer; one left
    // from before (or from a spec that changed) is removed.
    let wants_finalizer = build::cleanup::wanted(&job) == build::cleanup::Wanted::Delete;
    if !wants_finalizer || (deleting && !has_finalizer) {
        if has_finalizer {
            remove_finalizer(&api, &job).await?;
            return Ok(Action::await_change());
        }
        if deleting {
            return Ok(Action::await_change());
        }
        return apply_job(&job, &ctx).await;
    }
    finalizer(&api, FINALIZER, job, |event| async {
        match event {
            Finalized::Apply(job) => apply_job(&job, &ctx).await,
            Finalized::Cleanup(job) => cleanup(&job, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Removes [`FINALIZER`] from `job` (a JSON patch guarded by a test of
/// the list, so a concurrent change of the finalizers is not lost).
async fn remove_finalizer(api: &Api<StreamJob>, job: &StreamJob) -> Result<(), Error> {
    let finalizers = job.finalizers();
    let Some(index) = finalizers.iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
        {"op": "test", "path": format!("/metadata/finalizers/{index}"), "value": FINALIZER},
        {"op": "remove", "path": format!("/metadata/finalizers/{index}")},
    ]))
    .map_err(|e| Error::Internal(e.to_string()))?;
    api.patch(
        &job.name_any(),
        &PatchParams::default(),
        &Patch::Json::<()>(patch),
    )
    .await?;
    Ok(())
}

/// What the controller does on a failed reconcile: count it, show it in
/// the Degraded condition (on the next write), and retry after a back-off
/// that doubles with each failure in a row (5 s up to 5 min).
pub fn error_policy(job: Arc<StreamJob>, error: &Error, ctx: Arc<Context>) -> Action {
    let kind = error.kind();
    ctx.metrics.failed(kind);
    tracing::warn!(job = %job.name_any(), error = %error, kind, "reconcile failed");
    let uid = job.uid().unwrap_or_default();
    let wait = ctx.with_memory(&uid, |memory| {
        memory.degraded = Some((kind.to_string(), error.to_string()));
        memory.back_off(Duration::from_secs(5), Duration::from_secs(300))
    });
    Action::requeue(wait)
}

/// The job's timing settings (validated, so they parse).
fn timing(job: &StreamJob) -> Timing {
    let c = &job.spec.checkpoints;
    let parse = |d: &eddy_api::HumanDuration, default: u64| {
        d.parse().unwrap_or(Duration::from_secs(default))
    };
    Timing {
        interval: parse(&c.interval, 60),
        timeout: parse(&c.timeout, 600),
    }
}

/// When a running job is looked at again (see [`look_again`]).
fn requeue_for(job: &StreamJob, finishing: bool) -> Action {
    Action::requeue(look_again(timing(job).interval, finishing))
}

/// How long until a running job is looked at again: often enough for its
/// checkpoint interval and for a current lag in its status (at most 10 s),
/// and every 2 s once some of its pods have finished their finite input
/// (no watch event says so), so that the job is Finished soon after its
/// last pod, not up to 10 s later.
fn look_again(interval: Duration, finishing: bool) -> Duration {
    let usual = interval.min(Duration::from_secs(10));
    if finishing {
        usual.min(Duration::from_secs(2))
    } else {
        usual
    }
}

async fn apply_job(job: &StreamJob, ctx: &Context) -> Result<Action, Error> {
    // The watch cache can lag behind this operator's own status writes,
    // and the status holds the change in progress: read the job afresh so
    // a pass never acts on a transition as it was two writes ago.
    let api: Api<StreamJob> =
        Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    let Some(fresh) = api.get_opt(&job.name_any()).await? else {
        return Ok(Action::await_change());
    };
    if fresh.uid() != job.uid() {
        return Ok(Action::await_change());
    }
    let job = &fresh;
    let uid = job.uid().unwrap_or_default();
    let mut memory = ctx.take(&uid);
    let result = transition::reconcile_valid_or_not(job, ctx, &mut memory).await;
    ctx.keep(&uid, memory);
    result
}

async fn cleanup(job: &StreamJob, ctx: &Context) -> Result<Action, Error> {
    ctx.take(&job.uid().unwrap_or_default());
    let place = checkpoint_place(job);
    let (type_, note) = match build::cleanup::wanted(job) {
        build::cleanup::Wanted::Keep => (
            EventType::Normal,
            format!(
                "StreamJob deleted; its checkpoints are kept under {place} (a job re-created \
                 with this name resumes from them)"
            ),
        ),
        build::cleanup::Wanted::Delete => (EventType::Normal, "StreamJob deleted".to_string()),
        build::cleanup::Wanted::OnPodVolumes => (
            EventType::Normal,
            format!(
                "StreamJob deleted; its checkpoints under {place} are on the pods' state \
                 volumes and go with them (delete the state claims of a PVC-backed job)"
            ),
        ),
    };
    publish(ctx, job, type_, "Deleted", "Delete", note).await;
    Ok(Action::await_change())
}

/// Where the job's checkpoints are: `<store>/<namespace>/<name>`.
fn checkpoint_place(job: &StreamJob) -> String {
    format!(
        "{}/{}/{}",
        job.spec.checkpoints.store.trim_end_matches('/'),
        job.namespace().unwrap_or_default(),
        job.name_any()
    )
}

/// Records an Event about `job`; failing to record one never fails the
/// reconcile.
async fn publish(
    ctx: &Context,
    job: &StreamJob,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(truncate(note, NOTE_LIMIT)),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &job.object_ref(&())).await {
        tracing::warn!("recording event {reason}: {e}");
    }
}

/// `note` cut to at most `limit` bytes (on a character boundary), marked
/// with an ellipsis when cut.
fn truncate(mut note: String, limit: usize) -> String {
    if note.len() <= limit {
        return note;
    }
    let mut end = limit - '…'.len_utf8();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    note.truncate(end);
    note.push('…');
    note
}

/// Writes `status` when it differs from the job's.
async fn patch_status(
    ctx: &Context,
    job: &StreamJob,
    status: eddy_api::spec::StreamJobStatus,
) -> Result<(), Error> {
    if job.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<StreamJob> =
        Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    let patch = serde_json::json!({ "status": status_patch(job.status.as_ref(), &status) });
    api.patch_status(
        &job.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    ctx.metrics.status_writes.inc();
    Ok(())
}

/// The merge patch from `old` to `new`: `new`, plus a `null` for every
/// field `old` has and `new` no longer does, at any depth (a merge patch
/// keeps what it does not mention, so an unset lag, or the partition of a
/// decision that has none, would otherwise stay forever).
fn status_patch(
    old: Option<&eddy_api::spec::StreamJobStatus>,
    new: &eddy_api::spec::StreamJobStatus,
) -> serde_json::Value {
    let mut patch = serde_json::to_value(new).unwrap_or_default();
    if let Some(old) = old.and_then(|o| serde_json::to_value(o).ok()) {
        null_removed(&old, &mut patch);
    }
    patch
}

/// Adds to `new` a `null` for each field of `old` it lacks, into objects
/// both have (arrays are replaced whole by a merge patch).
fn null_removed(old: &serde_json::Value, new: &mut serde_json::Value) {
    let (serde_json::Value::Object(old), serde_json::Value::Object(new)) = (old, new) else {
        return;
    };
    for (key, was) in old {
        match new.get_mut(key) {
            Some(now) => null_removed(was, now),
            None => {
                new.insert(key.clone(), serde_json::Value::Null);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use eddy_api::spec::StreamJobStatus;

    #[test]
    fn a_job_whose_pods_are_finishing_is_looked_at_sooner() {
        let s = Duration::from_secs;
        assert_eq!(super::look_again(s(60), false), s(10));
        assert_eq!(super::look_again(s(5), false), s(5));
        assert_eq!(super::look_again(s(60), true), s(2));
        assert_eq!(
            super::look_again(Duration::from_millis(500), true),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn a_field_the_new_status_drops_is_cleared() {
        let old = StreamJobStatus {
            selector: Some("a=b".into()),
            ..StreamJobStatus::default()
        };
        let new = StreamJobStatus::default();
        let patch = super::status_patch(Some(&old), &new);
        assert_eq!(patch["selector"], serde_json::Value::Null);
        assert!(patch.as_object().unwrap().contains_key("selector"));
        let fresh = super::status_patch(None, &old);
        assert_eq!(fresh["selector"], "a=b");
    }

    #[test]
    fn a_nested_field_the_new_status_drops_is_cleared() {
        use eddy_api::spec::{AutoscalingStatus, ScalingDecision};
        let decision = |partition| ScalingDecision {
            time: "t".into(),
            action: "A".into(),
            reason: "r".into(),
            from: 1,
            to: 1,
            partition,
            applied: false,
        };
        let with = |partition| StreamJobStatus {
            autoscaling: Some(AutoscalingStatus {
                last_decision: Some(decision(partition)),
                ..AutoscalingStatus::default()
            }),
            ..StreamJobStatus::default()
        };
        let patch = super::status_patch(Some(&with(Some(3))), &with(None));
        let last = &patch["autoscaling"]["lastDecision"];
        assert!(
            last.as_object().unwrap().contains_key("partition"),
            "{patch}"
        );
        assert_eq!(last["partition"], serde_json::Value::Null);
        assert_eq!(last["reason"], "r");
    }

    #[test]
    fn event_notes_are_cut_to_the_limit_on_a_character_boundary() {
        let long = "é".repeat(800);
        let cut = super::truncate(long, 1024);
        assert!(cut.len() <= 1024, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert_eq!(super::truncate("short".into(), 1024), "short");
    }

    #[test]
    fn the_back_off_doubles_up_to_its_limit() {
        use std::time::Duration;
        let mut memory = super::JobMemory::default();
        let waits: Vec<u64> = (0..8)
            .map(|_| {
                memory
                    .back_off(Duration::from_secs(5), Duration::from_secs(300))
                    .as_secs()
            })
            .collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300]);
    }
}
