//! What the operator reports about a running job.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a StreamJob, written by the operator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamJobStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Lifecycle phase: Pending, Running, Checkpointing, Rescaling,
    /// Upgrading, Suspended, Finished or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Processor pods that exist.
    #[serde(default)]
    pub replicas: i32,
    /// Processor pods that are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the processor pods (for the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Which partitions each processor pod owns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assignment: Vec<PodAssignment>,
    /// Raised with every change of the assignment: the pods get it with
    /// theirs and record it in each checkpoint, so a pod that restarts on
    /// an older one (its ConfigMap volume lags behind a live move) waits
    /// rather than run a partition another pod runs now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_version: Option<u64>,
    /// The most recent checkpoint completed on every pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint: Option<CheckpointRecord>,
    /// The last checkpoints completed on every pod, newest first (at most
    /// [`CHECKPOINT_HISTORY`]). Checkpoint lag is not kept here: it changes
    /// every second, so it is the operator's
    /// `eddy_operator_checkpoint_lag_seconds` metric, and `kubectl get`
    /// shows the age of `lastCheckpoint`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checkpoint_history: Vec<CheckpointRecord>,
    /// A change that moves state (rescale, upgrade, suspend) in progress,
    /// kept here so an operator restarted in its middle finishes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transition: Option<TransitionStatus>,
    /// Keys above the hot-key share, heaviest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hot_keys: Vec<HotKey>,
    /// The hot keys as one short line, for `kubectl get -o wide`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hot_key_summary: Option<String>,
    /// What the lateness the pods observe says about the event-time
    /// settings; updated when a checkpoint completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark_advice: Option<WatermarkAdvice>,
    /// A two-phase job (`hotKeys.twoPhase`): each stage over all pods, the
    /// first stage (`partial`) then the merge stage (`merge`); updated
    /// when a checkpoint completes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageStatus>,
    /// Ready, CheckpointsHealthy, SpecValid, Degraded and
    /// ReconciliationPaused, each with reason, message and the generation
    /// it was computed for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The spec (as JSON) the running pods were last built from; compared
    /// with the current spec to decide between no-op, rescale and upgrade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reconciled_spec: Option<String>,
    /// How many times a change with `upgradeMode: stateless` started the
    /// job over: pods restore only checkpoints taken since the last time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub state_epoch: Option<u64>,
    /// Every pod reached the end of its finite input and emitted every
    /// window: the pods are stopped and the job is not run again until its
    /// spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<FinishedStatus>,
    /// What the autoscaler measured and decided (unless its mode is
    /// `disabled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<super::AutoscalingStatus>,
}

/// One stage of a two-phase job, over every pod running it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageStatus {
    /// `partial` (aggregates the input per salted key) or `merge` (merges
    /// the partials into the job's results).
    pub name: String,
    /// Pods that reported the stage.
    #[schemars(range(min = 0))]
    pub pods: u32,
    /// Pods whose stage finished: its input ended and every window is out.
    #[schemars(range(min = 0))]
    pub finished_pods: u32,
    /// Records the stage read since its pods started: events, or partials
    /// and watermark marks.
    #[schemars(range(min = 0))]
    pub records_read: u64,
    /// Records beyond the allowed lateness.
    #[schemars(range(min = 0))]
    pub late: u64,
    /// The merge stage: partials sent again by a first-stage pod restarted
    /// from a checkpoint, for windows already closed (merged when they
    /// first came), and records the job sent before it started over
    /// (`upgradeMode: stateless`); dropped, neither late nor lost.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub replayed: u64,
    /// Kafka records the stage is behind the end of its topic, when its
    /// pods know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub backlog: Option<u64>,
    /// The stage's watermark: the lowest of its pods' (RFC 3339); the
    /// merge stage's trails the first stage's by the marks in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
    /// The newest checkpoint every pod of the stage completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub last_checkpoint: Option<u64>,
}

/// What the lateness the pods observe says about `eventTime` and
/// `allowedLateness`: a watermark too aggressive silently undercounts, one
/// too conservative holds state longer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WatermarkAdvice {
    /// Share (0 to 1) of the events read since the pods started that came
    /// too late to count, rounded to 0.01%.
    pub dropped_share: f64,
    /// The settings that would have kept 99% and 99.9% of events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<WatermarkSetting>,
}

