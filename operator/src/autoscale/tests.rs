//! The policy on hand-made measurements, and a deterministic simulation of
//! a job over hours (a surge, a hot partition, a hot key, a slow decline,
//! noisy measurements) that prints its decisions.

use std::collections::BTreeMap;

use eddy_api::spec::PodAssignment;

use super::{
    decide,
    pack::{moves, pack, pods_needed},
    Action, Bounds, Decision, History, Memory, PartitionLoad, Sample,
};

const MIN: i64 = 60_000;

fn bounds() -> Bounds {
    Bounds {
        min_pods: 1,
        max_pods: 8,
        target_utilization: 0.7,
        hot_partition_share: 0.5,
        hot_key_share: 0.3,
        lag_threshold_s: 120.0,
        stabilization_ms: 5 * MIN,
        cooldown_ms: 10 * MIN,
        scale_in_after_ms: 30 * MIN,
        catch_up_s: 300.0,
        window_ms: 15 * MIN,
    }
}

/// An assignment: pod `i` owns `of[i]`.
pub(super) fn pods(of: &[&[u32]]) -> Vec<PodAssignment> {
    of.iter()
        .enumerate()
        .map(|(i, p)| PodAssignment {
            ordinal: i as u32,
            partitions: p.to_vec(),
        })
        .collect()
}

#[test]
fn pods_needed_packs_by_load_and_gives_a_heavy_partition_its_own() {
    assert_eq!(pods_needed([0.3; 8], 0.7), 4);
    assert_eq!(pods_needed([0.1; 8], 0.7), 2);
    assert_eq!(
        pods_needed([1.5, 0.1, 0.1], 0.7),
        2,
        "1.5 alone, the rest together"
    );
    assert_eq!(pods_needed([], 0.7), 1);
}

#[test]
fn packing_moves_only_what_must_move() {
    let current = pods(&[&[0, 1, 2, 3], &[4, 5, 6, 7]]);
    let even: BTreeMap<u32, f64> = (0..8).map(|p| (p, 0.3)).collect();
    let out = pack(&current, &even, 4, 0.7, None);
    assert_eq!(out.len(), 4);
    assert!(out.iter().all(|p| p.partitions.len() == 2), "{out:?}");
    assert_eq!(moves(&current, &out), 4, "two off each full pod");
    // Scaling in: only the leaving pod's partitions move.
    let light: BTreeMap<u32, f64> = (0..8).map(|p| (p, 0.05)).collect();
    let three = pods(&[&[0, 1, 2], &[3, 4, 5], &[6, 7]]);
    let out = pack(&three, &light, 2, 0.7, None);
    assert_eq!(moves(&three, &out), 2, "{out:?}");
    // Same pods, nothing above capacity: nothing moves.
    assert_eq!(moves(&three, &pack(&three, &light, 3, 0.7, None)), 0);
}

#[test]
fn an_isolated_partition_keeps_its_pod_alone() {
    let current = pods(&[&[0, 1, 2, 3], &[4, 5, 6, 7]]);
    let mut loads: BTreeMap<u32, f64> = (0..8).map(|p| (p, 0.1)).collect();
    loads.insert(2, 0.6);
    let out = pack(&current, &loads, 3, 0.7, Some(2));
    assert_eq!(out[0].partitions, [2], "{out:?}");
    let others: Vec<u32> = out[1..].iter().flat_map(|p| p.partitions.clone()).collect();
    assert_eq!(others.len(), 7);
}

/// A look at a job whose partitions each process `rate` events/s at a
/// cost of 1e-4 pod-seconds each, with `backlog` waiting.
fn look(at_ms: i64, rates: &[f64], backlog: f64, lag_s: f64) -> Sample {
    Sample {
        at_ms,
        partitions: rates
            .iter()
            .enumerate()
            .map(|(p, rate)| PartitionLoad {
                partition: p as u32,
                rate: *rate,
                busy: rate * 1e-4,
                backlog,
                top_key: None,
            })
            .collect(),
        checkpoint_lag_s: lag_s,
        alerts: Vec::new(),
    }
}

