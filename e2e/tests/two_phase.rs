//! Two-phase aggregation on a cluster: a Kafka job whose hottest key has
//! half of all events, on four pods with a CPU limit each (the test node
//! enforces it, as a kubelet does), run in one phase and in two. In one
//! phase the topic must keep a key in one partition, so one pod reads
//! and aggregates the hot key's half; in two, the producer spreads the hot
//! key over every partition (round-robin, the other keys as before). The
//! two-phase job, its pods deleted again and again and scaled from four to
//! two while it runs (each pod runs both stages), writes a PostgreSQL
//! table equal to the one-phase job's, and its status shows both stages.
//! `EDDY_E2E_BENCH=N` also runs both jobs undisturbed, N rounds, on more
//! events and prints their throughput (a benchmark, never asserted).

mod support;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use eddy_api::{
    spec::{Phase, StreamJobStatus},
    StreamJob,
};
use k8s_openapi::api::core::v1::Pod;
use kube::{api::ListParams, Api, Client, ResourceExt};
use support::*;

const MINUTE: Duration = Duration::from_secs(60);
/// Events of the exactness runs: ten seconds and more of work for the
/// pods (debug builds, 450m of CPU each).
const EVENTS: u64 = 1_500_000;
/// Events of the benchmark runs: long enough that starting and the
/// operator noticing the end (every few seconds) weigh little.
const BENCH_EVENTS: u64 = 3_000_000;
const PARTITIONS: i32 = 4;

/// The events, each with the partition a topic keyed by user puts it in
/// and the one a producer that spreads `key-0` round-robin does (the
/// others keyed as before): `key-0` has half of them, the
/// other half is spread over 999 other users; 1 s of jitter (never late:
/// the out-of-orderness is 2 s), every 500th 20 s late (a revision of a
/// fired window, within the 30 s of allowed lateness).
fn events(count: u64) -> Vec<(i32, i32, String)> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|i| {
            let user = if next() % 2 == 0 { 0 } else { 1 + next() % 999 };
            let late = if i % 500 == 250 { 20_000 } else { 0 };
            let ts = START + i as i64 / 5 - (next() % 1_000) as i64 - late;
            let value = (next() % 10_000) as f64 / 100.0;
            let payload =
                serde_json::json!({"user": format!("key-{user}"), "ts": ts, "value": value});
            let keyed = (user % PARTITIONS as u64) as i32;
            let spread = if user == 0 {
                (i % PARTITIONS as u64) as i32
            } else {
                keyed
            };
            (keyed, spread, payload.to_string())
        })
        .collect()
}

/// How a job runs: its checkpoint interval and each pod's CPU (request
/// and limit).
#[derive(Clone, Copy)]
struct Run {
    interval: &'static str,
    cpu: &'static str,
}

/// The exactness runs: a checkpoint every 2 s, so that deletions land
/// between checkpoints.
const EXACT: Run = Run {
    interval: "2s",
    cpu: "450m",
};

/// The benchmark runs: checkpoints every 10 s (the default), and 250m per
/// pod, so that the four pods' CPU (1 core) and the Kafka broker, the
/// control plane and the test fit on a 2-core machine: with more, the
/// two-phase pods wait for a core rather than for their limit, and the
/// figure measures the machine, not the job.
const BENCH: Run = Run {
    interval: "10s",
    cpu: "250m",
};

/// `EDDY_E2E_BENCH=N`: run the benchmark, N rounds (1 when not a number).
fn bench_rounds() -> Option<u32> {
    let value = std::env::var("EDDY_E2E_BENCH").ok()?;
    Some(value.parse().unwrap_or(1).max(1))
}

/// What a test does to a running job.
#[derive(Clone, Copy)]
enum Disturb {
    /// Deletes pod `n` modulo the pods there are.
    Delete(u32),
    /// `kubectl scale` to this many pods.
    Scale(u32),
}

struct Cluster {
    client: Client,
    ns: String,
}

