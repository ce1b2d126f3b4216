//! A minimal volume provisioner: every pending claim gets a `hostPath`
//! PersistentVolume at its claim directory, and the claim's
//! `spec.volumeName` is set to it. kube-controller-manager's volume binder
//! then marks both Bound. Pods never wait for that: a claim volume is just
//! its directory on this node.

pub mod build;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};

use crate::settings::Settings;

const RETRY: Duration = Duration::from_secs(5);

/// Watches claims and provisions the pending ones; runs until dropped.
pub async fn run(client: Client, settings: Arc<Settings>) -> anyhow::Result<()> {
    let claims: Api<PersistentVolumeClaim> = match &settings.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut events = std::pin::pin!(watcher(claims, watcher::Config::default()).default_backoff());
    // Claims whose provisioning failed, tried again every few seconds.
    let mut failed: HashMap<String, PersistentVolumeClaim> = HashMap::new();
    let mut retry = tokio::time::interval(RETRY);
    loop {
        let claims = tokio::select! {
            event = events.next() => match event {
                None => return Ok(()),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "watching claims failed; retrying");
                    continue;
                }
                Some(Ok(watcher::Event::Apply(claim) | watcher::Event::InitApply(claim))) => vec![claim],
                Some(Ok(watcher::Event::Delete(claim))) => {
                    if let Some(uid) = &claim.metadata.uid {
                        failed.remove(uid);
                    }
                    continue;
                }
                Some(Ok(_)) => continue,
            },
            _ = retry.tick() => failed.drain().map(|(_, claim)| claim).collect(),
        };
        for claim in claims {
            if !build::needs_volume(&claim) {
                continue;
            }
            if let Err(e) = provision(&client, &settings, &claim).await {
                tracing::warn!(
                    claim = claim.metadata.name.as_deref().unwrap_or_default(),
                    error = %e,
                    "cannot provision a volume; retrying"
                );
                if let Some(uid) = claim.metadata.uid.clone() {
                    failed.insert(uid, claim);
                }
            }
        }
    }
}

async fn provision(
    client: &Client,
    settings: &Settings,
    claim: &PersistentVolumeClaim,
) -> Result<(), kube::Error> {
    let namespace = claim.metadata.namespace.as_deref().unwrap_or("default");
    let name = claim.metadata.name.as_deref().unwrap_or_default();
    let dir = settings.claim_dir(namespace, name);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot create a claim directory");
    }
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    match volumes
        .create(&PostParams::default(), &build::volume(claim, &dir))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => return Err(e),
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let patch = serde_json::json!({"spec": {"volumeName": build::volume_name(claim)}});
    claims
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    tracing::info!(claim = %format!("{namespace}/{name}"), volume = build::volume_name(claim), "provisioned");
    Ok(())
}
