//! Crash recovery: a job killed with SIGKILL at arbitrary moments (before,
//! during and after checkpoint uploads) and restarted each time ends with
//! exactly the output of an uninterrupted run, byte for byte: state and
//! source positions restore together, and file sinks are cut back to what
//! the restored checkpoint had written.

mod common;

use std::process::{Command, Stdio};

use common::{crash_then_finish, create_bucket, query, t, Job, BIN};
use serde_json::{json, Value};

/// Three partitions (one file each) of scrambled events with late ones.
fn input(partition: u64) -> Vec<Value> {
    (0..40_000u64)
        .map(|i| {
            let n = i * 3 + partition;
            let jitter = (n * 7919 % 1500) as f64 / 1000.0;
            let late = if n.is_multiple_of(101) { 4.0 } else if n.is_multiple_of(103) { 30.0 } else { 0.0 };
            let s = (i as f64 * 0.02 - jitter - late).max(0.0);
            let mut e = json!({"user": format!("u{}", n * 31 % 97), "ts": t(s), "amount": (n % 50) as f64 / 4.0});
            e["at"] = json!(t(i as f64 * 0.02));
            e
        })
        .collect()
}

const SPEC: &str = "  partitions: 3
  keyField: user
  eventTime: {field: ts, maxOutOfOrderness: 1s, idleTimeout: 1h}
  window: {tumbling: {size: 2s}}
  allowedLateness: 5s
  lateData: output
  aggregations:
    - {op: count}
    - {op: sum, field: amount}
    - {op: last, field: amount}
    - {op: distinctCount, field: amount}";

