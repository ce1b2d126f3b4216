//! Two-phase aggregation against the Kafka broker started by
//! `scripts/test-servers`: a job run as two stages (`--stage partial`, the
//! partials over a Kafka topic, `--stage merge`) writes byte for byte the
//! results of the same job in one stage, on input with a key holding half
//! of all events, late events that revise fired windows, events past the
//! allowed lateness, and every kind of aggregation.

mod common;

use std::{
    collections::BTreeMap,
    process::{Command, Stdio},
};

use common::{
    crash_then_finish, free_port, http, interrupt, query, spawn_until, stderr, Reaped, BIN,
};
use serde_json::Value;

/// 20,000 generated events over 100 s of event time on 40 keys, Zipf skew
/// 1.5 (the first key has about 45% of them): up to 1.5 s of jitter
/// (within the 2 s out-of-orderness, so never late), 2% of them 15 s late
/// (their window has fired, within the 20 s of allowed lateness: a
/// revision), 0.5% 10 minutes ahead of their ingestion (past the allowed
/// skew: the invalid output).
const SOURCE: &str = "  source:
    generator: {seed: 7, count: 20000, rate: 200, keys: 40, keySkew: 1.5, jitter: 1500ms,
                lateFraction: 0.02, lateBy: 15s, futureFraction: 0.005, futureBy: 10m}
";

const SPEC: &str = "  partitions: 4
  keyField: user
  eventTime: {field: ts, maxOutOfOrderness: 2s, idleTimeout: 3s, maxFutureSkew: 1m}
  window: {tumbling: {size: 10s}}
  allowedLateness: 20s
  lateData: output
  aggregations:
    - {op: count, name: n}
    - {op: sum, field: value, name: total}
    - {op: min, field: value, name: low}
    - {op: max, field: value, name: high}
    - {op: avg, field: value, name: mean}
    - {op: first, field: value, name: first}
    - {op: last, field: value, name: last}
    - {op: distinctCount, field: value, name: amounts}
    - {op: quantile, field: value, quantile: 0.9, name: p90}";

/// A job in a fresh directory, its outputs in files there.
struct Job {
    dir: tempfile::TempDir,
}

impl Job {
    fn new(extra: &str) -> Self {
        Self::with(SOURCE, extra, "")
    }

