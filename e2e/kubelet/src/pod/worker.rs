//! One pod bound to this node, from first sight to the end of its deletion.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{DeleteParams, Preconditions};
use kube::Api;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

use super::context::{Node, PodShared, Stop, Views};
use super::lifecycle;
use crate::binding::name;
use crate::status::{compute, Observed, StatusWriter};

const HOST_IP: &str = "127.0.0.1";

/// The manager's side of a worker.
pub struct Handle {
    pub pod: watch::Sender<Arc<Pod>>,
    pub gone: watch::Sender<bool>,
}

/// Starts a worker for `pod`; its uid is sent on `finished` when it ends.
pub fn spawn(node: Arc<Node>, pod: Pod, finished: mpsc::UnboundedSender<String>) -> Handle {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let (pod_tx, pod_rx) = watch::channel(Arc::new(pod));
    let (gone_tx, gone_rx) = watch::channel(false);
    tokio::spawn(async move {
        run(node, pod_rx, gone_rx).await;
        let _ = finished.send(uid);
    });
    Handle {
        pod: pod_tx,
        gone: gone_tx,
    }
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The stop a pod update asks for, given the current one.
fn stop_for(pod: &Pod, current: Stop) -> Stop {
    if current == Stop::Kill || pod.metadata.deletion_timestamp.is_none() {
        return current;
    }
    let grace = pod
        .metadata
        .deletion_grace_period_seconds
        .unwrap_or(30)
        .max(0) as u64;
    let deadline = Instant::now() + Duration::from_secs(grace);
    match current {
        Stop::Graceful { deadline: earlier } => Stop::Graceful {
            deadline: earlier.min(deadline),
        },
        _ => Stop::Graceful { deadline },
    }
}

async fn run(
    node: Arc<Node>,
    mut pod_rx: watch::Receiver<Arc<Pod>>,
    mut gone_rx: watch::Receiver<bool>,
) {
    let pod = pod_rx.borrow_and_update().clone();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(node.client.clone(), &namespace);
    let dir = node.settings.pod_dir(&uid);

    // A finished pod runs nothing; it only waits for its deletion.
    let ip = if is_terminal(&pod) {
        None
    } else {
        let preferred = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
        loop {
            let allocated = node
                .ips
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .allocate(preferred);
            if allocated.is_some() {
                break allocated;
            }
            tracing::warn!(pod = %name(&pod), "no free pod IP; waiting");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = gone_rx.changed() => break None,
                _ = pod_rx.changed() => {
                    if pod_rx.borrow().metadata.deletion_timestamp.is_some() { break None; }
                }
            }
        }
    };

    let mut gone = *gone_rx.borrow();
    if let Some(ip) = ip {
        tracing::info!(pod = %name(&pod), %ip, "running pod");
        gone = supervise(
            &node,
            &api,
            &pod_name,
            ip,
            pod_rx.clone(),
            &mut pod_rx,
            &mut gone_rx,
        )
        .await;
    } else {
        loop {
            if gone || pod_rx.borrow().metadata.deletion_timestamp.is_some() {
                break;
            }
            tokio::select! {
                changed = gone_rx.changed() => gone = changed.is_err() || *gone_rx.borrow(),
                changed = pod_rx.changed() => if changed.is_err() { gone = true },
            }
        }
    }

    if let Err(e) = std::fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the pod directory");
        }
    }
    if !gone {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&pod_name, &params).await {
            Ok(_) => tracing::info!(pod = %format!("{namespace}/{pod_name}"), "deleted"),
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
            Err(e) => {
                tracing::warn!(pod = %format!("{namespace}/{pod_name}"), error = %e, "cannot finish the deletion")
            }
        }
    }
}

