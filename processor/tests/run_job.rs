//! `eddy-processor run` end to end: the binary on StreamJob files, checked
//! against results worked out by hand.

mod common;

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use common::{read_lines, stderr, BIN};
use serde_json::Value;

/// A job file in a fresh directory, with its result, late and invalid
/// outputs as files in that directory.
struct Job {
    dir: tempfile::TempDir,
}

impl Job {
    /// `spec` is the YAML body under `spec:` minus the outputs, indented by 2.
    fn new(spec: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let yaml = format!(
            "apiVersion: eddy.dev/v1alpha1\nkind: StreamJob\nmetadata:\n  name: test\nspec:\n{spec}\n  \
             sinks: [{{file: {{path: {d}/results.jsonl}}}}]\n  \
             lateOutput: {{file: {{path: {d}/late.jsonl}}}}\n  \
             invalidOutput: {{file: {{path: {d}/invalid.jsonl}}}}\n  \
             checkpoints: {{store: 'file://{d}/checkpoints'}}\n"
        );
        std::fs::write(dir.path().join("job.yaml"), yaml).unwrap();
        Self { dir }
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("job.yaml")
    }

    fn run(&self) -> Output {
        Command::new(BIN)
            .arg("run")
            .arg(self.file())
            .output()
            .unwrap()
    }

    fn lines(&self, name: &str) -> Vec<Value> {
        read_lines(&self.dir.path().join(name))
    }

    /// Sum of an integer aggregate over every result.
    fn total(&self, aggregate: &str) -> u64 {
        self.lines("results.jsonl")
            .iter()
            .map(|r| r["aggregates"][aggregate].as_u64().unwrap())
            .sum()
    }

    fn bytes(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(name)).unwrap_or_default()
    }
}

fn stdout_lines(out: &Output) -> Vec<Value> {
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const ONE_KEY: &str = "  source:
    generator: {count: 100, rate: 10, keys: 1, startTime: '2026-01-01T00:00:00Z'}
  keyField: user
  eventTime: {field: ts, maxOutOfOrderness: 0s}
  window: {tumbling: {size: 1s}}
  aggregations: [{op: count, name: n}, {op: sum, field: value, name: total}]";

#[test]
fn ten_events_per_second_make_ten_windows_of_ten() {
    let job = Job::new(ONE_KEY);
    let out = job.run();
    assert!(out.status.success(), "{}", stderr(&out));
    let results = job.lines("results.jsonl");
    assert_eq!(results.len(), 10);
    let start = 1_767_225_600_000_i64;
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["job"], "test");
        assert_eq!(r["key"], "key-0");
        assert_eq!(r["window"]["startMs"], start + i as i64 * 1000);
        assert_eq!(r["window"]["endMs"], start + (i as i64 + 1) * 1000);
        assert_eq!(r["aggregates"]["n"], 10, "{r}");
        assert!(r["aggregates"]["total"].as_f64().unwrap() >= 0.0);
        assert_eq!(r["revision"], 1);
        assert_eq!(r["final"], true);
    }
    assert_eq!(results[0]["window"]["start"], "2026-01-01T00:00:00Z");
    let ids: BTreeSet<_> = results.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 10, "result ids are distinct");
    let err = stderr(&out);
    assert!(
        err.contains("finished: 100 events")
            && err.contains("10 windows emitted, 0 late, 0 invalid"),
        "{err}"
    );
}

#[test]
fn same_file_twice_gives_identical_bytes() {
    let spec = "  source:
    generator: {seed: 9, count: 20000, keys: 50, keySkew: 1.1, jitter: 2s, lateFraction: 0.01}
  keyField: user
  eventTime: {field: ts, format: epochMillis, maxOutOfOrderness: 2s}
  window: {tumbling: {size: 1s}}
  lateData: output
  aggregations: [{op: count}, {op: sum, field: value}]";
    let (a, b) = (Job::new(spec), Job::new(spec));
    assert!(a.run().status.success());
    assert!(b.run().status.success());
    assert!(!a.bytes("results.jsonl").is_empty());
    assert_eq!(a.bytes("results.jsonl"), b.bytes("results.jsonl"));
    assert_eq!(a.bytes("late.jsonl"), b.bytes("late.jsonl"));
    let other = Job::new(&spec.replace("seed: 9", "seed: 10"));
    assert!(other.run().status.success());
    assert_ne!(a.bytes("results.jsonl"), other.bytes("results.jsonl"));
}

