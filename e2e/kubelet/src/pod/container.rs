//! One container's life: prepare, start, probe, stop, restart with back-off.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Container;
use nix::sys::signal::Signal;
use tokio::process::Child;
use tokio::time::Instant;

use super::context::{PodShared, Stop, Views};
use super::history::History;
use super::launch;
use super::probing::{Event, ProbeTasks};
use crate::backoff::Backoff;
use crate::probes::{action, ExecContext, Kind, Timing, Tracker};
use crate::runtime::{self, pidfile, signal_group, Launch};
use crate::status::{ContainerView, Exit, State};

/// How long a container waits before retrying a missing binary, ConfigMap
/// or Secret.
const RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Init(usize),
    Main(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Always,
    OnFailure,
    Never,
}

impl Policy {
    /// The pod's policy for a regular container; init containers are
    /// retried until they succeed unless the pod's policy is Never.
    pub fn of(pod_policy: Option<&str>, slot: Slot) -> Self {
        match (pod_policy, slot) {
            (Some("Never"), _) => Self::Never,
            (_, Slot::Init(_)) | (Some("OnFailure"), _) => Self::OnFailure,
            _ => Self::Always,
        }
    }

    pub fn restarts(self, exit: &Exit) -> bool {
        match self {
            Self::Always => true,
            Self::OnFailure => !exit.succeeded(),
            Self::Never => false,
        }
    }
}

pub struct Runner {
    shared: Arc<PodShared>,
    spec: Arc<Container>,
    slot: Slot,
    policy: Policy,
    history: History,
    backoff: Backoff,
}

impl Runner {
    pub fn new(
        shared: Arc<PodShared>,
        spec: Container,
        slot: Slot,
        policy: Policy,
        history: History,
    ) -> Self {
        Self {
            shared,
            spec: Arc::new(spec),
            slot,
            policy,
            history,
            backoff: Backoff::default(),
        }
    }

    fn view(&self, change: impl FnOnce(&mut ContainerView)) {
        let slot = self.slot;
        self.shared.update(|views: &mut Views| {
            let view = match slot {
                Slot::Init(i) => views.init.get_mut(i),
                Slot::Main(i) => views.main.get_mut(i),
            };
            if let Some(view) = view {
                change(view);
            }
        });
    }

    fn waiting(&self, reason: &str, message: Option<String>) {
        self.view(|v| {
            v.state = State::waiting(reason, message);
            v.pid = None;
            v.started = false;
            v.ready = false;
        });
    }

    /// Runs until the container is done for good (its final exit) or the
    /// pod stops (`None`).
    pub async fn run(mut self) -> Option<Exit> {
        let mut has_exited = self.history.last.is_some() || self.history.undecided.is_some();
        let restart_count = self.history.restart_count;
        let last = self.history.last.clone();
        self.view(|v| {
            v.restart_count = restart_count;
            v.last = last;
        });
        let mut exit = self.history.undecided.take();
        // An exit found in the previous status restarts at once.
        let mut ran_for = Duration::MAX;
        loop {
            if let Some(exit) = exit.take() {
                if !self.policy.restarts(&exit) {
                    self.view(|v| {
                        v.state = State::Terminated(exit.clone());
                        v.started = false;
                        v.ready = false;
                    });
                    return Some(exit);
                }
                let delay = if ran_for == Duration::MAX {
                    Duration::ZERO
                } else {
                    self.backoff.next(ran_for)
                };
                let message = self.backoff_message(delay);
                self.view(|v| v.last = Some(exit.clone()));
                self.waiting("CrashLoopBackOff", Some(message));
                if self.shared.sleep_or_stop(delay).await {
                    return None;
                }
            }
            if self.shared.stop().requested() {
                return None;
            }
            let launch = match launch::prepare(&self.shared, &self.spec).await {
                Ok(launch) => launch,
                Err((reason, message)) => {
                    tracing::debug!(container = %self.spec.name, reason, message, "container cannot start yet");
                    self.waiting(reason, Some(message));
                    if self.shared.sleep_or_stop(RETRY).await {
                        return None;
                    }
                    continue;
                }
            };
            if self.shared.stop().requested() {
                return None;
            }
            if has_exited {
                self.view(|v| v.restart_count += 1);
            }
            has_exited = true;
            let started_at = Timestamp::now();
            let began = Instant::now();
            let ended = match runtime::spawn(&launch) {
                Ok(child) => self.supervise(child, &launch, started_at, began).await?,
                Err(e) => {
                    tracing::warn!(container = %self.spec.name, error = %e, "cannot start");
                    Exit {
                        exit_code: 128,
                        signal: None,
                        reason: "StartError".into(),
                        message: Some(format!("cannot start {}: {e}", launch.program.display())),
                        started_at: Some(started_at),
                        finished_at: Timestamp::now(),
                        pid: None,
                    }
                }
            };
            ran_for = began.elapsed();
            exit = Some(ended);
        }
    }

