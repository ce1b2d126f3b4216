//! The reconcile pipeline against a mocked API server: every request the
//! controller makes is expected here, in order, with its answer.

mod mock;

use std::sync::Arc;

use eddy_api::StreamJob;
use eddy_operator::{
    build::{self, assignment::spread},
    controller::{apply::stamp, reconcile},
};
use mock::*;
use serde_json::{json, Value};

fn unreachable_pods() -> eddy_operator::controller::PodUrl {
    Arc::new(|_: &StreamJob, i: u32| format!("http://127.0.0.1:9/pod{i}"))
}

/// The children as the API server would hold them after the operator
/// applied them for `job` (with their applied hashes).
fn applied_children(job: &StreamJob, ready: i32) -> [Option<Value>; 5] {
    let assignment = spread(job.spec.partitions, job.spec.parallelism);
    let ctx = build::Context {
        default_image: "registry.test/eddy-processor:test".into(),
    };
    let mut c = build::build(job, &assignment, &ctx).unwrap();
    stamp(&mut c.config_map);
    stamp(&mut c.headless);
    stamp(&mut c.metrics);
    stamp(&mut c.stateful_set);
    stamp(&mut c.pdb);
    let mut sts = serde_json::to_value(&c.stateful_set).unwrap();
    sts["status"] = json!({"replicas": job.spec.parallelism, "readyReplicas": ready});
    [
        Some(serde_json::to_value(&c.config_map).unwrap()),
        Some(serde_json::to_value(&c.headless).unwrap()),
        Some(serde_json::to_value(&c.metrics).unwrap()),
        Some(sts),
        Some(serde_json::to_value(&c.pdb).unwrap()),
    ]
}

type Handle =
    tower_test::mock::Handle<http::Request<kube::client::Body>, http::Response<kube::client::Body>>;

/// Runs one reconcile of `job` against `expected` and nothing else;
/// returns the request bodies.
async fn run(
    job: StreamJob,
    ctx: Arc<eddy_operator::controller::Context>,
    handle: Handle,
    expected: Vec<Expect>,
    log: Log,
) -> (Vec<Value>, Handle) {
    let server = tokio::spawn(async move {
        let (bodies, mut handle) = verify(handle, expected, log).await;
        let unexpected = extras(&mut handle).await;
        (bodies, unexpected, handle)
    });
    let result = reconcile(Arc::new(job), ctx).await;
    let (bodies, unexpected, handle) = server.await.expect("every expected request");
    assert_eq!(unexpected, Vec::<String>::new(), "requests nobody expected");
    result.expect("reconcile");
    (bodies, handle)
}

#[tokio::test]
async fn a_new_job_gets_its_finalizer_first() {
    let (ctx, handle) = context(unreachable_pods());
    let mut job = job(2);
    job.metadata.finalizers = None;
    let log = Log::default();
    let expected = vec![
        Expect::new("PATCH", job_path(), job_answer(&job)).check(|body| {
            let ops = body.as_array().expect("a JSON patch");
            assert!(
                ops.iter()
                    .any(|op| op["op"] == "add" && op["value"] == json!(["eddy.dev/checkpoints"])),
                "{body}"
            );
        }),
    ];
    run(job, ctx, handle, expected, log).await;
}

fn status_of(body: &Value) -> &Value {
    &body["status"]
}

