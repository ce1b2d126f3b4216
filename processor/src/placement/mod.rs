//! Which partitions this processor owns, when the operator runs it as one
//! pod of a StatefulSet: the rendered config carries the assignment
//! (`{version, pods: [{ordinal, partitions}]}`, or the bare list of an
//! older operator, version 0), and the pod's name ends in its ordinal.

use eddy_api::spec::{PodAssignment, RenderedAssignment};
use serde::Deserialize;

mod current;

pub use current::current;

/// What the assignment gives one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The assignment's version (`status.assignmentVersion`).
    pub version: u64,
    pub partitions: Vec<u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Either {
    Versioned(RenderedAssignment),
    List(Vec<PodAssignment>),
}

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
pub fn owned(assignment_yaml: &str, pod_name: &str) -> Result<Placement, String> {
    let (version, pods) = match serde_yaml_ng::from_str(assignment_yaml) {
        Ok(Either::Versioned(a)) => (a.version, a.pods),
        Ok(Either::List(pods)) => (0, pods),
        Err(e) => {
            return Err(format!(
                "the assignment is not {{version, pods: [{{ordinal, partitions}}]}}: {e}"
            ))
        }
    };
    let ordinal = ordinal(pod_name)?;
    match pods.into_iter().find(|a| a.ordinal == ordinal) {
        Some(a) if !a.partitions.is_empty() => Ok(Placement {
            version,
            partitions: a.partitions,
        }),
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
        let of = |yaml, pod| owned(yaml, pod).unwrap();
        assert_eq!(of(ASSIGNMENT, "merchant-revenue-0").partitions, [0, 1, 2]);
        assert_eq!(of(ASSIGNMENT, "merchant-revenue-1").partitions, [3, 4]);
        assert_eq!(of(ASSIGNMENT, "merchant-revenue-1").version, 0);
        let versioned = format!("version: 7\npods:\n{}", ASSIGNMENT.replace("- ", "  - "));
        let placed = of(&versioned, "merchant-revenue-1");
        assert_eq!(placed.version, 7);
        assert_eq!(placed.partitions, [3, 4]);
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
            .contains("is not {version"));
    }
}