    fn backoff_message(&self, delay: Duration) -> String {
        let pod = self.shared.pod();
        format!(
            "back-off {}s restarting failed container={} pod={}_{}({})",
            delay.as_secs(),
            self.spec.name,
            pod.metadata.name.as_deref().unwrap_or_default(),
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.uid.as_deref().unwrap_or_default(),
        )
    }

    fn pid_file(&self) -> PathBuf {
        let kind = match self.slot {
            Slot::Init(_) => "init",
            Slot::Main(_) => "main",
        };
        self.shared
            .dir
            .join("pids")
            .join(format!("{kind}-{}.pid", self.spec.name))
    }

    /// Watches a started process until it exits, a probe or hook kills it
    /// (its exit), or the pod stops (`None`, after stopping it).
    async fn supervise(
        &self,
        mut child: Child,
        launch: &Launch,
        started_at: Timestamp,
        began: Instant,
    ) -> Option<Exit> {
        let pid = child.id().unwrap_or(0);
        let pid_file = self.pid_file();
        if let Some(dir) = pid_file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = pidfile::write(&pid_file, pid) {
            tracing::warn!(error = %e, "cannot write a pid file");
        }
        tracing::info!(container = %self.spec.name, pid, program = %launch.program.display(), "started");
        let spec = self.spec.clone();
        let has_readiness = spec.readiness_probe.is_some();
        let needs_startup = spec.startup_probe.is_some();
        let image_id = format!("eddy://{}", launch.program.display());
        self.view(|v| {
            v.state = State::Running { started_at };
            v.pid = Some(pid);
            v.image_id = image_id;
            v.started = !needs_startup;
            v.ready = !needs_startup && !has_readiness;
        });

        let exec = ExecContext {
            pid,
            env: launch.env.clone(),
            working_dir: launch.working_dir.clone(),
        };
        let (mut probes, mut events) = ProbeTasks::new(
            self.shared.node.checker.clone(),
            spec.clone(),
            self.shared.pod_ip.to_string(),
            exec.clone(),
            began,
        );
        let tracker = |kind, probe: &Option<k8s_openapi::api::core::v1::Probe>| {
            probe.as_ref().map(|p| Tracker::new(kind, Timing::of(p)))
        };
        let mut startup = tracker(Kind::Startup, &spec.startup_probe);
        let mut liveness = tracker(Kind::Liveness, &spec.liveness_probe);
        let mut readiness = tracker(Kind::Readiness, &spec.readiness_probe);
        let start_others = |probes: &mut ProbeTasks| {
            if let Some(probe) = &spec.liveness_probe {
                probes.start(Kind::Liveness, probe);
            }
            if let Some(probe) = &spec.readiness_probe {
                probes.start(Kind::Readiness, probe);
            }
        };
        match &spec.startup_probe {
            Some(probe) => probes.start(Kind::Startup, probe),
            None => start_others(&mut probes),
        }
        if let Some(hook) = spec.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            probes.post_start(hook, self.shared.termination_grace());
        }