impl Cluster {
    /// Applies job `name` over `topic`, in two phases or one, writing to
    /// table `table`.
    fn apply(&self, name: &str, topic: &str, table: &str, two_phase: bool, run: Run) {
        let Run { interval, cpu } = run;
        let hot_keys = if two_phase {
            format!(
                "\n  hotKeys: {{twoPhase: true, saltBuckets: 4, partials: {{brokers: '{}'}}}}",
                cluster_kafka()
            )
        } else {
            String::new()
        };
        let job = format!(
            "apiVersion: eddy.dev/v1alpha1
kind: StreamJob
metadata: {{name: {name}, namespace: {ns}}}
spec:
  source:
    kafka: {{brokers: '{kafka}', topic: {topic}, stopAtEnd: true}}
  partitions: {PARTITIONS}
  parallelism: 4
  keyField: user
  eventTime: {{field: ts, format: epochMillis, maxOutOfOrderness: 2s, idleTimeout: 1h}}
  window: {{tumbling: {{size: 10s}}}}
  allowedLateness: 30s
  aggregations: [{{op: count, name: events}}, {{op: sum, field: value, name: total}},
                 {{op: max, field: value, name: high}}]
  sinks: [{{postgres: {{urlSecret: {{name: db, key: url}}, table: {table}, createTable: true}}}}]{hot_keys}
  checkpoints:
    interval: {interval}
    store: s3://eddy-e2e/two-phase
    endpoint: '{s3}'
    credentialsSecret: {{name: s3}}
    deleteOnJobDeletion: true
  resources: {{requests: {{cpu: {cpu}, memory: 256Mi}}, limits: {{cpu: {cpu}}}}}
",
            ns = self.ns,
            s3 = cluster_s3(),
            kafka = cluster_kafka(),
        );
        let path = std::env::temp_dir().join(format!("{}-{name}.yaml", self.ns));
        std::fs::write(&path, job).unwrap();
        kubectl(&["apply", "-f", path.to_str().unwrap()]);
    }

    async fn job(&self, name: &str) -> Result<StreamJob, String> {
        let jobs: Api<StreamJob> = Api::namespaced(self.client.clone(), &self.ns);
        jobs.get(name).await.map_err(|e| e.to_string())
    }

    async fn status(&self, name: &str) -> StreamJobStatus {
        let job = self.job(name).await.unwrap();
        job.status.unwrap_or_default()
    }

