//! Fetch: what exists of a job's children and pods, and what can be read
//! from them (pod addresses, whether the StatefulSet has rolled out).

use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{ConfigMap, Pod, Service},
    networking::v1::NetworkPolicy,
    policy::v1::PodDisruptionBudget,
};
use kube::{api::ListParams, Api, Client, ResourceExt};

use crate::build::names;

/// Label the StatefulSet controller puts on each pod: the revision the
/// pod was made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// The children as the API server has them (`None`: missing), and the
/// job's pods.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub config_map: Option<ConfigMap>,
    pub headless: Option<Service>,
    pub metrics: Option<Service>,
    pub stateful_set: Option<StatefulSet>,
    pub pdb: Option<PodDisruptionBudget>,
    pub network_policy: Option<NetworkPolicy>,
    pub pods: Vec<Pod>,
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

    /// The admin API of each pod `0..count`, at the address the pod
    /// reports (`status.podIP`: no cluster DNS needed). A pod that does
    /// not exist, has no address yet or is being deleted gets an address
    /// that cannot resolve, so it counts as not answering.
    pub fn pod_urls(&self, job: &str, count: u32, port: i32) -> Vec<String> {
        (0..count)
            .map(|ordinal| {
                let name = format!("{}-{ordinal}", names::stateful_set(job));
                let ip = self
                    .pods
                    .iter()
                    .find(|p| p.name_any() == name && p.metadata.deletion_timestamp.is_none())
                    .and_then(|p| p.status.as_ref()?.pod_ip.clone());
                match ip {
                    Some(ip) if ip.contains(':') => format!("http://[{ip}]:{port}"),
                    Some(ip) => format!("http://{ip}:{port}"),
                    None => format!("http://{name}.no-address.invalid:{port}"),
                }
            })
            .collect()
    }

    /// The StatefulSet's controller has seen its current spec and every
    /// pod runs the newest revision and is ready: what kstatus tools
    /// (Argo CD, Flux) call a finished rollout.
    pub fn rolled_out(&self) -> bool {
        let Some(sts) = &self.stateful_set else {
            return false;
        };
        let Some(status) = &sts.status else {
            return false;
        };
        let want = self.desired_pods();
        status.observed_generation >= sts.metadata.generation
            && status.replicas == want
            && status.ready_replicas.unwrap_or(0) >= want
            && status.updated_replicas.unwrap_or(0) >= want
            && status.current_revision.is_some()
            && status.current_revision == status.update_revision
    }

    /// The revision new pods are made from, once the StatefulSet
    /// controller has seen the current spec.
    pub fn update_revision(&self) -> Option<&str> {
        let sts = self.stateful_set.as_ref()?;
        let status = sts.status.as_ref()?;
        if status.observed_generation < sts.metadata.generation {
            return None;
        }
        status.update_revision.as_deref()
    }

    /// Pods made from an older revision than the StatefulSet's newest, not
    /// yet being deleted (`None` until the controller has seen the spec).
    pub fn stale_pods(&self) -> Option<Vec<String>> {
        let revision = self.update_revision()?;
        Some(
            self.pods
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| p.labels().get(REVISION_LABEL).map(String::as_str) != Some(revision))
                .map(ResourceExt::name_any)
                .collect(),
        )
    }
}

/// Reads each child of job `name` in `namespace`, and its pods.
pub async fn fetch(client: &Client, namespace: &str, name: &str) -> Result<Observed, kube::Error> {
    let cm: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let svc: Api<Service> = Api::namespaced(client.clone(), namespace);
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let pdb: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), namespace);
    let np: Api<NetworkPolicy> = Api::namespaced(client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = names::selector_string(name);
    Ok(Observed {
        config_map: cm.get_opt(&names::config_map(name)).await?,
        headless: svc.get_opt(&names::headless_service(name)).await?,
        metrics: svc.get_opt(&names::metrics_service(name)).await?,
        stateful_set: sts.get_opt(&names::stateful_set(name)).await?,
        pdb: pdb.get_opt(&names::pdb(name)).await?,
        network_policy: np.get_opt(&names::network_policy(name)).await?,
        pods: pods
            .list(&ListParams::default().labels(&selector))
            .await?
            .items,
    })
}
