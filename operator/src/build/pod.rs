//! The processor pod template, before the user's `spec.podTemplate` is
//! merged over it: one hardened `processor` container reading its config
//! from the ConfigMap, its state directory on the `state` volume, secrets
//! only by reference.

use std::collections::BTreeMap;

use eddy_api::{ByteSize, StreamJob};
use k8s_openapi::{
    api::core::v1::{
        Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
        EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, PodSecurityContext, PodSpec,
        PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecurityContext, Volume,
        VolumeMount,
    },
    apimachinery::pkg::{api::resource::Quantity, util::intstr::IntOrString},
};
use kube::api::ObjectMeta;

use super::{
    names,
    secrets::{self, SECRETS_DIR},
    service::{ADMIN_PORT, ADMIN_PORT_NAME, METRICS_PORT, METRICS_PORT_NAME},
    BuildError, Context, Owner,
};

/// Name of the processor container (merge a `spec.podTemplate` container
/// of this name to change it).
pub const CONTAINER: &str = "processor";
/// Where the ConfigMap is mounted.
pub const CONFIG_DIR: &str = "/etc/eddy/config";
/// Where the `state` volume is mounted; also the working directory, so a
/// relative `file://` checkpoint store lands on the volume.
pub const STATE_MOUNT: &str = "/var/lib/eddy";
/// The processor's state directory (emptied by the processor at start).
pub const STATE_DIR: &str = "/var/lib/eddy/state";
/// Name of the state volume (an emptyDir or the volume claim template).
pub const STATE_VOLUME: &str = "state";
/// User, group and fsGroup the processor runs as (distroless `nonroot`).
pub const RUN_AS: i64 = 65532;
/// Time a pod gets after SIGTERM to take its final checkpoint.
pub const TERMINATION_GRACE_SECONDS: i64 = 120;

