//! What the node knows about one container, and its API status (pure).

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Timestamp,
    },
    Terminated(Exit),
}

impl State {
    pub fn waiting(reason: &str, message: Option<String>) -> Self {
        Self::Waiting {
            reason: reason.to_string(),
            message,
        }
    }
}

/// How a container process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub exit_code: i32,
    pub signal: Option<i32>,
    /// `Completed`, `Error`, `StartError`, `ContainerStatusUnknown`.
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Timestamp,
    pub pid: Option<u32>,
}

impl Exit {
    /// From a wait status: exit code, or 128 + signal for a killed process.
    pub fn of_process(
        code: Option<i32>,
        signal: Option<i32>,
        started_at: Timestamp,
        finished_at: Timestamp,
        pid: u32,
    ) -> Self {
        let exit_code = code.unwrap_or_else(|| 128 + signal.unwrap_or(0));
        Self {
            exit_code,
            signal: signal.filter(|_| code.is_none()),
            reason: if exit_code == 0 { "Completed" } else { "Error" }.to_string(),
            message: None,
            started_at: Some(started_at),
            finished_at,
            pid: Some(pid),
        }
    }

    pub fn succeeded(&self) -> bool {
        self.exit_code == 0
    }
}

/// One container as the node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerView {
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub pid: Option<u32>,
    pub state: State,
    pub last: Option<Exit>,
    pub restart_count: i32,
    pub started: bool,
    pub ready: bool,
}

impl ContainerView {
    pub fn new(name: &str, image: &str, state: State) -> Self {
        Self {
            name: name.to_string(),
            image: image.to_string(),
            image_id: String::new(),
            pid: None,
            state,
            last: None,
            restart_count: 0,
            started: false,
            ready: false,
        }
    }

    pub fn status(&self) -> ContainerStatus {
        ContainerStatus {
            name: self.name.clone(),
            image: self.image.clone(),
            image_id: self.image_id.clone(),
            container_id: self.pid.map(|pid| format!("eddy://{pid}")),
            state: Some(state(&self.state)),
            last_state: Some(
                self.last
                    .as_ref()
                    .map(|exit| state(&State::Terminated(exit.clone())))
                    .unwrap_or_default(),
            ),
            ready: self.ready,
            started: Some(self.started),
            restart_count: self.restart_count,
            ..ContainerStatus::default()
        }
    }
}

fn state(state: &State) -> ContainerState {
    match state {
        State::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
            }),
            ..ContainerState::default()
        },
        State::Running { started_at } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(Time(*started_at)),
            }),
            ..ContainerState::default()
        },
        State::Terminated(exit) => ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: exit.exit_code,
                signal: exit.signal,
                reason: Some(exit.reason.clone()),
                message: exit.message.clone(),
                started_at: exit.started_at.map(Time),
                finished_at: Some(Time(exit.finished_at)),
                container_id: exit.pid.map(|pid| format!("eddy://{pid}")),
            }),
            ..ContainerState::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_by_code_and_by_signal() {
        let t = Timestamp::UNIX_EPOCH;
        let ok = Exit::of_process(Some(0), None, t, t, 7);
        assert_eq!(
            (ok.exit_code, ok.reason.as_str(), ok.signal),
            (0, "Completed", None)
        );
        let killed = Exit::of_process(None, Some(9), t, t, 7);
        assert_eq!(
            (killed.exit_code, killed.reason.as_str(), killed.signal),
            (137, "Error", Some(9))
        );
    }

    #[test]
    fn status_has_ids_states_and_last_state() {
        let mut view = ContainerView::new(
            "main",
            "eddy-processor:1",
            State::Running {
                started_at: Timestamp::UNIX_EPOCH,
            },
        );
        view.pid = Some(42);
        view.last = Some(Exit::of_process(
            Some(1),
            None,
            Timestamp::UNIX_EPOCH,
            Timestamp::UNIX_EPOCH,
            41,
        ));
        let status = view.status();
        assert_eq!(status.container_id.as_deref(), Some("eddy://42"));
        assert!(status.state.and_then(|s| s.running).is_some());
        let last = status
            .last_state
            .and_then(|s| s.terminated)
            .expect("terminated");
        assert_eq!(
            (last.exit_code, last.container_id.as_deref()),
            (1, Some("eddy://41"))
        );
    }
}