        enum Outcome {
            Exited(ExitStatus),
            Kill(String),
            Stopped,
        }
        let mut stop = self.shared.stop.clone();
        let outcome = loop {
            tokio::select! {
                status = child.wait() => break Outcome::Exited(status.unwrap_or_else(|_| ExitStatus::from_raw(9))),
                _ = stop.wait_for(Stop::requested) => break Outcome::Stopped,
                Some(event) = events.recv() => match event {
                    Event::Probe(Kind::Startup, result) => {
                        let Some(tracker) = startup.as_mut() else { continue };
                        match tracker.record(result.is_ok()) {
                            Some(true) => {
                                probes.stop(Kind::Startup);
                                start_others(&mut probes);
                                self.view(|v| {
                                    v.started = true;
                                    v.ready = !has_readiness;
                                });
                            }
                            Some(false) => break Outcome::Kill(format!(
                                "Container {} failed startup probe, will be restarted: {}",
                                spec.name, result.err().unwrap_or_default()
                            )),
                            None => {}
                        }
                    }
                    Event::Probe(Kind::Liveness, result) => {
                        let failed = liveness.as_mut().and_then(|t| t.record(result.is_ok())) == Some(false);
                        if failed {
                            break Outcome::Kill(format!(
                                "Container {} failed liveness probe, will be restarted: {}",
                                spec.name, result.err().unwrap_or_default()
                            ));
                        }
                    }
                    Event::Probe(Kind::Readiness, result) => {
                        if let Some(ready) = readiness.as_mut().and_then(|t| t.record(result.is_ok())) {
                            tracing::info!(container = %spec.name, ready, "readiness changed");
                            self.view(|v| v.ready = ready);
                        }
                    }
                    Event::PostStart(Err(message)) => break Outcome::Kill(format!(
                        "PostStartHookError: {message}"
                    )),
                    Event::PostStart(Ok(())) => {}
                },
            }
        };
        drop(probes);
        let (status, message, stopped) = match outcome {
            Outcome::Exited(status) => (status, None, false),
            Outcome::Kill(message) => {
                tracing::info!(container = %spec.name, pid, message, "killing");
                let deadline = Instant::now() + self.shared.termination_grace();
                let status = self.terminate(&mut child, pid, &exec, deadline).await;
                (status, Some(message), false)
            }
            Outcome::Stopped => {
                let deadline = match self.shared.stop() {
                    Stop::Graceful { deadline } => deadline,
                    _ => Instant::now(),
                };
                (
                    self.terminate(&mut child, pid, &exec, deadline).await,
                    None,
                    true,
                )
            }
        };
        // Like a container's init process: when it ends, so does the rest.
        signal_group(pid, Signal::SIGKILL);
        let _ = std::fs::remove_file(&pid_file);
        let mut exit = Exit::of_process(
            status.code(),
            status.signal(),
            started_at,
            Timestamp::now(),
            pid,
        );
        exit.message = message;
        tracing::info!(container = %spec.name, pid, exit_code = exit.exit_code, "exited");
        if stopped {
            self.view(|v| {
                v.state = State::Terminated(exit.clone());
                v.ready = false;
                v.started = false;
            });
            return None;
        }
        Some(exit)
    }

    /// Stops the process: preStop hook, SIGTERM to its group, SIGKILL at
    /// `deadline` (earlier if the pod's deletion says so).
    async fn terminate(
        &self,
        child: &mut Child,
        pid: u32,
        exec: &ExecContext,
        mut deadline: Instant,
    ) -> ExitStatus {
        let mut stop = self.shared.stop.clone();
        let killed = |status: std::io::Result<ExitStatus>| {
            status.unwrap_or_else(|_| ExitStatus::from_raw(9))
        };
        if let Stop::Graceful { deadline: d } = self.shared.stop() {
            deadline = deadline.min(d);
        }
        if self.shared.stop() != Stop::Kill {
            if let Some(hook) = self
                .spec
                .lifecycle
                .as_ref()
                .and_then(|l| l.pre_stop.as_ref())
            {
                let remaining = deadline.saturating_duration_since(Instant::now());
                let run_hook = async {
                    if let Some(sleep) = &hook.sleep {
                        tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64)).await;
                    } else if let Some(Ok(action)) =
                        action::of_hook(hook, &self.spec, &self.shared.pod_ip.to_string())
                    {
                        if let Err(e) = self
                            .shared
                            .node
                            .checker
                            .run(&action, remaining, Some(exec))
                            .await
                        {
                            tracing::warn!(container = %self.spec.name, error = e, "preStop hook failed");
                        }
                    }
                };
                tokio::select! {
                    status = child.wait() => return killed(status),
                    _ = tokio::time::timeout(remaining, run_hook) => {}
                    _ = stop.wait_for(|s| *s == Stop::Kill) => {}
                }
            }
        }
        let first = if self.shared.stop() == Stop::Kill {
            Signal::SIGKILL
        } else {
            Signal::SIGTERM
        };
        signal_group(pid, first);
        let mut stop_open = true;
        loop {
            tokio::select! {
                status = child.wait() => return killed(status),
                _ = tokio::time::sleep_until(deadline) => {
                    signal_group(pid, Signal::SIGKILL);
                    deadline = Instant::now() + Duration::from_secs(3600);
                }
                changed = stop.changed(), if stop_open => {
                    stop_open = changed.is_ok();
                    match *stop.borrow() {
                        Stop::Graceful { deadline: d } => deadline = deadline.min(d),
                        Stop::Running => {}
                        Stop::Kill => deadline = Instant::now(),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies() {
        let t = Timestamp::UNIX_EPOCH;
        let ok = Exit::of_process(Some(0), None, t, t, 1);
        let failed = Exit::of_process(Some(1), None, t, t, 1);
        let main = Slot::Main(0);
        let init = Slot::Init(0);
        assert!(Policy::of(None, main).restarts(&ok));
        assert!(Policy::of(Some("Always"), main).restarts(&ok));
        assert!(!Policy::of(Some("OnFailure"), main).restarts(&ok));
        assert!(Policy::of(Some("OnFailure"), main).restarts(&failed));
        assert!(!Policy::of(Some("Never"), main).restarts(&failed));
        // Init containers run until they succeed, unless the pod never restarts.
        assert!(!Policy::of(Some("Always"), init).restarts(&ok));
        assert!(Policy::of(Some("Always"), init).restarts(&failed));
        assert!(!Policy::of(Some("Never"), init).restarts(&failed));
    }
}
