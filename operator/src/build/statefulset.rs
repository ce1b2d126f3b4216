//! The StatefulSet running the processor pods: stable pod names (each pod
//! derives its ordinal, and so its partitions, from its name), all pods
//! started and replaced in parallel, and a state volume that is only disk
//! space: the processor empties it at start and restores from checkpoints,
//! so claims are deleted with the pods.

use eddy_api::{spec::StorageKind, StreamJob};
use k8s_openapi::{
    api::{
        apps::v1::{
            StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
            StatefulSetUpdateStrategy,
        },
        core::v1::{
            EmptyDirVolumeSource, PersistentVolumeClaim, PersistentVolumeClaimSpec,
            PodTemplateSpec, Volume, VolumeResourceRequirements,
        },
    },
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::LabelSelector},
};
use kube::api::ObjectMeta;

use super::{merge, names, pod, BuildError, Context, Owner, Runtime};

/// Pods the StatefulSet runs: none while suspended.
pub fn replicas(spec: &eddy_api::spec::StreamJobSpec) -> u32 {
    if spec.suspend {
        0
    } else {
        spec.parallelism
    }
}

/// The StatefulSet `<job>`; `config_hash` goes on the pod template.
pub(crate) fn stateful_set(
    job: &StreamJob,
    owner: &Owner,
    ctx: &Context,
    config_hash: &str,
    runtime: Runtime<'_>,
) -> Result<StatefulSet, BuildError> {
    let spec = &job.spec;
    let storage = &spec.state.storage;
    let size = Quantity(storage.size.as_str().to_string());
    let (state_volume, claims) = match storage.kind {
        StorageKind::EmptyDir => (
            Some(Volume {
                name: pod::STATE_VOLUME.into(),
                empty_dir: Some(EmptyDirVolumeSource {
                    size_limit: Some(size),
                    ..EmptyDirVolumeSource::default()
                }),
                ..Volume::default()
            }),
            None,
        ),
        StorageKind::PersistentVolumeClaim => (
            None,
            Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(pod::STATE_VOLUME.into()),
                    labels: Some(names::labels(&owner.name)),
                    ..ObjectMeta::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: storage.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some([("storage".to_string(), size)].into()),
                        ..VolumeResourceRequirements::default()
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                ..PersistentVolumeClaim::default()
            }]),
        ),
    };
    let built = pod::template(
        job,
        owner,
        ctx,
        config_hash,
        state_volume,
        runtime.state_epoch,
    )?;
    let template = match &spec.pod_template {
        Some(over) => overridden(built, over, &owner.name, config_hash)?,
        None => built,
    };
    let replicas = match runtime.parallelism {
        _ if runtime.finished => 0,
        Some(n) if replicas(spec) > 0 => n,
        _ => replicas(spec),
    };
    Ok(StatefulSet {
        metadata: owner.meta(names::stateful_set(&owner.name)),
        spec: StatefulSetSpec {
            replicas: Some(i32::try_from(replicas).map_err(|_| BuildError::BadValue {
                path: "spec.parallelism",
                message: format!("{replicas} is too large"),
            })?),
            service_name: Some(names::headless_service(&owner.name)),
            selector: LabelSelector {
                match_labels: Some(names::selector(&owner.name)),
                ..LabelSelector::default()
            },
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                ..StatefulSetUpdateStrategy::default()
            }),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Delete".into()),
                    when_scaled: Some("Delete".into()),
                },
            ),
            template,
            volume_claim_templates: claims,
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    })
}

/// `built` with the user's partial template merged over it. The labels the
/// selector and the controller depend on, and the config hash, are put
/// back afterwards: an override cannot detach the pods from their
/// StatefulSet.
fn overridden(
    built: PodTemplateSpec,
    over: &serde_json::Value,
    job: &str,
    config_hash: &str,
) -> Result<PodTemplateSpec, BuildError> {
    let bad = |message: String| BuildError::BadPodTemplate(message);
    let mut value = serde_json::to_value(&built).map_err(|e| bad(e.to_string()))?;
    merge::merge(&mut value, over);
    let mut template: PodTemplateSpec =
        serde_json::from_value(value.clone()).map_err(|e| bad(e.to_string()))?;
    let kept = serde_json::to_value(&template).map_err(|e| bad(e.to_string()))?;
    let dropped = merge::dropped_fields(&value, &kept);
    if !dropped.is_empty() {
        return Err(bad(format!("unknown fields {}", dropped.join(", "))));
    }
    let has_processor = template
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .any(|c| c.name == pod::CONTAINER);
    if !has_processor {
        return Err(bad(format!(
            "it removes the {:?} container; change that container by merging one of \
             the same name",
            pod::CONTAINER
        )));
    }
    let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    meta.labels
        .get_or_insert_with(Default::default)
        .extend(names::labels(job));
    meta.annotations
        .get_or_insert_with(Default::default)
        .insert(
            names::CONFIG_HASH_ANNOTATION.to_string(),
            config_hash.to_string(),
        );
    Ok(template)
}
