//! The autoscaler end to end: the chart's operator, a Kafka → PostgreSQL
//! job with 8 partitions on 2 pods and S3 checkpoints, `spec.autoscaling`
//! in mode `apply` with short windows. (a) One partition gets a backlog
//! far beyond its pod: it is isolated on a pod of its own. (b) A surge on
//! every partition: the job scales out. (c) Traffic stops: after the idle
//! period it scales in. (d) The chart's checkpoint-lag alert, evaluated
//! by a real Prometheus and delivered by a real Alertmanager to the
//! operator's webhook, scales it out again. Every change moves partitions between running
//! pods (none of the pods that stay restarts), and the table is exact
//! after all of it.
//!
//! Runs on the local control plane of `scripts/test-servers`.

mod support;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use eddy_api::{spec::AutoscalingStatus, StreamJob};
use k8s_openapi::api::core::v1::Pod;
use kube::{api::ListParams, Api, Client, ResourceExt};
use serde_json::json;
use support::*;

const MINUTE: Duration = Duration::from_secs(60);
const JOB: &str = "clicks";
const TOPIC_PARTITIONS: i32 = 8;
/// Sliding windows of 60 s every 250 ms: each event is in 240 windows, so
/// a backlog is real work (the test's producer outpaces the pods).
const SIZE_MS: i64 = 60_000;
const SLIDE_MS: i64 = 250;
const USERS: i64 = 20;

/// The events produced so far, per partition, and what they must give.
#[derive(Default)]
struct Traffic {
    next: BTreeMap<i32, i64>,
    /// (user, start of a slide) → (count, sum) of its events.
    slides: BTreeMap<(String, i64), (u64, f64)>,
}