#[test]
fn every_event_is_counted_once_or_reported_late() {
    let spec = "  source:
    generator: {count: 50000, rate: 500, keys: 30, keySkew: 0.8, jitter: 1s, lateFraction: 0.02, lateBy: 30s}
  keyField: user
  eventTime: {field: ts, maxOutOfOrderness: 1s}
  window: {tumbling: {size: 5s}}
  lateData: output";
    let job = Job::new(spec);
    let out = job.run();
    assert!(out.status.success(), "{}", stderr(&out));
    let counted = job.total("count");
    let late = job.lines("late.jsonl");
    assert!(late.len() > 500 && late.len() < 1500, "{} late", late.len());
    assert_eq!(counted + late.len() as u64, 50_000);
    for l in &late {
        assert_eq!(l["reason"], "late");
        // Stamped 30 s back against the processor watermark: the slowest
        // partition's, trailing by 1 s, the jitter, and its sparser keys.
        let lateness = l["latenessMs"].as_i64().unwrap();
        assert!((20_000..=31_000).contains(&lateness), "{l}");
        assert!(l["event"]["user"].as_str().unwrap().starts_with("key-"));
    }
    assert!(stderr(&out).contains(&format!("{} late, 0 invalid", late.len())));
}

#[test]
fn workers_split_the_partitions_and_give_the_same_results() {
    // Event times within the out-of-orderness bound: nothing is late, so
    // the watermark of each worker (its own partitions') decides nothing.
    let spec = |workers: u32| {
        format!(
            "  source:
    generator: {{seed: 4, count: 60000, keys: 500, keySkew: 1.1, jitter: 1s}}
  partitions: 6
  workers: {workers}
  keyField: user
  eventTime: {{field: ts, format: epochMillis, maxOutOfOrderness: 2s}}
  window: {{tumbling: {{size: 2s}}}}
  aggregations: [{{op: count}}, {{op: sum, field: value}}]"
        )
    };
    let sorted = |job: &Job| {
        let mut lines: Vec<String> = job
            .lines("results.jsonl")
            .iter()
            .map(Value::to_string)
            .collect();
        lines.sort();
        lines
    };
    let one = Job::new(&spec(1));
    let out = one.run();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("worker threads"), "{}", stderr(&out));
    assert_eq!(one.total("count"), 60_000);
    for workers in [2, 3] {
        let many = Job::new(&spec(workers));
        let out = many.run();
        let err = stderr(&out);
        assert!(out.status.success(), "{err}");
        assert!(
            err.contains(&format!("6 partitions on {workers} worker threads")),
            "{err}"
        );
        assert!(err.contains("finished: 60000 events"), "{err}");
        assert_eq!(sorted(&many), sorted(&one), "{workers} workers");
    }
}

#[test]
fn late_events_are_dropped_but_counted_by_default() {
    let spec = "  source:
    generator: {count: 5000, rate: 100, keys: 3, lateFraction: 0.05}
  partitions: 1
  keyField: user
  eventTime: {field: ts}
  window: {tumbling: {size: 10s}}";
    let job = Job::new(spec);
    let out = job.run();
    assert!(out.status.success());
    assert!(job.lines("late.jsonl").is_empty());
    let counted = job.total("count");
    let err = stderr(&out);
    let late = 5000 - counted;
    assert!(late > 100, "{late}");
    assert!(err.contains(&format!(", {late} late, 0 invalid")), "{err}");
}

#[test]
fn future_timestamps_are_rejected_or_clamped_per_policy() {
    let spec = |policy: &str| {
        format!(
            "  source:
    generator: {{count: 2000, rate: 100, keys: 2, futureFraction: 0.1, futureBy: 1h}}
  partitions: 1
  keyField: user
  eventTime: {{field: ts, format: epochMillis, maxFutureSkew: 5m, skewPolicy: {policy}}}
  window: {{tumbling: {{size: 1m}}}}
  lateData: output"
        )
    };
    let reject = Job::new(&spec("reject"));
    assert!(reject.run().status.success());
    let invalid = reject.lines("invalid.jsonl");
    assert!(
        (120..300).contains(&invalid.len()),
        "{} rejected",
        invalid.len()
    );
    let reason = invalid[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("is 1h ahead of ingestion time, beyond maxFutureSkew 5m"),
        "{reason}"
    );
    let results = reject.lines("results.jsonl");
    assert_eq!(reject.total("count"), 2000 - invalid.len() as u64);
    // The future events never moved the watermark: the 20 s of input fill
    // exactly the first minute's window, and nothing was late.
    assert_eq!(results.len(), 2, "one window per key: {results:?}");
    assert!(reject.lines("late.jsonl").is_empty());
    assert!(results
        .iter()
        .all(|r| r["window"]["start"] == "2026-01-01T00:00:00Z"));

    let clamp = Job::new(&spec("clamp"));
    let out = clamp.run();
    assert!(out.status.success());
    assert!(clamp.lines("invalid.jsonl").is_empty());
    // Clamped events count, but they pull the watermark up to ingestion time
    // plus the allowed skew, so ordinary events behind them arrive late:
    // the reason `reject` is the default.
    let late = clamp.lines("late.jsonl").len() as u64;
    assert!(late > 0);
    assert_eq!(
        clamp.total("count") + late,
        2000,
        "every event counted once"
    );
    let clamped_windows: BTreeSet<_> = clamp
        .lines("results.jsonl")
        .iter()
        .map(|r| r["window"]["start"].as_str().unwrap().to_string())
        .collect();
    // Clamped to at most 5 min ahead of ingestion: never the 1 h they claimed.
    assert!(
        clamped_windows
            .iter()
            .all(|w| w.as_str() < "2026-01-01T00:06:00Z"),
        "{clamped_windows:?}"
    );
}