    /// A job of `source`, with `extra` in its spec and `sinks` besides
    /// the results file.
    fn with(source: &str, extra: &str, sinks: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let yaml = format!(
            "apiVersion: eddy.dev/v1alpha1\nkind: StreamJob\nmetadata:\n  name: hot\nspec:\n{source}{SPEC}\n{extra}  \
             sinks: [{{file: {{path: {d}/results.jsonl}}}}{sinks}]\n  \
             lateOutput: {{file: {{path: {d}/late.jsonl}}}}\n  \
             invalidOutput: {{file: {{path: {d}/invalid.jsonl}}}}\n  \
             checkpoints: {{store: 'file://{d}/checkpoints', interval: 200ms}}\n"
        );
        std::fs::write(dir.path().join("job.yaml"), yaml).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn bytes(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap_or_default()
    }

    /// Runs the whole job (both stages, for a two-phase one) to its end.
    fn run(&self) -> std::process::Output {
        let out = Command::new(BIN)
            .arg("run")
            .arg(self.path("job.yaml"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        out
    }

    fn lines(&self, name: &str) -> Vec<Value> {
        common::read_lines(&self.path(name))
    }
}

fn two_phase(brokers: &str, topic: &str) -> String {
    format!(
        "  hotKeys: {{twoPhase: true, saltBuckets: 4, partials: {{brokers: '{brokers}', topic: {topic}}}}}\n"
    )
}

fn stage(job: &Job, stage: &str) -> Command {
    let mut c = Command::new(BIN);
    c.arg("run")
        .arg(job.path("job.yaml"))
        .args(["--stage", stage, "--state-dir"])
        .arg(job.path(&format!("state-{stage}")))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Result lines, sorted (the stages write them in another order).
fn sorted_lines(job: &Job, name: &str) -> Vec<String> {
    let text = String::from_utf8(job.bytes(name)).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

#[test]
fn two_stages_write_the_results_of_one_byte_for_byte() {
    let brokers = eddy_testkit::kafka_brokers();
    let topic = eddy_testkit::unique_name("partials");
    let one = Job::new("");
    one.run();
    let two = Job::new(&two_phase(&brokers, &topic));

    // Both stages at once, as in a cluster: the merge stage waits for the
    // partials and ends when every first-stage partition has ended.
    let mut merge = Reaped(stage(&two, "merge").spawn().unwrap());
    let partial = stage(&two, "partial").output().unwrap();
    assert!(partial.status.success(), "{}", stderr(&partial));
    let merged = finish(&mut merge);
    assert!(merged.status.success(), "{}", stderr(&merged));

    let expected = sorted_lines(&one, "results.jsonl");
    let results = sorted_lines(&two, "results.jsonl");
    assert!(expected.len() > 300, "{} results", expected.len());
    // The input has what the comparison is about.
    let revisions = |lines: &[String]| {
        lines
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|r| r["revision"].as_u64() > Some(1) && r["final"] == false)
            .count()
    };
    assert!(
        revisions(&expected) > 50,
        "late updates revise windows: {}",
        revisions(&expected)
    );
    assert_eq!(results.len(), expected.len());
    for (got, want) in results.iter().zip(&expected) {
        assert_eq!(got, want);
    }

    // Without --stage, one processor runs both stages (as a pod does),
    // and its /metrics serves both, each sample labelled with its stage.
    let topic = eddy_testkit::unique_name("partials");
    let both = Job::new(&two_phase(&brokers, &topic));
    let metrics = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let (child, _) = spawn_until(
        Command::new(BIN)
            .arg("run")
            .arg(both.path("job.yaml"))
            .args(["--hold-when-finished", "--admin-addr", &admin])
            .args(["--metrics-addr", &metrics]),
        "[merge] finished",
    );
    let mut child = Reaped(child);
    let (status, text) = http(&metrics, "GET", "/metrics", "");
    assert_eq!(status, 200, "{text}");
    let sample = |name: &str, stage: &str| -> f64 {
        let label = format!("stage=\"{stage}\"");
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&label))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    assert_eq!(
        sample("eddy_results_written_total", "merge"),
        expected.len() as f64,
        "{text}"
    );
    let (events, partials) = (
        sample("eddy_events_read_total", "partial"),
        sample("eddy_events_read_total", "merge"),
    );
    assert!(events > 10_000.0 && partials > 0.0, "{text}");
    interrupt(&mut child.0);
    assert_eq!(sorted_lines(&both, "results.jsonl"), expected);

    // The same events are invalid, in the first stage's invalid output.
    let ids = |job: &Job, name: &str| {
        let mut ids: Vec<String> = job
            .lines(name)
            .iter()
            .map(|l| l["id"].as_str().unwrap_or_default().to_string())
            .collect();
        ids.sort();
        ids
    };
    let invalid = ids(&one, "invalid.jsonl");
    assert!(invalid.len() > 30, "{} invalid", invalid.len());
    assert_eq!(ids(&two, "invalid.jsonl"), invalid);
    assert_eq!(ids(&two, "late.jsonl"), ids(&one, "late.jsonl"));

    // The hot key was spread over all of the first stage's partitions,
    // evenly: a quarter of all events each, give or take the others'.
    let spread = events_per_partition(&stderr(&partial));
    assert_eq!(spread.len(), 4, "{spread:?}");
    for (p, (events, hot)) in &spread {
        assert!((4_000..6_000).contains(events), "partition {p}: {spread:?}");
        assert!(hot, "partition {p} has none of the hot key: {spread:?}");
    }
}

/// Waits for a stage to end (at most two minutes), with its output.
fn finish(child: &mut Reaped) -> std::process::Output {
    finish_within(child, std::time::Duration::from_secs(120))
}

/// Waits for a stage to end, killing it after `limit`, with its output.
fn finish_within(child: &mut Reaped, limit: std::time::Duration) -> std::process::Output {
    let deadline = std::time::Instant::now() + limit;
    while child.0.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.0.kill().unwrap();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut out = std::process::Output {
        status: child.0.wait().unwrap(),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    if let Some(mut e) = child.0.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_end(&mut out.stderr);
    }
    out
}

/// Per partition, from a run's final report: events taken, and whether
/// `key-0` (the hottest) is among its hot keys.
fn events_per_partition(report: &str) -> BTreeMap<u64, (u64, bool)> {
    report
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("partition ")?;
            let (p, rest) = rest.split_once(": ")?;
            let events = rest.split(' ').next()?.parse().ok()?;
            Some((p.parse().ok()?, (events, rest.contains("hot keys: key-0 "))))
        })
        .collect()
}

/// SIGKILLed again and again, both stages at once, each restarted from
/// its checkpoints: the merge stage's PostgreSQL table holds exactly the
/// final results of the job run once in one stage.
#[test]
fn both_stages_survive_kills_and_the_table_is_exact() {
    let brokers = eddy_testkit::kafka_brokers();
    let topic = eddy_testkit::unique_name("partials");
    let table = eddy_testkit::unique_name("twophase").replace('-', "_");
    let url = eddy_testkit::postgres_url();
    // Several seconds of work for the debug build: kills land mid-run.
    let source = "  source:
    generator: {seed: 11, count: 400000, rate: 2000, keys: 200, keySkew: 1.2, jitter: 1500ms,
                lateFraction: 0.01, lateBy: 15s}
";
    let one = Job::with(source, "", "");
    one.run();
    let expected: BTreeMap<String, Value> = one
        .lines("results.jsonl")
        .into_iter()
        .filter(|r| r["final"] == true)
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["aggregates"].clone(),
            )
        })
        .collect();
    assert!(expected.len() > 1_000, "{} results", expected.len());

    let two = Job::with(
        source,
        &two_phase(&brokers, &topic),
        &format!(", {{postgres: {{url: '{url}', table: {table}, createTable: true}}}}"),
    );
    let delays = |first: u64| -> Vec<u64> {
        [first]
            .into_iter()
            .chain(common::events::KILL_DELAYS_MS.into_iter().take(8))
            .collect()
    };
    let (merge_delays, partial_delays) = (delays(2_500), delays(3_000));
    let merging = std::thread::scope(|scope| {
        let merging = scope.spawn(|| crash_then_finish(|| stage(&two, "merge"), &merge_delays));
        let partial = crash_then_finish(|| stage(&two, "partial"), &partial_delays);
        (partial, merging.join().unwrap())
    });
    let ((partial_kills, partial_restores), (merge_kills, merge_restores)) = merging;
    println!(
        "first stage: {partial_kills} kills, {partial_restores} restores; \
         merge stage: {merge_kills} kills, {merge_restores} restores"
    );
    assert!(partial_kills >= 4 && merge_kills >= 4, "too few kills");
    assert!(partial_restores >= 1 && merge_restores >= 1, "no restores");

    let rows: BTreeMap<String, Value> =
        query(&format!("SELECT id, aggregates::text, final FROM {table}"))
            .iter()
            .map(|r| {
                assert!(r.get::<_, bool>(2), "every row ends final");
                let aggregates: String = r.get(1);
                (r.get(0), serde_json::from_str(&aggregates).unwrap())
            })
            .collect();
    assert_eq!(rows.len(), expected.len(), "no missing or extra rows");
    for (id, aggregates) in &expected {
        assert_eq!(rows.get(id), Some(aggregates), "result {id}");
    }
}

