//! The Kubernetes API server `scripts/test-servers` starts (etcd,
//! kube-apiserver, kube-controller-manager and the test node), reached as
//! its admin through the kubeconfig it writes.

use kube::{
    config::{KubeConfigOptions, Kubeconfig},
    Client, Config,
};

/// Path of the admin kubeconfig.
pub fn kubeconfig() -> String {
    crate::require("EDDY_TEST_KUBECONFIG")
}

/// Name of the node that runs pods as local processes.
pub fn node_name() -> String {
    crate::require("EDDY_TEST_KUBE_NODE")
}

/// Path of the kubectl binary.
pub fn kubectl() -> String {
    crate::require("EDDY_TEST_KUBECTL")
}

/// The Events (`events.k8s.io/v1`) about the StreamJob `name` in `ns`,
/// oldest first.
pub async fn stream_job_events(
    client: &Client,
    ns: &str,
    name: &str,
) -> Vec<k8s_openapi::api::events::v1::Event> {
    let api: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(client.clone(), ns);
    let mut events: Vec<_> = api
        .list(&Default::default())
        .await
        .unwrap_or_else(|e| panic!("listing events in {ns}: {e}"))
        .items
        .into_iter()
        .filter(|e| {
            let about = e.regarding.as_ref();
            about.and_then(|r| r.kind.as_deref()) == Some("StreamJob")
                && about.and_then(|r| r.name.as_deref()) == Some(name)
        })
        .collect();
    events.sort_by_key(|e| e.metadata.creation_timestamp.clone());
    events
}

/// A client of the API server with cluster-admin rights.
pub async fn client() -> Client {
    // With both ring and aws-lc-rs in the build rustls picks neither: name
    // one (an error only says one is installed already).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let path = kubeconfig();
    let kubeconfig = Kubeconfig::read_from(&path)
        .unwrap_or_else(|e| panic!("reading the test kubeconfig {path}: {e}"));
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("the test kubeconfig {path}: {e}"));
    Client::try_from(config).expect("a Kubernetes client")
}