/// Event-time settings that keep a share of events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WatermarkSetting {
    /// The share kept, e.g. `99%`.
    pub keep: String,
    /// `eventTime.maxOutOfOrderness` keeping it with no allowed lateness.
    pub max_out_of_orderness: String,
    /// `allowedLateness` keeping it with the job's out-of-orderness.
    pub allowed_lateness: String,
    /// Windows that would be open with that allowed lateness (state).
    #[schemars(range(min = 0))]
    pub open_windows: u64,
}

/// When a finite job finished.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FinishedStatus {
    /// The `metadata.generation` that finished.
    #[schemars(range(min = 0))]
    pub generation: i64,
    /// When every pod had finished (RFC 3339).
    pub time: String,
}

/// How many completed checkpoints `status.checkpointHistory` keeps.
pub const CHECKPOINT_HISTORY: usize = 5;

/// A change that moves state, as the operator records it while it runs:
/// a final checkpoint on every pod (unless the upgrade mode skips it),
/// then the new children, then every pod replaced at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransitionStatus {
    /// The `metadata.generation` being rolled out.
    #[schemars(range(min = 0))]
    pub generation: i64,
    /// Rescale, Upgrade or Suspend.
    pub change: String,
    /// When it started (RFC 3339).
    pub started: String,
    /// The final checkpoint's id, once asked of the pods (they pause
    /// consuming once it is taken, until resumed or replaced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub final_checkpoint: Option<u64>,
    /// The final checkpoint completed, or the upgrade mode went on without
    /// one: the new children are applied next.
    #[serde(default)]
    pub checkpointed: bool,
    /// The new children are applied; pods of an older revision are being
    /// replaced, all at once.
    #[serde(default)]
    pub applied: bool,
    /// With `upgradeMode: stateless`: the state epoch the new pods start
    /// (empty state); it becomes `status.stateEpoch` once they run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub state_epoch: Option<u64>,
}

/// Lifecycle phase of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Accepted; pods are not all running yet.
    Pending,
    /// Every pod is processing.
    Running,
    /// A checkpoint is in progress.
    Checkpointing,
    /// Parallelism or the partition assignment is changing.
    Rescaling,
    /// Pods are being replaced with a new spec, restoring from a final
    /// checkpoint.
    Upgrading,
    /// Stopped after a final checkpoint (`spec.suspend`).
    Suspended,
    /// Every pod reached the end of its finite input and emitted every
    /// window; the pods are stopped.
    Finished,
    /// The job cannot run; see conditions.
    Failed,
}

/// The assignment as the pods read it (`assignment.yaml` in the job's
/// ConfigMap).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderedAssignment {
    /// `status.assignmentVersion`.
    pub version: u64,
    pub pods: Vec<PodAssignment>,
}

/// Partitions owned by one processor pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodAssignment {
    /// Pod ordinal in the StatefulSet.
    #[schemars(range(min = 0, max = 4095))]
    pub ordinal: u32,
    /// Partition numbers the pod owns.
    #[schemars(inner(range(min = 0, max = 4095)))]
    pub partitions: Vec<u32>,
}

/// A completed checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointRecord {
    /// Checkpoint id, increasing.
    #[schemars(range(min = 0))]
    pub id: u64,
    /// When it completed (RFC 3339).
    pub time: String,
    /// How long it took, in milliseconds.
    #[schemars(range(min = 0))]
    pub duration_ms: u64,
    /// Bytes uploaded for it (new files only).
    #[schemars(range(min = 0))]
    pub bytes_uploaded: u64,
    /// Bytes of state it covers.
    #[schemars(range(min = 0))]
    pub bytes_total: u64,
}

/// A key carrying a large share of its partition's events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HotKey {
    /// Partition the key belongs to.
    #[schemars(range(min = 0, max = 4095))]
    pub partition: u32,
    /// The key.
    pub key: String,
    /// Estimated share (0 to 1) of the partition's events.
    pub share: f64,
}
