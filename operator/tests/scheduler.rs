//! The checkpoint scheduler against real processors. Two `eddy-processor`
//! processes run one job the way the operator's pods do: the same spec, an
//! assignment that splits its four partitions between them, `POD_NAME`,
//! `--external-checkpoints` and an admin API. [`Scheduler::step`] then
//! drives their checkpoints over HTTP, as the controller does.
//!
//! What it proves, end to end:
//! - rounds get strictly increasing ids, every pod takes each round under
//!   the same id (one manifest per partition per id in the shared store),
//!   and the scheduler's memory and the status computed from it follow;
//! - a final round pauses every pod (`/readyz` answers 503), and a paused
//!   pod stops without taking another checkpoint;
//! - with a pod gone, no round starts or completes, the step says which
//!   pods did not answer, and CheckpointsHealthy turns False once the lag
//!   passes `spec.checkpoints.lagThreshold`.
//!
//! The processor binary is the workspace's debug build; it is built first
//! when missing.

use std::{
    collections::VecDeque,
    io::BufRead,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use eddy_api::{
    spec::{CheckpointRecord, Phase, PodAssignment, StreamJobStatus},
    HumanDuration, StreamJob,
};
use eddy_operator::{
    controller::status::{self, Facts},
    scheduler::{self, AdminClient, JobCheckpoints, Outcome, Scheduler, Timing},
};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const JOB: &str = "sched";
const ASSIGNMENT: &str = "- {ordinal: 0, partitions: [0, 1]}\n- {ordinal: 1, partitions: [2, 3]}\n";
/// How long anything may take before the test gives up: generous, it is
/// not a speed check.
const DEADLINE: Duration = Duration::from_secs(60);
/// How often the test steps the scheduler.
const TICK: Duration = Duration::from_millis(100);
/// Stderr lines kept per processor for failure messages.
const LOG_LINES: usize = 60;

/// The job both processors run. The sink path is relative: each process
/// runs in its own directory, as each pod has its own filesystem; the
/// checkpoint store is shared, as a bucket would be. `retain` keeps every
/// checkpoint this test takes, so all of them can be checked on disk.
fn job_yaml(dir: &Path) -> String {
    format!(
        "apiVersion: eddy.dev/v1alpha1
kind: StreamJob
metadata: {{name: {JOB}, namespace: default}}
spec:
  source: {{generator: {{rate: 2000, realtime: true, keys: 50}}}}
  keyField: user
  eventTime: {{field: ts, idleTimeout: 1s}}
  window: {{tumbling: {{size: 1s}}}}
  partitions: 4
  parallelism: 2
  sinks: [{{file: {{path: results.jsonl}}}}]
  checkpoints: {{store: 'file://{}/ckpt', interval: 1h, retain: 10}}
",
        dir.display()
    )
}

/// `<target>/debug/eddy-processor`, built when missing.
fn processor_bin() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the operator crate is in the workspace")
        .to_path_buf();
    // A relative CARGO_TARGET_DIR is taken as relative to the workspace.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), |t| workspace.join(t));
    let bin = target
        .join("debug")
        .join(format!("eddy-processor{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "eddy-processor", "--bin", "eddy-processor"])
            .current_dir(&workspace)
            .status()
            .expect("running cargo build for eddy-processor");
        assert!(status.success(), "cargo build of eddy-processor: {status}");
        assert!(bin.exists(), "{} missing after the build", bin.display());
    }
    bin
}

/// One processor process: a pod of the job.
struct Processor {
    name: String,
    child: Child,
    /// Its admin API, `http://127.0.0.1:PORT`.
    url: String,
    /// The last lines of its stderr.
    log: Arc<Mutex<VecDeque<String>>>,
}

/// The processors, killed when the test ends however it ends.
#[derive(Default)]
struct Pods(Vec<Processor>);

impl Drop for Pods {
    fn drop(&mut self) {
        for p in &mut self.0 {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

impl Pods {
    /// Starts the pod of `ordinal` and waits for its admin address.
    fn start(&mut self, bin: &Path, dir: &Path, ordinal: u32) {
        let name = format!("{JOB}-{ordinal}");
        let home = dir.join(&name);
        std::fs::create_dir_all(&home).unwrap();
        let mut child = Command::new(bin)
            .arg("run")
            .arg(dir.join("job.yaml"))
            .arg("--assignment")
            .arg(dir.join("assignment.yaml"))
            .args(["--admin-addr", "127.0.0.1:0", "--external-checkpoints"])
            .env("POD_NAME", &name)
            .current_dir(&home)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (address, addressed) = mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(addr) = line.strip_prefix("admin API on http://") {
                    let _ = address.send(addr.to_string());
                }
                let mut lines = lines.lock().unwrap();
                if lines.len() == LOG_LINES {
                    lines.pop_front();
                }
                lines.push_back(line);
            }
        });
        // Owned by the guard before anything can fail.
        self.0.push(Processor {
            name: name.clone(),
            child,
            url: String::new(),
            log,
        });
        match addressed.recv_timeout(DEADLINE) {
            Ok(addr) => self.0.last_mut().unwrap().url = format!("http://{addr}"),
            Err(e) => panic!("{name} printed no admin address ({e})\n{}", self.logs()),
        }
    }

    fn urls(&self) -> Vec<String> {
        self.0.iter().map(|p| p.url.clone()).collect()
    }

    /// Every processor's last stderr lines, for failure messages.
    fn logs(&self) -> String {
        self.0
            .iter()
            .map(|p| {
                let lines = p.log.lock().unwrap();
                let text: Vec<&str> = lines.iter().map(String::as_str).collect();
                format!("--- {} stderr (last lines):\n{}", p.name, text.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Panics with the processors' logs once `since` is `DEADLINE` ago.
fn check_deadline(since: Instant, what: &str, pods: &Pods) {
    assert!(
        since.elapsed() < DEADLINE,
        "{what}: not within {DEADLINE:?}\n{}",
        pods.logs()
    );
}

/// The HTTP status of `GET {url}{path}`; `None` when nothing answers.
async fn get_status(url: &str, path: &str) -> Option<u16> {
    let addr = url.strip_prefix("http://")?;
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        // "HTTP/1.1 200 OK"
        String::from_utf8_lossy(&answer).get(9..12)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

/// The manifest of checkpoint `id` of partition `p` in the shared store.
fn manifest(dir: &Path, p: u32, id: u64) -> PathBuf {
    dir.join(format!("ckpt/default/{JOB}/p{p}/checkpoints/{id:020}.json"))
}

fn assert_on_disk(dir: &Path, id: u64) {
    for p in 0..4 {
        let m = manifest(dir, p, id);
        assert!(
            m.exists(),
            "checkpoint {id} of partition {p}: no {}",
            m.display()
        );
    }
}

/// The job as the API server would hand it to the controller.
fn stream_job(yaml: &str, created: Timestamp, status: Option<StreamJobStatus>) -> StreamJob {
    let mut job = eddy_api::load::parse_valid(yaml).expect("the test's job is valid");
    job.metadata.creation_timestamp = Some(Time(created));
    job.metadata.generation = Some(1);
    job.status = status;
    job
}

fn facts(state: &JobCheckpoints, ready_pods: i32, now: Timestamp) -> Facts {
    Facts {
        phase: Phase::Running,
        pods: 2,
        ready_pods,
        desired_pods: 2,
        assignment: serde_yaml_ng::from_str::<Vec<PodAssignment>>(ASSIGNMENT).unwrap(),
        assignment_version: 0,
        last_checkpoint: state.last_completed.clone(),
        reconciled_spec: None,
        rolled_out: true,
        observed_generation: Some(1),
        transition: None,
        degraded: None,
        paused: false,
        state_epoch: None,
        finished: None,
        insight: Default::default(),
        autoscaling: None,
        now,
    }
}

fn condition<'a>(s: &'a StreamJobStatus, type_: &str) -> &'a Condition {
    s.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no condition {type_} in {s:?}"))
}

fn reason(c: &Condition) -> (&str, &str) {
    (c.status.as_str(), c.reason.as_str())
}

/// The rounds the scheduler started and completed, in order.
#[derive(Default)]
struct Rounds {
    started: Vec<u64>,
    completed: Vec<CheckpointRecord>,
}

impl Rounds {
    /// Records what a step with every pod up did, checking it against the
    /// rounds so far.
    fn record(&mut self, outcome: &Outcome, pods: &Pods) {
        assert_eq!(
            (outcome.pods, outcome.reachable, outcome.failed.as_deref()),
            (2, 2, None),
            "{outcome:?}\n{}",
            pods.logs()
        );
        if let Some(done) = &outcome.completed {
            assert_eq!(
                Some(&done.id),
                self.started.last(),
                "a completed round is the one the scheduler started last: {outcome:?}, started {:?}",
                self.started
            );
            self.completed.push(done.clone());
        }
        if let Some(id) = outcome.started {
            assert!(
                self.started.last().is_none_or(|&last| last < id),
                "ids increase: {id} after {:?}",
                self.started
            );
            self.started.push(id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_scheduled_checkpoints_on_two_real_processors() {
    let created = Timestamp::now();
    let bin = processor_bin();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let yaml = job_yaml(dir);
    std::fs::write(dir.join("job.yaml"), &yaml).unwrap();
    std::fs::write(dir.join("assignment.yaml"), ASSIGNMENT).unwrap();

    // 1. Two pods of one job, each on its own partitions.
    let mut pods = Pods::default();
    pods.start(&bin, dir, 0);
    pods.start(&bin, dir, 1);
    let urls = pods.urls();
    let since = Instant::now();
    for url in &urls {
        while get_status(url, "/readyz").await != Some(200) {
            check_deadline(since, &format!("{url}/readyz answering 200"), &pods);
            tokio::time::sleep(TICK).await;
        }
    }

    // 2. Periodic rounds, as the controller steps them on every reconcile.
    let scheduler = Scheduler::default();
    let mut state = JobCheckpoints::default();
    let timing = Timing {
        interval: Duration::from_millis(300),
        timeout: Duration::from_secs(20),
    };
    let mut rounds = Rounds::default();
    let since = Instant::now();
    while rounds.completed.len() < 3 {
        check_deadline(since, "three completed checkpoint rounds", &pods);
        let outcome = scheduler
            .step(&urls, &mut state, timing, false, Timestamp::now())
            .await;
        rounds.record(&outcome, &pods);
        tokio::time::sleep(TICK).await;
    }
    let last = rounds.completed.last().unwrap().clone();
    assert_eq!(state.last_completed.as_ref(), Some(&last));
    assert_eq!(state.failures, 0);
    assert!(last.bytes_total > 0, "{last:?}");
    assert!(last.time.parse::<Timestamp>().is_ok(), "{last:?}");
    for c in &rounds.completed {
        assert_on_disk(dir, c.id);
    }
    // Both pods list the same completed ids: the ones the scheduler chose.
    let ids: Vec<u64> = rounds.completed.iter().map(|c| c.id).collect();
    for (url, listing) in urls.iter().zip(scheduler.list_all(&urls).await) {
        let listing = listing.unwrap_or_else(|| panic!("{url} did not list"));
        let listed: Vec<u64> = listing.checkpoints.iter().map(|c| c.id).collect();
        assert!(
            listed.starts_with(&ids),
            "{url}: {listed:?}, expected {ids:?} first"
        );
        assert!(!listing.paused, "{url}: {listing:?}");
    }

    // The status the controller would write now.
    let now = Timestamp::now();
    let healthy = status::compute(&stream_job(&yaml, created, None), facts(&state, 2, now));
    let c = condition(&healthy, status::CHECKPOINTS_HEALTHY);
    assert_eq!(reason(c), ("True", "CheckpointsCompleting"), "{c:?}");
    assert!(
        c.message
            .starts_with(&format!("checkpoint {} completed", last.id)),
        "{c:?}"
    );
    assert_eq!(
        reason(condition(&healthy, status::READY)),
        ("True", "AllPodsReady")
    );
    assert_eq!(
        reason(condition(&healthy, status::SPEC_VALID)),
        ("True", "Valid")
    );
    assert_eq!(healthy.last_checkpoint.as_ref(), Some(&last));
    let lag_before = status::lag_seconds(
        &stream_job(&yaml, created, None),
        &facts(&state, 2, Timestamp::now()),
    )
    .expect("running: a lag");
    assert!(
        (0..60).contains(&lag_before),
        "lag right after a checkpoint: {lag_before}s"
    );

    // 3. A final round, as before a rescale: it starts once the round in
    // flight (if any) is collected.
    let since = Instant::now();
    let final_id = loop {
        check_deadline(since, "a final round starting", &pods);
        let outcome = scheduler
            .step(&urls, &mut state, timing, true, Timestamp::now())
            .await;
        rounds.record(&outcome, &pods);
        if let Some(id) = outcome.started {
            assert!(state
                .round
                .as_ref()
                .is_some_and(|r| r.is_final && r.id == id));
            break id;
        }
        tokio::time::sleep(TICK).await;
    };
    // Collected without forcing again (a forced step right after the final
    // round completes would start yet another round), and with an interval
    // that starts nothing periodic meanwhile.
    let waiting = Timing {
        interval: Duration::from_secs(3600),
        ..timing
    };
    let since = Instant::now();
    let done = loop {
        check_deadline(since, &format!("final checkpoint {final_id}"), &pods);
        let outcome = scheduler
            .step(&urls, &mut state, waiting, false, Timestamp::now())
            .await;
        assert_eq!(outcome.started, None, "{outcome:?}");
        rounds.record(&outcome, &pods);
        if let Some(done) = outcome.completed {
            break done;
        }
        tokio::time::sleep(TICK).await;
    };
    assert_eq!(done.id, final_id);
    assert_eq!(state.last_completed.as_ref(), Some(&done));
    assert_eq!(state.round, None);
    assert_on_disk(dir, final_id);
    let client = AdminClient::default();
    for url in &urls {
        assert_eq!(
            get_status(url, "/readyz").await,
            Some(503),
            "{url}: paused after the final checkpoint"
        );
        assert_eq!(get_status(url, "/healthz").await, Some(200), "{url}");
        let listing = client.list(url).await.unwrap();
        assert!(listing.paused, "{url}: {listing:?}");
        assert_eq!(listing.in_flight, None, "{url}: {listing:?}");
    }

    // 4. Pod 1 dies: nothing completes or starts, and the lag grows.
    pods.0[1].child.kill().unwrap();
    pods.0[1].child.wait().unwrap();
    let short = Timing {
        interval: Duration::from_millis(200),
        timeout: Duration::from_secs(10),
    };
    let since = Instant::now();
    let mut refusals = 0;
    loop {
        check_deadline(since, "stepping with a pod gone", &pods);
        let now = Timestamp::now();
        let outcome = scheduler.step(&urls, &mut state, short, false, now).await;
        assert_eq!(
            (
                outcome.pods,
                outcome.reachable,
                outcome.started,
                &outcome.completed
            ),
            (2, 1, None, &None),
            "{outcome:?}"
        );
        if let Some(why) = &outcome.failed {
            assert_eq!(why, "1 of 2 pods did not answer; no checkpoint started");
            refusals += 1;
        }
        // At least 1.5 s, and until the last checkpoint is older than the
        // 1 s threshold below (lag counts whole seconds) and than it was
        // with both pods up.
        let lag = scheduler::lag_seconds(state.last_completed.as_ref(), created, now);
        if since.elapsed() >= Duration::from_millis(1500) && refusals > 0 && lag > 1.max(lag_before)
        {
            break;
        }
        tokio::time::sleep(TICK).await;
    }
    assert_eq!(state.last_completed.as_ref(), Some(&done));
    assert_eq!(state.round, None);
    assert_eq!(
        state.failures, 0,
        "a round that never started is no failure"
    );

    let mut strict = stream_job(&yaml, created, Some(healthy.clone()));
    strict.spec.checkpoints.lag_threshold = HumanDuration::new("1s");
    let now = Timestamp::now();
    let stale = status::compute(&strict, facts(&state, 1, now));
    let c = condition(&stale, status::CHECKPOINTS_HEALTHY);
    assert_eq!(reason(c), ("False", "CheckpointLagHigh"), "{c:?}");
    assert!(c.message.contains("lagThreshold (1s)"), "{c:?}");
    assert_eq!(c.last_transition_time, Time(now), "it just turned False");
    assert_eq!(
        reason(condition(&stale, status::READY)),
        ("False", "PodsNotReady")
    );
    let lag_after = status::lag_seconds(&strict, &facts(&state, 1, now)).expect("running: a lag");
    assert!(lag_after > 1, "{lag_after}s");
    assert!(lag_after > lag_before, "{lag_after}s after {lag_before}s");
    assert_eq!(stale.last_checkpoint.as_ref(), Some(&done));
    eprintln!(
        "rounds {:?}, final {final_id}; lag {lag_before}s with both pods, {lag_after}s after \
         {refusals} steps with one gone",
        rounds.started
    );

    // 5. The paused pod stops cleanly on SIGINT, without a checkpoint after
    // the final one.
    let interrupted = Command::new("kill")
        .args(["-INT", &pods.0[0].child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let since = Instant::now();
    let exit = loop {
        if let Some(exit) = pods.0[0].child.try_wait().unwrap() {
            break exit;
        }
        check_deadline(since, "sched-0 stopping on SIGINT", &pods);
        tokio::time::sleep(TICK).await;
    };
    assert!(exit.success(), "{exit}\n{}", pods.logs());
    for p in 0..2 {
        let after = manifest(dir, p, final_id + 1);
        assert!(!after.exists(), "{}", after.display());
    }
}
