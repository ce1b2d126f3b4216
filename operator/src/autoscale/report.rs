//! What a decision shows: its status record, its Event, the Scaling
//! condition, and each partition's load. Pure.

use eddy_api::spec::{
    AutoscalingStatus, PartitionLoadStatus, PodAssignment, ScalingDecision, DECISION_HISTORY,
};

use super::{
    policy::{Action, Decision},
    signals::Sample,
};

/// The action of a decision that asks for nothing.
pub const NO_CHANGE: &str = "NoChange";

/// The pods an action leads to, from `pods`.
pub fn target_pods(action: &Action, assignment: Option<&[PodAssignment]>, pods: u32) -> u32 {
    match action {
        Action::ScaleOut { to } | Action::ScaleIn { to } => *to,
        Action::Isolate { .. } | Action::Rebalance => assignment.map_or(pods, |a| a.len() as u32),
        _ => pods,
    }
}

/// The status record of `d`, taken at `time` with `pods` running.
pub fn record(d: &Decision, pods: u32, time: String, applied: bool) -> ScalingDecision {
    let partition = match &d.action {
        Action::Isolate { partition } | Action::HotKey { partition, .. } => Some(*partition),
        _ => None,
    };
    ScalingDecision {
        time,
        action: d.action.event_reason().into(),
        reason: d.reason.clone(),
        from: pods,
        to: target_pods(&d.action, d.assignment.as_deref(), pods),
        partition,
        applied,
    }
}

/// Two records say the same when action, pods and partition match (the
/// figures in the reason move with every look).
pub fn same(a: &ScalingDecision, b: &ScalingDecision) -> bool {
    (&a.action, a.from, a.to, a.partition, a.applied)
        == (&b.action, b.from, b.to, b.partition, b.applied)
}

/// `status` with decision `r`: the last decision when it says something
/// new, and the history (newest first) for anything but NoChange.
pub fn remember(status: &mut AutoscalingStatus, r: ScalingDecision) {
    if status.last_decision.as_ref().is_some_and(|l| same(l, &r)) {
        return;
    }
    if r.action != NO_CHANGE {
        status.decisions.insert(0, r.clone());
        status.decisions.truncate(DECISION_HISTORY);
    }
    status.last_decision = Some(r);
}

/// Whether the Event of `d` is a warning: something is needed and cannot
/// be done, or a key is too hot for any pod.
pub fn is_warning(action: &Action) -> bool {
    matches!(
        action,
        Action::Blocked | Action::Ineffective { .. } | Action::HotKey { .. }
    )
}

/// The note of `d`'s Event.
pub fn note(r: &ScalingDecision, mode_applies: bool) -> String {
    let what = match (mode_applies, r.from == r.to) {
        (_, _) if !is_change(&r.action) => String::new(),
        (true, true) => format!("; moving partitions between the {} pods", r.to),
        (true, false) => format!("; from {} pods to {}", r.from, r.to),
        (false, true) => "; recommended only (spec.autoscaling.mode: recommend)".into(),
        (false, false) => format!(
            "; recommended only (spec.autoscaling.mode: recommend): {} pods instead of {}",
            r.to, r.from
        ),
    };
    format!("{}{what}", r.reason)
}

fn is_change(action: &str) -> bool {
    ["ScaledOut", "ScaledIn", "PartitionIsolated", "Rebalanced"].contains(&action)
}

/// The Scaling condition: true while partitions move or pods change for
/// the autoscaler; otherwise false, with the last decision as reason.
pub fn condition(status: &AutoscalingStatus) -> (bool, String, String) {
    if let Some(m) = &status.moving {
        let moving = status
            .last_decision
            .as_ref()
            .map_or_else(String::new, |d| format!(": {}", d.reason));
        return (
            true,
            m.action.clone(),
            format!(
                "moving partitions to reach {} pods since {}{moving}",
                m.pods, m.started
            ),
        );
    }
    match &status.last_decision {
        Some(d) => (false, d.action.clone(), d.reason.clone()),
        None => (
            false,
            "Measuring".into(),
            "no decision yet: the autoscaler is collecting measurements".into(),
        ),
    }
}

