//! Registering the Node and keeping it Ready: the Node, its status and its
//! Lease are applied every 10 seconds with server-side apply, which also
//! takes over a Node left by an earlier run and recreates a deleted one.

pub mod build;

use std::time::Duration;

use anyhow::Context;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

use crate::settings::Settings;
use build::HostInfo;

pub const HEARTBEAT: Duration = Duration::from_secs(10);
const MANAGER: &str = "eddy-kubelet";

/// Creates or takes over the Node and marks it Ready.
pub async fn register(client: &Client, settings: &Settings) -> anyhow::Result<()> {
    beat(client, settings, &host_info(), Timestamp::now())
        .await
        .with_context(|| format!("cannot register node {}", settings.node_name))?;
    tracing::info!(node = %settings.node_name, "node registered and Ready");
    Ok(())
}

/// Renews the node's status and Lease until the task is dropped.
pub async fn keep_ready(client: Client, settings: std::sync::Arc<Settings>) {
    let host = host_info();
    let ready_since = Timestamp::now();
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        if let Err(e) = beat(&client, &settings, &host, ready_since).await {
            tracing::warn!(error = %e, "node heartbeat failed; retrying");
        }
    }
}

async fn beat(
    client: &Client,
    settings: &Settings,
    host: &HostInfo,
    ready_since: Timestamp,
) -> Result<(), kube::Error> {
    let now = Timestamp::now();
    let nodes: Api<Node> = Api::all(client.clone());
    let params = PatchParams::apply(MANAGER).force();
    // Applied every time, so a deleted Node comes back.
    nodes
        .patch(
            &settings.node_name,
            &params,
            &Patch::Apply(build::node(&settings.node_name)),
        )
        .await?;
    let status = build::status(
        &settings.node_name,
        &settings.capacity,
        host,
        ready_since,
        now,
    );
    let node = nodes
        .patch_status(
            &settings.node_name,
            &params,
            &Patch::Apply(serde_json::json!({
                "apiVersion": "v1",
                "kind": "Node",
                "status": status,
            })),
        )
        .await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    leases
        .patch(
            &settings.node_name,
            &params,
            &Patch::Apply(build::lease(
                &settings.node_name,
                node.metadata.uid.as_deref(),
                now,
            )),
        )
        .await?;
    Ok(())
}

fn host_info() -> HostInfo {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let os_image = read("/etc/os-release")
        .lines()
        .find_map(|line| line.strip_prefix("PRETTY_NAME="))
        .map(|name| name.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into());
    HostInfo {
        kernel_version: read("/proc/sys/kernel/osrelease"),
        os_image,
        machine_id: read("/etc/machine-id"),
        boot_id: read("/proc/sys/kernel/random/boot_id"),
    }
}