    async fn pods(&self, name: &str) -> Vec<Pod> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns);
        let selector = format!("app.kubernetes.io/instance={name}");
        api.list(&ListParams::default().labels(&selector))
            .await
            .map(|l| l.items)
            .unwrap_or_default()
    }

    /// Waits until job `name`, just applied, finishes, and says how it
    /// went; `meanwhile` may disturb it (six deletions at most).
    async fn run_to_end(
        &self,
        name: &str,
        mut meanwhile: impl FnMut(Duration) -> Option<Disturb>,
    ) -> Ended {
        let started = Instant::now();
        let mut deleted = 0;
        let mut pods_finished = None;
        let mut progress = Vec::new();
        let admin = eddy_operator::scheduler::AdminClient::default();
        for polled in 0u64.. {
            // The pods publish their figures every second: asked as often.
            let look = self.look(name, &admin, polled % 4 == 0).await;
            if let Some(watermark) = look.watermark {
                progress.push((started.elapsed(), watermark));
            }
            if pods_finished.is_none() && look.finished {
                pods_finished = Some(started.elapsed());
            }
            let status = self
                .job(name)
                .await
                .ok()
                .and_then(|j| j.status)
                .unwrap_or_default();
            if status.phase == Some(Phase::Finished) {
                let finished = started.elapsed();
                return Ended {
                    pods_finished: pods_finished.unwrap_or(finished),
                    finished,
                    deleted,
                    progress,
                };
            }
            assert!(
                started.elapsed() < 10 * MINUTE,
                "{name} never finished: {status:?}"
            );
            let disturb = meanwhile(started.elapsed());
            if let Some(Disturb::Scale(replicas)) = disturb {
                let (job, replicas) = (format!("streamjob/{name}"), replicas.to_string());
                kubectl(&["scale", &job, "-n", &self.ns, "--replicas", &replicas]);
                eprintln!("[e2e] scaled {name} to {replicas}");
            }
            if let Some(Disturb::Delete(ordinal)) = disturb.filter(|_| deleted < 6) {
                let pods = self.pods(name).await;
                if let Some(pod) = pods.get(ordinal as usize % pods.len().max(1)) {
                    let pod = pod.name_any();
                    // A pod a scale-down just removed is not there to
                    // delete (nothing said, nothing counted).
                    let said = kubectl(&[
                        "delete",
                        "pod",
                        &pod,
                        "-n",
                        &self.ns,
                        "--force",
                        "--grace-period=0",
                        "--wait=false",
                        "--ignore-not-found",
                    ]);
                    if !said.trim().is_empty() {
                        eprintln!("[e2e] deleted {pod}");
                        deleted += 1;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        unreachable!("the loop above ends only by returning")
    }

    /// What the pods of job `name` say on their admin API (the test
    /// node's pods listen on their own loopback addresses): whether every
    /// one finished (its input ended and every window is out), and the
    /// job's output watermark, the lowest of the pods' (of their merge
    /// stage in a two-phase job), when every pod has one and `figures`
    /// asks for it.
    async fn look(
        &self,
        name: &str,
        admin: &eddy_operator::scheduler::AdminClient,
        figures: bool,
    ) -> Look {
        let look = Look::default();
        let pods = self.pods(name).await;
        let mut bases = Vec::new();
        for pod in &pods {
            let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
            match ip {
                Some(ip) if pod.metadata.deletion_timestamp.is_none() => {
                    bases.push(format!("http://{ip}:9090"));
                }
                _ => return look,
            }
        }
        if bases.is_empty() {
            return look;
        }
        let mut finished = true;
        let mut watermark = figures.then_some(i64::MAX);
        for base in &bases {
            finished &= admin.list(base).await.is_ok_and(|l| l.finished);
            if !figures {
                continue;
            }
            let pod = admin.stats(base).await.ok().and_then(|s| {
                match s.stages.iter().find(|s| s.stage == "merge") {
                    Some(merge) => merge.watermark_ms,
                    None => s.watermark_ms,
                }
            });
            watermark = watermark.zip(pod).map(|(a, b)| a.min(b));
        }
        Look {
            finished,
            watermark,
        }
    }
}

#[derive(Default)]
struct Look {
    finished: bool,
    watermark: Option<i64>,
}

/// How a job ran, timed from `kubectl apply` (its pods' start included: a
/// short job may end before a poll sees them all ready).
struct Ended {
    /// Until every pod said it finished (its admin API, polled every
    /// 250 ms): the job's own time.
    pods_finished: Duration,
    /// Until its phase was Finished: the operator looks at a running job
    /// every `min(checkpoints.interval, 10 s)`, every 2 s once a pod
    /// finished, so this is up to that much later.
    finished: Duration,
    deleted: usize,
    /// The job's output watermark over time (the pods publish it every
    /// second; polled as often).
    progress: Vec<(Duration, i64)>,
}

impl Ended {
    /// The job's steady throughput: events per second while its output
    /// watermark crossed the middle 80% of the input's `events` (their
    /// times run evenly from [`START`], 5 a millisecond), from the
    /// least-squares slope of the watermark over time. Starting the pods
    /// and the last checkpoints are not in it, as in a job that runs for
    /// hours.
    fn steady_rate(&self, events: u64) -> Option<f64> {
        let span = (events / 5) as i64;
        let (low, high) = (START + span / 10, START + span * 9 / 10);
        let points: Vec<(f64, f64)> = self
            .progress
            .iter()
            .filter(|(_, w)| (low..=high).contains(w))
            .map(|(t, w)| (t.as_secs_f64(), (w - START) as f64))
            .collect();
        let n = points.len() as f64;
        let (mean_t, mean_w) = points
            .iter()
            .fold((0.0, 0.0), |(t, w), p| (t + p.0 / n, w + p.1 / n));
        let (cov, var) = points.iter().fold((0.0, 0.0), |(c, v), (t, w)| {
            (c + (t - mean_t) * (w - mean_w), v + (t - mean_t).powi(2))
        });
        // Event-time milliseconds a second, each holding 5 events.
        (points.len() >= 4 && var > 0.0).then(|| cov / var * 5.0)
    }
}

/// Topics `<prefix>-keyed` (each user in one partition) and
/// `<prefix>-spread` (`key-0` round-robin), holding `count` events.
async fn topics(brokers: &str, prefix: &str, count: u64) -> (String, String) {
    let (keyed, spread) = (format!("{prefix}-keyed"), format!("{prefix}-spread"));
    eddy_testkit::produce::create_topics(brokers, &[(&keyed, PARTITIONS), (&spread, PARTITIONS)])
        .await;
    let events = events(count);
    let by = |pick: fn(&(i32, i32, String)) -> i32| -> Vec<(i32, String)> {
        events.iter().map(|e| (pick(e), e.2.clone())).collect()
    };
    produce(brokers, &keyed, &by(|e| e.0));
    produce(brokers, &spread, &by(|e| e.1));
    (keyed, spread)
}

/// The results table: (key, window start) → aggregates, every row final.
async fn results(table: &str) -> BTreeMap<(String, String), String> {
    let url = eddy_testkit::postgres_url();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let sql = format!("SELECT key, window_start::text, aggregates::text, final FROM {table}");
    let rows = client.query(&sql, &[]).await.unwrap();
    rows.iter()
        .map(|r| {
            assert!(r.get::<_, bool>(3), "a row not final");
            ((r.get(0), r.get(1)), r.get(2))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hot_key_job_in_two_phases_is_exact_through_pod_deletions_and_a_rescale() {
    let client = eddy_testkit::kube::client().await;
    let id = eddy_testkit::unique_name("hot");
    let cluster = Cluster {
        client,
        ns: format!("{id}-jobs"),
    };
    kubectl(&["create", "namespace", &cluster.ns]);
    install_chart(&format!("{id}-system"), &cluster.ns);
    eddy_testkit::s3::create_bucket("eddy-e2e").await;
    create_secrets(&cluster.ns);
    let table = |mode: &str| format!("{}_{mode}", id.replace('-', "_"));
    let brokers = eddy_testkit::kafka_brokers();
    let (keyed, spread) = topics(&brokers, &id, EVENTS).await;

    // One phase: the reference.
    cluster.apply("one", &keyed, &table("one"), false, EXACT);
    cluster.run_to_end("one", |_| None).await;
    let expected = results(&table("one")).await;
    let hot: u64 = expected
        .iter()
        .filter(|((key, _), _)| key == "key-0")
        .map(|(_, a)| {
            serde_json::from_str::<serde_json::Value>(a).unwrap()["events"]
                .as_u64()
                .unwrap()
        })
        .sum();
    eprintln!("[e2e] key-0 has {hot} of {EVENTS} events");
    assert!(
        hot * 10 > EVENTS * 4,
        "the hottest key has {hot} of {EVENTS} events"
    );

    // Two phases, a pod deleted every 2 s while it runs, scaled from 4
    // pods to 2 after the third deletion (both stages move), deleted
    // again from 6 s after that.
    cluster.apply("two", &spread, &table("two"), true, EXACT);
    let every = Duration::from_secs(2);
    let mut next = every;
    let mut step = 0;
    let Ended { deleted, .. } = cluster
        .run_to_end("two", |elapsed| {
            (elapsed >= next).then(|| {
                step += 1;
                next += if step == 4 { 3 * every } else { every };
                if step == 4 {
                    Disturb::Scale(2)
                } else {
                    Disturb::Delete(step)
                }
            })
        })
        .await;
    assert!(deleted >= 3, "only {deleted} pods deleted while it ran");
    let reasons: Vec<String> =
        eddy_testkit::kube::stream_job_events(&cluster.client, &cluster.ns, "two")
            .await
            .into_iter()
            .filter_map(|e| e.reason)
            .collect();
    for reason in ["RescaleStarted", "RescaleFinished"] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "{reason} in {reasons:?}"
        );
    }
    // Its status shows both stages (a one-phase job's, none).
    assert!(cluster.status("one").await.stages.is_empty());
    let stages = cluster.status("two").await.stages;
    eprintln!("[e2e] two-phase stages: {stages:?}");
    let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["partial", "merge"]);
    for stage in &stages {
        assert!(stage.pods >= 1 && stage.records_read > 0, "{stage:?}");
        // As the pods were when the job finished.
        assert_eq!(stage.finished_pods, stage.pods, "{stage:?}");
        assert_eq!(stage.backlog, Some(0), "{stage:?}");
        assert!(stage.last_checkpoint.is_some(), "{stage:?}");
    }
    // No origin idles here: a partial after its window closed is a
    // restarted first stage's replay, never late.
    assert_eq!(stages[1].late, 0, "{:?}", stages[1]);
    let got = results(&table("two")).await;
    assert_eq!(got.len(), expected.len(), "no missing or extra results");
    assert!(got == expected, "every result as the one-phase job has it");

    // Deleted (`deleteOnJobDeletion: true`), the job's clean-up takes its
    // partials topic with its checkpoints.
    let topic = format!("eddy-{}-two-partials", cluster.ns);
    assert!(eddy_testkit::produce::topic_exists(&brokers, &topic));
    kubectl(&[
        "delete",
        "streamjob",
        "two",
        "-n",
        &cluster.ns,
        "--wait=false",
    ]);
    let deadline = Instant::now() + 3 * MINUTE;
    while eddy_testkit::produce::topic_exists(&brokers, &topic) {
        assert!(Instant::now() < deadline, "{topic} outlived its job");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    if let Some(rounds) = bench_rounds() {
        // Nothing disturbed; the jobs alternate, round after round, so
        // that a busy spell of the machine shows as a spread.
        let (keyed, spread) = topics(&brokers, &format!("{id}-bench"), BENCH_EVENTS).await;
        let mut rows = Vec::new();
        for round in 1..=rounds {
            let (one, two) = (format!("bench-one-{round}"), format!("bench-two-{round}"));
            let (one_table, two_table) =
                (table(&format!("b1_{round}")), table(&format!("b2_{round}")));
            cluster.apply(&one, &keyed, &one_table, false, BENCH);
            let one_ran = cluster.run_to_end(&one, |_| None).await;
            cluster.apply(&two, &spread, &two_table, true, BENCH);
            let two_ran = cluster.run_to_end(&two, |_| None).await;
            eprintln!(
                "[e2e] {two} stages: {:?}",
                cluster.status(&two).await.stages
            );
            assert!(
                results(&one_table).await == results(&two_table).await,
                "the benchmark's jobs agree"
            );
            rows.push((round, one_ran, two_ran));
        }
        // Two figures of each job: its steady throughput (events a second
        // while its output watermark crossed the middle 80% of the input)
        // and its time, from apply until every pod said it finished (the
        // operator's phase Finished follows within its polling interval,
        // 10 s here), which also holds starting the pods and the last
        // checkpoints.
        println!(
            "| round ({BENCH_EVENTS} events, 4 pods of {} CPU) | one phase: steady events/s | s (Finished) | two phases: steady events/s | s (Finished) | ratio: steady | ratio: time |",
            BENCH.cpu
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        let (mut steady, mut whole) = (Vec::new(), Vec::new());
        for (round, one, two) in rows {
            let rates = (one.steady_rate(BENCH_EVENTS), two.steady_rate(BENCH_EVENTS));
            let ratio = rates.0.zip(rates.1).map(|(a, b)| b / a);
            steady.extend(ratio);
            let time = one.pods_finished.as_secs_f64() / two.pods_finished.as_secs_f64();
            whole.push(time);
            let shown =
                |r: Option<f64>, unit: &str| r.map_or("-".to_string(), |r| format!("{r:.2}{unit}"));
            println!(
                "| {round} | {} | {:.1} ({:.1}) | {} | {:.1} ({:.1}) | {} | {time:.2}x |",
                rates.0.map_or("-".into(), |r| format!("{r:.0}")),
                one.pods_finished.as_secs_f64(),
                one.finished.as_secs_f64(),
                rates.1.map_or("-".into(), |r| format!("{r:.0}")),
                two.pods_finished.as_secs_f64(),
                two.finished.as_secs_f64(),
                shown(ratio, "x"),
            );
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied()
        };
        println!(
            "two phases / one phase, median of {rounds}: steady throughput {}, time {}",
            median(steady).map_or("-".into(), |r| format!("{r:.2}x")),
            median(whole).map_or("-".into(), |r| format!("{r:.2}x")),
        );
    }
    let operator_ns = format!("{id}-system");
    helm(&["uninstall", "eddy", "--namespace", &operator_ns, "--wait"]);
    kubectl(&[
        "delete",
        "namespace",
        &cluster.ns,
        &operator_ns,
        "--wait=false",
    ]);
}

/// The steady rate is the watermark's slope across the middle of the
/// input, whatever came before and after it.
#[test]
fn the_steady_rate_is_the_slope_in_the_middle() {
    let events = 1_000_000; // 200 s of event time
                            // 10 s to start, then 50 s of event time a second, then a long end.
    let mut progress = vec![(Duration::from_secs(3), START - 5_000)];
    progress.extend((0..=40).map(|i| {
        let t = Duration::from_millis(10_000 + i * 100);
        (t, START + i as i64 * 5_000)
    }));
    progress.push((Duration::from_secs(40), START + 200_000));
    let ended = Ended {
        pods_finished: Duration::from_secs(40),
        finished: Duration::from_secs(45),
        deleted: 0,
        progress,
    };
    let rate = ended.steady_rate(events).unwrap();
    assert!((rate - 250_000.0).abs() < 1.0, "{rate}");
    let idle = Ended {
        progress: Vec::new(),
        ..ended
    };
    assert_eq!(idle.steady_rate(events), None);
}
