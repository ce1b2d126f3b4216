//! The decision: a pure function of the measurements over time, the
//! current assignment, the spec's bounds and what was decided before.

use std::collections::BTreeMap;

use eddy_api::spec::{AutoscalingSpec, PodAssignment};

use super::{
    demand::{demand, Demand},
    pack::{pack, pods_needed},
    signals::{History, Sample},
};

/// The spec's bounds and settings, in numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct Bounds {
    pub min_pods: u32,
    /// At most the number of partitions.
    pub max_pods: u32,
    pub target_utilization: f64,
    pub hot_partition_share: f64,
    pub hot_key_share: f64,
    pub lag_threshold_s: f64,
    pub stabilization_ms: i64,
    pub cooldown_ms: i64,
    pub scale_in_after_ms: i64,
    pub catch_up_s: f64,
    pub window_ms: i64,
}

impl Bounds {
    /// From a validated spec, for a job of `partitions` partitions.
    pub fn of(spec: &AutoscalingSpec, partitions: u32) -> Self {
        let ms =
            |d: &eddy_api::values::HumanDuration| d.parse().map_or(0, |d| d.as_millis() as i64);
        let max = spec
            .max_replicas
            .unwrap_or(partitions)
            .min(partitions)
            .max(1);
        Self {
            min_pods: spec.min_replicas.clamp(1, max),
            max_pods: max,
            target_utilization: spec.target_utilization,
            hot_partition_share: spec.hot_partition_share,
            hot_key_share: spec.hot_key_share,
            lag_threshold_s: ms(&spec.checkpoint_lag_threshold) as f64 / 1000.0,
            stabilization_ms: ms(&spec.stabilization_window),
            cooldown_ms: ms(&spec.cooldown),
            scale_in_after_ms: ms(&spec.scale_in_idle_after),
            catch_up_s: ms(&spec.catch_up_within) as f64 / 1000.0,
            window_ms: ms(&spec.metrics_window),
        }
    }

    /// How far back the policy reads: keep this much history.
    pub fn history_ms(&self) -> i64 {
        self.window_ms
            .max(self.stabilization_ms)
            .max(self.scale_in_after_ms)
    }
}

/// What to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Nothing needs doing.
    None,
    ScaleOut {
        to: u32,
    },
    ScaleIn {
        to: u32,
    },
    /// A partition gets a pod of its own; the others are packed by load.
    Isolate {
        partition: u32,
    },
    /// Same pods, partitions moved off pods above their capacity.
    Rebalance,
    /// A key too hot for one pod: more pods cannot split it.
    HotKey {
        partition: u32,
        key: String,
        share: f64,
    },
    /// Something is needed but may not happen now (bound, cooldown, or
    /// the same action did not help before).
    Blocked,
    /// The last action (of `kind`) did not bring the throughput it
    /// promised: not repeated until `until_ms`.
    Ineffective {
        kind: &'static str,
        until_ms: i64,
    },
}

impl Action {
    /// The reason of the Kubernetes Event for it.
    pub fn event_reason(&self) -> &'static str {
        match self {
            Self::None => super::report::NO_CHANGE,
            Self::ScaleOut { .. } => "ScaledOut",
            Self::ScaleIn { .. } => "ScaledIn",
            Self::Isolate { .. } => "PartitionIsolated",
            Self::Rebalance => "Rebalanced",
            Self::HotKey { .. } => "HotKeyDetected",
            Self::Blocked => "ScalingBlocked",
            Self::Ineffective { .. } => "ScalingIneffective",
        }
    }

    /// Whether it changes the pods or the assignment.
    pub fn changes(&self) -> bool {
        matches!(
            self,
            Self::ScaleOut { .. } | Self::ScaleIn { .. } | Self::Isolate { .. } | Self::Rebalance
        )
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::ScaleOut { .. } => "scale-out",
            Self::ScaleIn { .. } => "scale-in",
            Self::Isolate { .. } => "isolate",
            Self::Rebalance => "rebalance",
            _ => "none",
        }
    }
}

/// A decision and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub at_ms: i64,
    pub action: Action,
    pub reason: String,
    /// Pods the measurements call for, within the bounds.
    pub recommended: u32,
    /// The assignment after the action (for actions that change it).
    pub assignment: Option<Vec<PodAssignment>>,
    /// Events/s processed before, and expected after, the action.
    pub rate_before: f64,
    pub rate_expected: f64,
    /// Per partition: the share of a pod it needs.
    pub loads: BTreeMap<u32, f64>,
    /// The last action's effect was judged with this decision.
    pub judged_last: bool,
}

