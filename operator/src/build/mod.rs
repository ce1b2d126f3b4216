//! Pure build functions: a StreamJob (and its partition assignment) in,
//! the Kubernetes objects that run it out. No API calls; the controller
//! applies what these return.
//!
//! One file per built object: [`config`] (ConfigMap), [`service`]
//! (headless and metrics Services), [`statefulset`] (with [`pod`] and
//! [`secrets`]), [`pdb`]. [`names`] fixes names and labels, [`assignment`]
//! spreads partitions over pods, [`merge`] applies `spec.podTemplate`, and
//! [`diff`] decides what a spec change asks of the controller, and
//! [`cleanup`] deletes a deleted job's checkpoints.

pub mod assignment;
pub mod cleanup;
pub mod config;
pub mod diff;
pub mod merge;
pub mod names;
pub mod netpol;
pub mod pdb;
pub mod pod;
pub mod secrets;
pub mod service;
pub mod statefulset;

use eddy_api::{spec::PodAssignment, validate::Problem, StreamJob};
use k8s_openapi::{
    api::{
        apps::v1::StatefulSet,
        core::v1::{ConfigMap, Service},
        networking::v1::NetworkPolicy,
        policy::v1::PodDisruptionBudget,
    },
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{api::ObjectMeta, Resource};

/// The processor image used when a job sets no `spec.image`: this
/// operator's own version.
pub const DEFAULT_IMAGE: &str = concat!(
    "ghcr.io/eddy-dev/eddy-processor:",
    env!("CARGO_PKG_VERSION")
);

/// Longest job name: pods carry a `controller-revision-hash` label of
/// `<name>-<10-character hash>`, and label values end at 63 characters.
pub const MAX_NAME_LEN: usize = 52;

/// Operator settings the build needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    /// Processor image for jobs that set no `spec.image`.
    pub default_image: String,
    /// The operator's namespace, when each job gets a NetworkPolicy letting
    /// only the operator's pods there reach the admin port.
    pub network_policy_from: Option<String>,
}

impl Default for Context {
    fn default() -> Self {
        Self {
            default_image: DEFAULT_IMAGE.to_string(),
            network_policy_from: None,
        }
    }
}

/// Annotation on the StatefulSet: the hash of the pod template the
/// operator built. A different hash on the live object with an unchanged
/// spec means this operator renders the pods differently (a new default
/// image after an operator upgrade): an upgrade, with a final checkpoint.
pub const POD_TEMPLATE_HASH: &str = "eddy.dev/pod-template-hash";

/// Everything the operator creates for one job, each owned by it (a
/// controller owner reference) in the job's namespace and labelled with
/// [`names::labels`].
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    /// `<job>-config`: `job.yaml` and `assignment.yaml`.
    pub config_map: ConfigMap,
    /// `<job>`: headless, the StatefulSet's `serviceName`.
    pub headless: Service,
    /// `<job>-metrics`: ClusterIP, annotated for Prometheus.
    pub metrics: Service,
    /// `<job>`: the processor pods.
    pub stateful_set: StatefulSet,
    /// `<job>`: one pod down at a time.
    pub pdb: PodDisruptionBudget,
    /// `<job>`: only the operator reaches the admin port (when enabled).
    pub network_policy: Option<NetworkPolicy>,
}

/// Why a job's children could not be built. Variant names are short and
/// fixed ([`BuildError::reason`]) for Events and metric labels.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the StreamJob has no metadata.name")]
    MissingName,
    #[error("the StreamJob has no metadata.namespace")]
    MissingNamespace,
    #[error("the StreamJob has no metadata.uid (it was not read from the API server)")]
    MissingUid,
    #[error("{path}: {message}")]
    BadValue { path: &'static str, message: String },
    #[error("spec.podTemplate: merged over the built template it is not a pod template: {0}")]
    BadPodTemplate(String),
    #[error("cannot render the job config: {0}")]
    Render(String),
}

impl BuildError {
    /// The variant's name, for Event reasons and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingName => "MissingName",
            Self::MissingNamespace => "MissingNamespace",
            Self::MissingUid => "MissingUid",
            Self::BadValue { .. } => "BadValue",
            Self::BadPodTemplate(_) => "BadPodTemplate",
            Self::Render(_) => "Render",
        }
    }
}

/// What the controller decided about a job's pods, besides its spec.
#[derive(Clone, Copy, Debug, Default)]
pub struct Runtime<'a> {
    /// Partitions per pod (from [`assignment::keep_or_spread`]; rendered
    /// into the ConfigMap as given).
    pub assignment: &'a [PodAssignment],
    /// Its version (`status.assignmentVersion`), rendered with it.
    pub assignment_version: u64,
    /// The state epoch the pods run in (`status.stateEpoch`): raised by a
    /// change with `upgradeMode: stateless`, so they restore nothing older.
    pub state_epoch: u64,
    /// Every pod finished its finite input: no pods run.
    pub finished: bool,
    /// Pods the autoscaler set in place of `spec.parallelism`.
    pub parallelism: Option<u32>,
}

