//! The reconcile pipeline: fetch → validate → build → apply → status.
//!
//! Validate and build are pure ([`crate::build`]); [`observe`] fetches,
//! [`apply`] writes children, and the status is computed by [`status`] and
//! written only when it changed. Changes that move state (rescale, upgrade,
//! suspend) first take a final checkpoint on every pod through the
//! [`Scheduler`], then apply; the pods restore from it. Running jobs are
//! checkpointed by the same scheduler every `spec.checkpoints.interval`.

pub mod apply;
mod cleanup;
pub mod observe;
pub mod run;
pub mod status;
mod transition;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use eddy_api::{spec::Phase, StreamJob};
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

pub use transition::Transition;

use crate::{
    build::{self, diff::Change},
    metrics::Metrics,
    scheduler::{JobCheckpoints, Scheduler, Timing},
};

/// The finalizer the operator puts on every StreamJob.
pub const FINALIZER: &str = "eddy.dev/checkpoints";

/// Where a pod's admin API is, by job and ordinal.
pub type PodUrl = Arc<dyn Fn(&StreamJob, u32) -> String + Send + Sync>;

/// The cluster DNS name of a pod's admin API, through the headless Service.
pub fn cluster_pod_url() -> PodUrl {
    Arc::new(|job: &StreamJob, ordinal: u32| {
        let name = job.name_any();
        let namespace = job.namespace().unwrap_or_default();
        format!(
            "http://{}-{ordinal}.{}.{namespace}.svc:{}",
            build::names::stateful_set(&name),
            build::names::headless_service(&name),
            build::service::ADMIN_PORT
        )
    })
}

/// What one job needs remembered between reconciles.
#[derive(Clone, Debug, Default)]
pub struct JobMemory {
    pub checkpoints: JobCheckpoints,
    pub transition: Option<Transition>,
    /// The generation for which the StatefulSet was deleted to change its
    /// volume claim templates (so it is deleted once, not again after the
    /// re-creation).
    pub recreated_for: Option<i64>,
}

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub build: build::Context,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub scheduler: Scheduler,
    pub pod_url: PodUrl,
    pub clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
    /// Per job uid.
    pub jobs: Mutex<HashMap<String, JobMemory>>,
}

impl Context {
    pub fn new(client: Client, recorder: Recorder, metrics: Arc<Metrics>) -> Self {
        Self {
            client,
            build: build::Context::default(),
            recorder,
            metrics,
            scheduler: Scheduler::default(),
            pod_url: cluster_pod_url(),
            clock: Arc::new(Timestamp::now),
            jobs: Mutex::default(),
        }
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
        }
    }
}

/// Reconciles one StreamJob.
pub async fn reconcile(job: Arc<StreamJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _measure = ctx.metrics.measure();
    let namespace = job.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<StreamJob> = Api::namespaced(ctx.client.clone(), &namespace);
    let releasing = job.metadata.deletion_timestamp.is_some()
        && job.finalizers().iter().any(|f| f == FINALIZER);
    if releasing {
        if let Some(waiting) = cleanup::progress(&job, &ctx).await? {
            return Ok(waiting);
        }
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

/// What the controller does on a failed reconcile: count it, retry soon.
pub fn error_policy(_job: Arc<StreamJob>, error: &Error, ctx: Arc<Context>) -> Action {
    let kind = error.kind();
    ctx.metrics.failed(kind);
    tracing::warn!(error = %error, kind, "reconcile failed");
    Action::requeue(Duration::from_secs(10))
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

/// How often a running job is looked at: often enough for its checkpoint
/// interval and for a current lag in its status.
fn requeue_for(job: &StreamJob) -> Action {
    Action::requeue(timing(job).interval.min(Duration::from_secs(10)))
}

async fn apply_job(job: &StreamJob, ctx: &Context) -> Result<Action, Error> {
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
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &job.object_ref(&())).await {
        tracing::warn!("recording event {reason}: {e}");
    }
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
    Ok(())
}

/// The merge patch from `old` to `new`: `new`, plus a `null` for every
/// field `old` has and `new` no longer does (a merge patch keeps what it
/// does not mention, so an unset lag would otherwise stay forever).
fn status_patch(
    old: Option<&eddy_api::spec::StreamJobStatus>,
    new: &eddy_api::spec::StreamJobStatus,
) -> serde_json::Value {
    let mut patch = serde_json::to_value(new).unwrap_or_default();
    let old = old.and_then(|o| serde_json::to_value(o).ok());
    if let (Some(serde_json::Value::Object(old)), Some(fields)) = (old, patch.as_object_mut()) {
        for key in old.keys() {
            fields.entry(key.clone()).or_insert(serde_json::Value::Null);
        }
    }
    patch
}

/// The phase a change in progress shows.
fn phase_of(change: Change) -> Phase {
    match change {
        Change::Scale => Phase::Rescaling,
        Change::Suspend => Phase::Checkpointing,
        _ => Phase::Upgrading,
    }
}

#[cfg(test)]
mod tests {
    use eddy_api::spec::StreamJobStatus;

    #[test]
    fn a_field_the_new_status_drops_is_cleared() {
        let old = StreamJobStatus {
            checkpoint_lag_seconds: Some(42),
            ..StreamJobStatus::default()
        };
        let new = StreamJobStatus::default();
        let patch = super::status_patch(Some(&old), &new);
        assert_eq!(patch["checkpointLagSeconds"], serde_json::Value::Null);
        assert!(patch
            .as_object()
            .unwrap()
            .contains_key("checkpointLagSeconds"));
        let fresh = super::status_patch(None, &old);
        assert_eq!(fresh["checkpointLagSeconds"], 42);
    }
}
