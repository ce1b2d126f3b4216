//! A pod's status from what the node observed (pure).

use std::net::Ipv4Addr;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{HostIP, Pod, PodCondition, PodIP, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::container::{ContainerView, State};

/// The conditions this node owns; others (readiness gates, disruption
/// targets) are kept as they are.
const OWNED: [&str; 5] = [
    "PodScheduled",
    "PodReadyToStartContainers",
    "Initialized",
    "ContainersReady",
    "Ready",
];

pub struct Observed<'a> {
    /// The pod as last seen: spec, others' conditions, a start time.
    pub pod: &'a Pod,
    /// The status this node wrote last (transition times come from it).
    pub previous: Option<&'a PodStatus>,
    /// Volumes are in place and the pod has its IP.
    pub sandbox_ready: bool,
    pub init: &'a [ContainerView],
    pub main: &'a [ContainerView],
    pub pod_ip: Option<Ipv4Addr>,
    pub host_ip: &'a str,
    pub now: Timestamp,
}

pub fn compute(o: &Observed) -> PodStatus {
    let spec = o.pod.spec.clone().unwrap_or_default();
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let current = o.pod.status.as_ref();
    let previous = o.previous.or(current);

    let incomplete_init: Vec<&str> = o
        .init
        .iter()
        .filter(|c| !matches!(&c.state, State::Terminated(exit) if exit.succeeded()))
        .map(|c| c.name.as_str())
        .collect();
    let initialized = incomplete_init.is_empty();
    let previous_phase = previous.and_then(|s| s.phase.as_deref());
    let phase = match previous_phase {
        Some(terminal @ ("Succeeded" | "Failed")) => terminal.to_string(),
        _ => phase(restart_policy, initialized, o.init, o.main).to_string(),
    };
    let terminal = phase == "Succeeded" || phase == "Failed";

    let unready: Vec<&str> = o
        .main
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let gates_pending: Vec<&str> = spec
        .readiness_gates
        .iter()
        .flatten()
        .map(|g| g.condition_type.as_str())
        .filter(|gate| {
            !current
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|c| c.type_ == *gate && c.status == "True")
        })
        .collect();

    let condition = |type_: &str, ok: bool, reason: Option<&str>, message: Option<String>| {
        let status = if ok { "True" } else { "False" };
        let since = previous
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.type_ == type_ && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(o.now));
        PodCondition {
            type_: type_.to_string(),
            status: status.to_string(),
            last_transition_time: Some(since),
            reason: if ok { None } else { reason.map(str::to_string) },
            message: if ok { None } else { message },
            ..PodCondition::default()
        }
    };
    let list = |names: &[&str]| format!("[{}]", names.join(" "));
    let containers_ready = unready.is_empty() && !terminal;
    let not_ready_reason = if terminal {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let not_ready_message =
        (!terminal).then(|| format!("containers with unready status: {}", list(&unready)));
    let mut conditions = vec![
        condition("PodScheduled", true, None, None),
        condition(
            "PodReadyToStartContainers",
            o.sandbox_ready && !terminal,
            None,
            None,
        ),
        condition(
            "Initialized",
            initialized,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: {}",
                list(&incomplete_init)
            )),
        ),
        condition(
            "ContainersReady",
            containers_ready,
            Some(not_ready_reason),
            not_ready_message.clone(),
        ),
        if containers_ready && !gates_pending.is_empty() {
            condition(
                "Ready",
                false,
                Some("ReadinessGatesNotReady"),
                Some(format!(
                    "corresponding condition of pod readiness gate {:?} does not exist or is not True",
                    gates_pending[0]
                )),
            )
        } else {
            condition(
                "Ready",
                containers_ready,
                Some(not_ready_reason),
                not_ready_message,
            )
        },
    ];
    conditions.extend(
        current
            .and_then(|s| s.conditions.clone())
            .into_iter()
            .flatten()
            .filter(|c| !OWNED.contains(&c.type_.as_str())),
    );

    let start_time = current
        .and_then(|s| s.start_time.clone())
        .or_else(|| previous.and_then(|s| s.start_time.clone()))
        .unwrap_or(Time(o.now));
    let pod_ip = o.pod_ip.map(|ip| ip.to_string());
    PodStatus {
        phase: Some(phase),
        conditions: Some(conditions),
        host_ip: Some(o.host_ip.to_string()),
        host_ips: Some(vec![HostIP {
            ip: o.host_ip.to_string(),
        }]),
        pod_ips: pod_ip.clone().map(|ip| vec![PodIP { ip }]),
        pod_ip,
        start_time: Some(start_time),
        init_container_statuses: (!o.init.is_empty())
            .then(|| o.init.iter().map(ContainerView::status).collect()),
        container_statuses: Some(o.main.iter().map(ContainerView::status).collect()),
        observed_generation: o.pod.metadata.generation,
        ..PodStatus::default()
    }
}