fn run(samples: &[Sample], assignment: &[PodAssignment], memory: &Memory) -> Decision {
    run_with(&bounds(), samples, assignment, memory)
}

fn run_with(
    bounds: &Bounds,
    samples: &[Sample],
    assignment: &[PodAssignment],
    memory: &Memory,
) -> Decision {
    let mut history = History::default();
    for s in samples {
        history.push(s.clone(), bounds.history_ms());
    }
    let now = samples.last().map_or(0, |s| s.at_ms);
    decide(&history, assignment, bounds, memory, now)
}

#[test]
fn a_shortfall_waits_for_the_stabilization_window_then_scales_to_the_measured_need() {
    let two = pods(&[&[0, 1, 2, 3], &[4, 5, 6, 7]]);
    // Every partition at 3000 events/s with a growing backlog: 4 pods.
    let surge: Vec<Sample> = (0..=10)
        .map(|i| look(i * 30_000, &[3_000.0; 8], 1_000.0 * i as f64, 10.0))
        .collect();
    let early = run(&surge[..6], &two, &Memory::default());
    assert_eq!(
        early.action,
        Action::None,
        "2.5 min: not yet ({})",
        early.reason
    );
    let d = run(&surge, &two, &Memory::default());
    assert_eq!(d.action, Action::ScaleOut { to: 4 }, "{}", d.reason);
    assert!(d.reason.contains("events/s"), "{}", d.reason);
    assert_eq!(d.assignment.as_ref().map(Vec::len), Some(4));
    // Within the cooldown of that: blocked, and said so.
    let mut memory = Memory::default();
    memory.record(&Decision {
        at_ms: 0,
        ..d.clone()
    });
    let blocked = run(&surge, &two, &memory);
    assert_eq!(blocked.action, Action::Blocked, "{}", blocked.reason);
    assert!(blocked.reason.contains("cooldown"), "{}", blocked.reason);
}

#[test]
fn the_bound_stops_a_scale_out_and_says_so() {
    let four = pods(&[&[0, 1], &[2, 3], &[4, 5], &[6, 7]]);
    // Half a pod each: two no longer fit in one pod at 70%.
    let surge: Vec<Sample> = (0..=12)
        .map(|i| look(i * 30_000, &[5_000.0; 8], 0.0, 10.0))
        .collect();
    let at_most_four = Bounds {
        max_pods: 4,
        ..bounds()
    };
    let d = run_with(&at_most_four, &surge, &four, &Memory::default());
    assert_eq!(d.action, Action::Blocked, "{}", d.reason);
    assert!(d.reason.contains("maxReplicas"), "{}", d.reason);
}

#[test]
fn one_hot_key_is_reported_and_never_scaled_for() {
    let two = pods(&[&[0, 1, 2, 3], &[4, 5, 6, 7]]);
    let samples: Vec<Sample> = (0..=12)
        .map(|i| {
            let mut s = look(i * 30_000, &[500.0; 8], 0.0, 400.0);
            // Partition 5 saturates its pod with one key; checkpoints lag.
            s.partitions[5].rate = 9_000.0;
            s.partitions[5].busy = 0.9;
            s.partitions[5].backlog = 100_000.0 * i as f64;
            s.partitions[5].top_key = Some(("merchant-42".into(), 0.92));
            s
        })
        .collect();
    let d = run(&samples, &two, &Memory::default());
    assert!(
        matches!(&d.action, Action::HotKey { partition: 5, key, .. } if key == "merchant-42"),
        "{d:?}"
    );
    assert!(d.reason.contains("twoPhase"), "{}", d.reason);
    let mut memory = Memory::default();
    memory.record(&d);
    let next = run(&samples, &two, &memory);
    assert!(
        !matches!(next.action, Action::ScaleOut { .. }),
        "no scale-out for one key: {next:?}"
    );
}