/// The pod template; `state` is the state volume when it is an emptyDir
/// (`None` when a volume claim template provides it), `state_epoch` the
/// epoch its processors checkpoint in and restore from.
pub(crate) fn template(
    job: &StreamJob,
    owner: &Owner,
    ctx: &Context,
    config_hash: &str,
    state: Option<Volume>,
    state_epoch: u64,
) -> Result<PodTemplateSpec, BuildError> {
    let spec = &job.spec;
    let mut volumes = vec![
        config_volume(&owner.name),
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    volumes.extend(state);
    let mut mounts = vec![
        mount("config", CONFIG_DIR, true),
        mount("tmp", "/tmp", false),
        mount(STATE_VOLUME, STATE_MOUNT, false),
    ];
    for (volume, m) in secrets::volumes(spec) {
        volumes.push(volume);
        mounts.push(m);
    }
    let resources = match &spec.resources {
        Some(r) => r.clone(),
        None => default_resources(&spec.state.memory_budget)?,
    };
    let container = Container {
        name: CONTAINER.into(),
        image: Some(image(job, ctx)),
        args: Some(args()),
        working_dir: Some(STATE_MOUNT.into()),
        env: Some(env(job, state_epoch)),
        ports: Some(vec![
            ContainerPort {
                name: Some(ADMIN_PORT_NAME.into()),
                container_port: ADMIN_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some(METRICS_PORT_NAME.into()),
                container_port: METRICS_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
        ]),
        startup_probe: Some(probe("/healthz", 5, 120)),
        liveness_probe: Some(probe("/healthz", 10, 3)),
        readiness_probe: Some(probe("/readyz", 5, 3)),
        resources: Some(resources),
        security_context: Some(container_security()),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    Ok(PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(names::labels(&owner.name)),
            annotations: Some(BTreeMap::from([(
                names::CONFIG_HASH_ANNOTATION.to_string(),
                config_hash.to_string(),
            )])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            volumes: Some(volumes),
            security_context: Some(pod_security()),
            termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
            // The processor never talks to the API server.
            automount_service_account_token: Some(false),
            ..PodSpec::default()
        }),
    })
}

/// The `config` volume: the job's ConfigMap, mounted at [`CONFIG_DIR`].
pub(crate) fn config_volume(job: &str) -> Volume {
    Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: names::config_map(job),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// The processor image: the job's own, else the operator's default.
pub(crate) fn image(job: &StreamJob, ctx: &Context) -> String {
    job.spec
        .image
        .clone()
        .unwrap_or_else(|| ctx.default_image.clone())
}

/// Where the rendered job is inside the pod.
pub fn job_file() -> String {
    format!("{CONFIG_DIR}/{}", super::config::JOB_KEY)
}

/// The processor's command line.
pub fn args() -> Vec<String> {
    vec![
        "run".into(),
        job_file(),
        "--assignment".into(),
        format!("{CONFIG_DIR}/{}", super::config::ASSIGNMENT_KEY),
        "--state-dir".into(),
        STATE_DIR.into(),
        "--admin-addr".into(),
        format!("0.0.0.0:{ADMIN_PORT}"),
        "--metrics-addr".into(),
        format!("0.0.0.0:{METRICS_PORT}"),
        "--external-checkpoints".into(),
        // A pod that exits is started again: at the end of a finite input
        // it waits, reporting `finished`, until the operator stops it.
        "--hold-when-finished".into(),
    ]
}

fn env(job: &StreamJob, state_epoch: u64) -> Vec<EnvVar> {
    let plain = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    };
    let mut env = vec![
        EnvVar {
            name: "POD_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: Some("v1".into()),
                    field_path: "metadata.name".into(),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        },
        plain("EDDY_SECRETS_DIR", SECRETS_DIR),
        plain("RUST_LOG", "info"),
    ];
    if state_epoch > 0 {
        // Only once a stateless change happened: the pods of every other
        // job keep the template (and its hash) they had.
        env.push(plain("EDDY_STATE_EPOCH", &state_epoch.to_string()));
    }
    env.extend(secrets::env(&job.spec));
    env
}

pub(crate) fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(ADMIN_PORT_NAME.into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// Resources when `spec.resources` is unset, from the state memory
/// budget: memory requests budget + 256Mi and limits budget + 512Mi (the
/// rest of the process around its state), 500m CPU requested, no CPU limit.
pub fn default_resources(budget: &ByteSize) -> Result<ResourceRequirements, BuildError> {
    let bytes = budget.parse().map_err(|e| BuildError::BadValue {
        path: "spec.state.memoryBudget",
        message: e.to_string(),
    })?;
    let mib = bytes.div_ceil(1 << 20);
    let memory = |extra: u64| Quantity(format!("{}Mi", mib + extra));
    Ok(ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("500m".into())),
            ("memory".to_string(), memory(256)),
        ])),
        limits: Some(BTreeMap::from([("memory".to_string(), memory(512))])),
        ..ResourceRequirements::default()
    })
}

pub(crate) fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        fs_group: Some(RUN_AS),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

pub(crate) fn container_security() -> SecurityContext {
    SecurityContext {
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Pairs<'a> = Vec<(&'a str, &'a str)>;

    fn list(m: &Option<BTreeMap<String, Quantity>>) -> Pairs<'_> {
        m.iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.0.as_str()))
            .collect()
    }

    fn quantities(r: &ResourceRequirements) -> (Pairs<'_>, Pairs<'_>) {
        (list(&r.requests), list(&r.limits))
    }

    #[test]
    fn default_resources_follow_the_memory_budget() {
        let r = default_resources(&"512Mi".into()).unwrap();
        assert_eq!(
            quantities(&r),
            (
                vec![("cpu", "500m"), ("memory", "768Mi")],
                vec![("memory", "1024Mi")]
            )
        );
        let r = default_resources(&"1Gi".into()).unwrap();
        assert_eq!(quantities(&r).1, vec![("memory", "1536Mi")]);
        // Decimal sizes round up to whole MiB: 100M = 95.4Mi.
        let r = default_resources(&"100M".into()).unwrap();
        assert_eq!(quantities(&r).0[1], ("memory", "352Mi"));
    }

    #[test]
    fn a_bad_budget_names_its_field() {
        let err = default_resources(&"lots".into()).unwrap_err();
        assert_eq!(err.reason(), "BadValue");
        assert!(err.to_string().contains("spec.state.memoryBudget"), "{err}");
    }
}