/// One processor running both stages fails as a whole when one stage
/// fails: here the merge stage cannot reach its PostgreSQL sink, and the
/// first stage, whose input never ends, must not run on alone.
#[test]
fn a_stage_that_fails_stops_the_processor() {
    let brokers = eddy_testkit::kafka_brokers();
    let topic = eddy_testkit::unique_name("partials");
    // Endless for this test: 10 events a second.
    let source = "  source:
    generator: {seed: 3, count: 100000000, rate: 10, keys: 5}
";
    let job = Job::with(
        source,
        &two_phase(&brokers, &topic),
        ", {postgres: {url: 'postgres://eddy@127.0.0.1:1/none', table: t, createTable: true}}",
    );
    let mut both = Command::new(BIN);
    both.arg("run")
        .arg(job.path("job.yaml"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let limit = std::time::Duration::from_secs(60);
    let out = finish_within(&mut Reaped(both.spawn().unwrap()), limit);
    let err = stderr(&out);
    // It exited on its own (a kill at the limit has no exit code), failing.
    assert!(
        out.status.code().is_some_and(|c| c != 0),
        "{:?}: {err}",
        out.status
    );
    assert!(
        err.contains("127.0.0.1:1") || err.to_lowercase().contains("postgres"),
        "{err}"
    );
}

/// A job started over (`upgradeMode: stateless` raises the state epoch)
/// finds the partials topic holding those of the job before, end marks
/// included: its merge stage takes only its own epoch's, so its results
/// are those of its own input, complete.
#[test]
fn a_job_started_over_merges_only_the_partials_of_its_epoch() {
    let brokers = eddy_testkit::kafka_brokers();
    let topic = eddy_testkit::unique_name("partials");
    let one = Job::new("");
    one.run();
    // The job before: other events, its partials and end marks left behind.
    let before = Job::with(
        &SOURCE.replace("seed: 7", "seed: 5"),
        &two_phase(&brokers, &topic),
        "",
    );
    let out = stage(&before, "partial").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    let two = Job::new(&two_phase(&brokers, &topic));
    let epoch = ["--state-epoch", "1"];
    let mut merge = Reaped(stage(&two, "merge").args(epoch).spawn().unwrap());
    // (Taking the old end marks, the merge stage would end early and
    // delete the topic under the first stage.)
    let partial = finish(&mut Reaped(
        stage(&two, "partial").args(epoch).spawn().unwrap(),
    ));
    assert!(partial.status.success(), "{}", stderr(&partial));
    let merged = finish(&mut merge);
    assert!(merged.status.success(), "{}", stderr(&merged));
    let expected = sorted_lines(&one, "results.jsonl");
    assert!(expected.len() > 300, "{} results", expected.len());
    assert!(
        sorted_lines(&two, "results.jsonl") == expected,
        "the results of its own input"
    );
}
