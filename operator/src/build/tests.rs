//! Tests of [`super::build`] as a whole, and fixtures shared by the
//! per-file tests.

use eddy_api::{
    spec::{GeneratorSource, SourceSpec, TumblingWindow, WindowSpec},
    StreamJob, StreamJobSpec,
};
use serde_json::json;

use super::*;

/// A valid spec: generator source, one-minute tumbling windows.
pub(crate) fn spec() -> StreamJobSpec {
    let source = SourceSpec {
        generator: Some(GeneratorSource::default()),
        ..SourceSpec::default()
    };
    let window = WindowSpec {
        tumbling: Some(TumblingWindow { size: "1m".into() }),
        ..WindowSpec::default()
    };
    StreamJobSpec::new(source, "user", "ts", window)
}

/// `spec` as job `clicks` in namespace `team`, as read from the API server.
pub(crate) fn job(spec: StreamJobSpec) -> StreamJob {
    let mut job = StreamJob::new("clicks", spec);
    job.metadata.namespace = Some("team".into());
    job.metadata.uid = Some("0b6c6a52-1111-4222-8333-444455556666".into());
    job
}

pub(crate) fn ctx() -> Context {
    Context {
        default_image: "registry.test/eddy-processor:test".into(),
        network_policy_from: None,
    }
}

pub(crate) fn built(spec: StreamJobSpec) -> Children {
    let assignment = assignment::spread(spec.partitions, spec.parallelism);
    build(&job(spec), &assignment, &ctx()).unwrap()
}

fn template(children: &Children) -> &k8s_openapi::api::core::v1::PodTemplateSpec {
    &children.stateful_set.spec.template
}

fn processor(children: &Children) -> &k8s_openapi::api::core::v1::Container {
    let pod = template(children).spec.as_ref().unwrap();
    pod.containers
        .iter()
        .find(|c| c.name == "processor")
        .unwrap()
}

#[test]
fn missing_identity_is_an_error_with_a_fixed_reason() {
    let mut j = job(spec());
    j.metadata.uid = None;
    let err = build(&j, &[], &ctx()).unwrap_err();
    assert_eq!(err.reason(), "MissingUid");
    j.metadata.namespace = None;
    let err = build(&j, &[], &ctx()).unwrap_err();
    assert_eq!(err.reason(), "MissingNamespace");
}

#[test]
fn image_is_the_jobs_or_the_default() {
    assert_eq!(
        processor(&built(spec())).image.as_deref(),
        Some("registry.test/eddy-processor:test")
    );
    let mut s = spec();
    s.image = Some("mine:1".into());
    assert_eq!(processor(&built(s)).image.as_deref(), Some("mine:1"));
    assert!(DEFAULT_IMAGE.starts_with("ghcr.io/eddy-dev/eddy-processor:"));
    assert_eq!(Context::default().default_image, DEFAULT_IMAGE);
}

#[test]
fn suspend_scales_to_zero_and_parallelism_sets_replicas() {
    let mut s = spec();
    s.partitions = 8;
    s.parallelism = 3;
    let replicas = |c: &Children| c.stateful_set.spec.replicas;
    assert_eq!(replicas(&built(s.clone())), Some(3));
    s.suspend = true;
    assert_eq!(replicas(&built(s)), Some(0));
}

#[test]
fn config_change_changes_the_pod_hash() {
    let hash = |c: &Children| {
        let meta = template(c).metadata.as_ref().unwrap();
        meta.annotations.as_ref().unwrap()[names::CONFIG_HASH_ANNOTATION].clone()
    };
    let a = built(spec());
    assert_eq!(hash(&a), config::config_hash(&a.config_map));
    let mut s = spec();
    s.key_field = "merchant".into();
    assert_ne!(hash(&a), hash(&built(s)));
}

#[test]
fn pod_template_override_cannot_detach_pods_or_hide_the_hash() {
    let mut s = spec();
    s.pod_template = Some(json!({"metadata": {
        "labels": {"app.kubernetes.io/instance": "other", "team": "a"},
        "annotations": {"eddy.dev/config-hash": "forged"}}}));
    let c = built(s);
    let meta = template(&c).metadata.as_ref().unwrap();
    let labels = meta.labels.as_ref().unwrap();
    assert_eq!(labels["app.kubernetes.io/instance"], "clicks");
    assert_eq!(labels["team"], "a");
    assert_eq!(
        meta.annotations.as_ref().unwrap()[names::CONFIG_HASH_ANNOTATION],
        config::config_hash(&c.config_map)
    );
}

#[test]
fn a_pod_template_that_is_not_one_is_an_error() {
    for (over, expect) in [
        (
            json!({"spec": {"containers": null}}),
            "removes the \"processor\"",
        ),
        (
            json!({"spec": {"containers": [{"name": "x", "image": "y"}]}, "metadata": 1}),
            "invalid",
        ),
        (
            json!({"spec": {"terminationGracePeriodSeconds": "soon"}}),
            "invalid",
        ),
        (
            json!({"spec": {"nodeSelecter": {"disk": "ssd"}}}),
            "spec.nodeSelecter",
        ),
    ] {
        let mut s = spec();
        s.pod_template = Some(over.clone());
        let err = build(&job(s), &[], &ctx()).unwrap_err();
        assert_eq!(err.reason(), "BadPodTemplate", "{over}");
        assert!(err.to_string().contains(expect), "{over}: {err}");
    }
}

#[test]
fn cluster_problems_check_name_and_namespace() {
    let mut s3 = spec();
    s3.checkpoints.store = "s3://bucket/jobs".into();
    assert!(cluster_problems(&job(s3.clone())).is_empty());
    let local = cluster_problems(&job(spec()));
    assert_eq!(local.len(), 1, "{local:?}");
    assert_eq!(local[0].path, "spec.checkpoints.store");
    assert!(local[0].message.contains("object store"), "{}", local[0]);
    let mut j = job(s3);
    j.metadata.name = Some("a".repeat(52));
    assert!(cluster_problems(&j).is_empty());
    j.metadata.name = Some("a".repeat(53));
    let p = cluster_problems(&j);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].path, "metadata.name");
    assert!(p[0].message.contains("at most 52"), "{}", p[0]);
    for bad in ["my.job", "1job", "job-", "Job"] {
        j.metadata.name = Some(bad.into());
        assert_eq!(cluster_problems(&j).len(), 1, "{bad}");
    }
    j.metadata.name = Some("job-1".into());
    j.metadata.namespace = None;
    let p = cluster_problems(&j);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].path, "metadata.namespace");
}
