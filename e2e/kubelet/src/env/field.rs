//! The downward API: pod fields and container resources as strings, for
//! `env[].valueFrom` and `downwardAPI` volume files.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube_quantity::ParsedQuantity;

/// What the pod object does not say but its fields refer to.
#[derive(Debug, Clone, Default)]
pub struct PodFacts {
    pub node_name: String,
    pub pod_ip: Option<String>,
    pub host_ip: String,
    /// Node allocatable `cpu` and `memory`: the value of an unset limit.
    pub node_allocatable: BTreeMap<String, Quantity>,
}

/// The value of `fieldRef.fieldPath` for `pod`.
pub fn field(pod: &Pod, path: &str, facts: &PodFacts) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let keyed = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix("']"))
            .map(str::to_string)
    };
    if let Some(key) = keyed("metadata.labels['") {
        return Ok(lookup(meta.labels.as_ref(), &key));
    }
    if let Some(key) = keyed("metadata.annotations['") {
        return Ok(lookup(meta.annotations.as_ref(), &key));
    }
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec
            .and_then(|s| s.node_name.clone())
            .unwrap_or_else(|| facts.node_name.clone()),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => facts.pod_ip.clone().unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.clone(),
        other => return Err(format!("unsupported fieldRef fieldPath {other:?}")),
    })
}

fn lookup(map: Option<&BTreeMap<String, String>>, key: &str) -> String {
    map.and_then(|m| m.get(key)).cloned().unwrap_or_default()
}

/// `key="value"` lines, as Kubernetes writes labels and annotations files.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value of `resourceFieldRef` (`limits.cpu`, `requests.memory`, ...)
/// for `container`, divided by `divisor` (default 1) and rounded up, as
/// Kubernetes does. An unset limit is the node's allocatable amount; an
/// unset request is the limit, or 0 when that is unset too.
pub fn resource(
    container: &Container,
    resource: &str,
    divisor: Option<&Quantity>,
    facts: &PodFacts,
) -> Result<String, String> {
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported resourceFieldRef resource {resource:?}"))?;
    let resources = container.resources.as_ref();
    let limits = resources.and_then(|r| r.limits.as_ref());
    let requests = resources.and_then(|r| r.requests.as_ref());
    let value = match kind {
        "limits" => limits
            .and_then(|l| l.get(name))
            .or_else(|| facts.node_allocatable.get(name)),
        "requests" => requests
            .and_then(|r| r.get(name))
            .or_else(|| limits.and_then(|l| l.get(name))),
        _ => {
            return Err(format!(
                "unsupported resourceFieldRef resource {resource:?}"
            ))
        }
    };
    let value = match value {
        Some(quantity) => number(quantity)?,
        None => 0.0,
    };
    let divisor = match divisor {
        Some(quantity) => number(quantity)?,
        None => 1.0,
    };
    if divisor <= 0.0 {
        return Err(format!(
            "resourceFieldRef divisor for {resource:?} must be positive"
        ));
    }
    Ok(format!("{}", (value / divisor).ceil() as i64))
}

fn number(quantity: &Quantity) -> Result<f64, String> {
    ParsedQuantity::try_from(quantity)
        .ok()
        .and_then(|parsed| parsed.to_bytes_f64())
        .ok_or_else(|| format!("cannot read the quantity {:?}", quantity.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "job-0", "namespace": "ns", "uid": "u-1",
                         "labels": {"app": "eddy", "b": "2"},
                         "annotations": {"note": "hi"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "sa", "containers": []}
        }))
        .expect("pod")
    }

    fn facts() -> PodFacts {
        PodFacts {
            node_name: "n1".into(),
            pod_ip: Some("127.0.0.5".into()),
            host_ip: "127.0.0.1".into(),
            node_allocatable: [
                ("cpu".to_string(), Quantity("2".into())),
                ("memory".to_string(), Quantity("8Gi".into())),
            ]
            .into(),
        }
    }

    #[test]
    fn pod_fields() {
        let (pod, facts) = (pod(), facts());
        for (path, want) in [
            ("metadata.name", "job-0"),
            ("metadata.namespace", "ns"),
            ("metadata.uid", "u-1"),
            ("metadata.labels['app']", "eddy"),
            ("metadata.labels['missing']", ""),
            ("metadata.annotations['note']", "hi"),
            ("metadata.labels", "app=\"eddy\"\nb=\"2\""),
            ("spec.nodeName", "n1"),
            ("spec.serviceAccountName", "sa"),
            ("status.podIP", "127.0.0.5"),
            ("status.hostIP", "127.0.0.1"),
        ] {
            assert_eq!(field(&pod, path, &facts).as_deref(), Ok(want), "{path}");
        }
        assert!(field(&pod, "spec.bogus", &facts).is_err());
    }

    #[test]
    fn resources_with_divisors_and_defaults() {
        let container: Container = serde_json::from_value(json!({
            "name": "c",
            "resources": {"limits": {"memory": "1Gi"}, "requests": {"cpu": "250m"}}
        }))
        .expect("container");
        let facts = facts();
        let mi = Quantity("1Mi".into());
        let milli = Quantity("1m".into());
        assert_eq!(
            resource(&container, "limits.memory", Some(&mi), &facts).as_deref(),
            Ok("1024")
        );
        assert_eq!(
            resource(&container, "requests.cpu", None, &facts).as_deref(),
            Ok("1")
        );
        assert_eq!(
            resource(&container, "requests.cpu", Some(&milli), &facts).as_deref(),
            Ok("250")
        );
        // No CPU limit: the node's allocatable.
        assert_eq!(
            resource(&container, "limits.cpu", None, &facts).as_deref(),
            Ok("2")
        );
        // No memory request: the limit.
        assert_eq!(
            resource(&container, "requests.memory", None, &facts).as_deref(),
            Ok("1073741824")
        );
        assert!(resource(&container, "cpu", None, &facts).is_err());
    }
}
