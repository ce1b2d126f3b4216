//! What the autoscaler applies: the pods it set in place of
//! `spec.parallelism`, and the partition moves from one assignment to the
//! next. Pure.

use eddy_api::spec::{PodAssignment, StreamJobSpec, StreamJobStatus};

/// The pods the autoscaler set, while `spec.parallelism` is still the one
/// it was set over (a new `spec.parallelism` wins, as `kubectl scale`
/// does over an HPA's last change).
pub fn parallelism_override(spec: &StreamJobSpec, status: Option<&StreamJobStatus>) -> Option<u32> {
    let a = status?.autoscaling.as_ref()?;
    let over = a.parallelism?;
    (spec.parallelism > 0 && a.based_on == Some(spec.parallelism) && over > 0).then_some(over)
}

/// One partition changing pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move {
    pub partition: u32,
    pub from: u32,
    pub to: u32,
}

/// The partitions whose pod differs between `current` and `target`, in
/// partition order. A partition that `current` does not place is not a
/// move (it has no pod to be released by).
pub fn moves(current: &[PodAssignment], target: &[PodAssignment]) -> Vec<Move> {
    let owner = |a: &[PodAssignment], p: u32| {
        a.iter()
            .find(|pod| pod.partitions.contains(&p))
            .map(|pod| pod.ordinal)
    };
    let mut out: Vec<Move> = target
        .iter()
        .flat_map(|pod| pod.partitions.iter().map(move |p| (*p, pod.ordinal)))
        .filter_map(|(partition, to)| {
            let from = owner(current, partition)?;
            (from != to).then_some(Move {
                partition,
                from,
                to,
            })
        })
        .collect();
    out.sort_by_key(|m| m.partition);
    out
}

/// Partitions the assignment gives a pod that no pod runs, as (partition,
/// ordinal), when every pod answered with what it runs (`running`, by
/// ordinal). A pod restarted on an assignment from before a move that gave
/// it a partition, before it checkpointed under the move's version, starts
/// without that partition (see `eddy_processor::placement`); it is given
/// the partition again rather than leave it unread.
pub fn unrun(assignment: &[PodAssignment], running: &[Vec<u32>]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = assignment
        .iter()
        .flat_map(|pod| pod.partitions.iter().map(move |p| (*p, pod.ordinal)))
        .filter(|(p, _)| !running.iter().any(|r| r.contains(p)))
        .collect();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use eddy_api::spec::AutoscalingStatus;

    use super::*;
    use crate::autoscale::tests::pods;

    #[test]
    fn partitions_no_pod_runs_are_given_to_their_pod_again() {
        let assigned = pods(&[&[0, 1], &[2, 3]]);
        assert_eq!(unrun(&assigned, &[vec![0, 1], vec![2, 3]]), []);
        assert_eq!(unrun(&assigned, &[vec![0], vec![2]]), [(1, 0), (3, 1)]);
        // Run elsewhere (a move not yet in the assignment): not unrun.
        assert_eq!(unrun(&assigned, &[vec![0], vec![1, 2, 3]]), []);
    }

    #[test]
    fn only_partitions_that_change_pods_move() {
        let current = pods(&[&[0, 1, 2, 3], &[4, 5, 6, 7]]);
        let isolate = pods(&[&[0], &[1, 2, 3, 4, 5, 6, 7]]);
        let partitions: Vec<u32> = moves(&current, &isolate)
            .iter()
            .map(|m| m.partition)
            .collect();
        assert_eq!(partitions, [1, 2, 3]);
        let out = pods(&[&[0, 1, 2], &[4, 5, 6], &[3, 7]]);
        assert_eq!(
            moves(&current, &out),
            [
                Move {
                    partition: 3,
                    from: 0,
                    to: 2
                },
                Move {
                    partition: 7,
                    from: 1,
                    to: 2
                }
            ]
        );
        let back = pods(&[&[0, 1, 2, 3, 4, 5, 6, 7]]);
        assert_eq!(moves(&current, &back).len(), 4, "everything off pod 1");
        assert!(moves(&current, &current).is_empty());
    }

    #[test]
    fn the_override_holds_while_spec_parallelism_stays() {
        let mut spec = crate::build::tests::spec();
        spec.parallelism = 2;
        let status = StreamJobStatus {
            autoscaling: Some(AutoscalingStatus {
                parallelism: Some(3),
                based_on: Some(2),
                ..AutoscalingStatus::default()
            }),
            ..StreamJobStatus::default()
        };
        assert_eq!(parallelism_override(&spec, Some(&status)), Some(3));
        spec.parallelism = 4;
        assert_eq!(
            parallelism_override(&spec, Some(&status)),
            None,
            "the user's wins"
        );
        spec.parallelism = 0;
        assert_eq!(
            parallelism_override(&spec, Some(&status)),
            None,
            "suspended"
        );
        assert_eq!(parallelism_override(&spec, None), None);
    }
}
