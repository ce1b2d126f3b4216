//! The PodDisruptionBudget: voluntary disruptions (node drains) take one
//! processor pod at a time. A missing pod stalls only its own partitions,
//! and it restores from the last checkpoint when it comes back.

use k8s_openapi::{
    api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};

use super::{names, Owner};

/// PodDisruptionBudget `<job>`: `maxUnavailable: 1` over the job's pods.
pub(crate) fn pdb(owner: &Owner) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: owner.meta(names::pdb(&owner.name)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(names::selector(&owner.name)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}