/// Each partition's load from `d`, with its pod and latest rate and
/// backlog, rounded so the status does not change with noise.
pub fn loads(
    d: &Decision,
    latest: &Sample,
    assignment: &[PodAssignment],
) -> Vec<PartitionLoadStatus> {
    let round = |x: f64, to: f64| (x * to).round() / to;
    d.loads
        .iter()
        .map(|(&partition, &load)| {
            let seen = latest.partitions.iter().find(|p| p.partition == partition);
            PartitionLoadStatus {
                partition,
                pod: assignment
                    .iter()
                    .find(|a| a.partitions.contains(&partition))
                    .map_or(0, |a| a.ordinal),
                load: round(load, 100.0),
                events_per_second: seen.map_or(0.0, |p| round(p.rate, 1.0)),
                backlog: seen.map_or(0, |p| p.backlog.max(0.0) as u64),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn decision(action: Action, reason: &str) -> Decision {
        Decision {
            at_ms: 0,
            action,
            reason: reason.into(),
            recommended: 3,
            assignment: None,
            rate_before: 0.0,
            rate_expected: 0.0,
            loads: BTreeMap::from([(0, 0.456), (1, 0.1)]),
            judged_last: false,
        }
    }

    #[test]
    fn repeated_decisions_are_remembered_once_and_history_skips_no_change() {
        let mut status = AutoscalingStatus::default();
        let out = |reason: &str| {
            record(
                &decision(Action::ScaleOut { to: 3 }, reason),
                2,
                "t".into(),
                true,
            )
        };
        remember(&mut status, out("needs 900/s"));
        remember(&mut status, out("needs 950/s"));
        assert_eq!(status.decisions.len(), 1, "the same decision again");
        assert_eq!(status.last_decision.as_ref().unwrap().reason, "needs 900/s");
        let none = record(&decision(Action::None, "fits"), 3, "t2".into(), false);
        remember(&mut status, none);
        assert_eq!(status.decisions.len(), 1, "NoChange is not history");
        assert_eq!(status.last_decision.as_ref().unwrap().action, "NoChange");
        for i in 0..20 {
            remember(
                &mut status,
                record(
                    &decision(Action::ScaleOut { to: 4 + i }, ""),
                    3,
                    "t".into(),
                    true,
                ),
            );
        }
        assert_eq!(status.decisions.len(), DECISION_HISTORY);
        assert_eq!(status.decisions[0].to, 23, "newest first");
    }

    #[test]
    fn records_name_pods_and_partition() {
        let r = record(
            &decision(Action::Isolate { partition: 5 }, "hot"),
            2,
            "t".into(),
            false,
        );
        assert_eq!(
            (r.action.as_str(), r.from, r.to, r.partition),
            ("PartitionIsolated", 2, 2, Some(5))
        );
        let r = record(
            &decision(Action::ScaleIn { to: 1 }, "idle"),
            2,
            "t".into(),
            true,
        );
        assert_eq!((r.from, r.to, r.partition), (2, 1, None));
        assert!(
            note(&r, true).ends_with("from 2 pods to 1"),
            "{}",
            note(&r, true)
        );
        assert!(note(&r, false).contains("recommended only"));
        let blocked = record(&decision(Action::Blocked, "max"), 2, "t".into(), false);
        assert_eq!(note(&blocked, true), "max");
        assert!(is_warning(&Action::Blocked) && !is_warning(&Action::Rebalance));
    }

    #[test]
    fn the_condition_follows_moves_and_decisions() {
        let mut status = AutoscalingStatus::default();
        assert_eq!(condition(&status).1, "Measuring");
        remember(
            &mut status,
            record(
                &decision(Action::ScaleOut { to: 3 }, "short"),
                2,
                "t".into(),
                true,
            ),
        );
        assert_eq!(
            condition(&status),
            (false, "ScaledOut".into(), "short".into())
        );
        status.moving = Some(eddy_api::spec::MoveStatus {
            action: "ScaledOut".into(),
            started: "t".into(),
            pods: 3,
            target: vec![],
            version: 1,
            released: vec![],
            moved: vec![],
        });
        let (moving, reason, message) = condition(&status);
        assert!(
            moving && reason == "ScaledOut" && message.contains("3 pods"),
            "{message}"
        );
    }

    #[test]
    fn loads_are_rounded_and_placed() {
        let d = decision(Action::None, "");
        let latest = Sample {
            at_ms: 0,
            partitions: vec![super::super::signals::PartitionLoad {
                partition: 1,
                rate: 12.34,
                busy: 0.1,
                backlog: 3.0,
                top_key: None,
            }],
            checkpoint_lag_s: 0.0,
            alerts: vec![],
        };
        let assignment = vec![
            PodAssignment {
                ordinal: 0,
                partitions: vec![0],
            },
            PodAssignment {
                ordinal: 1,
                partitions: vec![1],
            },
        ];
        let l = loads(&d, &latest, &assignment);
        assert_eq!(l[0].load, 0.46);
        assert_eq!(
            (l[1].pod, l[1].events_per_second, l[1].backlog),
            (1, 12.0, 3)
        );
    }
}