impl Traffic {
    /// `n` events on each of `partitions`, 1 ms of event time apart per
    /// partition, over [`USERS`] users of their own per partition (so no
    /// key is hot: the partition is).
    fn events(&mut self, partitions: &[i32], n: i64) -> Vec<(i32, String)> {
        let mut out = Vec::new();
        for &p in partitions {
            let start = *self.next.entry(p).or_default();
            for i in start..start + n {
                let ts = START + i;
                let user = format!("p{p}-u{}", i % USERS);
                let amount = i % 10;
                let slide = (user.clone(), ts - ts.rem_euclid(SLIDE_MS));
                let group = self.slides.entry(slide).or_insert((0, 0.0));
                group.0 += 1;
                group.1 += amount as f64;
                out.push((
                    p,
                    format!(r#"{{"user":"{user}","ts":{ts},"amount":{amount}}}"#),
                ));
            }
            self.next.insert(p, start + n);
        }
        out
    }

    /// (user, window start) → (count, sum): each slide's events count in
    /// the windows [start, start + size) that hold it.
    fn expected(&self) -> BTreeMap<(String, i64), (u64, f64)> {
        let mut windows = BTreeMap::new();
        for ((user, slide), (count, sum)) in &self.slides {
            for k in 0..SIZE_MS / SLIDE_MS {
                let w = windows
                    .entry((user.clone(), slide - k * SLIDE_MS))
                    .or_insert((0, 0.0));
                w.0 += count;
                w.1 += sum;
            }
        }
        windows
    }

    /// One event per partition a window and a minute after the last, so
    /// every window closes (its key is left out of comparisons).
    fn flush(&self) -> Vec<(i32, String)> {
        let last = self.next.values().max().copied().unwrap_or(0);
        (0..TOPIC_PARTITIONS)
            .map(|p| {
                let ts = START + last + SIZE_MS + 60_000;
                (
                    p,
                    json!({"user": "flush", "ts": ts, "amount": 0}).to_string(),
                )
            })
            .collect()
    }
}

async fn autoscaling(jobs: &Api<StreamJob>) -> Result<(StreamJob, AutoscalingStatus), String> {
    let job = jobs.get(JOB).await.map_err(|e| e.to_string())?;
    let a = job
        .status
        .as_ref()
        .and_then(|s| s.autoscaling.clone())
        .ok_or("no status.autoscaling yet")?;
    Ok((job, a))
}

/// Waits for an applied decision `action` whose move is done; returns the
/// job then.
async fn applied(jobs: &Api<StreamJob>, action: &str, within: Duration) -> StreamJob {
    eventually(&format!("{action}, applied"), within, || async {
        let (job, a) = autoscaling(jobs).await?;
        let done =
            a.decisions.iter().any(|d| d.action == action && d.applied) && a.moving.is_none();
        let status = job.status.clone().unwrap_or_default();
        done.then_some(job).ok_or(format!(
            "decisions {:?}; last {:?}; moving {:?}; assignment {:?}",
            a.decisions
                .iter()
                .map(|d| (&d.action, d.from, d.to, d.applied))
                .collect::<Vec<_>>(),
            a.last_decision.map(|d| (d.action, d.reason)),
            a.moving.map(|m| (m.pods, m.moved)),
            status.assignment
        ))
    })
    .await
}

async fn pods(client: &Client, ns: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut pods = api
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={JOB}")))
        .await
        .unwrap()
        .items;
    pods.retain(|p| p.metadata.deletion_timestamp.is_none());
    pods.sort_by_key(ResourceExt::name_any);
    pods
}

/// The uids of the pods of ordinals below `n`.
async fn uids(client: &Client, ns: &str, n: usize) -> Vec<String> {
    pods(client, ns)
        .await
        .iter()
        .take(n)
        .filter_map(|p| p.uid())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hot_partitions_are_isolated_surges_scale_out_and_idle_jobs_scale_in_live() {
    let client = eddy_testkit::kube::client().await;
    let id = eddy_testkit::unique_name("auto");
    let ns = format!("{id}-jobs");
    let operator_ns = format!("{id}-system");
    kubectl(&["create", "namespace", &ns]);
    install_chart(&operator_ns, &ns);

    let brokers = eddy_testkit::kafka_brokers();
    let topic = eddy_testkit::unique_name("clicks");
    eddy_testkit::produce::create_topics(&brokers, &[(&topic, TOPIC_PARTITIONS)]).await;
    let bucket = "eddy-e2e";
    eddy_testkit::s3::create_bucket(bucket).await;
    let table_name = id.replace('-', "_");
    create_secrets(&ns);
    let job = format!(
        "apiVersion: eddy.dev/v1alpha1
kind: StreamJob
metadata: {{name: {JOB}, namespace: {ns}}}
spec:
  source:
    kafka: {{brokers: '{kafka}', topic: {topic}, startFrom: earliest}}
  partitions: {TOPIC_PARTITIONS}
  parallelism: 2
  keyField: user
  eventTime: {{field: ts, format: epochMillis, maxOutOfOrderness: 1s, idleTimeout: 1h}}
  window: {{sliding: {{size: 60s, slide: 250ms}}}}
  aggregations: [{{op: count, name: orders}}, {{op: sum, field: amount, name: total}}]
  sinks: [{{postgres: {{urlSecret: {{name: db, key: url}}, table: {table_name}, createTable: true}}}}]
  checkpoints:
    interval: 3s
    store: s3://{bucket}/jobs
    endpoint: '{s3}'
    credentialsSecret: {{name: s3}}
    deleteOnJobDeletion: true
  autoscaling:
    mode: apply
    minReplicas: 2
    maxReplicas: 4
    hotPartitionShare: 0.5
    targetUtilization: 0.7
    catchUpWithin: 1s
    metricsWindow: 20s
    stabilizationWindow: 10s
    cooldown: 20s
    scaleInIdleAfter: 40s
  resources: {{requests: {{cpu: 10m, memory: 64Mi}}}}
",
        kafka = cluster_kafka(),
        s3 = cluster_s3(),
    );
    let path = std::env::temp_dir().join(format!("{id}.yaml"));
    std::fs::write(&path, job).unwrap();
    kubectl(&["apply", "-f", path.to_str().unwrap()]);
    let jobs: Api<StreamJob> = Api::namespaced(client.clone(), &ns);
    let mut traffic = Traffic::default();
    let all: Vec<i32> = (0..TOPIC_PARTITIONS).collect();
    produce(&brokers, &topic, &traffic.events(&all, 2_000));
    eventually("the job to run and measure", 4 * MINUTE, || async {
        let (_, a) = autoscaling(&jobs).await?;
        (a.partitions.len() == TOPIC_PARTITIONS as usize)
            .then_some(())
            .ok_or(format!("{a:?}"))
    })
    .await;
    let started = Instant::now();

    // (a) Partition 3 gets a backlog its pod needs many seconds for.
    let hot = traffic.events(&[3], 400_000);
    let producing = Instant::now();
    produce(&brokers, &topic, &hot);
    eprintln!(
        "[autoscaling] produced {} events in {:?}",
        hot.len(),
        producing.elapsed()
    );
    let before = uids(&client, &ns, 2).await;
    let job = applied(&jobs, "PartitionIsolated", 4 * MINUTE).await;
    let status = job.status.unwrap();
    let (assignment, isolated) = (status.assignment, status.assignment_version);
    // Every change of the assignment raises its version (a pod restarted
    // on an older one waits for the newer: processor/tests/partition_moves).
    assert!(isolated >= Some(1), "{isolated:?}");
    eprintln!(
        "[autoscaling] isolated after {:?}: {assignment:?}",
        started.elapsed()
    );
    assert!(
        assignment.iter().any(|pod| pod.partitions == [3]),
        "partition 3 alone on a pod: {assignment:?}"
    );
    assert_eq!(uids(&client, &ns, 2).await, before, "no pod restarted");

    // (b) A surge on every partition: more pods.
    let surge = traffic.events(&all, 80_000);
    produce(&brokers, &topic, &surge);
    let job = applied(&jobs, "ScaledOut", 5 * MINUTE).await;
    let status = job.status.unwrap();
    let out = status.assignment.len();
    eprintln!(
        "[autoscaling] scaled out to {out} after {:?}: {:?}",
        started.elapsed(),
        status.assignment
    );
    assert!(out > 2, "{:?}", status.assignment);
    let scaled_out = status.assignment_version;
    assert!(scaled_out > isolated, "{scaled_out:?}");
    assert_eq!(
        uids(&client, &ns, 2).await,
        before,
        "the first two pods run on"
    );
    eventually("the new pods to run", 3 * MINUTE, || async {
        let n = pods(&client, &ns).await.len();
        (n == out).then_some(()).ok_or(format!("{n} pods"))
    })
    .await;

    // (c) Traffic stops: fewer pods once the idle period is over.
    let job = applied(&jobs, "ScaledIn", 6 * MINUTE).await;
    let status = job.status.unwrap();
    eprintln!(
        "[autoscaling] scaled in to {} after {:?}",
        status.assignment.len(),
        started.elapsed()
    );
    assert!(status.assignment.len() < out);
    assert!(status.assignment_version > scaled_out);
    let kept = status.assignment.len();
    eventually("the pods scaled in to go", 3 * MINUTE, || async {
        let n = pods(&client, &ns).await.len();
        (n == kept).then_some(()).ok_or(format!("{n} pods"))
    })
    .await;

    // (d) The reaction of (b), from a real alert: Prometheus evaluates the
    // chart's EddyCheckpointLag rule over the pods' metrics, Alertmanager
    // delivers it to the operator's webhook. Checkpoints stop being
    // scheduled so the pods' last checkpoint ages; the operator's own lag
    // threshold is out of reach and full pods count as enough, so only
    // the alert can ask for more pods.
    let addresses = |pods: &[Pod], port: u16| -> Vec<String> {
        pods.iter()
            .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
            .map(|ip| format!("{ip}:{port}"))
            .collect()
    };
    let operators: Api<Pod> = Api::namespaced(client.clone(), &operator_ns);
    let operator = operators
        .list(&ListParams::default().labels("app.kubernetes.io/name=eddy-operator"))
        .await
        .unwrap()
        .items;
    let webhook = format!(
        "http://{}/webhooks/alertmanager",
        addresses(&operator, 8080)[0]
    );
    let targets = addresses(&pods(&client, &ns).await, 9091);
    let alerting = support::alerting::Alerting::start(
        &targets,
        &["checkpointLag.thresholdSeconds=8", "checkpointLag.for=0s"],
        &webhook,
    );
    let patch = |value: serde_json::Value| {
        let jobs = jobs.clone();
        async move {
            jobs.patch(
                JOB,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(value),
            )
            .await
            .unwrap();
        }
    };
    patch(json!({"spec": {
        "checkpoints": {"interval": "10m"},
        "autoscaling": {"checkpointLagThreshold": "1h", "targetUtilization": 1.0},
    }}))
    .await;
    let alerted = |d: &eddy_api::spec::ScalingDecision| {
        d.action == "ScaledOut" && d.applied && d.reason.contains("EddyCheckpointLag")
    };
    let job = eventually("a scale-out for the alert", 4 * MINUTE, || async {
        let (job, a) = autoscaling(&jobs).await?;
        (a.decisions.iter().any(alerted) && a.moving.is_none())
            .then_some(job)
            .ok_or(format!(
                "last {:?}",
                a.last_decision.map(|d| (d.action, d.reason))
            ))
    })
    .await;
    let status = job.status.unwrap();
    eprintln!(
        "[autoscaling] scaled out for the alert to {} after {:?}",
        status.assignment.len(),
        started.elapsed()
    );
    assert_eq!(status.assignment.len(), kept + 1);
    patch(json!({"spec": {"checkpoints": {"interval": "3s"}}})).await;
    drop(alerting);
    assert_eq!(
        uids(&client, &ns, 2).await,
        before,
        "pods 0 and 1 ran throughout"
    );

    // Exactly the expected results.
    produce(&brokers, &topic, &traffic.flush());
    wait_exact(&table_name, &traffic.expected()).await;

    // What users see.
    let reasons: Vec<String> = eddy_testkit::kube::stream_job_events(&client, &ns, JOB)
        .await
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    for reason in [
        "PartitionIsolated",
        "ScaledOut",
        "ScaledIn",
        "PartitionsMoved",
    ] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "{reason} in {reasons:?}"
        );
    }
    // No pod restarted, so every partition ran on the pod it was given.
    assert!(
        !reasons.iter().any(|r| r == "PartitionReattached"),
        "{reasons:?}"
    );
    let describe = kubectl(&["describe", "streamjob", JOB, "-n", &ns]);
    assert!(
        describe.contains("Scaling"),
        "the Scaling condition in\n{describe}"
    );

    kubectl(&["delete", "streamjob", JOB, "-n", &ns, "--timeout=3m"]);
    helm(&["uninstall", "eddy", "--namespace", &operator_ns, "--wait"]);
    kubectl(&["delete", "namespace", &ns, &operator_ns, "--wait=false"]);
}