/// Kubernetes' pod phase rules.
fn phase(
    restart_policy: &str,
    initialized: bool,
    init: &[ContainerView],
    main: &[ContainerView],
) -> &'static str {
    let init_failed_for_good = restart_policy == "Never"
        && init
            .iter()
            .any(|c| matches!(&c.state, State::Terminated(exit) if !exit.succeeded()));
    if init_failed_for_good {
        return "Failed";
    }
    if !initialized {
        return "Pending";
    }
    let (mut waiting, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for container in main {
        match &container.state {
            State::Running { .. } => running += 1,
            State::Terminated(exit) => {
                stopped += 1;
                if exit.succeeded() {
                    succeeded += 1;
                }
            }
            // Waiting to restart after a crash counts as stopped.
            State::Waiting { .. } if container.last.is_some() => stopped += 1,
            State::Waiting { .. } => waiting += 1,
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        if restart_policy == "Always" {
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else if restart_policy == "Never" {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::container::Exit;
    use serde_json::json;

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).expect("valid")
    }

    fn pod(restart_policy: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "generation": 1},
            "spec": {"restartPolicy": restart_policy, "containers": [{"name": "main"}]}
        }))
        .expect("pod")
    }

    fn running(ready: bool) -> ContainerView {
        let mut view = ContainerView::new("main", "img", State::Running { started_at: t(1) });
        view.started = true;
        view.ready = ready;
        view
    }

    fn exited(code: i32) -> ContainerView {
        ContainerView::new(
            "main",
            "img",
            State::Terminated(Exit::of_process(Some(code), None, t(1), t(2), 5)),
        )
    }

    fn crash_looping() -> ContainerView {
        let mut view = ContainerView::new("main", "img", State::waiting("CrashLoopBackOff", None));
        view.last = Some(Exit::of_process(Some(1), None, t(1), t(2), 5));
        view
    }

    fn status_of(
        pod: &Pod,
        previous: Option<&PodStatus>,
        init: &[ContainerView],
        main: &[ContainerView],
        now: i64,
    ) -> PodStatus {
        compute(&Observed {
            pod,
            previous,
            sandbox_ready: true,
            init,
            main,
            pod_ip: Some(Ipv4Addr::new(127, 0, 0, 5)),
            host_ip: "127.0.0.1",
            now: t(now),
        })
    }

    fn condition<'a>(status: &'a PodStatus, type_: &str) -> &'a PodCondition {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_)
            .expect("condition")
    }

    #[test]
    fn phases_by_restart_policy() {
        let always = pod("Always");
        let never = pod("Never");
        let on_failure = pod("OnFailure");
        let phase =
            |p: &Pod, main: ContainerView| status_of(p, None, &[], &[main], 10).phase.unwrap();
        assert_eq!(
            phase(
                &always,
                ContainerView::new("main", "img", State::waiting("ContainerCreating", None))
            ),
            "Pending"
        );
        assert_eq!(phase(&always, running(false)), "Running");
        assert_eq!(phase(&always, crash_looping()), "Running");
        assert_eq!(phase(&always, exited(0)), "Running");
        assert_eq!(phase(&never, exited(0)), "Succeeded");
        assert_eq!(phase(&never, exited(1)), "Failed");
        assert_eq!(phase(&on_failure, exited(0)), "Succeeded");
        assert_eq!(phase(&on_failure, crash_looping()), "Running");
    }

    #[test]
    fn init_containers_gate_the_pod() {
        let never = pod("Never");
        let mut init = ContainerView::new("setup", "img", State::Running { started_at: t(1) });
        init.started = true;
        let waiting = ContainerView::new("main", "img", State::waiting("PodInitializing", None));
        let status = status_of(&never, None, &[init], std::slice::from_ref(&waiting), 10);
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        let initialized = condition(&status, "Initialized");
        assert_eq!(initialized.status, "False");
        assert_eq!(
            initialized.message.as_deref(),
            Some("containers with incomplete status: [setup]")
        );

        let failed = ContainerView::new(
            "setup",
            "img",
            State::Terminated(Exit::of_process(Some(2), None, t(1), t(2), 3)),
        );
        assert_eq!(
            status_of(&never, None, &[failed], &[waiting], 10)
                .phase
                .as_deref(),
            Some("Failed")
        );
    }

    #[test]
    fn ready_conditions_and_transition_times() {
        let p = pod("Always");
        let first = status_of(&p, None, &[], &[running(false)], 10);
        let ready = condition(&first, "Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("False", Some("ContainersNotReady"))
        );
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [main]")
        );

        // Nothing changed: the same times, so the same status.
        let again = status_of(&p, Some(&first), &[], &[running(false)], 20);
        assert_eq!(again, first);

        let became_ready = status_of(&p, Some(&first), &[], &[running(true)], 30);
        let ready = condition(&became_ready, "Ready");
        assert_eq!(ready.status, "True");
        assert_eq!(ready.last_transition_time, Some(Time(t(30))));
        assert_eq!(
            condition(&became_ready, "PodScheduled").last_transition_time,
            Some(Time(t(10)))
        );
    }

    #[test]
    fn terminal_phases_stick_and_others_conditions_are_kept() {
        let mut p = pod("Never");
        p.status = Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        });
        let done = status_of(&p, None, &[], &[exited(0)], 10);
        assert_eq!(done.phase.as_deref(), Some("Succeeded"));
        assert_eq!(
            condition(&done, "Ready").reason.as_deref(),
            Some("PodCompleted")
        );
        assert_eq!(condition(&done, "DisruptionTarget").status, "True");
        let later = status_of(&p, Some(&done), &[], &[running(true)], 20);
        assert_eq!(later.phase.as_deref(), Some("Succeeded"));
    }

    #[test]
    fn readiness_gates_hold_ready_back() {
        let mut p = pod("Always");
        p.spec.as_mut().unwrap().readiness_gates =
            Some(vec![k8s_openapi::api::core::v1::PodReadinessGate {
                condition_type: "example.com/gate".into(),
            }]);
        let status = status_of(&p, None, &[], &[running(true)], 10);
        assert_eq!(condition(&status, "ContainersReady").status, "True");
        let ready = condition(&status, "Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("False", Some("ReadinessGatesNotReady"))
        );
    }
}