fn job(store: &str, dir_store: bool) -> Job {
    let files: Vec<(String, Vec<Value>)> =
        (0..3).map(|p| (format!("p{p}.jsonl"), input(p))).collect();
    let refs: Vec<(&str, &[Value])> = files
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    let job = Job::with_files(SPEC, &refs, None);
    // Point the checkpoints at the store under test, every 50 ms.
    let path = job.path("job.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap();
    let d = job.dir.path().display().to_string();
    let store = if dir_store {
        format!("file://{d}/checkpoints")
    } else {
        store.to_string()
    };
    let default_checkpoints =
        format!("checkpoints: {{store: 'file://{d}/checkpoints', interval: 200ms}}");
    assert!(yaml.contains(&default_checkpoints), "{yaml}");
    let yaml = yaml.replace(
        &default_checkpoints,
        &format!(
            "checkpoints: {{store: '{store}', interval: 50ms, retain: 2, endpoint: '{}'}}",
            std::env::var("EDDY_TEST_S3_ENDPOINT").unwrap_or_else(|_| "http://unused".into())
        ),
    );
    std::fs::write(&path, yaml).unwrap();
    job
}

/// When the crashed runs are killed, in milliseconds after each start.
const KILL_DELAYS_MS: [u64; 12] = [
    150, 900, 350, 1200, 600, 250, 1500, 450, 800, 300, 1000, 550,
];

fn command(job: &Job) -> Command {
    let mut c = Command::new(BIN);
    c.arg("run")
        .arg(job.path("job.yaml"))
        .arg("--state-dir")
        .arg(job.path("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let (Ok(a), Ok(s)) = (
        std::env::var("EDDY_TEST_S3_ACCESS_KEY"),
        std::env::var("EDDY_TEST_S3_SECRET_KEY"),
    ) {
        c.env("AWS_ACCESS_KEY_ID", a)
            .env("AWS_SECRET_ACCESS_KEY", s);
    }
    c
}

/// Runs `reference` uninterrupted and `crashed` with SIGKILLs, and compares
/// their outputs; at least `min_restores` restarts must have found a
/// checkpoint (kills before the first upload completes start over, which
/// is right too).
fn kill_and_restart(reference: &Job, crashed: &Job, min_restores: usize) {
    let out = command(reference).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let full = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(full.contains("finished:"), "{full}");

    let (kills, restores) = crash_then_finish(|| command(crashed), &KILL_DELAYS_MS);
    println!("{kills} kills, {restores} restores from checkpoints");
    assert!(
        kills >= 5,
        "only {kills} kills: the job ran too fast to test"
    );
    assert!(restores >= min_restores, "only {restores} restores");
    for file in ["results.jsonl", "late.jsonl", "invalid.jsonl"] {
        let (a, b) = (reference.bytes(file), crashed.bytes(file));
        if a != b {
            let (la, lb) = (String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
            let first = la.lines().zip(lb.lines()).position(|(x, y)| x != y);
            let show = |text: &str, at: Option<usize>| {
                at.and_then(|i| text.lines().nth(i))
                    .unwrap_or("(end)")
                    .chars()
                    .take(400)
                    .collect::<String>()
            };
            panic!(
                "{file} differs after crashes: {} vs {} bytes; first difference at line {first:?}:\n  uninterrupted: {}\n  crashed:       {}",
                a.len(),
                b.len(),
                show(&la, first),
                show(&lb, first)
            );
        }
    }
    assert!(reference.lines("results.jsonl").len() > 1000);
    assert!(reference
        .lines("results.jsonl")
        .iter()
        .any(|r| r["revision"].as_u64() > Some(1)));
    assert!(!reference.lines("late.jsonl").is_empty());
}

#[test]
fn sigkill_and_restart_gives_the_uninterrupted_output_with_a_local_store() {
    kill_and_restart(&job("", true), &job("", true), 3);
}

#[test]
fn sigkill_and_restart_gives_the_uninterrupted_output_with_s3() {
    eddy_testkit::s3(); // fails with instructions when the server is not up
    let bucket = eddy_testkit::unique_name("recovery");
    create_bucket(&bucket);
    let reference = job(&format!("s3://{bucket}/reference"), false);
    let crashed = job(&format!("s3://{bucket}/crashed"), false);
    kill_and_restart(&reference, &crashed, 1);
}

#[test]
fn sigkill_and_restart_leave_exactly_the_uninterrupted_rows_in_postgres() {
    let url = eddy_testkit::postgres_url();
    let with_table = |name: &str| {
        let job = job("", true);
        let path = job.path("job.yaml");
        let yaml = std::fs::read_to_string(&path).unwrap();
        let d = job.dir.path().display().to_string();
        let file_sink = format!("  sinks: [{{file: {{path: {d}/results.jsonl}}}}]");
        assert!(yaml.contains(&file_sink), "{yaml}");
        let yaml = yaml.replace(
            &file_sink,
            &format!("  sinks: [{{postgres: {{url: '{url}', table: {name}, createTable: true}}}}]"),
        );
        std::fs::write(&path, yaml).unwrap();
        job
    };
    let reference_table = eddy_testkit::unique_name("reference").replace('-', "_");
    let crashed_table = eddy_testkit::unique_name("crashed").replace('-', "_");
    let reference = with_table(&reference_table);
    let out = command(&reference).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crashed = with_table(&crashed_table);
    let (kills, restores) = crash_then_finish(|| command(&crashed), &KILL_DELAYS_MS);
    println!("{kills} kills, {restores} restores from checkpoints");
    assert!(
        kills >= 5 && restores >= 3,
        "{kills} kills, {restores} restores"
    );
    let rows = |table: String| {
        query(&format!(
            "SELECT id, revision, final, aggregates::text FROM {table} ORDER BY id"
        ))
        .iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                r.get::<_, i32>(1),
                r.get::<_, bool>(2),
                r.get::<_, String>(3),
            )
        })
        .collect::<Vec<_>>()
    };
    let expected = rows(reference_table);
    assert!(expected.len() > 1000, "{} rows", expected.len());
    assert!(
        expected.iter().all(|r| r.2),
        "every result closed with a final revision"
    );
    assert_eq!(
        rows(crashed_table),
        expected,
        "no missing, extra or double-counted rows"
    );
}