/// Builds every child of `job` for `assignment`, in the first state epoch.
/// Call it only with a spec that passed [`eddy_api::validate()`] and
/// [`cluster_problems`].
pub fn build(
    job: &StreamJob,
    assignment: &[PodAssignment],
    ctx: &Context,
) -> Result<Children, BuildError> {
    build_for(
        job,
        Runtime {
            assignment,
            ..Runtime::default()
        },
        ctx,
    )
}

/// Builds every child of `job` as `runtime` says.
pub fn build_for(
    job: &StreamJob,
    runtime: Runtime<'_>,
    ctx: &Context,
) -> Result<Children, BuildError> {
    let owner = Owner::of(job)?;
    let config_map =
        config::config_map(job, &owner, runtime.assignment, runtime.assignment_version)?;
    let hash = config::config_hash(&config_map);
    let mut stateful_set = statefulset::stateful_set(job, &owner, ctx, &hash, runtime)?;
    let template = serde_json::to_vec(&stateful_set.spec.template)
        .map_err(|e| BuildError::Render(e.to_string()))?;
    stateful_set
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(
            POD_TEMPLATE_HASH.into(),
            format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&template)),
        );
    Ok(Children {
        stateful_set,
        headless: service::headless(&owner),
        metrics: service::metrics(&owner),
        pdb: pdb::pdb(&owner),
        network_policy: ctx
            .network_policy_from
            .as_deref()
            .map(|ns| netpol::network_policy(job, &owner, ns)),
        config_map,
    })
}

/// The pod template hash a StatefulSet carries ([`POD_TEMPLATE_HASH`]).
pub fn pod_template_hash(sts: &StatefulSet) -> Option<&str> {
    sts.metadata
        .annotations
        .as_ref()?
        .get(POD_TEMPLATE_HASH)
        .map(String::as_str)
}

/// Problems only a cluster has with a job (a local run does not care):
/// the name must fit the StatefulSet's pod labels and be a DNS label for
/// the Services, and the job must be namespaced.
pub fn cluster_problems(job: &StreamJob) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut add = |path: &str, message: String| {
        problems.push(Problem {
            path: path.into(),
            message,
        })
    };
    let name = job.metadata.name.as_deref().unwrap_or_default();
    if name.len() > MAX_NAME_LEN {
        add(
            "metadata.name",
            format!(
                "{name:?} is {} characters; use at most {MAX_NAME_LEN} (pod labels carry the \
                 name plus a revision hash)",
                name.len()
            ),
        );
    }
    if !is_dns_label(name) {
        add(
            "metadata.name",
            format!(
                "{name:?} cannot name a Service; use lowercase letters, digits and '-', \
                 starting with a letter and ending with a letter or digit"
            ),
        );
    }
    let store = job.spec.checkpoints.store.as_str();
    if !store.starts_with("s3://") {
        add(
            "spec.checkpoints.store",
            format!(
                "{store:?} is on the pod's own volume, which does not survive a rescale or the \
                 loss of the pod, so the job could not restore its state; in a cluster use an \
                 object store: s3://bucket/prefix (with spec.checkpoints.endpoint for MinIO)"
            ),
        );
    }
    if job
        .metadata
        .namespace
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        add(
            "metadata.namespace",
            "is not set; StreamJobs live in a namespace".into(),
        );
    }
    problems
}

/// An RFC 1035 label (what a Service name must be), length aside.
fn is_dns_label(name: &str) -> bool {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name.chars().all(ok)
}

/// The job's identity as every child carries it.
pub(crate) struct Owner {
    /// The job's name, which every child's name derives from.
    pub(crate) name: String,
    namespace: String,
    reference: OwnerReference,
}

impl Owner {
    fn of(job: &StreamJob) -> Result<Self, BuildError> {
        let meta = &job.metadata;
        let name = meta.name.clone().ok_or(BuildError::MissingName)?;
        let namespace = meta
            .namespace
            .clone()
            .filter(|ns| !ns.is_empty())
            .ok_or(BuildError::MissingNamespace)?;
        let reference = job
            .controller_owner_ref(&())
            .ok_or(BuildError::MissingUid)?;
        Ok(Self {
            name,
            namespace,
            reference,
        })
    }

    /// Metadata of the child called `name`: namespace, labels, owner.
    pub(crate) fn meta(&self, name: String) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(names::labels(&self.name)),
            owner_references: Some(vec![self.reference.clone()]),
            ..ObjectMeta::default()
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
