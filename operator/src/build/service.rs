//! The job's two Services: a headless one giving each pod a stable DNS
//! name (the StatefulSet's `serviceName`; the operator reaches each pod's
//! admin API through it), and a ClusterIP one for Prometheus.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{Service, ServicePort, ServiceSpec},
    apimachinery::pkg::util::intstr::IntOrString,
};

use super::{names, Owner};

/// Port of the processor's admin API (health, checkpoints).
pub const ADMIN_PORT: i32 = 9090;
/// Name of the admin port on the container and the Services.
pub const ADMIN_PORT_NAME: &str = "admin";
/// Port of the processor's Prometheus metrics, apart from the admin API.
pub const METRICS_PORT: i32 = 9091;
/// Name of the metrics port on the container and the metrics Service.
pub const METRICS_PORT_NAME: &str = "metrics";

/// Headless Service `<job>`: one DNS record per pod,
/// `<job>-<ordinal>.<job>.<namespace>.svc`, published before the pods are
/// ready so the operator can watch a restore in progress.
pub(crate) fn headless(owner: &Owner) -> Service {
    Service {
        metadata: owner.meta(names::headless_service(&owner.name)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(names::selector(&owner.name)),
            ports: Some(vec![ServicePort {
                name: Some(ADMIN_PORT_NAME.into()),
                port: ADMIN_PORT,
                target_port: Some(IntOrString::String(ADMIN_PORT_NAME.into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// ClusterIP Service `<job>-metrics` with the `prometheus.io/*`
/// annotations, for annotation-based scraping.
pub(crate) fn metrics(owner: &Owner) -> Service {
    let mut metadata = owner.meta(names::metrics_service(&owner.name));
    metadata.annotations = Some(BTreeMap::from([
        ("prometheus.io/scrape".into(), "true".into()),
        ("prometheus.io/port".into(), METRICS_PORT.to_string()),
        ("prometheus.io/path".into(), "/metrics".into()),
    ]));
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(names::selector(&owner.name)),
            ports: Some(vec![ServicePort {
                name: Some(METRICS_PORT_NAME.into()),
                port: METRICS_PORT,
                target_port: Some(IntOrString::String(METRICS_PORT_NAME.into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}
