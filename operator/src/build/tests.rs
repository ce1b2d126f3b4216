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

#[test]
fn the_network_policy_admits_the_operator_to_the_admin_port_and_anyone_to_http_ingest() {
    let ctx = Context {
        network_policy_from: Some("eddy-system".into()),
        ..ctx()
    };
    let generator = build(&job(spec()), &[], &ctx).unwrap();
    let rules = |c: &Children| {
        c.network_policy
            .as_ref()
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
            .ingress
            .clone()
            .unwrap()
    };
    let only = rules(&generator);
    assert_eq!(only.len(), 2, "{only:?}");
    assert_eq!(only[1].from, None, "metrics are open to any scraper");
    assert_eq!(
        only[1].ports.as_ref().unwrap()[0].port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(9091))
    );
    let peer = &only[0].from.as_ref().unwrap()[0];
    assert_eq!(
        peer.namespace_selector.as_ref().unwrap().match_labels,
        Some(
            [(
                "kubernetes.io/metadata.name".to_string(),
                "eddy-system".to_string()
            )]
            .into()
        )
    );
    let mut http = spec();
    http.source = SourceSpec {
        http: Some(serde_json::from_value(json!({"port": 8088})).unwrap()),
        ..SourceSpec::default()
    };
    let with_http = rules(&build(&job(http), &[], &ctx).unwrap());
    assert_eq!(with_http.len(), 3);
    assert_eq!(
        with_http[..2],
        only[..],
        "the admin and metrics rules are unchanged"
    );
    assert_eq!(
        with_http[2].from, None,
        "HTTP ingest is open to every client"
    );
    let port = &with_http[2].ports.as_ref().unwrap()[0];
    assert_eq!(
        port.port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(8088))
    );
}

#[test]
fn a_state_epoch_reaches_the_pods_and_a_finished_job_has_none() {
    let spec = spec();
    let assignment = assignment::spread(spec.partitions, spec.parallelism);
    let runtime = |state_epoch, finished| Runtime {
        assignment: &assignment,
        assignment_version: 0,
        state_epoch,
        finished,
        parallelism: None,
    };
    let epoch_of = |c: &Children| {
        processor(c)
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "EDDY_STATE_EPOCH")
            .and_then(|e| e.value.clone())
    };
    let first = build_for(&job(spec.clone()), runtime(0, false), &ctx()).unwrap();
    assert_eq!(
        epoch_of(&first),
        None,
        "the first epoch leaves the template as it was"
    );
    assert_eq!(first, built(spec.clone()));
    let args = processor(&first).args.clone().unwrap();
    assert!(
        args.contains(&"--hold-when-finished".to_string()),
        "{args:?}"
    );
    let second = build_for(&job(spec.clone()), runtime(2, false), &ctx()).unwrap();
    assert_eq!(epoch_of(&second).as_deref(), Some("2"));
    let done = build_for(&job(spec.clone()), runtime(0, true), &ctx()).unwrap();
    assert_eq!(done.stateful_set.spec.replicas, Some(0));
    assert_eq!(
        template(&done),
        template(&first),
        "only the replicas change: a finished job's spec change is judged as usual"
    );
}
