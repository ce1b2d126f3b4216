//! Watches the pods bound to this node and keeps one worker per pod.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use tokio::sync::mpsc;

use super::context::Node;
use super::worker::{self, Handle};
use crate::settings::Settings;

/// Runs until dropped.
pub async fn run(node: Arc<Node>) -> anyhow::Result<()> {
    let settings = node.settings.clone();
    kill_leftovers(&settings);
    let pods: Api<Pod> = match &settings.namespace {
        Some(ns) => Api::namespaced(node.client.clone(), ns),
        None => Api::all(node.client.clone()),
    };
    let config =
        watcher::Config::default().fields(&format!("spec.nodeName={}", settings.node_name));
    let mut events = std::pin::pin!(watcher(pods, config).default_backoff());
    let (finished_tx, mut finished_rx) = mpsc::unbounded_channel::<String>();
    let mut workers: HashMap<String, Handle> = HashMap::new();
    // Pods whose worker ended (deleted): their last events must not start
    // them again.
    let mut done: HashSet<String> = HashSet::new();
    let mut listing: Option<HashSet<String>> = None;
    loop {
        tokio::select! {
            event = events.next() => {
                let Some(event) = event else { return Ok(()) };
                let event = match event {
                    Ok(event) => event,
                    Err(e) => {
                        tracing::warn!(error = %e, "pod watch failed; retrying");
                        continue;
                    }
                };
                match event {
                    watcher::Event::Init => listing = Some(HashSet::new()),
                    watcher::Event::InitApply(pod) | watcher::Event::Apply(pod) => {
                        let Some(uid) = pod.metadata.uid.clone() else { continue };
                        if let Some(seen) = listing.as_mut() {
                            seen.insert(uid.clone());
                        }
                        if done.contains(&uid) {
                            continue;
                        }
                        match workers.get(&uid) {
                            Some(handle) => {
                                handle.pod.send_replace(Arc::new(pod));
                            }
                            None => {
                                let handle = worker::spawn(node.clone(), pod, finished_tx.clone());
                                workers.insert(uid, handle);
                            }
                        }
                    }
                    watcher::Event::Delete(pod) => {
                        let Some(uid) = pod.metadata.uid.as_deref() else { continue };
                        if let Some(handle) = workers.get(uid) {
                            tracing::info!(pod = %crate::binding::name(&pod), "pod gone: killing its processes");
                            handle.gone.send_replace(true);
                        }
                        done.remove(uid);
                    }
                    watcher::Event::InitDone => {
                        let seen = listing.take().unwrap_or_default();
                        for (uid, handle) in &workers {
                            if !seen.contains(uid) {
                                handle.gone.send_replace(true);
                            }
                        }
                        done.retain(|uid| seen.contains(uid));
                        remove_stale_dirs(&settings, &seen, &workers);
                    }
                }
            }
            Some(uid) = finished_rx.recv() => {
                workers.remove(&uid);
                done.insert(uid);
            }
        }
    }
}

/// SIGKILLs every process a previous run (or this one) recorded.
pub fn kill_leftovers(settings: &Settings) {
    let Ok(pods) = std::fs::read_dir(settings.root_dir.join("pods")) else {
        return;
    };
    for pod in pods.flatten() {
        let Ok(files) = std::fs::read_dir(pod.path().join("pids")) else {
            continue;
        };
        for file in files.flatten() {
            crate::runtime::pidfile::kill_leftover(&file.path());
        }
    }
}

/// Removes the directories of pods that no longer exist (claim directories
/// are elsewhere and stay).
fn remove_stale_dirs(
    settings: &Settings,
    seen: &HashSet<String>,
    workers: &HashMap<String, Handle>,
) {
    let Ok(pods) = std::fs::read_dir(settings.root_dir.join("pods")) else {
        return;
    };
    for pod in pods.flatten() {
        let uid = pod.file_name().to_string_lossy().into_owned();
        if !seen.contains(&uid) && !workers.contains_key(&uid) {
            tracing::info!(uid, "removing the directory of a pod that is gone");
            if let Err(e) = std::fs::remove_dir_all(pod.path()) {
                tracing::warn!(uid, error = %e, "cannot remove a stale pod directory");
            }
        }
    }
}
