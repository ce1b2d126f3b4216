//! Names and labels of the objects built for a StreamJob.
//!
//! Every child is named after the job, so a job owns exactly one of each
//! and a renamed or scaled-down child can be found again by
//! [`JOB_LABEL`].

use std::collections::BTreeMap;

/// Label on every child carrying the job's name; the controller deletes
/// orphaned children by it.
pub const JOB_LABEL: &str = "eddy.dev/job";
/// Pod template annotation holding [`super::config::config_hash`], so a
/// config change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "eddy.dev/config-hash";
/// `app.kubernetes.io/name` of every child.
pub const APP_NAME: &str = "eddy-processor";
/// `app.kubernetes.io/component` of every child.
pub const COMPONENT: &str = "processor";
/// `app.kubernetes.io/managed-by` of every child (also a good field
/// manager name for server-side apply).
pub const MANAGER: &str = "eddy-operator";

const NAME_LABEL: &str = "app.kubernetes.io/name";
const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

/// Name of the StatefulSet: the job's name. Pods are `<job>-<ordinal>`.
pub fn stateful_set(job: &str) -> String {
    job.to_string()
}

/// Name of the headless Service (the StatefulSet's `serviceName`), so each
/// pod is reachable as `<job>-<ordinal>.<job>`.
pub fn headless_service(job: &str) -> String {
    job.to_string()
}

/// Name of the ClusterIP Service Prometheus scrapes.
pub fn metrics_service(job: &str) -> String {
    format!("{job}-metrics")
}

/// Name of the ConfigMap holding `job.yaml` and `assignment.yaml`.
pub fn config_map(job: &str) -> String {
    format!("{job}-config")
}

/// Name of the batch Job that deletes a deleted job's checkpoints (job
/// names are at most 52 characters, so this fits a label value).
pub fn cleanup_job(job: &str) -> String {
    format!("{job}-clear")
}

/// Labels of the clean-up Job and its pod: [`JOB_LABEL`] and the
/// instance, but another name, so the job's selector never matches them.
pub fn cleanup_labels(job: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            NAME_LABEL.to_string(),
            "eddy-checkpoint-cleanup".to_string(),
        ),
        (INSTANCE_LABEL.to_string(), job.to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            MANAGER.to_string(),
        ),
        (JOB_LABEL.to_string(), job.to_string()),
    ])
}

/// Name of the NetworkPolicy guarding the pods' admin port.
pub fn network_policy(job: &str) -> String {
    job.to_string()
}

/// `app.kubernetes.io/name` of the operator's own pods (set by the chart):
/// the only pods a job's NetworkPolicy lets reach the admin port.
pub const OPERATOR_APP_NAME: &str = "eddy-operator";

/// Name of the PodDisruptionBudget.
pub fn pdb(job: &str) -> String {
    job.to_string()
}

/// The pod selector: name and instance. Immutable on a StatefulSet, so it
/// must never change for an existing job.
pub fn selector(job: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_string(), APP_NAME.to_string()),
        (INSTANCE_LABEL.to_string(), job.to_string()),
    ])
}

/// The selector as a label query (`status.selector`, for the scale
/// subresource and `kubectl get pods -l`).
pub fn selector_string(job: &str) -> String {
    selector(job)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Labels on every child and on the pods: the selector plus component,
/// manager and [`JOB_LABEL`].
pub fn labels(job: &str) -> BTreeMap<String, String> {
    let mut labels = selector(job);
    labels.insert(
        "app.kubernetes.io/component".to_string(),
        COMPONENT.to_string(),
    );
    labels.insert(
        "app.kubernetes.io/managed-by".to_string(),
        MANAGER.to_string(),
    );
    labels.insert(JOB_LABEL.to_string(), job.to_string());
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_job() {
        assert_eq!(stateful_set("rev"), "rev");
        assert_eq!(headless_service("rev"), "rev");
        assert_eq!(metrics_service("rev"), "rev-metrics");
        assert_eq!(config_map("rev"), "rev-config");
        assert_eq!(pdb("rev"), "rev");
    }

    #[test]
    fn selector_is_a_subset_of_the_labels() {
        let labels = labels("rev");
        for (k, v) in selector("rev") {
            assert_eq!(labels.get(&k), Some(&v), "{k}");
        }
        assert_eq!(labels.get(JOB_LABEL).map(String::as_str), Some("rev"));
        assert_eq!(labels.len(), 5);
        assert_eq!(
            selector_string("rev"),
            "app.kubernetes.io/instance=rev,app.kubernetes.io/name=eddy-processor"
        );
    }
}
