//! Probe loops of one running container, reporting results on a channel.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Probe};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::probes::{action, Checker, ExecContext, Kind, Timing};

#[derive(Debug)]
pub enum Event {
    Probe(Kind, Result<(), String>),
    PostStart(Result<(), String>),
}

/// The running probe loops; dropping it stops them.
pub struct ProbeTasks {
    tasks: Vec<(Option<Kind>, JoinHandle<()>)>,
    checker: Checker,
    container: Arc<Container>,
    pod_ip: String,
    exec: ExecContext,
    started: Instant,
    events: mpsc::Sender<Event>,
}

impl ProbeTasks {
    pub fn new(
        checker: Checker,
        container: Arc<Container>,
        pod_ip: String,
        exec: ExecContext,
        started: Instant,
    ) -> (Self, mpsc::Receiver<Event>) {
        let (events, receiver) = mpsc::channel(16);
        let tasks = Self {
            tasks: Vec::new(),
            checker,
            container,
            pod_ip,
            exec,
            started,
            events,
        };
        (tasks, receiver)
    }

    /// Probes with `probe` every period, from `initialDelaySeconds` after
    /// the container started.
    pub fn start(&mut self, kind: Kind, probe: &Probe) {
        let timing = Timing::of(probe);
        let action = action::of_probe(probe, &self.container, &self.pod_ip);
        let (checker, exec, events) =
            (self.checker.clone(), self.exec.clone(), self.events.clone());
        let first = self.started + timing.initial_delay;
        let task = tokio::spawn(async move {
            tokio::time::sleep_until(first).await;
            loop {
                let result = match &action {
                    Ok(action) => checker.run(action, timing.timeout, Some(&exec)).await,
                    Err(message) => Err(message.clone()),
                };
                if events.send(Event::Probe(kind, result)).await.is_err() {
                    return;
                }
                tokio::time::sleep(timing.period).await;
            }
        });
        self.tasks.push((Some(kind), task));
    }

    /// Runs the postStart hook once.
    pub fn post_start(&mut self, hook: &LifecycleHandler, timeout: Duration) {
        let (checker, exec, events) =
            (self.checker.clone(), self.exec.clone(), self.events.clone());
        let action = action::of_hook(hook, &self.container, &self.pod_ip);
        let task = tokio::spawn(async move {
            let result = match action {
                Some(Ok(action)) => checker.run(&action, timeout, Some(&exec)).await,
                Some(Err(message)) => Err(message),
                None => Ok(()),
            };
            let _ = events.send(Event::PostStart(result)).await;
        });
        self.tasks.push((None, task));
    }

    pub fn stop(&mut self, kind: Kind) {
        self.tasks.retain(|(k, task)| {
            if *k == Some(kind) {
                task.abort();
                false
            } else {
                true
            }
        });
    }
}

impl Drop for ProbeTasks {
    fn drop(&mut self) {
        for (_, task) in &self.tasks {
            task.abort();
        }
    }
}