/// An action taken, to judge later whether it helped.
#[derive(Clone, Debug, PartialEq)]
pub struct Taken {
    pub kind: &'static str,
    pub at_ms: i64,
    pub rate_before: f64,
    pub rate_expected: f64,
    /// Judged already.
    pub judged: bool,
}

/// What the policy remembers between decisions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Memory {
    pub last: Option<Taken>,
    /// Action kinds that did not help, not repeated until the time given.
    pub ineffective: Vec<(&'static str, i64)>,
    /// Hot keys reported (partition, key), not reported again while hot.
    pub hot_keys: Vec<(u32, String)>,
}

impl Memory {
    /// Remembers a decision once it was carried out (or, in `recommend`
    /// mode, would have been).
    pub fn record(&mut self, d: &Decision) {
        if d.judged_last {
            if let Some(last) = &mut self.last {
                last.judged = true;
            }
        }
        match &d.action {
            a if a.changes() => {
                self.last = Some(Taken {
                    kind: a.kind(),
                    at_ms: d.at_ms,
                    rate_before: d.rate_before,
                    rate_expected: d.rate_expected,
                    judged: false,
                })
            }
            Action::HotKey { partition, key, .. } => {
                self.hot_keys.push((*partition, key.clone()));
            }
            Action::Ineffective { kind, until_ms } => self.ineffective.push((kind, *until_ms)),
            _ => {}
        }
        self.ineffective.retain(|(_, until)| *until > d.at_ms);
    }

    fn blocked(&self, kind: &str, now_ms: i64) -> bool {
        self.ineffective
            .iter()
            .any(|(k, until)| *k == kind && *until > now_ms)
    }
}

/// A gain below this share of the promised one makes an action ineffective.
const EFFECTIVE_SHARE: f64 = 0.5;

