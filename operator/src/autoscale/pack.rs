//! Placing partitions on pods by measured load, moving as few as possible.

use std::collections::BTreeMap;

use eddy_api::spec::PodAssignment;

/// Pods needed to hold `loads` (shares of a pod) with each pod used up to
/// `capacity`, first fit decreasing; a partition heavier than that gets a
/// pod of its own (no pod can split it).
pub fn pods_needed(loads: impl IntoIterator<Item = f64>, capacity: f64) -> u32 {
    let mut loads: Vec<f64> = loads.into_iter().map(|l| l.max(0.0)).collect();
    loads.sort_by(|a, b| b.total_cmp(a));
    let mut pods: Vec<f64> = Vec::new();
    for load in loads {
        match pods.iter_mut().find(|used| **used + load <= capacity) {
            Some(used) => *used += load,
            None => pods.push(load),
        }
    }
    pods.len().max(1) as u32
}

/// Moves a rebalance may make, at most.
const MAX_MOVES: usize = 64;

/// A placement of every partition of `loads` on `pods` pods, starting from
/// `current`: partitions stay where they are unless their pod goes away
/// (ordinals from `pods` on), `isolate` needs a pod of its own, or a pod is
/// above `capacity`, and then the fewest are moved, heaviest first, to the
/// least loaded pod. No pod is left empty.
pub fn pack(
    current: &[PodAssignment],
    loads: &BTreeMap<u32, f64>,
    pods: u32,
    capacity: f64,
    isolate: Option<u32>,
) -> Vec<PodAssignment> {
    let pods = (pods as usize).clamp(1, loads.len().max(1));
    let load = |p: &u32| loads.get(p).copied().unwrap_or(0.0);
    let mut bins: Vec<Vec<u32>> = vec![Vec::new(); pods];
    let mut homeless: Vec<u32> = Vec::new();
    let mut placed = std::collections::BTreeSet::new();
    for pod in current {
        for &p in &pod.partitions {
            if !loads.contains_key(&p) || !placed.insert(p) {
                continue;
            }
            match bins.get_mut(pod.ordinal as usize) {
                Some(bin) => bin.push(p),
                None => homeless.push(p),
            }
        }
    }
    homeless.extend(loads.keys().filter(|p| !placed.contains(*p)));
    // The isolated partition keeps its pod (or takes the emptiest) and
    // everything else there moves.
    let mut closed = None;
    if let Some(hot) = isolate.filter(|p| loads.contains_key(p)) {
        let home = bins
            .iter()
            .position(|b| b.contains(&hot))
            .unwrap_or_else(|| least(&bins, &load, None));
        homeless.retain(|p| *p != hot);
        for bin in bins.iter_mut() {
            bin.retain(|p| *p != hot);
        }
        homeless.append(&mut bins[home]);
        bins[home].push(hot);
        closed = Some(home).filter(|_| pods > 1);
    }
    homeless.sort_by(|a, b| load(b).total_cmp(&load(a)).then(a.cmp(b)));
    for p in homeless {
        let to = least(&bins, &load, closed);
        bins[to].push(p);
    }
    // Pods above capacity give their partitions to the least loaded, while
    // that lowers the higher of the two.
    for _ in 0..MAX_MOVES {
        let total = |b: &Vec<u32>| b.iter().map(load).sum::<f64>();
        let Some(hi) = (0..pods)
            .filter(|i| Some(*i) != closed && bins[*i].len() > 1)
            .max_by(|a, b| total(&bins[*a]).total_cmp(&total(&bins[*b])))
        else {
            break;
        };
        let lo = least(&bins, &load, closed);
        let (hi_load, lo_load) = (total(&bins[hi]), total(&bins[lo]));
        if hi == lo || hi_load <= capacity {
            break;
        }
        let best = bins[hi]
            .iter()
            .copied()
            .filter(|p| (lo_load + load(p)).max(hi_load - load(p)) < hi_load - 1e-9)
            .min_by(|a, b| {
                let after = |p: &u32| (lo_load + load(p)).max(hi_load - load(p));
                after(a).total_cmp(&after(b))
            });
        let Some(p) = best else { break };
        bins[hi].retain(|q| *q != p);
        bins[lo].push(p);
    }
    // No pod empty: the pod with the most partitions gives its lightest.
    while let Some(empty) = bins.iter().position(Vec::is_empty) {
        let Some(from) = (0..pods)
            .max_by_key(|i| bins[*i].len())
            .filter(|i| bins[*i].len() > 1)
        else {
            break;
        };
        let lightest = *bins[from]
            .iter()
            .min_by(|a, b| load(a).total_cmp(&load(b)))
            .expect("a pod with partitions");
        bins[from].retain(|q| *q != lightest);
        bins[empty].push(lightest);
    }
    bins.into_iter()
        .enumerate()
        .map(|(ordinal, mut partitions)| {
            partitions.sort_unstable();
            PodAssignment {
                ordinal: ordinal as u32,
                partitions,
            }
        })
        .collect()
}

/// The least loaded pod (fewest partitions on a tie), other than `closed`.
fn least(bins: &[Vec<u32>], load: &impl Fn(&u32) -> f64, closed: Option<usize>) -> usize {
    (0..bins.len())
        .filter(|i| Some(*i) != closed)
        .min_by(|a, b| {
            let total = |i: &usize| bins[*i].iter().map(load).sum::<f64>();
            total(a)
                .total_cmp(&total(b))
                .then(bins[*a].len().cmp(&bins[*b].len()))
        })
        .unwrap_or(0)
}

/// Partitions that change pods between two assignments.
pub fn moves(from: &[PodAssignment], to: &[PodAssignment]) -> usize {
    let owner = |a: &[PodAssignment]| -> BTreeMap<u32, u32> {
        a.iter()
            .flat_map(|pod| pod.partitions.iter().map(move |p| (*p, pod.ordinal)))
            .collect()
    };
    let (before, after) = (owner(from), owner(to));
    after
        .iter()
        .filter(|(p, o)| before.get(p) != Some(o))
        .count()
}
