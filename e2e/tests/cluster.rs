//! Eddy end to end, the way users run it: `helm install` the chart (the
//! operator runs as a pod under its own service account and RBAC),
//! `kubectl apply` a Kafka → PostgreSQL job with S3 checkpoints, and while
//! it runs: pods deleted (some with `--force`), `kubectl scale` up and
//! down, a spec change with the operator killed in its middle, suspend and
//! resume, `helm upgrade`. The table must equal the results computed here:
//! nothing missing, nothing twice.
//!
//! Runs on the local control plane of `scripts/test-servers`, and
//! unchanged against any kubeconfig whose cluster runs the images (see
//! `e2e/kind/`).

mod support;

use std::time::{Duration, Instant};

use eddy_api::StreamJob;
use k8s_openapi::api::{apps::v1::StatefulSet, core::v1::Pod};
use kube::{
    api::{ListParams, Patch, PatchParams},
    Api, Client, ResourceExt,
};
use serde_json::json;
use support::*;

const MINUTE: Duration = Duration::from_secs(60);
const JOB: &str = "revenue";

struct E2e {
    client: Client,
    ns: String,
    operator_ns: String,
}

impl E2e {
    fn jobs(&self) -> Api<StreamJob> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn job(&self) -> StreamJob {
        self.jobs().get(JOB).await.unwrap()
    }