/// Decides what the job needs now.
pub fn decide(
    history: &History,
    assignment: &[PodAssignment],
    bounds: &Bounds,
    memory: &Memory,
    now_ms: i64,
) -> Decision {
    let pods = assignment.len() as u32;
    let since_action = memory.last.as_ref().map_or(i64::MIN, |t| t.at_ms);
    let from = (now_ms - bounds.window_ms).max(since_action);
    let demands = demand(history.since(from), bounds.catch_up_s);
    let loads: BTreeMap<u32, f64> = demands.iter().map(|d| (d.partition, d.load)).collect();
    let rate: f64 = demands.iter().map(|d| d.rate).sum();
    let needed: f64 = demands.iter().map(|d| d.needed).sum();
    // What the job can reach at best: a partition gets at most a whole pod.
    let reachable: f64 = demands
        .iter()
        .map(|d| match d.cost {
            c if c > 0.0 => d.needed.min(1.0 / c),
            _ => d.needed,
        })
        .sum();
    let capacity = bounds.target_utilization;
    let wanted = pods_needed(loads.values().copied(), capacity);
    let recommended = wanted.clamp(bounds.min_pods, bounds.max_pods);
    // Did the last action help? Judged once its cooldown is over.
    let judge = memory
        .last
        .as_ref()
        .filter(|t| !t.judged && now_ms - t.at_ms >= bounds.cooldown_ms);
    let decision = |action: Action, reason: String| Decision {
        at_ms: now_ms,
        recommended,
        assignment: None,
        rate_before: rate,
        rate_expected: rate,
        loads: loads.clone(),
        judged_last: judge.is_some() && !demands.is_empty(),
        action,
        reason,
    };
    if demands.is_empty() {
        return decision(Action::None, "no measurements yet".into());
    }
    if let Some(last) = judge {
        let promised = last.rate_expected - last.rate_before;
        let reached = rate - last.rate_before;
        let short = reachable > rate * 1.05;
        if promised > 0.0 && reached < EFFECTIVE_SHARE * promised && short {
            return decision(
                Action::Ineffective {
                    kind: last.kind,
                    until_ms: now_ms + 3 * bounds.cooldown_ms,
                },
                format!(
                    "the {} {} s ago promised {:.0} events/s more and brought {:.0}: not repeated for a while",
                    last.kind,
                    (now_ms - last.at_ms) / 1000,
                    promised,
                    reached
                ),
            );
        }
    }

    // Keys no pod can keep up with: reported, never scaled for.
    for d in &demands {
        let Some((key, share)) = &d.top_key else {
            continue;
        };
        let reported = memory
            .hot_keys
            .iter()
            .any(|(p, k)| *p == d.partition && k == key);
        if *share >= bounds.hot_key_share && d.load > capacity && !reported {
            return decision(
                Action::HotKey {
                    partition: d.partition,
                    key: key.clone(),
                    share: *share,
                },
                format!(
                    "key {key:?} carries {:.0}% of partition {}, which needs {:.2} pods alone: \
                     more pods cannot split one key; use two-phase aggregation (spec.hotKeys.twoPhase)",
                    share * 100.0,
                    d.partition,
                    d.load
                ),
            );
        }
    }

    let in_cooldown = now_ms.saturating_sub(since_action) < bounds.cooldown_ms;
    let held = |need: &dyn Fn(&Sample) -> bool, span_ms: i64| {
        let from = now_ms - span_ms;
        from >= since_action && history.covers(from) && history.since(from).all(need)
    };
    let one = |s: &Sample| -> Vec<Demand> { demand(std::iter::once(s), bounds.catch_up_s) };
    let short_in = |s: &Sample| {
        let loads: Vec<f64> = one(s).iter().map(|d| d.load.min(capacity)).collect();
        pods_needed(loads, capacity) > pods
    };
    let lagging = |s: &Sample| s.checkpoint_lag_s > bounds.lag_threshold_s || !s.alerts.is_empty();
    let blocked = |action: Action, what: String, why: &str| {
        decision(
            Action::Blocked,
            format!("{what} ({action:?}) is needed, but {why}"),
        )
    };

    // A partition carrying most of a saturated pod: a pod of its own.
    let hot = hot_partition(assignment, &loads, bounds);
    if let Some((partition, share)) = hot {
        let sustained = held(
            &|s| hot_partition(assignment, &load_map(&one(s)), bounds).is_some(),
            bounds.stabilization_ms,
        );
        if sustained {
            let to = pods_needed(
                loads
                    .iter()
                    .filter(|(p, _)| **p != partition)
                    .map(|(_, l)| l.min(capacity)),
                capacity,
            ) + 1;
            let to = to.max(pods).min(bounds.max_pods);
            let what = format!(
                "isolating partition {partition} ({:.0}% of its pod)",
                share * 100.0
            );
            if in_cooldown {
                return blocked(Action::Isolate { partition }, what, "the cooldown runs");
            }
            if memory.blocked("isolate", now_ms) {
                return blocked(
                    Action::Isolate { partition },
                    what,
                    "it did not help before",
                );
            }
            let mut d = decision(
                Action::Isolate { partition },
                format!(
                    "partition {partition} carries {:.0}% of the load of its pod, which needs \
                     {:.2} of a pod: it gets a pod of its own, the others are packed on {to} pods",
                    share * 100.0,
                    pod_load(assignment, &loads, partition)
                ),
            );
            d.assignment = Some(pack(assignment, &loads, to, capacity, Some(partition)));
            d.rate_expected = reachable.max(rate);
            return d;
        }
    }

    // Too little capacity, held for the stabilization window.
    let alert = history.latest().is_some_and(lagging);
    // Lag that a partition needing more than a whole pod explains (a hot
    // key, or a backlog no one pod works off in time) is no reason for
    // more pods: they cannot share a partition.
    let key_bound = demands.iter().any(|d| d.load > 1.0);
    if held(
        &|s| short_in(s) || (lagging(s) && !key_bound),
        bounds.stabilization_ms,
    ) {
        let target = if wanted > pods { wanted } else { pods + 1 };
        let to = target.min(bounds.max_pods);
        let why = if wanted > pods {
            format!(
                "the job needs {needed:.0} events/s (backlog worked off in {:.0} s) and processes \
                 {rate:.0}: {wanted} pods at {:.0}% use",
                bounds.catch_up_s,
                capacity * 100.0
            )
        } else if alert {
            let latest = history.latest().expect("lagging above");
            format!(
                "checkpoint lag {:.0} s or alerts {:?} for {} s, with {} pods by the rates",
                latest.checkpoint_lag_s,
                latest.alerts,
                bounds.stabilization_ms / 1000,
                wanted
            )
        } else {
            "short of capacity".into()
        };
        let what = format!("scaling out from {pods} pods to {target}");
        if to <= pods {
            return blocked(
                Action::ScaleOut { to: target },
                what,
                "maxReplicas is reached",
            );
        }
        if in_cooldown {
            return blocked(Action::ScaleOut { to }, what, "the cooldown runs");
        }
        if memory.blocked("scale-out", now_ms) {
            return blocked(Action::ScaleOut { to }, what, "it did not help before");
        }
        let mut d = decision(Action::ScaleOut { to }, why);
        d.assignment = Some(pack(assignment, &loads, to, capacity, None));
        d.rate_expected = reachable
            .min(rate * to as f64 / pods.max(1) as f64)
            .max(rate);
        return d;
    }

    // Enough pods, but one of them above its capacity.
    let over = |loads: &BTreeMap<u32, f64>| {
        assignment.iter().any(|pod| {
            pod.partitions.len() > 1
                && pod
                    .partitions
                    .iter()
                    .map(|p| loads.get(p).copied().unwrap_or(0.0))
                    .sum::<f64>()
                    > capacity
        })
    };
    if wanted <= pods
        && over(&loads)
        && held(&|s| over(&load_map(&one(s))), bounds.stabilization_ms)
    {
        let packed = pack(assignment, &loads, pods, capacity, None);
        if super::pack::moves(assignment, &packed) > 0
            && !in_cooldown
            && !memory.blocked("rebalance", now_ms)
        {
            let mut d = decision(
                Action::Rebalance,
                format!("a pod needs more than {:.0}% of its time: partitions move to the least loaded pods", capacity * 100.0),
            );
            d.assignment = Some(packed);
            d.rate_expected = reachable.max(rate);
            return d;
        }
    }

    // Fewer pods would do, for the whole idle period.
    let spare = |s: &Sample| {
        let loads: Vec<f64> = one(s).iter().map(|d| d.load).collect();
        pods_needed(loads, capacity) < pods && !lagging(s)
    };
    if recommended < pods && held(&spare, bounds.scale_in_after_ms) {
        let to = recommended;
        if memory.blocked("scale-in", now_ms) {
            return decision(
                Action::None,
                format!("{to} pods would do; scaling in did not work before"),
            );
        }
        if in_cooldown {
            return decision(
                Action::None,
                format!("{to} pods would do; the cooldown runs"),
            );
        }
        let mut d = decision(
            Action::ScaleIn { to },
            format!(
                "for {} s the job needed at most {to} pods at {:.0}% use ({needed:.0} events/s)",
                bounds.scale_in_after_ms / 1000,
                capacity * 100.0
            ),
        );
        d.assignment = Some(pack(assignment, &loads, to, capacity, None));
        return d;
    }

    decision(Action::None, format!("{pods} pods fit ({wanted} needed)"))
}