#[test]
fn an_idle_job_scales_in_only_after_the_idle_period() {
    let four = pods(&[&[0, 1], &[2, 3], &[4, 5], &[6, 7]]);
    let quiet: Vec<Sample> = (0..=70)
        .map(|i| look(i * 30_000, &[300.0; 8], 0.0, 10.0))
        .collect();
    let d = run(&quiet[..50], &four, &Memory::default());
    assert_eq!(d.action, Action::None, "25 min: not yet ({})", d.reason);
    let d = run(&quiet, &four, &Memory::default());
    assert_eq!(d.action, Action::ScaleIn { to: 1 }, "{}", d.reason);
}

/// The simulated job: 8 partitions, each event costs 1e-4 pod-seconds.
struct Job {
    assignment: Vec<PodAssignment>,
    backlog: [f64; 8],
    lag_s: f64,
    /// A deterministic source of measurement noise.
    seed: u64,
}

const COST: f64 = 1e-4;
const HOUR: i64 = 60 * MIN;

/// Events/s arriving per partition at `t`, and the hot key if any.
fn arrivals(t: i64) -> ([f64; 8], Option<(usize, f64)>) {
    let h = t as f64 / HOUR as f64;
    match h {
        h if h < 1.0 => ([400.0; 8], None),
        h if h < 2.5 => ([3_000.0; 8], None),
        h if h < 4.0 => {
            let mut a = [1_000.0; 8];
            a[3] = 8_000.0;
            (a, None)
        }
        h if h < 5.5 => {
            let mut a = [1_000.0; 8];
            a[5] = 15_000.0;
            (a, Some((5, 0.9)))
        }
        // A slow decline to 200 events/s per partition.
        h => ([1_000.0 - 800.0 * ((h - 5.5) / 2.5).min(1.0); 8], None),
    }
}

