//! Deleting a deleted job's checkpoints (`spec.checkpoints.deleteOnJobDeletion`):
//! what to do next, decided from what is observed, and the batch Job that
//! runs `eddy-processor clear-checkpoints` with the job's config and only
//! the store's credentials.
//!
//! The pods go first (they would checkpoint again on their way out), then
//! the Job runs; a failed Job is reported and replaced on the next try, so
//! a fixed credential or store lets the deletion finish. Setting
//! `deleteOnJobDeletion: false` on the terminating job gives up and keeps
//! the checkpoints.

use eddy_api::StreamJob;
use k8s_openapi::api::{
    apps::v1::StatefulSet,
    batch::v1::{Job, JobSpec},
    core::v1::{Container, PodSpec, PodTemplateSpec},
};
use kube::api::ObjectMeta;

use super::{names, pod, secrets, BuildError, Context, Owner};

/// What the deletion of a job asks for its checkpoints.
#[derive(Debug, PartialEq, Eq)]
pub enum Wanted {
    /// Keep them (the default): a job re-created under this name resumes.
    Keep,
    /// Delete them from the object store with a clean-up Job.
    Delete,
    /// Delete them, but they are on the pods' own volumes (`file://`),
    /// which no Job can reach: they go with the volumes.
    OnPodVolumes,
}

pub fn wanted(job: &StreamJob) -> Wanted {
    let c = &job.spec.checkpoints;
    match (c.delete_on_job_deletion, c.store.starts_with("s3://")) {
        (false, _) => Wanted::Keep,
        (true, true) => Wanted::Delete,
        (true, false) => Wanted::OnPodVolumes,
    }
}

/// The next step of the clean-up.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Delete the StatefulSet (foreground: it stays until its pods are gone).
    StopPods,
    /// The StatefulSet is being deleted: wait.
    WaitForPods,
    /// Create the clean-up Job.
    StartJob,
    /// The Job is running: wait.
    WaitForJob,
    /// The Job failed (why): report it, delete it, and try again later.
    Retry(String),
    /// The checkpoints are deleted.
    Done,
    /// No rendered config to run the Job with (the job never got valid
    /// children): nothing the operator can delete.
    NoConfig,
}

/// The step after observing the StatefulSet, whether the job's ConfigMap
/// exists, and the clean-up Job.
pub fn next(stateful_set: Option<&StatefulSet>, config: bool, clear: Option<&Job>) -> Step {
    if let Some(sts) = stateful_set {
        return if sts.metadata.deletion_timestamp.is_some() {
            Step::WaitForPods
        } else {
            Step::StopPods
        };
    }
    let Some(clear) = clear else {
        return if config {
            Step::StartJob
        } else {
            Step::NoConfig
        };
    };
    let status = clear.status.as_ref();
    if status.and_then(|s| s.succeeded).unwrap_or(0) > 0 {
        return Step::Done;
    }
    let failed = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "Failed" && c.status == "True");
    match failed {
        Some(c) => Step::Retry(
            c.message
                .clone()
                .or_else(|| c.reason.clone())
                .unwrap_or_else(|| "the Job failed".into()),
        ),
        // Running, or a failed one on its way out before the next try.
        None => Step::WaitForJob,
    }
}

/// Attempts of the clean-up pod before the Job counts as failed.
pub const BACKOFF_LIMIT: i32 = 3;
/// Longest a clean-up Job may run.
pub const DEADLINE_SECONDS: i64 = 600;