/// Create path, then the no-op path on what it created.
#[tokio::test]
async fn create_then_nothing_to_do() {
    let (ctx, handle) = context(unreachable_pods());
    let log = Log::default();
    let job = job(2);
    let mut expected = fetches([None, None, None, None, None]);
    expected.push(apply(cm_path()).check(|cm| {
        assert_eq!(cm["metadata"]["ownerReferences"][0]["kind"], "StreamJob");
        let assignment = cm["data"]["assignment.yaml"].as_str().unwrap();
        assert!(assignment.contains("partitions:"), "{assignment}");
    }));
    expected.push(apply(svc_path(JOB)));
    expected.push(apply(svc_path(&format!("{JOB}-metrics"))));
    expected.push(apply(pdb_path()));
    expected.push(apply(sts_path()).check(|sts| {
        assert_eq!(sts["spec"]["replicas"], 2);
        assert_eq!(sts["metadata"]["ownerReferences"][0]["controller"], true);
        assert!(sts["metadata"]["annotations"]["eddy.dev/applied-hash"].is_string());
    }));
    expected.extend(orphan_lists());
    expected.push(event("Created"));
    expected.push(status_patch(&job).check(|body| {
        let s = status_of(body);
        assert_eq!(s["observedGeneration"], 1);
        assert_eq!(s["phase"], "Pending", "no pods ready yet");
        assert_eq!(
            s["assignment"],
            json!([{"ordinal": 0, "partitions": [0, 1]}, {"ordinal": 1, "partitions": [2, 3]}])
        );
        let spec: Value = serde_json::from_str(s["lastReconciledSpec"].as_str().unwrap()).unwrap();
        assert_eq!(spec["parallelism"], 2);
        let conditions: Vec<(&str, &str)> = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["type"].as_str().unwrap(), c["status"].as_str().unwrap()))
            .collect();
        assert_eq!(
            conditions,
            [
                ("Ready", "False"),
                ("CheckpointsHealthy", "True"),
                ("SpecValid", "True")
            ]
        );
        assert_eq!(
            s["checkpointLagSeconds"], 60,
            "since creation, no checkpoint yet"
        );
    }));
    let (bodies, _) = run(job.clone(), ctx.clone(), handle, expected, log.clone()).await;

    // Again, with what the API server now holds: only reads.
    let (ctx, handle) = context(unreachable_pods());
    let mut job = job;
    job.status = serde_json::from_value(status_of(bodies.last().unwrap()).clone()).unwrap();
    let observed: Vec<Value> = bodies[5..10].to_vec();
    let [cm, svc, metrics, pdb, sts] = <[Value; 5]>::try_from(observed).unwrap();
    let expected = fetches([Some(cm), Some(svc), Some(metrics), Some(sts), Some(pdb)]);
    run(job, ctx, handle, expected, log).await;
}

#[tokio::test]
async fn an_invalid_spec_builds_nothing_and_says_why() {
    let (ctx, handle) = context(unreachable_pods());
    let mut job = job(2);
    job.spec.key_field = String::new();
    job.spec.parallelism = 9;
    let expected = vec![
        event("SpecInvalid"),
        status_patch(&job).check(|body| {
            let s = status_of(body);
            assert_eq!(s["phase"], "Failed");
            let c = &s["conditions"][0];
            assert_eq!(
                (c["type"].as_str(), c["status"].as_str()),
                (Some("SpecValid"), Some("False"))
            );
            let message = c["message"].as_str().unwrap();
            assert!(message.contains("spec.keyField"), "{message}");
            assert!(message.contains("spec.parallelism"), "{message}");
        }),
    ];
    run(job, ctx, handle, expected, Log::default()).await;
}

/// Parallelism 2 → 3: a final checkpoint on both pods under one id, and
/// only once both completed it is the StatefulSet patched.
#[tokio::test]
async fn a_rescale_takes_a_final_checkpoint_before_patching_the_stateful_set() {
    let log = Log::default();
    let base = fake_processors(log.clone()).await;
    let pod_url: eddy_operator::controller::PodUrl =
        Arc::new(move |_: &StreamJob, i: u32| format!("{base}/pod{i}"));
    let (ctx, handle) = context(pod_url);

    let old = job(2);
    let observed = applied_children(&old, 2);
    let mut job = job(3);
    job.metadata.generation = Some(2);
    job.status = Some(eddy_api::spec::StreamJobStatus {
        last_reconciled_spec: Some(serde_json::to_string(&old.spec).unwrap()),
        assignment: spread(4, 2),
        ..Default::default()
    });

    // First look: the final checkpoint is asked for, nothing is applied.
    let mut expected = vec![event("RescaleStarted")];
    expected.splice(0..0, fetches(observed.clone()));
    expected.push(status_patch(&job).check(|body| {
        assert_eq!(status_of(body)["phase"], "Rescaling");
    }));
    let (_, handle) = run(job.clone(), ctx.clone(), handle, expected, log.clone()).await;
    let mut posts: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("ADMIN POST"))
        .cloned()
        .collect();
    posts.sort();
    assert_eq!(
        posts,
        [
            r#"ADMIN POST pod0 {"final":true,"id":5}"#,
            r#"ADMIN POST pod1 {"final":true,"id":5}"#
        ]
    );

    // Next look: both completed it; the changed children are applied (the
    // services and the PDB are unchanged and left alone).
    let mut expected = fetches(observed);
    expected.push(apply(cm_path()).check(|cm| {
        let assignment = cm["data"]["assignment.yaml"].as_str().unwrap();
        assert_eq!(assignment.matches("ordinal").count(), 3, "{assignment}");
    }));
    expected.push(apply(sts_path()).check(|sts| assert_eq!(sts["spec"]["replicas"], 3)));
    expected.extend(orphan_lists());
    expected.push(event("RescaleFinished"));
    expected.push(status_patch(&job).check(|body| {
        let s = status_of(body);
        assert_eq!(s["observedGeneration"], 2);
        assert_eq!(s["assignment"].as_array().unwrap().len(), 3);
        assert_eq!(s["lastCheckpoint"]["id"], 5);
        assert_eq!(
            s["lastCheckpoint"]["bytesTotal"], 200,
            "summed over both pods"
        );
    }));
    run(job, ctx, handle, expected, log.clone()).await;

    let log = log.lock().unwrap();
    let last_post = log
        .iter()
        .rposition(|l| l.starts_with("ADMIN POST"))
        .unwrap();
    let sts_patch = log
        .iter()
        .position(|l| l == &format!("PATCH {}", sts_path()))
        .unwrap();
    assert!(last_post < sts_patch, "{log:#?}");
}

