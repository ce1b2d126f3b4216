//! The `StreamJob` custom resource: `eddy.dev/v1alpha1`.

mod scaling;
mod scaling_status;
mod sink;
mod source;
mod state;
mod status;
mod time;
mod window;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::CustomResource;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

pub use scaling::*;
pub use scaling_status::*;
pub use sink::*;
pub use source::*;
pub use state::*;
pub use status::*;
pub use time::*;
pub use window::*;

use crate::values::HumanDuration;

/// A keyed, event-time aggregation over a stream: where events come from,
/// how they are keyed and windowed, what is computed, where results go, and
/// how state is kept, checkpointed and scaled.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "eddy.dev",
    version = "v1alpha1",
    kind = "StreamJob",
    plural = "streamjobs",
    singular = "streamjob",
    shortname = "sj",
    category = "eddy",
    namespaced,
    status = "StreamJobStatus",
    derive = "PartialEq",
    doc = "A stateful stream processing job run by Eddy: keyed event-time windows over a stream, with exactly-once results.",
    scale = r#"{"specReplicasPath":".spec.parallelism","statusReplicasPath":".status.replicas","labelSelectorPath":".status.selector"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","description":"Lifecycle phase","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Parallelism","type":"integer","description":"Desired processor pods","jsonPath":".spec.parallelism"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","description":"Ready processor pods","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Last Checkpoint","type":"date","description":"When the last checkpoint completed","jsonPath":".status.lastCheckpoint.time"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","description":"Why the job is not Ready","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Hot Keys","type":"string","description":"Keys above the hot-key share","jsonPath":".status.hotKeySummary","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.parallelism <= self.partitions",
    "message": "parallelism must not exceed partitions: raise partitions or lower parallelism"
}]))]
pub struct StreamJobSpec {
    /// Where events come from.
    pub source: SourceSpec,
    /// Name of the field whose value keys the aggregation (string or integer
    /// values). Events of one key always go to the same partition.
    pub key_field: String,
    /// How event time is read, how far out of order events may be, and how
    /// skewed producer clocks are handled.
    pub event_time: EventTimeSpec,
    /// How events are grouped in time.
    pub window: WindowSpec,
    /// How long after a window closes late events may still update it. Each
    /// update is emitted again as a higher revision of the same result.
    #[serde(default = "defaults::zero")]
    pub allowed_lateness: HumanDuration,
    /// What happens to events later than the allowed lateness: `drop` or
    /// `output` (written to `lateOutput` with their lateness). Either way
    /// they are counted and their lateness recorded.
    #[serde(default)]
    pub late_data: LateDataPolicy,
    /// What is computed per key and window (at most 64 aggregates).
    #[serde(default = "defaults::aggregations")]
    #[schemars(length(min = 1, max = 64))]
    pub aggregations: Vec<AggregationSpec>,
    /// Where results are written (all of them, in order; at most 16).
    #[serde(default = "defaults::sinks")]
    #[schemars(length(min = 1, max = 16))]
    pub sinks: Vec<SinkSpec>,
    /// Where events beyond the allowed lateness go when `lateData` is
    /// `output`, with their lateness.
    #[serde(default = "defaults::stderr")]
    pub late_output: SinkSpec,
    /// Where events that cannot be processed (not JSON, missing or wrongly
    /// typed key or time, beyond the allowed clock skew) go, with the reason.
    #[serde(default = "defaults::stderr")]
    pub invalid_output: SinkSpec,
    /// Local keyed state: TTL, memory budget, volume.
    #[serde(default)]
    pub state: StateSpec,
    /// Checkpoint interval, store and retention.
    #[serde(default)]
    pub checkpoints: CheckpointSpec,
    /// Number of partitions: the unit of parallelism and of state ownership.
    /// For a Kafka source, the topic's partition count.
    #[serde(default = "defaults::partitions")]
    #[schemars(range(min = 1, max = 4096))]
    pub partitions: u32,
    /// Number of processor pods. At most `partitions`. `kubectl scale` sets
    /// this.
    #[serde(default = "defaults::parallelism")]
    #[schemars(range(min = 0, max = 4096))]
    pub parallelism: u32,
    /// Worker threads in each processor pod. Each runs some of the pod's
    /// partitions with their own state, watermark and caches (shared
    /// nothing, like Flink's subtasks), and one checkpoint covers them all.
    /// At most one per partition the pod runs; unset: one. Records are read
    /// and routed on one thread, so more workers help when processing, not
    /// parsing, is the bottleneck (generated or already-typed input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub workers: Option<u32>,
    /// Automatic scaling and partition moves.
    #[serde(default)]
    pub autoscaling: AutoscalingSpec,
    /// Hot-key detection and two-phase aggregation.
    #[serde(default)]
    pub hot_keys: HotKeySpec,
    /// Stop processing: take a final checkpoint and scale to zero pods.
    /// Setting it back to false restores from that checkpoint.
    #[serde(default)]
    pub suspend: bool,
    /// What a change that replaces the pods (rescale, upgrade, suspend)
    /// does about their state, as in the Flink operator: `checkpoint`
    /// (default) takes a final checkpoint on every pod first and does not go
    /// on without one; `lastState` asks nothing of the pods and restores
    /// the newest checkpoint completed on every pod (for pods that crash or
    /// hang; input since then is read again, and exactly-once sinks drop
    /// what they already hold).
    #[serde(default)]
    pub upgrade_mode: UpgradeMode,
    /// Processor container image; the operator's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// CPU and memory requests and limits of the processor container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// A partial pod template merged over the one the operator builds (extra
    /// labels, annotations, node selectors, tolerations, sidecar
    /// containers, ...). Fields set here win.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pod_template_schema")]
    pub pod_template: Option<serde_json::Value>,
}

