//! The ConfigMap `<job>-config`: what the processor pods run.
//!
//! - `job.yaml`: a StreamJob document (apiVersion, kind, name, namespace)
//!   with the [processor view](super::diff::processor_view) of the spec.
//!   Never the status; never a secret value (secrets are only referenced).
//! - `assignment.yaml`: the partitions of each pod and the assignment's
//!   version, `{version, pods: [{ordinal, partitions}]}`.

use std::collections::BTreeMap;

use eddy_api::{
    spec::{PodAssignment, RenderedAssignment},
    StreamJob,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;

use super::{diff::processor_view, names, BuildError, Owner};

/// Key of the job document in the ConfigMap.
pub const JOB_KEY: &str = "job.yaml";
/// Key of the partition assignment in the ConfigMap.
pub const ASSIGNMENT_KEY: &str = "assignment.yaml";

/// The ConfigMap for `job` with `assignment` at `version`.
pub(crate) fn config_map(
    job: &StreamJob,
    owner: &Owner,
    assignment: &[PodAssignment],
    version: u64,
) -> Result<ConfigMap, BuildError> {
    let assignment = RenderedAssignment {
        version,
        pods: assignment.to_vec(),
    };
    let mut doc = StreamJob::new(&owner.name, processor_view(&job.spec));
    doc.metadata = ObjectMeta {
        name: Some(owner.name.clone()),
        namespace: Some(owner.namespace.clone()),
        ..ObjectMeta::default()
    };
    let data = BTreeMap::from([
        (JOB_KEY.to_string(), yaml(&doc)?),
        (ASSIGNMENT_KEY.to_string(), yaml(&assignment)?),
    ]);
    Ok(ConfigMap {
        metadata: owner.meta(names::config_map(&owner.name)),
        data: Some(data),
        ..ConfigMap::default()
    })
}

fn yaml(value: &impl serde::Serialize) -> Result<String, BuildError> {
    serde_yaml_ng::to_string(value).map_err(|e| BuildError::Render(e.to_string()))
}

/// A stable hash of the ConfigMap's data (xxh3-64, hex): every key and
/// value in key order but the assignment. Goes on the pod template as
/// [`names::CONFIG_HASH_ANNOTATION`], so pods roll exactly when what they
/// run changes. The assignment is left out: the autoscaler moves
/// partitions between running pods and then records the new assignment
/// here, which must not restart them (a rescale of `spec.parallelism`
/// changes `job.yaml`, so it still replaces every pod).
pub fn config_hash(config_map: &ConfigMap) -> String {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    // `data` is a BTreeMap: already sorted by key.
    for (key, value) in config_map.data.iter().flatten() {
        if key == ASSIGNMENT_KEY {
            continue;
        }
        for part in [key.as_bytes(), b"\0", value.as_bytes(), b"\0"] {
            hasher.update(part);
        }
    }
    format!("{:016x}", hasher.digest())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(data: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..ConfigMap::default()
        }
    }

    #[test]
    fn hash_follows_data_not_insertion_order() {
        let a = with(&[("a", "1"), ("b", "2")]);
        let b = with(&[("b", "2"), ("a", "1")]);
        assert_eq!(config_hash(&a), config_hash(&b));
        assert_eq!(config_hash(&a).len(), 16);
        assert_ne!(
            config_hash(&a),
            config_hash(&with(&[("a", "1"), ("b", "3")]))
        );
        // Key/value boundaries count: "ab"="" is not "a"="b".
        assert_ne!(
            config_hash(&with(&[("ab", "")])),
            config_hash(&with(&[("a", "b")]))
        );
        // Partitions moved between running pods restart none of them.
        assert_eq!(
            config_hash(&with(&[(JOB_KEY, "j"), (ASSIGNMENT_KEY, "x")])),
            config_hash(&with(&[(JOB_KEY, "j"), (ASSIGNMENT_KEY, "y")]))
        );
    }
}
