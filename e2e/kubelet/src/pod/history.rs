//! What a pod's previous status says about its containers, for a kubelet
//! that restarts and finds pods it ran before (pure). Their processes are
//! gone: a container shown running is taken to have been lost.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus};

use crate::status::Exit;

/// A container's past, carried into its new runner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub restart_count: i32,
    /// The last exit, shown as `lastState`.
    pub last: Option<Exit>,
    /// An exit the restart policy still has to decide on (a process that
    /// ended or was lost while the kubelet was away).
    pub undecided: Option<Exit>,
}

pub fn of(previous: Option<&ContainerStatus>, now: Timestamp) -> History {
    let Some(status) = previous else {
        return History::default();
    };
    let state = status.state.clone().unwrap_or_default();
    let last = status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .map(exit);
    if let Some(running) = state.running {
        let lost = Exit {
            exit_code: 137,
            signal: None,
            reason: "ContainerStatusUnknown".into(),
            message: Some("the process was lost when eddy-kubelet restarted".into()),
            started_at: running.started_at.map(|t| t.0),
            finished_at: now,
            pid: pid(status.container_id.as_deref()),
        };
        return History {
            restart_count: status.restart_count,
            last,
            undecided: Some(lost),
        };
    }
    if let Some(terminated) = state.terminated {
        return History {
            restart_count: status.restart_count,
            last,
            undecided: Some(exit(&terminated)),
        };
    }
    History {
        restart_count: status.restart_count,
        last,
        undecided: None,
    }
}

fn exit(terminated: &ContainerStateTerminated) -> Exit {
    Exit {
        exit_code: terminated.exit_code,
        signal: terminated.signal,
        reason: terminated.reason.clone().unwrap_or_else(|| "Error".into()),
        message: terminated.message.clone(),
        started_at: terminated.started_at.as_ref().map(|t| t.0),
        finished_at: terminated
            .finished_at
            .as_ref()
            .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
        pid: pid(terminated.container_id.as_deref()),
    }
}

fn pid(container_id: Option<&str>) -> Option<u32> {
    container_id?.strip_prefix("eddy://")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(value: serde_json::Value) -> ContainerStatus {
        serde_json::from_value(value).expect("status")
    }

    #[test]
    fn a_running_container_was_lost() {
        let now = Timestamp::from_second(100).unwrap();
        let history = of(
            Some(&status(
                json!({"name": "main", "image": "i", "imageID": "", "ready": true,
                "restartCount": 2, "containerID": "eddy://77",
                "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}),
            )),
            now,
        );
        assert_eq!(history.restart_count, 2);
        let lost = history.undecided.expect("lost");
        assert_eq!(
            (lost.exit_code, lost.reason.as_str(), lost.pid),
            (137, "ContainerStatusUnknown", Some(77))
        );
    }

    #[test]
    fn waiting_after_a_crash_keeps_its_last_state_and_new_pods_have_none() {
        let history = of(
            Some(&status(
                json!({"name": "main", "image": "i", "imageID": "", "ready": false,
                "restartCount": 1,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 3, "reason": "Error"}}}),
            )),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(history.last.map(|e| e.exit_code), Some(3));
        assert_eq!(history.undecided, None);
        assert_eq!(of(None, Timestamp::UNIX_EPOCH), History::default());
    }
}