fn pod_template_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

impl StreamJobSpec {
    /// A spec with the given source, key, time and window, everything else at
    /// its default.
    pub fn new(source: SourceSpec, key_field: &str, time_field: &str, window: WindowSpec) -> Self {
        Self {
            source,
            key_field: key_field.into(),
            event_time: EventTimeSpec::on_field(time_field),
            window,
            allowed_lateness: defaults::zero(),
            late_data: LateDataPolicy::default(),
            aggregations: defaults::aggregations(),
            sinks: defaults::sinks(),
            late_output: defaults::stderr(),
            invalid_output: defaults::stderr(),
            state: StateSpec::default(),
            checkpoints: CheckpointSpec::default(),
            partitions: defaults::partitions(),
            parallelism: defaults::parallelism(),
            workers: None,
            autoscaling: AutoscalingSpec::default(),
            hot_keys: HotKeySpec::default(),
            suspend: false,
            upgrade_mode: UpgradeMode::default(),
            image: None,
            resources: None,
            pod_template: None,
        }
    }
}

/// The names of the members of a one-of group that are set.
fn names_set<const N: usize>(members: [(&'static str, bool); N]) -> Vec<&'static str> {
    members
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
}

impl StreamJobSpec {
    /// Every output with its field path: the result sinks, then the late
    /// and invalid outputs.
    pub fn outputs(&self) -> impl Iterator<Item = (String, &SinkSpec)> {
        self.sinks
            .iter()
            .enumerate()
            .map(|(i, s)| (output_path(i), s))
            .chain([
                ("spec.lateOutput".to_string(), &self.late_output),
                ("spec.invalidOutput".to_string(), &self.invalid_output),
            ])
    }

    /// [`Self::outputs`], to change them.
    pub fn outputs_mut(&mut self) -> impl Iterator<Item = (String, &mut SinkSpec)> {
        self.sinks
            .iter_mut()
            .enumerate()
            .map(|(i, s)| (output_path(i), s))
            .chain([
                ("spec.lateOutput".to_string(), &mut self.late_output),
                ("spec.invalidOutput".to_string(), &mut self.invalid_output),
            ])
    }
}

fn output_path(sink: usize) -> String {
    format!("spec.sinks[{sink}]")
}

/// A key in a Secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret in the job's namespace.
    pub name: String,
    /// Key within the Secret.
    pub key: String,
}

mod defaults {
    use super::*;

    pub fn zero() -> HumanDuration {
        "0s".into()
    }
    pub fn aggregations() -> Vec<AggregationSpec> {
        vec![AggregationSpec::count()]
    }
    pub fn sinks() -> Vec<SinkSpec> {
        vec![SinkSpec::stdout()]
    }
    pub fn stderr() -> SinkSpec {
        SinkSpec::stderr()
    }
    pub fn partitions() -> u32 {
        8
    }
    pub fn parallelism() -> u32 {
        1
    }
}