#[tokio::test]
async fn deletion_keeps_checkpoints_and_releases_the_finalizer() {
    let (ctx, handle) = context(unreachable_pods());
    let mut job = job(2);
    job.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-11-21T10:00:00Z".parse().unwrap(),
    ));
    let expected = vec![
        event("Deleted").check(|body| {
            let note = body["note"].as_str().unwrap();
            assert!(
                note.contains("kept under s3://ckpt/jobs/shop/orders"),
                "{note}"
            );
        }),
        Expect::new("PATCH", job_path(), job_answer(&job)).check(|body| {
            let ops = body.as_array().expect("a JSON patch");
            assert!(ops.iter().any(|op| op["op"] == "remove"), "{body}");
        }),
    ];
    run(job, ctx, handle, expected, Log::default()).await;
}

fn clear_job_path() -> String {
    format!("/apis/batch/v1/namespaces/{NS}/jobs/{JOB}-clear")
}

/// A clean-up Job as the API server would show it, with `status`.
fn clear_job(status: Value) -> Reply {
    Reply::Json(
        200,
        json!({"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": format!("{JOB}-clear"), "namespace": NS},
               "status": status}),
    )
}

#[tokio::test]
async fn deletion_with_delete_on_job_deletion_stops_the_pods_then_clears_with_a_job() {
    let (ctx, handle) = context(unreachable_pods());
    let mut job = job(2);
    job.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-11-21T10:00:00Z".parse().unwrap(),
    ));
    job.spec.checkpoints.delete_on_job_deletion = true;
    job.spec.checkpoints.credentials_secret =
        Some(serde_json::from_value(json!({"name": "minio"})).unwrap());
    let [cm, _, _, sts, _] = applied_children(&job, 2);
    let (cm, sts) = (cm.unwrap(), sts.unwrap());
    let mut stopping = sts.clone();
    stopping["metadata"]["deletionTimestamp"] = json!("2026-11-21T10:00:01Z");
    let log = Log::default();

    // 1. The pods go first, foreground, so the StatefulSet stays until
    //    they are gone (they checkpoint on their way out).
    let expected = vec![
        Expect::new("GET", sts_path(), Reply::Json(200, sts.clone())),
        Expect::new("DELETE", sts_path(), Reply::Json(200, stopping.clone())).check(|body| {
            assert_eq!(body["propagationPolicy"], "Foreground", "{body}");
        }),
        event("CheckpointCleanupStarted"),
    ];
    let (_, handle) = run(job.clone(), ctx.clone(), handle, expected, log.clone()).await;

    // 2. Still terminating: wait, nothing else.
    let expected = vec![Expect::new("GET", sts_path(), Reply::Json(200, stopping))];
    let (_, handle) = run(job.clone(), ctx.clone(), handle, expected, log.clone()).await;

    // 3. Gone: the clean-up Job, with the config and only the store's
    //    credentials.
    let expected = vec![
        Expect::new("GET", sts_path(), not_found()),
        Expect::new("GET", cm_path(), Reply::Json(200, cm.clone())),
        Expect::new("GET", clear_job_path(), not_found()),
        Expect::new(
            "POST",
            format!("/apis/batch/v1/namespaces/{NS}/jobs"),
            Reply::Echo,
        )
        .check(|body| {
            assert_eq!(body["metadata"]["name"], "orders-clear");
            let c = &body["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(c["args"][0], "clear-checkpoints", "{body}");
            assert_eq!(c["image"], "registry.test/eddy-processor:test");
            assert_eq!(c["env"][0]["valueFrom"]["secretKeyRef"]["name"], "minio");
            assert_eq!(body["metadata"]["ownerReferences"][0]["kind"], "StreamJob");
        }),
        event("CheckpointCleanupRunning"),
    ];
    let (_, handle) = run(job.clone(), ctx.clone(), handle, expected, log.clone()).await;

    // 4. It failed: say why and how to give up, remove it for a retry.
    let failed = json!({"failed": 4, "conditions": [{"type": "Failed", "status": "True",
        "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]});
    let expected = vec![
        Expect::new("GET", sts_path(), not_found()),
        Expect::new("GET", cm_path(), Reply::Json(200, cm.clone())),
        Expect::new("GET", clear_job_path(), clear_job(failed)),
        event("CheckpointCleanupFailed").check(|body| {
            let note = body["note"].as_str().unwrap();
            assert!(note.contains("backoff limit"), "{note}");
            assert!(note.contains("deleteOnJobDeletion to false"), "{note}");
            assert_eq!(body["type"], "Warning");
        }),
        Expect::new("DELETE", clear_job_path(), clear_job(json!({}))).check(|body| {
            assert_eq!(body["propagationPolicy"], "Background", "{body}");
        }),
    ];
    let (_, handle) = run(job.clone(), ctx.clone(), handle, expected, log.clone()).await;

    // 5. The retry succeeded: report, then release the finalizer.
    let expected = vec![
        Expect::new("GET", sts_path(), not_found()),
        Expect::new("GET", cm_path(), Reply::Json(200, cm)),
        Expect::new("GET", clear_job_path(), clear_job(json!({"succeeded": 1}))),
        event("CheckpointsDeleted").check(|body| {
            let note = body["note"].as_str().unwrap();
            assert!(
                note.contains("deleted the checkpoints under s3://ckpt/jobs/shop/orders"),
                "{note}"
            );
        }),
        event("Deleted"),
        Expect::new("PATCH", job_path(), job_answer(&job)).check(|body| {
            let ops = body.as_array().expect("a JSON patch");
            assert!(ops.iter().any(|op| op["op"] == "remove"), "{body}");
        }),
    ];
    run(job, ctx, handle, expected, log).await;
}

#[tokio::test]
async fn deletion_without_a_config_to_clear_with_says_so_and_releases() {
    let (ctx, handle) = context(unreachable_pods());
    let mut job = job(2);
    job.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-11-21T10:00:00Z".parse().unwrap(),
    ));
    job.spec.checkpoints.delete_on_job_deletion = true;
    let expected = vec![
        Expect::new("GET", sts_path(), not_found()),
        Expect::new("GET", cm_path(), not_found()),
        Expect::new("GET", clear_job_path(), not_found()),
        event("CheckpointsNotDeleted").check(|body| {
            assert_eq!(body["type"], "Warning");
            let note = body["note"].as_str().unwrap();
            assert!(note.contains("yourself"), "{note}");
        }),
        event("Deleted"),
        Expect::new("PATCH", job_path(), job_answer(&job)),
    ];
    run(job, ctx, handle, expected, Log::default()).await;
}

/// Resuming and moving the state to a volume claim in the same edit: the
/// StatefulSet cannot take new claim templates in place, so it is deleted
/// first (and created on the next pass), not patched into a 422.
#[tokio::test]
async fn a_resume_that_changes_the_claims_recreates_the_stateful_set() {
    let (ctx, handle) = context(unreachable_pods());
    let mut old = job(2);
    old.spec.suspend = true;
    let observed = applied_children(&old, 0);
    let mut job = job(2);
    job.metadata.generation = Some(2);
    job.spec.state.storage.kind = eddy_api::spec::StorageKind::PersistentVolumeClaim;
    job.status = Some(eddy_api::spec::StreamJobStatus {
        last_reconciled_spec: Some(serde_json::to_string(&old.spec).unwrap()),
        assignment: spread(4, 2),
        ..Default::default()
    });
    let mut expected = fetches(observed);
    expected.push(
        Expect::new("DELETE", sts_path(), Reply::Json(200, json!({}))).check(|body| {
            assert_eq!(body["propagationPolicy"], "Background", "{body}");
        }),
    );
    run(job, ctx, handle, expected, Log::default()).await;
}
