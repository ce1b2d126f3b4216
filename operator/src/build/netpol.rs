//! The NetworkPolicy `<job>`: only the operator's pods reach the
//! processors' admin port (checkpoints, pause and resume, health); the
//! metrics port is open to any scraper, and a job with an HTTP source
//! keeps that port open to every client.

use std::collections::BTreeMap;

use eddy_api::StreamJob;
use k8s_openapi::{
    api::networking::v1::{
        NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
        NetworkPolicySpec,
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};

use super::{
    names,
    service::{ADMIN_PORT, METRICS_PORT},
    Owner,
};

/// Label every namespace carries with its own name.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

fn port(number: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(number)),
        protocol: Some("TCP".into()),
        ..NetworkPolicyPort::default()
    }
}

fn selector(key: &str, value: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(key.to_string(), value.to_string())])),
        ..LabelSelector::default()
    }
}

/// The policy for `job`, whose operator runs in `operator_namespace`.
pub(crate) fn network_policy(
    job: &StreamJob,
    owner: &Owner,
    operator_namespace: &str,
) -> NetworkPolicy {
    let mut ingress = vec![NetworkPolicyIngressRule {
        from: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(selector(NAMESPACE_NAME_LABEL, operator_namespace)),
            pod_selector: Some(selector("app.kubernetes.io/name", names::OPERATOR_APP_NAME)),
            ..NetworkPolicyPeer::default()
        }]),
        ports: Some(vec![port(ADMIN_PORT)]),
    }];
    // Metrics carry no keys or payloads: any scraper may read them.
    ingress.push(NetworkPolicyIngressRule {
        from: None,
        ports: Some(vec![port(METRICS_PORT)]),
    });
    if let Some(http) = &job.spec.source.http {
        ingress.push(NetworkPolicyIngressRule {
            from: None,
            ports: Some(vec![port(i32::from(http.port))]),
        });
    }
    NetworkPolicy {
        metadata: owner.meta(names::network_policy(&owner.name)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(names::selector(&owner.name)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(ingress),
            ..NetworkPolicySpec::default()
        }),
    }
}
