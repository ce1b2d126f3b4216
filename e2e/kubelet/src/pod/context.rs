//! State shared by the node's pod workers, and by one pod's containers.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::ips::IpPool;
use crate::env::PodFacts;
use crate::probes::Checker;
use crate::runtime::VolumeDir;
use crate::settings::Settings;
use crate::status::ContainerView;

/// Node-wide: one per kubelet.
pub struct Node {
    pub client: Client,
    pub settings: Arc<Settings>,
    pub checker: Checker,
    pub ips: Mutex<IpPool>,
}

/// How the pod's processes are to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Running,
    /// Deleted: stop gracefully, SIGKILL at the deadline.
    Graceful {
        deadline: Instant,
    },
    /// Gone from the API (or the kubelet stops): SIGKILL now.
    Kill,
}

impl Stop {
    pub fn requested(&self) -> bool {
        *self != Stop::Running
    }
}

/// Everything the node tracks for the pod's containers.
#[derive(Debug, Default)]
pub struct Views {
    pub init: Vec<ContainerView>,
    pub main: Vec<ContainerView>,
    /// Volumes are in place.
    pub sandbox_ready: bool,
}

/// One pod, shared by its worker and its container runners.
pub struct PodShared {
    pub node: Arc<Node>,
    pub pod: watch::Receiver<Arc<Pod>>,
    pub stop: watch::Receiver<Stop>,
    pub views: Mutex<Views>,
    /// Signalled whenever `views` changes.
    pub changed: Notify,
    pub pod_ip: Ipv4Addr,
    pub dir: PathBuf,
    pub volumes: Mutex<BTreeMap<String, VolumeDir>>,
}

impl PodShared {
    pub fn pod(&self) -> Arc<Pod> {
        self.pod.borrow().clone()
    }

    pub fn stop(&self) -> Stop {
        *self.stop.borrow()
    }

    pub fn facts(&self) -> PodFacts {
        PodFacts {
            node_name: self.node.settings.node_name.clone(),
            pod_ip: Some(self.pod_ip.to_string()),
            host_ip: "127.0.0.1".into(),
            node_allocatable: self.node.settings.capacity.clone(),
        }
    }

    /// Changes the views and wakes the status writer.
    pub fn update(&self, change: impl FnOnce(&mut Views)) {
        {
            let mut views = self.views.lock().unwrap_or_else(|e| e.into_inner());
            change(&mut views);
        }
        self.changed.notify_one();
    }

    /// Sleeps for `duration`; `true` when a stop was requested instead.
    pub async fn sleep_or_stop(&self, duration: Duration) -> bool {
        let mut stop = self.stop.clone();
        if stop.borrow().requested() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(duration) => false,
            _ = stop.wait_for(Stop::requested) => true,
        }
    }

    /// The pod's grace period for stopping a container outside deletion
    /// (failed liveness or startup probes).
    pub fn termination_grace(&self) -> Duration {
        let seconds = self
            .pod()
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        Duration::from_secs(seconds.max(0) as u64)
    }
}
