//! Fetch: what exists of a job's children, read by name.

use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{ConfigMap, Service},
    policy::v1::PodDisruptionBudget,
};
use kube::{Api, Client};

use crate::build::names;

/// The children as the API server has them (`None`: missing).
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub config_map: Option<ConfigMap>,
    pub headless: Option<Service>,
    pub metrics: Option<Service>,
    pub stateful_set: Option<StatefulSet>,
    pub pdb: Option<PodDisruptionBudget>,
}

impl Observed {
    /// Pods the StatefulSet asks for now.
    pub fn desired_pods(&self) -> i32 {
        self.stateful_set
            .as_ref()
            .and_then(|s| s.spec.replicas)
            .unwrap_or(0)
    }

    /// Pods that exist.
    pub fn pods(&self) -> i32 {
        self.sts_status(|s| s.replicas)
    }

    /// Pods that are ready.
    pub fn ready_pods(&self) -> i32 {
        self.sts_status(|s| s.ready_replicas.unwrap_or(0))
    }

    fn sts_status(&self, f: impl Fn(&k8s_openapi::api::apps::v1::StatefulSetStatus) -> i32) -> i32 {
        self.stateful_set
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .map_or(0, f)
    }
}

/// Reads each child of job `name` in `namespace`.
pub async fn fetch(client: &Client, namespace: &str, name: &str) -> Result<Observed, kube::Error> {
    let cm: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let svc: Api<Service> = Api::namespaced(client.clone(), namespace);
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let pdb: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), namespace);
    Ok(Observed {
        config_map: cm.get_opt(&names::config_map(name)).await?,
        headless: svc.get_opt(&names::headless_service(name)).await?,
        metrics: svc.get_opt(&names::metrics_service(name)).await?,
        stateful_set: sts.get_opt(&names::stateful_set(name)).await?,
        pdb: pdb.get_opt(&names::pdb(name)).await?,
    })
}