/// The clean-up Job: the processor image running `clear-checkpoints` on the
/// job's rendered config, with the store's credentials and nothing else.
/// Its pod is labelled apart from the processor pods, so no Service or
/// disruption budget of the job selects it.
pub fn clear_job(job: &StreamJob, ctx: &Context) -> Result<Job, BuildError> {
    let owner = Owner::of(job)?;
    let mut meta = owner.meta(names::cleanup_job(&owner.name));
    let labels = names::cleanup_labels(&owner.name);
    meta.labels = Some(labels.clone());
    let container = Container {
        name: "clear-checkpoints".into(),
        image: Some(pod::image(job, ctx)),
        args: Some(vec!["clear-checkpoints".into(), pod::job_file()]),
        env: Some(secrets::store_env(&job.spec)),
        security_context: Some(pod::container_security()),
        volume_mounts: Some(vec![pod::mount("config", pod::CONFIG_DIR, true)]),
        ..Container::default()
    };
    Ok(Job {
        metadata: meta,
        spec: Some(JobSpec {
            backoff_limit: Some(BACKOFF_LIMIT),
            active_deadline_seconds: Some(DEADLINE_SECONDS),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    restart_policy: Some("Never".into()),
                    volumes: Some(vec![pod::config_volume(&owner.name)]),
                    security_context: Some(pod::pod_security()),
                    automount_service_account_token: Some(false),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::batch::v1::{JobCondition, JobStatus},
        apimachinery::pkg::apis::meta::v1::Time,
    };

    use super::*;

    fn job(extra: &str) -> StreamJob {
        serde_yaml_ng::from_str(&format!(
            "apiVersion: eddy.dev/v1alpha1
kind: StreamJob
metadata: {{name: orders, namespace: shop, uid: u-1}}
spec:
  source: {{kafka: {{brokers: 'kafka:9092', topic: orders}}}}
  keyField: merchant
  eventTime: {{field: ts}}
  window: {{tumbling: {{size: 1m}}}}
{extra}"
        ))
        .unwrap()
    }

    fn deleting() -> Option<Time> {
        Some(Time("2026-11-21T10:00:00Z".parse().unwrap()))
    }

    #[test]
    fn only_an_object_store_is_cleaned_by_a_job() {
        assert_eq!(wanted(&job("")), Wanted::Keep);
        let s3 = "  checkpoints: {store: 's3://b/p', deleteOnJobDeletion: true}\n";
        assert_eq!(wanted(&job(s3)), Wanted::Delete);
        let file = "  checkpoints: {store: 'file://ckpt', deleteOnJobDeletion: true}\n";
        assert_eq!(wanted(&job(file)), Wanted::OnPodVolumes);
        let kept = "  checkpoints: {store: 's3://b/p', deleteOnJobDeletion: false}\n";
        assert_eq!(wanted(&job(kept)), Wanted::Keep);
    }

    #[test]
    fn pods_first_then_the_job_then_done() {
        let mut sts = StatefulSet::default();
        assert_eq!(next(Some(&sts), true, None), Step::StopPods);
        sts.metadata.deletion_timestamp = deleting();
        assert_eq!(next(Some(&sts), true, None), Step::WaitForPods);
        // Even a finished Job waits for the pods: they may checkpoint again.
        let done = Job {
            status: Some(JobStatus {
                succeeded: Some(1),
                ..JobStatus::default()
            }),
            ..Job::default()
        };
        assert_eq!(next(Some(&sts), true, Some(&done)), Step::WaitForPods);
        assert_eq!(next(None, true, None), Step::StartJob);
        assert_eq!(next(None, false, None), Step::NoConfig);
        assert_eq!(next(None, true, Some(&Job::default())), Step::WaitForJob);
        assert_eq!(next(None, true, Some(&done)), Step::Done);
    }

    #[test]
    fn a_failed_job_is_retried_with_its_reason() {
        let failed = Job {
            status: Some(JobStatus {
                failed: Some(4),
                conditions: Some(vec![
                    JobCondition {
                        type_: "FailureTarget".into(),
                        status: "True".into(),
                        ..JobCondition::default()
                    },
                    JobCondition {
                        type_: "Failed".into(),
                        status: "True".into(),
                        reason: Some("BackoffLimitExceeded".into()),
                        message: Some("Job has reached the specified backoff limit".into()),
                        ..JobCondition::default()
                    },
                ]),
                ..JobStatus::default()
            }),
            ..Job::default()
        };
        assert_eq!(
            next(None, true, Some(&failed)),
            Step::Retry("Job has reached the specified backoff limit".into())
        );
        // Deleted after a failure: its replacement waits until it is gone.
        let mut going = Job::default();
        going.metadata.deletion_timestamp = deleting();
        assert_eq!(next(None, true, Some(&going)), Step::WaitForJob);
    }

    #[test]
    fn the_job_carries_the_config_and_only_the_stores_credentials() {
        let spec = "  checkpoints:
    store: 's3://b/p'
    deleteOnJobDeletion: true
    credentialsSecret: {name: minio}
  sinks:
    - postgres: {urlSecret: {name: pg, key: url}, table: results}
";
        let built = clear_job(&job(spec), &Context::default()).unwrap();
        let value = serde_json::to_value(&built).unwrap();
        assert_eq!(value["metadata"]["name"], "orders-clear");
        assert_eq!(value["metadata"]["ownerReferences"][0]["name"], "orders");
        let pod = &value["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        assert_eq!(
            c["args"],
            serde_json::json!(["clear-checkpoints", "/etc/eddy/config/job.yaml"])
        );
        let env: Vec<&str> = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(env, ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]);
        assert_eq!(pod["volumes"][0]["configMap"]["name"], "orders-config");
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        // Not selected by the job's Services or disruption budget.
        let labels = &value["spec"]["template"]["metadata"]["labels"];
        let selected = names::selector("orders")
            .iter()
            .all(|(k, v)| labels[k] == serde_json::json!(v));
        assert!(!selected, "{labels}");
        assert_eq!(labels[names::JOB_LABEL], "orders");
    }
}