#[test]
fn records_without_the_summed_field_go_to_invalid_output() {
    let spec = ONE_KEY.replace("field: value, name: total", "field: price, name: total");
    let job = Job::new(&spec);
    let out = job.run();
    assert!(out.status.success());
    let invalid = job.lines("invalid.jsonl");
    assert_eq!(invalid.len(), 100);
    assert_eq!(
        invalid[0]["reason"],
        "field \"price\" needed by aggregation \"total\" must be a finite number"
    );
    assert!(stderr(&out).contains("0 late, 100 invalid"));
}

#[test]
fn invalid_spec_lists_every_problem_and_exits_2() {
    let spec = "  source:
    generator: {count: 10}
  keyField: ''
  eventTime: {field: ts, maxOutOfOrderness: -5s}
  window: {sliding: {size: 1m, slide: 5m}}
  partitions: 2
  parallelism: 3";
    let job = Job::new(spec);
    let out = job.run();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for expected in [
        "spec.keyField: must not be empty",
        "spec.eventTime.maxOutOfOrderness: \"-5s\" is negative",
        "spec.window.sliding.slide: slide 5m is larger than size 1m",
        "spec.parallelism: 3 pods for 2 partitions",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    let validate = Command::new(BIN)
        .arg("validate")
        .arg(job.file())
        .output()
        .unwrap();
    assert_eq!(validate.status.code(), Some(2));
    assert_eq!(stderr(&validate), err);
}

#[test]
fn a_two_phase_job_it_cannot_run_is_refused_naming_the_fields() {
    let spec = "  source:
    http: {}
  keyField: user
  eventTime: {field: ts}
  window: {session: {gap: 5m}}
  hotKeys: {twoPhase: true}";
    let out = Job::new(spec).run();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for expected in [
        "spec.window.session: two-phase aggregation merges windows with fixed bounds",
        "spec.hotKeys.partials.brokers: two-phase aggregation sends partials over Kafka",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn an_endless_realtime_job_prints_progress_and_stops_on_ctrl_c() {
    let spec = "  source:
    generator: {rate: 2000, realtime: true, keys: 10}
  keyField: user
  eventTime: {field: ts, maxOutOfOrderness: 100ms, idleTimeout: 300ms}
  window: {tumbling: {size: 200ms}}";
    let job = Job::new(spec);
    let mut child = Command::new(BIN)
        .arg("run")
        .arg(job.file())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let progress = loop {
        let line = lines
            .next()
            .expect("stderr closed before progress")
            .unwrap();
        if line.starts_with("progress:") {
            break line;
        }
        assert!(Instant::now() < deadline, "no progress line");
    };
    assert!(progress.contains("events/s, watermark 20"), "{progress}");
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}: {rest:?}");
    let summary = rest
        .iter()
        .find(|l| l.starts_with("stopped:"))
        .expect("summary");
    assert!(summary.contains("windows emitted"), "{summary}");
    assert!(
        !job.lines("results.jsonl").is_empty(),
        "windows fired while running"
    );
}

#[test]
fn quickstart_example_runs() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart.yaml");
    let out = Command::new(BIN).arg("run").arg(&example).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let results = stdout_lines(&out);
    assert!(results.len() > 100);
    assert!(results
        .iter()
        .all(|r| r["key"].as_str().unwrap().starts_with("merchant-")));
    let orders: u64 = results
        .iter()
        .map(|r| r["aggregates"]["orders"].as_u64().unwrap())
        .sum();
    let err = stderr(&out);
    let late = err
        .lines()
        .filter(|l| l.contains("\"reason\":\"late\""))
        .count() as u64;
    assert_eq!(orders + late, 200_000, "{err}");
}

#[test]
fn sessions_example_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(BIN)
        .current_dir(&root)
        .args(["run", "examples/sessions.yaml"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let results = stdout_lines(&out);
    // bo's first session is revised by a click 14 min late, then closed.
    let bo: Vec<(u64, u64, bool)> = results
        .iter()
        .filter(|r| r["key"] == "bo" && r["window"]["start"] == "2026-03-29T07:04:00Z")
        .map(|r| {
            (
                r["revision"].as_u64().unwrap(),
                r["aggregates"]["clicks"].as_u64().unwrap(),
                r["final"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(bo, vec![(1, 2, false), (2, 3, false), (3, 3, true)]);
    let err = stderr(&out);
    assert!(
        err.contains("invalid by reason: missing_time 1, not_json 1"),
        "{err}"
    );
    assert!(err.contains("1 late, 2 invalid"), "{err}");
}