fn load_map(demands: &[Demand]) -> BTreeMap<u32, f64> {
    demands.iter().map(|d| (d.partition, d.load)).collect()
}

/// The total load of the pod that runs `partition`.
fn pod_load(assignment: &[PodAssignment], loads: &BTreeMap<u32, f64>, partition: u32) -> f64 {
    assignment
        .iter()
        .find(|pod| pod.partitions.contains(&partition))
        .map_or(0.0, |pod| {
            pod.partitions
                .iter()
                .map(|p| loads.get(p).copied().unwrap_or(0.0))
                .sum()
        })
}

/// A partition above `hotPartitionShare` of a pod that has others and is
/// above its capacity: the heaviest such, with its share.
fn hot_partition(
    assignment: &[PodAssignment],
    loads: &BTreeMap<u32, f64>,
    bounds: &Bounds,
) -> Option<(u32, f64)> {
    assignment
        .iter()
        .filter(|pod| pod.partitions.len() > 1)
        .filter_map(|pod| {
            let load = |p: &u32| loads.get(p).copied().unwrap_or(0.0);
            let total: f64 = pod.partitions.iter().map(load).sum();
            if total <= bounds.target_utilization {
                return None;
            }
            let heaviest = pod
                .partitions
                .iter()
                .copied()
                .max_by(|a, b| load(a).total_cmp(&load(b)))?;
            let share = load(&heaviest) / total;
            (share > bounds.hot_partition_share).then_some((heaviest, share))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
}
