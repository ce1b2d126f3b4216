//! Binds pending pods to this node through the `binding` subresource.

pub mod select;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};

use crate::settings::Settings;

const RETRY: Duration = Duration::from_secs(5);

/// Watches unbound pods and binds each one that fits; runs until dropped.
pub async fn run(client: Client, settings: Arc<Settings>) -> anyhow::Result<()> {
    let pods: Api<Pod> = match &settings.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let labels = crate::node::build::labels(&settings.node_name);
    let config = watcher::Config::default().fields("spec.nodeName=");
    let mut events = std::pin::pin!(watcher(pods, config).default_backoff());
    // Pods whose binding failed, tried again every few seconds.
    let mut failed: HashMap<String, Pod> = HashMap::new();
    let mut retry = tokio::time::interval(RETRY);
    loop {
        let pods = tokio::select! {
            event = events.next() => match event {
                None => return Ok(()),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "watching unbound pods failed; retrying");
                    continue;
                }
                Some(Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod))) => vec![pod],
                Some(Ok(watcher::Event::Delete(pod))) => {
                    // Bound (it left the selection) or deleted.
                    if let Some(uid) = &pod.metadata.uid {
                        failed.remove(uid);
                    }
                    continue;
                }
                Some(Ok(_)) => continue,
            },
            _ = retry.tick() => failed.drain().map(|(_, pod)| pod).collect(),
        };
        for pod in pods {
            if let Some(reason) = select::skip_reason(&pod, &labels) {
                tracing::debug!(pod = %name(&pod), reason, "not binding");
                continue;
            }
            if let Err(e) = bind(&client, &pod, &settings.node_name).await {
                tracing::warn!(pod = %name(&pod), error = %e, "cannot bind pod; retrying");
                if let Some(uid) = pod.metadata.uid.clone() {
                    failed.insert(uid, pod);
                }
            }
        }
    }
}

async fn bind(client: &Client, pod: &Pod, node: &str) -> Result<(), kube::Error> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(pod_name.to_string()),
            namespace: Some(namespace.to_string()),
            uid: pod.metadata.uid.clone(),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            ..ObjectReference::default()
        },
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let result: Result<serde_json::Value, _> = api
        .create_subresource("binding", pod_name, &PostParams::default(), &binding)
        .await;
    match result {
        Ok(_) => {
            tracing::info!(pod = %name(pod), node, "bound");
            Ok(())
        }
        // Bound meanwhile (by us or someone else), or gone.
        Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

pub fn name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}
