//! Keyed state and checkpoints.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::values::{ByteSize, HumanDuration};

/// Local keyed state (RocksDB) of each processor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StateSpec {
    /// A key's state is deleted when the key has had no events for this long
    /// (measured on ingestion time), even if some of its windows never
    /// closed (say, the watermark stalled); such windows are counted as
    /// expired. Window state itself is deleted as soon as the watermark
    /// passes the window's end plus the allowed lateness.
    #[serde(default = "defaults::ttl")]
    pub ttl: HumanDuration,
    /// Memory the processor may use for state: the RocksDB block cache and
    /// write buffers plus in-memory pre-aggregation. Keep it below the
    /// container's memory limit.
    #[serde(default = "defaults::memory_budget")]
    pub memory_budget: ByteSize,
    /// Where each pod keeps its local state directory.
    #[serde(default)]
    pub storage: StateStorage,
}

impl Default for StateSpec {
    fn default() -> Self {
        Self {
            ttl: defaults::ttl(),
            memory_budget: defaults::memory_budget(),
            storage: StateStorage::default(),
        }
    }
}

/// Volume for the local state directory. State is always restorable from
/// checkpoints; a persistent volume only makes restarts faster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StateStorage {
    /// `emptyDir` (lost with the pod) or `persistentVolumeClaim` (one claim
    /// per pod, kept across restarts).
    #[serde(default, rename = "type")]
    pub kind: StorageKind,
    /// Size of the volume.
    #[serde(default = "defaults::storage_size")]
    pub size: ByteSize,
    /// Storage class of the claims; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for StateStorage {
    fn default() -> Self {
        Self {
            kind: StorageKind::default(),
            size: defaults::storage_size(),
            storage_class_name: None,
        }
    }
}

/// What a change that replaces the pods does about their state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum UpgradeMode {
    /// A final checkpoint on every pod, then the change; none, no change.
    #[default]
    Checkpoint,
    /// The change at once; pods restore the newest completed checkpoint.
    LastState,
    /// The change at once, and the job starts over with empty state and its
    /// sources at their configured start: no checkpoint taken before the
    /// change is ever restored again (later restarts restore the
    /// checkpoints taken after it).
    Stateless,
}

/// Kind of volume for local state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum StorageKind {
    #[default]
    EmptyDir,
    PersistentVolumeClaim,
}

/// Periodic, incremental checkpoints of state, source positions and
/// watermarks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointSpec {
    /// Time between checkpoints.
    #[serde(default = "defaults::interval")]
    pub interval: HumanDuration,
    /// Where checkpoints are stored: `s3://bucket/prefix` for S3-compatible
    /// object storage, or `file://path` for a local directory. The default
    /// suits local runs; in a cluster use `s3://` (or a `file://` path on a
    /// persistent volume), since a pod's own directory is lost with the pod.
    #[serde(default = "defaults::store")]
    pub store: String,
    /// S3 endpoint URL, for MinIO or other S3-compatible stores
    /// (`http://minio.storage:9000`). Unset means AWS S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// S3 region.
    #[serde(default = "defaults::region")]
    pub region: String,
    /// Use path-style addressing (`endpoint/bucket/key`), as MinIO needs.
    #[serde(default = "defaults::yes")]
    pub path_style: bool,
    /// Secret holding the S3 access key and secret key. Its values reach the
    /// processor as environment variables, never in the rendered config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<CredentialsSecret>,
    /// Number of completed checkpoints kept per partition; older ones and
    /// files no kept checkpoint references are deleted.
    #[serde(default = "defaults::retain")]
    #[schemars(range(min = 1, max = 10000))]
    pub retain: u32,
    /// A checkpoint that takes longer than this is abandoned and counted as
    /// failed.
    #[serde(default = "defaults::timeout")]
    pub timeout: HumanDuration,
    /// The job is reported unhealthy (CheckpointsHealthy=False) when the last
    /// completed checkpoint is older than this.
    #[serde(default = "defaults::lag_threshold")]
    pub lag_threshold: HumanDuration,
    /// Delete the job's checkpoints when the StreamJob is deleted. By default
    /// they are kept, so a re-created job resumes from them.
    #[serde(default)]
    pub delete_on_job_deletion: bool,
    /// Start from another job's checkpoint (like Flink's
    /// `initialSavepointPath`): read only while this job has no checkpoint
    /// of its own, so a restarted or upgraded job goes on from its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<RestoreFrom>,
}

/// A checkpoint of another job, in the same store, to start from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreFrom {
    /// The job whose checkpoint to restore, as `<namespace>/<name>`; its
    /// checkpoints must be in this job's `store`, with as many partitions.
    pub job: String,
    /// The checkpoint's id (see that job's `status.checkpointHistory`);
    /// its newest complete checkpoint when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub checkpoint_id: Option<u64>,
}

impl Default for CheckpointSpec {
    fn default() -> Self {
        Self {
            interval: defaults::interval(),
            store: defaults::store(),
            endpoint: None,
            region: defaults::region(),
            path_style: true,
            credentials_secret: None,
            retain: defaults::retain(),
            timeout: defaults::timeout(),
            lag_threshold: defaults::lag_threshold(),
            delete_on_job_deletion: false,
            restore_from: None,
        }
    }
}

/// A Secret with S3 credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecret {
    /// Name of the Secret in the job's namespace.
    pub name: String,
    /// Key of the access key id in the Secret.
    #[serde(default = "defaults::access_key_key")]
    pub access_key_id_key: String,
    /// Key of the secret access key in the Secret.
    #[serde(default = "defaults::secret_key_key")]
    pub secret_access_key_key: String,
}

mod defaults {
    use super::*;

    pub fn ttl() -> HumanDuration {
        "24h".into()
    }
    pub fn memory_budget() -> ByteSize {
        "256Mi".into()
    }
    pub fn storage_size() -> ByteSize {
        "10Gi".into()
    }
    pub fn interval() -> HumanDuration {
        "1m".into()
    }
    pub fn store() -> String {
        "file://eddy-checkpoints".into()
    }
    pub fn region() -> String {
        "us-east-1".into()
    }
    pub fn yes() -> bool {
        true
    }
    pub fn retain() -> u32 {
        3
    }
    pub fn timeout() -> HumanDuration {
        "10m".into()
    }
    pub fn lag_threshold() -> HumanDuration {
        "5m".into()
    }
    pub fn access_key_key() -> String {
        "AWS_ACCESS_KEY_ID".into()
    }
    pub fn secret_key_key() -> String {
        "AWS_SECRET_ACCESS_KEY".into()
    }
}
