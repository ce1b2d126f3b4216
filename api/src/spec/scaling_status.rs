//! What the autoscaler reports about a job (`status.autoscaling`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{AutoscalingMode, PodAssignment};

/// How many decisions `status.autoscaling.decisions` keeps.
pub const DECISION_HISTORY: usize = 10;

/// The autoscaler's view of a job: its mode, what it decided last and why,
/// the parallelism the measurements call for, and each partition's load.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingStatus {
    /// `spec.autoscaling.mode` as the operator last acted on it.
    pub mode: AutoscalingMode,
    /// Pods the autoscaler runs the job on (mode `apply`), in place of
    /// `spec.parallelism` while that stays at `basedOn`: a new
    /// `spec.parallelism` wins over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4096))]
    pub parallelism: Option<u32>,
    /// `spec.parallelism` when `parallelism` was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4096))]
    pub based_on: Option<u32>,
    /// Pods the measurements call for, within the bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4096))]
    pub recommended_parallelism: Option<u32>,
    /// The latest decision that differed from the one before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<ScalingDecision>,
    /// The last decisions that asked for something, newest first (at most
    /// [`DECISION_HISTORY`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<ScalingDecision>,
    /// Each partition's measured load over the metrics window, refreshed
    /// about once a minute.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionLoadStatus>,
    /// A change of the assignment in progress (mode `apply`): partitions
    /// are released by their old pods and taken over by their new ones,
    /// one at a time, while the others run on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moving: Option<MoveStatus>,
}

/// One decision of the autoscaler.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingDecision {
    /// When (RFC 3339).
    pub time: String,
    /// NoChange, ScaledOut, ScaledIn, PartitionIsolated, Rebalanced,
    /// HotKeyDetected, ScalingBlocked or ScalingIneffective (the reason of
    /// the Event sent for it).
    pub action: String,
    /// Why, with the figures it rests on.
    pub reason: String,
    /// Pods before.
    #[schemars(range(min = 0, max = 4096))]
    pub from: u32,
    /// Pods after (as many as before for decisions that change none).
    #[schemars(range(min = 0, max = 4096))]
    pub to: u32,
    /// The partition it is about (isolated, or with the hot key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4095))]
    pub partition: Option<u32>,
    /// Whether the operator carried it out (mode `apply`) or only
    /// reported it.
    #[serde(default)]
    pub applied: bool,
}

/// One partition's measured load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionLoadStatus {
    /// The partition.
    #[schemars(range(min = 0, max = 4095))]
    pub partition: u32,
    /// Ordinal of the pod that runs it.
    #[schemars(range(min = 0, max = 4095))]
    pub pod: u32,
    /// Share of one pod it needs at the rate it must reach (incoming
    /// events plus its backlog worked off within `catchUpWithin`).
    pub load: f64,
    /// Events processed per second.
    pub events_per_second: f64,
    /// Records waiting for it in the source.
    #[schemars(range(min = 0))]
    pub backlog: u64,
}

/// A change of the assignment in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MoveStatus {
    /// What it is for (the decision's action).
    pub action: String,
    /// When it started (RFC 3339).
    pub started: String,
    /// The pods after it.
    #[schemars(range(min = 1, max = 4096))]
    pub pods: u32,
    /// The assignment after it.
    pub target: Vec<PodAssignment>,
    /// The assignment version of the target: the pods taking part hear it
    /// with each release and acquire, before the ConfigMap shows it.
    #[serde(default)]
    pub version: u64,
    /// Partitions released by their old pod, with the checkpoint each was
    /// released at.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub released: Vec<ReleasedPartition>,
    /// Partitions running on their new pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(range(min = 0, max = 4095)))]
    pub moved: Vec<u32>,
}

/// A partition its old pod let go of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleasedPartition {
    /// The partition.
    #[schemars(range(min = 0, max = 4095))]
    pub partition: u32,
    /// The checkpoint its old pod released it at; its new pod resumes
    /// from it.
    #[schemars(range(min = 0))]
    pub checkpoint: u64,
}