/// Runs the pod and writes its status until it is deleted (and its
/// processes stopped) or gone; returns whether it is gone. The pod IP is
/// released once nothing runs any more (a finished pod keeps showing it,
/// as in Kubernetes, but it may be handed out again).
async fn supervise(
    node: &Arc<Node>,
    api: &Api<Pod>,
    pod_name: &str,
    ip: Ipv4Addr,
    shared_rx: watch::Receiver<Arc<Pod>>,
    pod_rx: &mut watch::Receiver<Arc<Pod>>,
    gone_rx: &mut watch::Receiver<bool>,
) -> bool {
    let pod = pod_rx.borrow().clone();
    let initialized = lifecycle::previously_initialized(&pod);
    let (init, main) = lifecycle::initial_views(&pod, initialized);
    let (stop_tx, stop_rx) = watch::channel(stop_for(&pod, Stop::Running));
    let shared = Arc::new(PodShared {
        node: node.clone(),
        pod: shared_rx,
        stop: stop_rx,
        views: Mutex::new(Views {
            init,
            main,
            sandbox_ready: false,
        }),
        changed: Notify::new(),
        pod_ip: ip,
        dir: node
            .settings
            .pod_dir(pod.metadata.uid.as_deref().unwrap_or_default()),
        volumes: Mutex::new(Default::default()),
    });
    let mut run = tokio::spawn(lifecycle::run(shared.clone(), pod.clone(), initialized));
    let mut writer = StatusWriter::new(api.clone(), pod_name);
    let mut written: Option<PodStatus> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let mut finished = false;
    let mut released = false;
    let release = || {
        node.ips
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .release(ip)
    };
    let mut gone = *gone_rx.borrow();
    if gone {
        stop_tx.send_replace(Stop::Kill);
    }
    loop {
        if finished && stop_tx.borrow().requested() {
            if !released {
                release();
            }
            return gone;
        }
        tokio::select! {
            changed = pod_rx.changed(), if !gone => {
                if changed.is_err() {
                    gone = true;
                    stop_tx.send_replace(Stop::Kill);
                    continue;
                }
                let pod = pod_rx.borrow_and_update().clone();
                stop_tx.send_if_modified(|stop| {
                    let next = stop_for(&pod, *stop);
                    let modified = next != *stop;
                    *stop = next;
                    modified
                });
            }
            changed = gone_rx.changed(), if !gone => {
                if changed.is_err() || *gone_rx.borrow() {
                    gone = true;
                    stop_tx.send_replace(Stop::Kill);
                }
            }
            result = &mut run, if !finished => {
                finished = true;
                if let Err(e) = result {
                    tracing::error!(pod = pod_name, error = %e, "pod task failed");
                }
            }
            _ = shared.changed.notified() => {}
            _ = tick.tick() => {}
        }
        if !gone {
            write_status(&shared, &mut writer, &mut written, ip).await;
        }
        if finished && !released {
            released = true;
            release();
        }
    }
}

async fn write_status(
    shared: &PodShared,
    writer: &mut StatusWriter,
    written: &mut Option<PodStatus>,
    ip: Ipv4Addr,
) {
    let pod = shared.pod();
    let status = {
        let views = shared.views.lock().unwrap_or_else(|e| e.into_inner());
        compute(&Observed {
            pod: &pod,
            previous: written.as_ref(),
            sandbox_ready: views.sandbox_ready,
            init: &views.init,
            main: &views.main,
            pod_ip: Some(ip),
            host_ip: HOST_IP,
            now: Timestamp::now(),
        })
    };
    match writer.write(&status).await {
        Ok(_) => *written = Some(status),
        // Deleted meanwhile: the manager hears of it next.
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(e) => tracing::warn!(pod = %name(&pod), error = %e, "cannot write pod status"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deleted(grace: i64) -> Pod {
        serde_json::from_value(json!({"metadata": {
            "name": "p", "deletionTimestamp": "2026-01-01T00:00:00Z",
            "deletionGracePeriodSeconds": grace}}))
        .expect("pod")
    }

    #[tokio::test]
    async fn deletion_asks_for_a_graceful_stop_whose_deadline_only_shrinks() {
        let running: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}})).expect("pod");
        assert_eq!(stop_for(&running, Stop::Running), Stop::Running);
        let first = stop_for(&deleted(30), Stop::Running);
        let Stop::Graceful { deadline } = first else {
            panic!("{first:?}")
        };
        assert!(deadline > Instant::now() + Duration::from_secs(29));
        assert_eq!(
            stop_for(&deleted(60), first),
            first,
            "a longer grace is ignored"
        );
        let shorter = stop_for(&deleted(0), first);
        assert!(matches!(shorter, Stop::Graceful { deadline: d } if d < deadline));
        assert_eq!(stop_for(&deleted(30), Stop::Kill), Stop::Kill);
    }
}
