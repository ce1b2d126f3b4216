//! Which pending pods this node takes (pure). There is no scheduler: every
//! pod for the default scheduler that fits the node's labels is bound here.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

/// Why a pod is not bound, or `None` to bind it.
pub fn skip_reason(pod: &Pod, node_labels: &BTreeMap<String, String>) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if spec.node_name.as_deref().is_some_and(|n| !n.is_empty()) {
        return Some("already bound".into());
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return Some("being deleted".into());
    }
    let scheduler = spec
        .scheduler_name
        .as_deref()
        .unwrap_or("default-scheduler");
    if scheduler != "default-scheduler" {
        return Some(format!("for scheduler {scheduler:?}"));
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return Some("finished".into());
    }
    for (key, value) in spec.node_selector.iter().flatten() {
        if node_labels.get(key) != Some(value) {
            return Some(format!(
                "nodeSelector {key}={value} does not match this node"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).expect("pod")
    }

    #[test]
    fn binds_default_scheduler_pods_that_fit() {
        let labels = crate::node::build::labels("n1");
        assert_eq!(skip_reason(&pod(json!({"containers": []})), &labels), None);
        assert_eq!(
            skip_reason(
                &pod(
                    json!({"containers": [], "schedulerName": "default-scheduler",
                    "nodeSelector": {"kubernetes.io/os": "linux"}})
                ),
                &labels
            ),
            None
        );
        assert!(skip_reason(
            &pod(json!({"containers": [], "schedulerName": "other"})),
            &labels
        )
        .is_some());
        assert!(skip_reason(&pod(json!({"containers": [], "nodeName": "n2"})), &labels).is_some());
        assert!(skip_reason(
            &pod(json!({"containers": [], "nodeSelector": {"disk": "ssd"}})),
            &labels
        )
        .is_some());
    }
}
