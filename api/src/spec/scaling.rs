//! Automatic scaling and hot-key handling.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::values::HumanDuration;

/// Bounds and triggers for the operator's automatic reactions. Every
/// reaction is recorded in status, conditions and Events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// `disabled`: nothing is measured or decided. `recommend`: decisions
    /// go into status and Events, nothing changes. `apply`: the operator
    /// changes parallelism and moves partitions on its own. (Not `off`:
    /// Kubernetes reads YAML 1.1, where an unquoted `off` is `false`.)
    #[serde(default)]
    pub mode: AutoscalingMode,
    /// Fewest processor pods.
    #[serde(default = "defaults::min_replicas")]
    #[schemars(range(min = 1, max = 4096))]
    pub min_replicas: u32,
    /// Most processor pods; unset means one per partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4096))]
    pub max_replicas: Option<u32>,
    /// Scale out when checkpoint lag stays above this for the stabilization
    /// window.
    #[serde(default = "defaults::lag")]
    pub checkpoint_lag_threshold: HumanDuration,
    /// A key carrying more than this share (0 to 1) of its partition's events
    /// is reported as hot.
    #[serde(default = "defaults::hot_key_share")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub hot_key_share: f64,
    /// A partition carrying more than this share (0 to 1) of its pod's events
    /// is isolated on a pod of its own.
    #[serde(default = "defaults::hot_partition_share")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub hot_partition_share: f64,
    /// A condition must hold this long before the operator reacts.
    #[serde(default = "defaults::stabilization")]
    pub stabilization_window: HumanDuration,
    /// Least time between two reactions.
    #[serde(default = "defaults::cooldown")]
    pub cooldown: HumanDuration,
    /// Scale in after the job has needed fewer pods (no lag, no backlog
    /// growing) this long.
    #[serde(default = "defaults::scale_in_after")]
    pub scale_in_idle_after: HumanDuration,
    /// Share of a pod's time the job is sized to use (0 to 1): the rest is
    /// headroom for bursts and checkpoints.
    #[serde(default = "defaults::target_utilization")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub target_utilization: f64,
    /// A backlog is sized to be worked off within this time, on top of the
    /// incoming rate.
    #[serde(default = "defaults::catch_up_within")]
    pub catch_up_within: HumanDuration,
    /// Rates and busy shares are averaged over this window.
    #[serde(default = "defaults::metrics_window")]
    pub metrics_window: HumanDuration,
}

/// What the operator does with its scaling decisions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AutoscalingMode {
    #[default]
    Disabled,
    Recommend,
    Apply,
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        Self {
            mode: AutoscalingMode::Disabled,
            min_replicas: defaults::min_replicas(),
            max_replicas: None,
            checkpoint_lag_threshold: defaults::lag(),
            hot_key_share: defaults::hot_key_share(),
            hot_partition_share: defaults::hot_partition_share(),
            stabilization_window: defaults::stabilization(),
            cooldown: defaults::cooldown(),
            scale_in_idle_after: defaults::scale_in_after(),
            target_utilization: defaults::target_utilization(),
            catch_up_within: defaults::catch_up_within(),
            metrics_window: defaults::metrics_window(),
        }
    }
}

/// Handling of keys too hot for one pod.
///
/// With `twoPhase`, the job runs in two stages, as Flink's local-global
/// aggregation does: the first reads the source and aggregates what each of
/// its partitions holds of a key and window (a partial), the second merges
/// the partials of a key and window and writes the results, with the same
/// ids, revisions and final flags as a job in one stage. Every pod runs
/// both stages for its partitions. Eddy spreads a key over partitions
/// itself where it routes events (generator and HTTP sources: each event
/// to one of `saltBuckets` partitions from the key's own, chosen by a hash
/// of where the event came from); a Kafka topic's partitions (and files)
/// are read as they are, so producers spread a hot key there (round-robin
/// or with a salted message key): in two phases a key need not stay in one
/// partition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HotKeySpec {
    /// Aggregate in two phases: first per (key, salt) spread over
    /// `saltBuckets` sub-keys, then merged per key. Costs a second stage;
    /// use it only for keys no single pod can keep up with.
    #[serde(default)]
    pub two_phase: bool,
    /// Number of salt buckets a key is spread over in two-phase mode.
    #[serde(default = "defaults::salt_buckets")]
    #[schemars(range(min = 2, max = 4096))]
    pub salt_buckets: u32,
    /// How many of the heaviest keys per partition are tracked and reported.
    #[serde(default = "defaults::top_k")]
    #[schemars(range(min = 1, max = 10000))]
    pub top_k: u32,
    /// The Kafka topic the partials travel over in two-phase mode, with one
    /// partition per job partition. Unset fields: the brokers and properties
    /// of a Kafka source, and the topic `eddy-<namespace>-<name>-partials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partials: Option<PartialsTopic>,
}

/// Where two-phase partials go (see [`HotKeySpec::partials`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartialsTopic {
    /// Bootstrap servers, comma separated; the source's when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brokers: Option<String>,
    /// The topic; `eddy-<namespace>-<name>-partials` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Extra librdkafka properties of its producer and consumer; the
    /// source's when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<BTreeMap<String, String>>,
}

/// The partials topic of a two-phase job, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedPartials {
    pub brokers: String,
    pub topic: String,
    pub properties: BTreeMap<String, String>,
}

/// The default name of a job's partials topic.
pub fn partials_topic_name(namespace: &str, name: &str) -> String {
    let namespace = if namespace.is_empty() {
        "default"
    } else {
        namespace
    };
    format!("eddy-{namespace}-{name}-partials")
}

impl super::StreamJobSpec {
    /// Where a two-phase job's partials travel (`None`: the job runs in one
    /// phase, or no brokers are known: validation says so).
    pub fn partials(&self, namespace: &str, name: &str) -> Option<ResolvedPartials> {
        if !self.hot_keys.two_phase {
            return None;
        }
        let set = self.hot_keys.partials.clone().unwrap_or_default();
        let source = self.source.kafka.as_ref();
        Some(ResolvedPartials {
            brokers: set.brokers.or_else(|| source.map(|k| k.brokers.clone()))?,
            topic: set
                .topic
                .unwrap_or_else(|| partials_topic_name(namespace, name)),
            properties: set
                .properties
                .or_else(|| source.map(|k| k.properties.clone()))
                .unwrap_or_default(),
        })
    }
}

impl Default for HotKeySpec {
    fn default() -> Self {
        Self {
            two_phase: false,
            salt_buckets: defaults::salt_buckets(),
            top_k: defaults::top_k(),
            partials: None,
        }
    }
}

mod defaults {
    use super::*;

    pub fn min_replicas() -> u32 {
        1
    }
    pub fn lag() -> HumanDuration {
        "2m".into()
    }
    pub fn hot_key_share() -> f64 {
        0.3
    }
    pub fn hot_partition_share() -> f64 {
        0.5
    }
    pub fn stabilization() -> HumanDuration {
        "5m".into()
    }
    pub fn cooldown() -> HumanDuration {
        "10m".into()
    }
    pub fn scale_in_after() -> HumanDuration {
        "30m".into()
    }
    pub fn target_utilization() -> f64 {
        0.7
    }
    pub fn catch_up_within() -> HumanDuration {
        "5m".into()
    }
    pub fn metrics_window() -> HumanDuration {
        "15m".into()
    }
    pub fn salt_buckets() -> u32 {
        8
    }
    pub fn top_k() -> u32 {
        10
    }
}
