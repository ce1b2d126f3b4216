//! A pod's run: volumes, then init containers in order, then the
//! containers side by side while volumes are refreshed.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::container::{Policy, Runner, Slot};
use super::context::PodShared;
use super::history;
use crate::status::{ContainerView, Exit, State};
use crate::volumes::PodVolumes;

/// How often ConfigMap, Secret, downward API and token files are rewritten.
const REFRESH: Duration = Duration::from_secs(30);
const RETRY: Duration = Duration::from_secs(2);

/// Whether the pod's previous status says its init containers completed
/// (a kubelet restart does not run them again).
pub fn previously_initialized(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    let initialized = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Initialized" && c.status == "True");
    initialized && status.and_then(|s| s.container_statuses.as_ref()).is_some()
}

/// The views a pod starts with.
pub fn initial_views(pod: &Pod, initialized: bool) -> (Vec<ContainerView>, Vec<ContainerView>) {
    let spec = pod.spec.clone().unwrap_or_default();
    let previous_init = pod
        .status
        .as_ref()
        .and_then(|s| s.init_container_statuses.clone())
        .unwrap_or_default();
    let image = |c: &k8s_openapi::api::core::v1::Container| c.image.clone().unwrap_or_default();
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| {
            let state = if initialized {
                State::Terminated(completed(previous_init.iter().find(|s| s.name == c.name)))
            } else {
                State::waiting("PodInitializing", None)
            };
            ContainerView::new(&c.name, &image(c), state)
        })
        .collect();
    let main_reason = if initialized || spec.init_containers.as_ref().is_none_or(Vec::is_empty) {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let main = spec
        .containers
        .iter()
        .map(|c| ContainerView::new(&c.name, &image(c), State::waiting(main_reason, None)))
        .collect();
    (init, main)
}

fn completed(previous: Option<&ContainerStatus>) -> Exit {
    let terminated = previous
        .and_then(|s| s.state.as_ref())
        .and_then(|s| s.terminated.as_ref());
    Exit {
        exit_code: 0,
        signal: None,
        reason: "Completed".into(),
        message: None,
        started_at: terminated.and_then(|t| t.started_at.as_ref()).map(|t| t.0),
        finished_at: terminated
            .and_then(|t| t.finished_at.as_ref())
            .map_or_else(Timestamp::now, |t| t.0),
        pid: None,
    }
}

/// Runs the pod until every container is done for good or the pod stops.
/// `first_seen` is the pod as the worker first saw it: its status is the
/// previous run's, before this run writes its own.
pub async fn run(shared: Arc<PodShared>, first_seen: Arc<Pod>, initialized: bool) {
    let node = shared.node.clone();
    let mut volumes = PodVolumes::default();
    loop {
        let pod = shared.pod();
        match volumes
            .materialize(&node.client, &node.settings, &pod, &shared.facts())
            .await
        {
            Ok(dirs) => {
                *shared.volumes.lock().unwrap_or_else(|e| e.into_inner()) = dirs;
                shared.update(|views| views.sandbox_ready = true);
                break;
            }
            Err(message) => {
                tracing::warn!(pod = %crate::binding::name(&pod), message, "volumes not ready");
                shared.update(|views| {
                    for view in views.init.iter_mut().chain(views.main.iter_mut()) {
                        if matches!(view.state, State::Waiting { .. }) {
                            view.state = State::waiting("ContainerCreating", Some(message.clone()));
                        }
                    }
                });
                if shared.sleep_or_stop(RETRY).await {
                    return;
                }
            }
        }
    }

    let pod = shared.pod();
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec.restart_policy.as_deref();
    if !initialized {
        for (i, container) in spec.init_containers.iter().flatten().enumerate() {
            let slot = Slot::Init(i);
            let runner = Runner::new(
                shared.clone(),
                container.clone(),
                slot,
                Policy::of(policy, slot),
                history::History::default(),
            );
            match runner.run().await {
                Some(exit) if exit.succeeded() => {}
                _ => return,
            }
        }
        shared.update(|views| {
            for view in views.main.iter_mut() {
                if matches!(&view.state, State::Waiting { reason, .. } if reason == "PodInitializing") {
                    view.state = State::waiting("ContainerCreating", None);
                }
            }
        });
    }

    let previous = first_seen
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    let now = Timestamp::now();
    let runners = spec.containers.iter().enumerate().map(|(i, container)| {
        let slot = Slot::Main(i);
        let past = history::of(previous.iter().find(|s| s.name == container.name), now);
        Runner::new(
            shared.clone(),
            container.clone(),
            slot,
            Policy::of(policy, slot),
            past,
        )
        .run()
    });
    let refresh = async {
        loop {
            tokio::time::sleep(REFRESH).await;
            if shared.stop().requested() {
                continue;
            }
            let pod = shared.pod();
            match volumes
                .materialize(&node.client, &node.settings, &pod, &shared.facts())
                .await
            {
                Ok(dirs) => *shared.volumes.lock().unwrap_or_else(|e| e.into_inner()) = dirs,
                Err(message) => {
                    tracing::warn!(pod = %crate::binding::name(&pod), message, "cannot refresh volumes")
                }
            }
        }
    };
    tokio::select! {
        _ = futures::future::join_all(runners) => {}
        () = refresh => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "setup", "image": "a"}],
                     "containers": [{"name": "main", "image": "b"}]},
            "status": status
        }))
        .expect("pod")
    }

    #[test]
    fn a_new_pod_waits_for_its_init_containers() {
        let new = pod(json!({}));
        assert!(!previously_initialized(&new));
        let (init, main) = initial_views(&new, false);
        assert_eq!(init[0].state, State::waiting("PodInitializing", None));
        assert_eq!(main[0].state, State::waiting("PodInitializing", None));
    }

    #[test]
    fn a_pod_that_ran_before_keeps_its_completed_init_containers() {
        let ran = pod(json!({
            "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [{"name": "setup", "image": "a", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"terminated": {"exitCode": 0,
                "finishedAt": "2026-01-01T00:00:00Z"}}}],
            "containerStatuses": [{"name": "main", "image": "b", "imageID": "", "ready": true,
                "restartCount": 0, "state": {"running": {}}}]
        }));
        assert!(previously_initialized(&ran));
        let (init, main) = initial_views(&ran, true);
        match &init[0].state {
            State::Terminated(exit) => {
                assert!(exit.succeeded());
                assert_eq!(exit.finished_at, "2026-01-01T00:00:00Z".parse().unwrap());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(main[0].state, State::waiting("ContainerCreating", None));
    }
}