impl Job {
    fn noise(&mut self) -> f64 {
        self.seed = self
            .seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        1.0 + ((self.seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 0.1
    }

    /// Runs `dt_s` seconds: every pod gives its partitions its time in
    /// proportion to what they ask for; returns the look at the end.
    fn step(&mut self, t: i64, dt_s: f64) -> Sample {
        let (arrive, hot) = arrivals(t);
        let mut processed = [0.0; 8];
        let mut saturated = false;
        for pod in &self.assignment {
            let ask: f64 = pod
                .partitions
                .iter()
                .map(|p| (arrive[*p as usize] + self.backlog[*p as usize] / dt_s) * COST)
                .sum();
            let scale = if ask > 1.0 { 1.0 / ask } else { 1.0 };
            saturated |= ask > 1.0;
            for &p in &pod.partitions {
                let p = p as usize;
                processed[p] = (arrive[p] + self.backlog[p] / dt_s) * scale;
                self.backlog[p] = (self.backlog[p] + (arrive[p] - processed[p]) * dt_s).max(0.0);
            }
        }
        self.lag_s = if saturated { self.lag_s + dt_s } else { 10.0 };
        let mut partitions = Vec::new();
        for (p, done) in processed.iter().enumerate() {
            let noise = self.noise();
            partitions.push(PartitionLoad {
                partition: p as u32,
                rate: done * noise,
                busy: done * COST * noise,
                backlog: self.backlog[p],
                top_key: Some(match hot {
                    Some((h, share)) if h == p => ("merchant-42".into(), share),
                    _ => (format!("user-{p}"), 0.02),
                }),
            });
        }
        Sample {
            at_ms: t,
            partitions,
            checkpoint_lag_s: self.lag_s,
            alerts: Vec::new(),
        }
    }
}

#[test]
fn eight_simulated_hours_react_in_time_within_bounds_without_flapping() {
    let bounds = bounds();
    let mut job = Job {
        assignment: pods(&[&[0, 1, 2, 3], &[4, 5, 6, 7]]),
        backlog: [0.0; 8],
        lag_s: 10.0,
        seed: 7,
    };
    let (mut history, mut memory) = (History::default(), Memory::default());
    let interval = 30_000;
    let mut decisions: Vec<Decision> = Vec::new();
    let mut sizes = Vec::new();
    for tick in 1..=(8 * HOUR / interval) {
        let t = tick * interval;
        history.push(job.step(t, interval as f64 / 1000.0), bounds.history_ms());
        let d = decide(&history, &job.assignment, &bounds, &memory, t);
        let n = job.assignment.len() as u32;
        assert!((bounds.min_pods..=bounds.max_pods).contains(&n));
        memory.record(&d);
        if let Some(next) = d.assignment.clone().filter(|_| d.action.changes()) {
            job.assignment = next;
        }
        let repeated = decisions.last().is_some_and(|last: &Decision| {
            last.action.event_reason() == d.action.event_reason() && last.reason == d.reason
        });
        if d.action != Action::None && !repeated {
            println!(
                "{:>5.2} h  {:<20} {} pods -> {}: {}",
                t as f64 / HOUR as f64,
                d.action.event_reason(),
                n,
                job.assignment.len(),
                d.reason
            );
        }
        if d.action != Action::None {
            decisions.push(d);
        }
        sizes.push((t, job.assignment.len()));
    }
    let when = |f: &dyn Fn(&Action) -> bool, after: i64| {
        decisions
            .iter()
            .find(|d| d.at_ms >= after && f(&d.action))
            .map(|d| d.at_ms)
    };
    // The quiet first hour: one scale-in, after the idle period.
    let first_in = when(&|a| matches!(a, Action::ScaleIn { .. }), 0).expect("a scale-in");
    assert!(first_in >= bounds.scale_in_after_ms, "{first_in}");
    // The surge at 1 h: scaled out within the stabilization window plus
    // one interval (the first look that sees it comes an interval later).
    let out = when(&|a| matches!(a, Action::ScaleOut { .. }), HOUR).expect("a scale-out");
    assert!(
        out - HOUR <= bounds.stabilization_ms + 2 * interval,
        "reacted after {} s",
        (out - HOUR) / 1000
    );
    // The hot partition: isolated.
    let isolated = when(
        &|a| matches!(a, Action::Isolate { partition: 3 }),
        150 * MIN,
    );
    assert!(isolated.is_some_and(|t| t < 4 * HOUR), "{isolated:?}");
    // The hot key: reported, and no scale-out while it alone is short.
    let reported = when(
        &|a| matches!(a, Action::HotKey { partition: 5, .. }),
        4 * HOUR,
    );
    assert!(
        reported.is_some_and(|t| t < 4 * HOUR + 20 * MIN),
        "{reported:?}"
    );
    let scaled_for_key = decisions.iter().any(|d| {
        (4 * HOUR + 20 * MIN..(11 * HOUR) / 2).contains(&d.at_ms)
            && matches!(d.action, Action::ScaleOut { .. })
    });
    assert!(!scaled_for_key, "scaled out for one key");
    // The decline: scaled in, lazily, and never out again.
    let end = sizes.last().unwrap().1;
    let peak = sizes.iter().map(|s| s.1).max().unwrap();
    assert!(end < peak, "ends on {end} pods, peaked at {peak}");
    // No flapping: a change of direction never within two cooldowns.
    let changes: Vec<&Decision> = decisions.iter().filter(|d| d.action.changes()).collect();
    for pair in changes.windows(2) {
        assert!(
            pair[1].at_ms - pair[0].at_ms >= bounds.cooldown_ms,
            "{:?} then {:?} too soon",
            pair[0].action,
            pair[1].action
        );
    }
    assert!(changes.len() <= 10, "{} changes", changes.len());
}
