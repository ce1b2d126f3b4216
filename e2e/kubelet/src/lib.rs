//! `eddy-kubelet`: a Kubernetes node for the test suite that runs pods as
//! local processes. See the README next to this crate for what it does and
//! what it cannot do.

pub mod backoff;
pub mod binding;
pub mod env;
pub mod image;
pub mod node;
pub mod pod;
pub mod probes;
pub mod provisioner;
pub mod runtime;
pub mod settings;
pub mod status;
pub mod volumes;

use std::sync::{Arc, Mutex};

use anyhow::Context;
use kube::Client;

pub use settings::Settings;

/// Registers the node, then binds, provisions and runs pods until an error
/// stops one of those loops (or the future is dropped).
pub async fn run(client: Client, settings: Settings) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    node::register(&client, &settings).await?;
    let node = Arc::new(pod::Node {
        client: client.clone(),
        settings: settings.clone(),
        checker: probes::Checker::new(&settings.bin_dir),
        ips: Mutex::new(pod::ips::IpPool::new(settings.pod_ips)),
    });
    tokio::select! {
        result = binding::run(client.clone(), settings.clone()) => result.context("binding pods stopped"),
        result = provisioner::run(client.clone(), settings.clone()) => result.context("provisioning volumes stopped"),
        result = pod::manager::run(node) => result.context("running pods stopped"),
        () = node::keep_ready(client, settings) => Ok(()),
    }
}
