//! Which partitions this processor owns, when the operator runs it as one
//! pod of a StatefulSet: the rendered config carries the assignment (a list
//! of `{ordinal, partitions}`), and the pod's name ends in its ordinal.

use eddy_api::spec::PodAssignment;

/// The ordinal at the end of a StatefulSet pod's name (`orders-2` → 2).
pub fn ordinal(pod_name: &str) -> Result<u32, String> {
    pod_name
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .ok_or_else(|| {
            format!("pod name {pod_name:?} does not end in -<ordinal> as StatefulSet pods do")
        })
}

/// The partitions the assignment gives pod `pod_name`.
pub fn owned(assignment_yaml: &str, pod_name: &str) -> Result<Vec<u32>, String> {
    let assignment: Vec<PodAssignment> = serde_yaml_ng::from_str(assignment_yaml)
        .map_err(|e| format!("the assignment is not a list of {{ordinal, partitions}}: {e}"))?;
    let ordinal = ordinal(pod_name)?;
    match assignment.into_iter().find(|a| a.ordinal == ordinal) {
        Some(a) if !a.partitions.is_empty() => Ok(a.partitions),
        _ => Err(format!(
            "the assignment gives pod {pod_name} (ordinal {ordinal}) no partitions"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASSIGNMENT: &str =
        "- {ordinal: 0, partitions: [0, 1, 2]}\n- {ordinal: 1, partitions: [3, 4]}\n";

    #[test]
    fn a_pod_finds_its_partitions_by_ordinal() {
        assert_eq!(
            owned(ASSIGNMENT, "merchant-revenue-0").unwrap(),
            vec![0, 1, 2]
        );
        assert_eq!(owned(ASSIGNMENT, "merchant-revenue-1").unwrap(), vec![3, 4]);
    }

    #[test]
    fn unknown_ordinals_and_odd_names_are_errors() {
        let e = owned(ASSIGNMENT, "merchant-revenue-2").unwrap_err();
        assert!(e.contains("ordinal 2"), "{e}");
        assert!(owned(ASSIGNMENT, "revenue")
            .unwrap_err()
            .contains("-<ordinal>"));
        assert!(owned("ordinal: 0", "x-0")
            .unwrap_err()
            .contains("not a list"));
    }
}
