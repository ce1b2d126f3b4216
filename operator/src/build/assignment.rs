//! Which partitions each processor pod owns.
//!
//! The assignment is explicit: the operator stores it in the job's status
//! and renders it into the ConfigMap (`assignment.yaml`), and each pod reads
//! its own entry by ordinal. That lets a later step move single partitions
//! (to isolate a hot one) without changing the others.

use eddy_api::spec::PodAssignment;

/// `partitions` spread over `replicas` pods in contiguous ranges: pod 0
/// owns the first range, and the first `partitions % replicas` pods own one
/// partition more than the rest. No pods for zero replicas; pods beyond the
/// number of partitions would get nothing and are left out.
pub fn spread(partitions: u32, replicas: u32) -> Vec<PodAssignment> {
    let replicas = replicas.min(partitions);
    if replicas == 0 {
        return Vec::new();
    }
    let base = partitions / replicas;
    let extra = partitions % replicas;
    let mut next = 0;
    (0..replicas)
        .map(|ordinal| {
            let size = base + u32::from(ordinal < extra);
            let owned = (next..next + size).collect();
            next += size;
            PodAssignment {
                ordinal,
                partitions: owned,
            }
        })
        .collect()
}

/// `previous` when it is still a valid assignment for these numbers,
/// otherwise a fresh [`spread`]. Keeping it preserves partition moves made
/// earlier (and avoids rolling pods for nothing).
pub fn keep_or_spread(
    previous: &[PodAssignment],
    partitions: u32,
    replicas: u32,
) -> Vec<PodAssignment> {
    if is_valid(previous, partitions, replicas) {
        previous.to_vec()
    } else {
        spread(partitions, replicas)
    }
}

/// The version of assignment `now`, which follows `previous` (at
/// `version`): the same while it is the same, else above both `version`
/// and `moving`, the version a move in progress told its pods. A move that
/// reached its target takes the version it told (see
/// `eddy_processor::placement`: a pod started on an older version than a
/// checkpoint of its partitions waits for a newer one).
pub fn version_of(
    now: &[PodAssignment],
    previous: &[PodAssignment],
    version: u64,
    moving: Option<u64>,
) -> u64 {
    if now == previous {
        version
    } else {
        (version + 1).max(moving.unwrap_or(0))
    }
}

/// Ordinals are exactly `0..replicas` in order, no pod is empty, and every
/// partition in `0..partitions` is owned exactly once.
pub fn is_valid(assignment: &[PodAssignment], partitions: u32, replicas: u32) -> bool {
    if assignment.len() != replicas as usize {
        return false;
    }
    let mut owned = vec![false; partitions as usize];
    for (i, pod) in assignment.iter().enumerate() {
        if pod.ordinal as usize != i || pod.partitions.is_empty() {
            return false;
        }
        for &p in &pod.partitions {
            match owned.get_mut(p as usize) {
                Some(seen @ false) => *seen = true,
                _ => return false,
            }
        }
    }
    owned.iter().all(|seen| *seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_rise_with_every_change_and_past_a_move_in_progress() {
        let a = [pod(0, &[0, 1]), pod(1, &[2, 3])];
        let b = [pod(0, &[0]), pod(1, &[1, 2, 3])];
        assert_eq!(version_of(&a, &a, 4, None), 4, "unchanged");
        assert_eq!(version_of(&b, &a, 4, None), 5);
        assert_eq!(version_of(&b, &a, 4, Some(5)), 5, "the move's own");
        assert_eq!(version_of(&b, &a, 4, Some(9)), 9);
        assert_eq!(version_of(&b, &a, 9, Some(5)), 10, "never back");
    }

    fn pod(ordinal: u32, partitions: &[u32]) -> PodAssignment {
        PodAssignment {
            ordinal,
            partitions: partitions.to_vec(),
        }
    }

    fn ranges(a: &[PodAssignment]) -> Vec<Vec<u32>> {
        a.iter().map(|p| p.partitions.clone()).collect()
    }

    #[test]
    fn even_uneven_one_pod_and_one_partition_per_pod() {
        assert_eq!(
            ranges(&spread(12, 3)),
            vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9, 10, 11]]
        );
        assert_eq!(
            ranges(&spread(8, 3)),
            vec![vec![0, 1, 2], vec![3, 4, 5], vec![6, 7]]
        );
        assert_eq!(
            ranges(&spread(7, 4)),
            vec![vec![0, 1], vec![2, 3], vec![4, 5], vec![6]]
        );
        assert_eq!(ranges(&spread(5, 1)), vec![vec![0, 1, 2, 3, 4]]);
        assert_eq!(ranges(&spread(3, 3)), vec![vec![0], vec![1], vec![2]]);
        let ordinals: Vec<u32> = spread(7, 4).iter().map(|p| p.ordinal).collect();
        assert_eq!(ordinals, vec![0, 1, 2, 3]);
    }

    #[test]
    fn zero_replicas_is_empty() {
        assert!(spread(8, 0).is_empty());
        assert!(spread(0, 0).is_empty());
    }

    #[test]
    fn every_spread_covers_balances_and_is_contiguous() {
        for n in 1..=64u32 {
            for m in 1..=n {
                let a = spread(n, m);
                assert_eq!(a.len(), m as usize, "{n} over {m}");
                assert!(is_valid(&a, n, m), "{n} over {m}: {a:?}");
                let sizes: Vec<usize> = a.iter().map(|p| p.partitions.len()).collect();
                let (min, max) = (sizes.iter().min(), sizes.iter().max());
                assert!(max.unwrap() - min.unwrap() <= 1, "{n} over {m}: {sizes:?}");
                // Contiguous: concatenated in ordinal order they count 0..n.
                let flat: Vec<u32> = a.iter().flat_map(|p| p.partitions.clone()).collect();
                assert_eq!(flat, (0..n).collect::<Vec<_>>(), "{n} over {m}");
                // Larger pods come first.
                assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
            }
        }
    }

    #[test]
    fn keeps_a_valid_previous_assignment() {
        // Partition 3 moved from pod 0 to pod 1 earlier: kept as is.
        let moved = vec![pod(0, &[0, 1, 2]), pod(1, &[3, 4, 5, 6, 7])];
        assert_eq!(keep_or_spread(&moved, 8, 2), moved);
    }

    #[test]
    fn replaces_an_invalid_previous_assignment() {
        let fresh = spread(8, 2);
        let cases: Vec<(&str, Vec<PodAssignment>)> = vec![
            ("none yet", vec![]),
            ("wrong pod count", spread(8, 4)),
            ("wrong partition count", spread(6, 2)),
            (
                "partition twice",
                vec![pod(0, &[0, 1, 2, 3]), pod(1, &[3, 4, 5, 6, 7])],
            ),
            (
                "partition missing",
                vec![pod(0, &[0, 1, 2]), pod(1, &[4, 5, 6, 7])],
            ),
            (
                "partition out of range",
                vec![pod(0, &[0, 1, 2, 3]), pod(1, &[4, 5, 6, 7, 8])],
            ),
            (
                "empty pod",
                vec![pod(0, &[0, 1, 2, 3, 4, 5, 6, 7]), pod(1, &[])],
            ),
            (
                "ordinals out of order",
                vec![pod(1, &[0, 1, 2, 3]), pod(0, &[4, 5, 6, 7])],
            ),
        ];
        for (what, previous) in cases {
            assert_eq!(keep_or_spread(&previous, 8, 2), fresh, "{what}");
        }
    }
}