    async fn pods(&self) -> Vec<Pod> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns);
        let mut pods = api
            .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={JOB}")))
            .await
            .unwrap()
            .items;
        pods.sort_by_key(ResourceExt::name_any);
        pods
    }

    async fn operator_pod(&self) -> String {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.operator_ns);
        let pods = api
            .list(&ListParams::default().labels("app.kubernetes.io/name=eddy-operator"))
            .await
            .unwrap();
        pods.items
            .iter()
            .find(|p| p.metadata.deletion_timestamp.is_none())
            .map(ResourceExt::name_any)
            .expect("an operator pod")
    }

    /// Waits until the job is Ready at its current generation; returns how
    /// long that took.
    async fn ready(&self, what: &str) -> Duration {
        let start = Instant::now();
        let jobs = self.jobs();
        eventually(what, 4 * MINUTE, || async {
            let job = jobs.get(JOB).await.map_err(|e| e.to_string())?;
            let status = job.status.clone().unwrap_or_default();
            let ready = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            let current = status.observed_generation == job.metadata.generation;
            (ready && current && status.transition.is_none())
                .then_some(())
                .ok_or(format!("{status:?}"))
        })
        .await;
        start.elapsed()
    }

    /// `kubectl scale streamjob/<job> --replicas <n>`.
    fn scale(&self, replicas: u32) {
        let replicas = replicas.to_string();
        let job = format!("streamjob/{JOB}");
        kubectl(&["scale", &job, "-n", &self.ns, "--replicas", &replicas]);
    }

    fn delete_pod(&self, pod: &str, force: bool) {
        let mut args = vec!["delete", "pod", pod, "-n", &self.ns, "--wait=false"];
        if force {
            args.extend(["--force", "--grace-period=0"]);
        }
        kubectl(&args);
    }

    async fn delete_a_pod(&self, ordinal: usize, force: bool) {
        let pods = self.pods().await;
        let pod = pods[ordinal % pods.len()].name_any();
        self.delete_pod(&pod, force);
        eprintln!(
            "[e2e] deleted {pod}{}",
            if force { " with --force" } else { "" }
        );
    }

    async fn reasons(&self) -> Vec<String> {
        eddy_testkit::kube::stream_job_events(&self.client, &self.ns, JOB)
            .await
            .into_iter()
            .filter_map(|e| e.reason)
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kafka_to_postgres_job_is_exact_through_pod_kills_rescales_and_upgrades() {
    let client = eddy_testkit::kube::client().await;
    let id = eddy_testkit::unique_name("e2e");
    let e2e = E2e {
        client: client.clone(),
        ns: format!("{id}-jobs"),
        operator_ns: format!("{id}-system"),
    };
    kubectl(&["create", "namespace", &e2e.ns]);

    // The chart: the operator watches the jobs' namespace only, so other
    // tests' namespaces are not its business.
    let chart = repo().join("charts/eddy");
    let release = "eddy";
    install_chart(&e2e.operator_ns, &e2e.ns);

    // Kafka, S3 and PostgreSQL, and the job's Secrets.
    let brokers = eddy_testkit::kafka_brokers();
    let topic = eddy_testkit::unique_name("orders");
    create_topic(&brokers, &topic).await;
    let bucket = "eddy-e2e";
    eddy_testkit::s3::create_bucket(bucket).await;
    let table_name = id.replace('-', "_");
    create_secrets(&e2e.ns);
    let job = format!(
        "apiVersion: eddy.dev/v1alpha1
kind: StreamJob
metadata: {{name: {JOB}, namespace: {ns}}}
spec:
  source:
    kafka: {{brokers: '{kafka}', topic: {topic}, startFrom: earliest}}
  partitions: {PARTITIONS}
  parallelism: 2
  keyField: user
  eventTime: {{field: ts, format: epochMillis, maxOutOfOrderness: 2s, idleTimeout: 1h}}
  window: {{tumbling: {{size: 5s}}}}
  allowedLateness: 10s
  aggregations: [{{op: count, name: orders}}, {{op: sum, field: amount, name: total}}]
  sinks: [{{postgres: {{urlSecret: {{name: db, key: url}}, table: {table_name}, createTable: true}}}}]
  checkpoints:
    interval: 3s
    store: s3://{bucket}/jobs
    endpoint: '{s3}'
    credentialsSecret: {{name: s3}}
    deleteOnJobDeletion: true
  resources: {{requests: {{cpu: 10m, memory: 64Mi}}}}
",
        ns = e2e.ns,
        kafka = cluster_kafka(),
        s3 = cluster_s3(),
    );
    let path = std::env::temp_dir().join(format!("{id}.yaml"));
    std::fs::write(&path, job).unwrap();
    kubectl(&["apply", "-f", path.to_str().unwrap()]);

    let batches = 6;
    let mut produced = 0;
    let next_batch = |produced: &mut i64| {
        produce(&brokers, &topic, &batch(*produced));
        *produced += 1;
    };
    next_batch(&mut produced);
    e2e.ready("the job to start").await;

    // 1. A pod deleted as a node drain would; another killed outright.
    e2e.delete_a_pod(0, false).await;
    next_batch(&mut produced);
    e2e.delete_a_pod(1, true).await;
    e2e.ready("the job after two pod deletions").await;

    // 2. `kubectl scale` up: final checkpoint, every pod restarted at once.
    e2e.scale(3);
    let rescale = e2e.ready("the rescale to 3").await;
    assert_eq!(e2e.pods().await.len(), 3);
    next_batch(&mut produced);
    e2e.delete_a_pod(2, true).await;

    // 3. A spec change (an upgrade), with the operator killed in its middle.
    let requested = Instant::now();
    e2e.jobs()
        .patch(
            JOB,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"state": {"memoryBudget": "96Mi"}}})),
        )
        .await
        .unwrap();
    eventually("the upgrade to start", MINUTE, || async {
        let job = e2e.job().await;
        job.status
            .and_then(|s| s.transition)
            .map(drop)
            .ok_or("no transition yet".to_string())
    })
    .await;
    let operator = e2e.operator_pod().await;
    kubectl(&[
        "delete",
        "pod",
        &operator,
        "-n",
        &e2e.operator_ns,
        "--force",
        "--grace-period=0",
    ]);
    eprintln!("[e2e] killed the operator {operator} in the middle of the upgrade");
    e2e.ready("the upgrade, finished by the new operator").await;
    let upgrade = requested.elapsed();
    next_batch(&mut produced);

    // 4. Suspend and resume.
    let suspend = |value: bool| json!({"spec": {"suspend": value}});
    e2e.jobs()
        .patch(JOB, &PatchParams::default(), &Patch::Merge(suspend(true)))
        .await
        .unwrap();
    eventually("the job to be suspended", 2 * MINUTE, || async {
        let job = e2e.job().await;
        let phase = job.status.and_then(|s| s.phase);
        let pods = e2e.pods().await.len();
        (phase == Some(eddy_api::spec::Phase::Suspended) && pods == 0)
            .then_some(())
            .ok_or(format!("{phase:?}, {pods} pods"))
    })
    .await;
    next_batch(&mut produced);
    e2e.jobs()
        .patch(JOB, &PatchParams::default(), &Patch::Merge(suspend(false)))
        .await
        .unwrap();
    e2e.ready("the job to resume").await;

    // 5. `kubectl scale` down, and two more deletions.
    e2e.scale(2);
    e2e.ready("the rescale to 2").await;
    e2e.delete_a_pod(0, true).await;
    next_batch(&mut produced);
    e2e.delete_a_pod(1, false).await;
    assert_eq!(produced, batches);
    produce(&brokers, &topic, &flush(batches));
    e2e.ready("the job after the last deletions").await;

    // Exactly the expected results.
    wait_exact(&table_name, &expected(batches)).await;

    // What users look at.
    let get = kubectl(&["get", "streamjobs", "-n", &e2e.ns]);
    eprintln!("{get}");
    let header: Vec<&str> = get.lines().next().unwrap().split_whitespace().collect();
    for column in [
        "NAME",
        "PHASE",
        "PARALLELISM",
        "READY",
        "LAST",
        "CHECKPOINT",
        "AGE",
    ] {
        assert!(header.contains(&column), "{column} in {header:?}");
    }
    let row = get.lines().nth(1).unwrap();
    assert!(row.starts_with(JOB) && row.contains("Running"), "{row}");
    assert_eq!(
        row.split_whitespace().count(),
        6,
        "every column filled: {row}"
    );
    let describe = kubectl(&["describe", "streamjob", JOB, "-n", &e2e.ns]);
    for condition in ["Ready", "CheckpointsHealthy", "SpecValid", "Degraded"] {
        assert!(describe.contains(condition), "{condition} in\n{describe}");
    }
    let reasons = e2e.reasons().await;
    for reason in [
        "Created",
        "RescaleStarted",
        "PodsReplaced",
        "RescaleFinished",
        "UpgradeStarted",
        "UpgradeFinished",
        "Suspending",
        "Suspended",
        "Resumed",
    ] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "{reason} in {reasons:?}"
        );
    }

    // `helm upgrade` replaces the operator; the job runs on untouched.
    let before: Vec<String> = e2e.pods().await.iter().filter_map(|p| p.uid()).collect();
    helm(&[
        "upgrade",
        release,
        chart.to_str().unwrap(),
        "--namespace",
        &e2e.operator_ns,
        "--reuse-values",
        "--set",
        "logLevel=debug",
        "--wait",
        "--timeout",
        "3m",
    ]);
    tokio::time::sleep(Duration::from_secs(10)).await;
    e2e.ready("the job after helm upgrade").await;
    let after: Vec<String> = e2e.pods().await.iter().filter_map(|p| p.uid()).collect();
    assert_eq!(
        before, after,
        "an operator upgrade that renders the same pods restarts none"
    );

    // Deleting the job removes its children and, as it asks, its
    // checkpoints.
    let prefix = format!("jobs/{}/{JOB}/", e2e.ns);
    assert!(!eddy_testkit::s3::keys(bucket, &prefix).await.is_empty());
    kubectl(&["delete", "streamjob", JOB, "-n", &e2e.ns, "--timeout=3m"]);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &e2e.ns);
    eventually("the children to be gone", 2 * MINUTE, || async {
        let left = sets.get_opt(JOB).await.map_err(|e| e.to_string())?;
        let pods = e2e.pods().await.len();
        (left.is_none() && pods == 0)
            .then_some(())
            .ok_or(format!("StatefulSet {}, {pods} pods", left.is_some()))
    })
    .await;
    let left = eddy_testkit::s3::keys(bucket, &prefix).await;
    assert!(left.is_empty(), "checkpoints left: {left:?}");

    eprintln!(
        "[e2e] downtime (request until Ready at the new generation): rescale {:.1}s, upgrade \
         with the operator killed in its middle {:.1}s",
        rescale.as_secs_f64(),
        upgrade.as_secs_f64()
    );
    helm(&[
        "uninstall",
        release,
        "--namespace",
        &e2e.operator_ns,
        "--wait",
    ]);
    kubectl(&[
        "delete",
        "namespace",
        &e2e.ns,
        &e2e.operator_ns,
        "--wait=false",
    ]);
}
