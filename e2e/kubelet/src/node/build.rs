//! The Node object and its Lease (pure).

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};

/// Seconds after which the control plane may consider the node gone.
pub const LEASE_DURATION_SECONDS: i32 = 40;

/// Facts about the host for `status.nodeInfo`.
#[derive(Debug, Clone, Default)]
pub struct HostInfo {
    pub kernel_version: String,
    pub os_image: String,
    pub machine_id: String,
    pub boot_id: String,
}

pub fn labels(node_name: &str) -> BTreeMap<String, String> {
    [
        ("kubernetes.io/hostname", node_name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", arch()),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", arch()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The Node as registered (metadata and spec).
pub fn node(node_name: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(node_name.to_string()),
            labels: Some(labels(node_name)),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec::default()),
        status: None,
    }
}

/// The node's status: Ready since `ready_since`, heartbeat `now`.
pub fn status(
    node_name: &str,
    capacity: &BTreeMap<String, Quantity>,
    host: &HostInfo,
    ready_since: Timestamp,
    now: Timestamp,
) -> NodeStatus {
    let condition =
        |type_: &str, status: &str, reason: &str, message: &str, since: Timestamp| NodeCondition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            last_heartbeat_time: Some(Time(now)),
            last_transition_time: Some(Time(since)),
        };
    NodeStatus {
        capacity: Some(capacity.clone()),
        allocatable: Some(capacity.clone()),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: "127.0.0.1".into(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: node_name.to_string(),
            },
        ]),
        conditions: Some(vec![
            condition(
                "Ready",
                "True",
                "KubeletReady",
                "eddy-kubelet is posting ready status",
                ready_since,
            ),
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "no memory pressure is tracked",
                ready_since,
            ),
            condition(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "no disk pressure is tracked",
                ready_since,
            ),
            condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "no PID pressure is tracked",
                ready_since,
            ),
        ]),
        node_info: Some(NodeSystemInfo {
            architecture: arch().to_string(),
            boot_id: host.boot_id.clone(),
            container_runtime_version: "eddy://0.1.0".into(),
            kernel_version: host.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: format!("v1.36.0-eddy-{}", env!("CARGO_PKG_VERSION")),
            machine_id: host.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: host.os_image.clone(),
            system_uuid: host.machine_id.clone(),
            ..NodeSystemInfo::default()
        }),
        ..NodeStatus::default()
    }
}

/// The node's Lease in `kube-node-lease`, renewed `now`.
pub fn lease(node_name: &str, node_uid: Option<&str>, now: Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(node_name.to_string()),
            namespace: Some("kube-node-lease".into()),
            owner_references: node_uid.map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: node_name.to_string(),
                    uid: uid.to_string(),
                    ..OwnerReference::default()
                }]
            }),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node_name.to_string()),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            renew_time: Some(MicroTime(now)),
            ..LeaseSpec::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_node_with_addresses_labels_and_capacity() {
        let node = node("n1");
        let labels = node.metadata.labels.expect("labels");
        assert_eq!(labels["kubernetes.io/hostname"], "n1");
        assert_eq!(labels["kubernetes.io/os"], "linux");

        let capacity: BTreeMap<String, Quantity> =
            [("pods".to_string(), Quantity("10".into()))].into();
        let since = Timestamp::from_second(10).unwrap();
        let now = Timestamp::from_second(20).unwrap();
        let status = status("n1", &capacity, &HostInfo::default(), since, now);
        let ready = &status.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (ready.type_.as_str(), ready.status.as_str()),
            ("Ready", "True")
        );
        assert_eq!(ready.last_heartbeat_time, Some(Time(now)));
        assert_eq!(ready.last_transition_time, Some(Time(since)));
        let addresses = status.addresses.unwrap();
        assert_eq!(addresses[0].address, "127.0.0.1");
        assert_eq!(status.allocatable, Some(capacity));
    }

    #[test]
    fn lease_is_held_by_the_node() {
        let lease = lease("n1", Some("uid-1"), Timestamp::UNIX_EPOCH);
        assert_eq!(lease.metadata.namespace.as_deref(), Some("kube-node-lease"));
        let spec = lease.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("n1"));
        assert_eq!(lease.metadata.owner_references.unwrap()[0].uid, "uid-1");
    }
}
