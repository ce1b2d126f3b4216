//! Crash recovery: a job killed with SIGKILL at arbitrary moments (before,
//! during and after checkpoint uploads) and restarted each time ends with
//! exactly the output of an uninterrupted run, byte for byte: state and
//! source positions restore together, and file sinks are cut back to what
//! the restored checkpoint had written.

mod common;

use std::{
    collections::BTreeSet,
    path::Path,
    process::{Command, Stdio},
};

use common::{
    compact, crash_then_finish, create_bucket, free_port, http, interrupt, query, spawn_until,
    stderr, t, wait_for, Job, Reaped, BIN,
};
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

/// The job on two worker threads (partitions 0 and 2 on one, 1 on the
/// other): their output interleaves by timing, so it is compared sorted.
fn on_two_workers(job: Job) -> Job {
    let path = job.path("job.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap();
    assert!(yaml.contains("  partitions: 3\n"), "{yaml}");
    let yaml = yaml.replace("  partitions: 3\n", "  partitions: 3\n  workers: 2\n");
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
        // Two workers' results interleave as they are ready, so the lines
        // are compared sorted: each whole, each exactly once.
        let sorted = |job: &Job| {
            let text = String::from_utf8(job.bytes(file)).expect("UTF-8 output");
            assert!(
                text.is_empty() || text.ends_with('\n'),
                "{file} ends mid-line"
            );
            let mut lines: Vec<&str> = text.lines().collect();
            lines.sort_unstable();
            lines.join("\n").into_bytes()
        };
        let (a, b) = (sorted(reference), sorted(crashed));
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
    let two = || on_two_workers(job("", true));
    kill_and_restart(&two(), &two(), 3);
}

#[test]
fn sigkill_and_restart_gives_the_uninterrupted_output_with_s3() {
    eddy_testkit::s3(); // fails with instructions when the server is not up
    let bucket = eddy_testkit::unique_name("recovery");
    create_bucket(&bucket);
    let reference = on_two_workers(job(&format!("s3://{bucket}/reference"), false));
    let crashed = on_two_workers(job(&format!("s3://{bucket}/crashed"), false));
    kill_and_restart(&reference, &crashed, 1);
}

#[test]
fn sigkill_and_restart_leave_exactly_the_uninterrupted_rows_in_postgres() {
    let url = eddy_testkit::postgres_url();
    // One worker: this input has every user in every partition (a file
    // each), so a key's window has one result id in three partitions, and
    // which partition's row the table keeps depends on the order they are
    // written in, which two workers do not fix.
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

/// Ids of the checkpoints every partition of the job has in the local
/// store under `root` (`<store>/default/semantics`).
fn common_checkpoints(root: &Path) -> BTreeSet<u64> {
    let ids = |p: u32| -> BTreeSet<u64> {
        std::fs::read_dir(root.join(format!("p{p}/checkpoints")))
            .into_iter()
            .flatten()
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()
            })
            .collect()
    };
    (1..3).fold(ids(0), |all, p| {
        all.intersection(&ids(p)).copied().collect()
    })
}

/// The manifest of partition 0's checkpoint `id` in `job`'s local store.
fn manifest(job: &Job, id: u64) -> Value {
    let path = job.path(&format!(
        "checkpoints/default/semantics/p0/checkpoints/{id:020}.json"
    ));
    serde_json::from_slice(&std::fs::read(path).unwrap_or_default()).unwrap_or(Value::Null)
}

/// Bytes of `file` in `job`'s directory a checkpoint's manifest recorded.
fn recorded_length(job: &Job, manifest: &Value, file: &str) -> u64 {
    let path = job.path(file).display().to_string();
    manifest["sinkLengths"][&path].as_u64().unwrap_or(0)
}

/// Runs `command` until every partition of `job` has a checkpoint taken
/// after some results were out, then SIGKILLs it; answers the newest
/// checkpoint all partitions have.
fn run_until_checkpointed(job: &Job, mut command: Command) -> u64 {
    let mut child = command.stderr(Stdio::null()).spawn().unwrap();
    let root = job.path("checkpoints/default/semantics");
    wait_for("a checkpoint of every partition, with results", || {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job ended before it was killed"
        );
        common_checkpoints(&root)
            .last()
            .is_some_and(|id| recorded_length(job, &manifest(job, *id), "results.jsonl") > 0)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    *common_checkpoints(&root).last().unwrap()
}

/// A job `fork` reading `source`'s input files from the start of its
/// checkpoint `id` (`spec.checkpoints.restoreFrom`), writing to its own
/// directory; `change` edits its YAML further.
fn fork_of(source: &Job, id: Option<u64>, change: impl Fn(String) -> String) -> Job {
    let fork = Job {
        dir: tempfile::tempdir().unwrap(),
    };
    let (from, to) = (
        source.dir.path().display().to_string(),
        fork.dir.path().display().to_string(),
    );
    let mut yaml = std::fs::read_to_string(source.path("job.yaml"))
        .unwrap()
        .replace("name: semantics", "name: fork");
    for file in ["results.jsonl", "late.jsonl", "invalid.jsonl"] {
        yaml = yaml.replace(&format!("{from}/{file}"), &format!("{to}/{file}"));
    }
    let seed = match id {
        Some(id) => format!("{{job: default/semantics, checkpointId: {id}}}"),
        None => "{job: default/semantics}".into(),
    };
    assert!(yaml.contains("retain: 2,"), "{yaml}");
    let yaml = yaml.replace("retain: 2,", &format!("retain: 2, restoreFrom: {seed},"));
    std::fs::write(fork.path("job.yaml"), change(yaml)).unwrap();
    fork
}

/// The first `len` bytes of `file` in `job`'s directory, as JSON lines.
fn lines_up_to(job: &Job, file: &str, len: u64) -> Vec<Value> {
    let bytes = job.bytes(file);
    String::from_utf8_lossy(&bytes[..len as usize])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_new_job_restored_from_another_jobs_checkpoint_goes_on_exactly_once() {
    let reference = job("", true);
    assert!(command(&reference).output().unwrap().status.success());
    let source = job("", true);
    let id = run_until_checkpointed(&source, command(&source));
    let fork = fork_of(&source, Some(id), |y| y);
    // Killed too: before its own first checkpoint a restart starts from
    // the other job's again, after it from its own.
    let (kills, _) = crash_then_finish(|| command(&fork), &[250, 600, 900]);
    println!("forked from checkpoint {id}; {kills} kills of the fork");

    // What the source had written at the checkpoint, then the fork's.
    let manifest = manifest(&source, id);
    let length = |file: &str| recorded_length(&source, &manifest, file);
    let mut results: Vec<Value> = lines_up_to(&source, "results.jsonl", length("results.jsonl"))
        .iter()
        .map(compact)
        .collect();
    assert!(
        !results.is_empty(),
        "the source had emitted results by checkpoint {id}"
    );
    results.extend(fork.lines("results.jsonl").iter().map(compact));
    assert_eq!(
        results,
        reference.results(),
        "the source up to the checkpoint, then the fork: each result once"
    );
    let late = lines_up_to(&source, "late.jsonl", length("late.jsonl")).len()
        + fork.lines("late.jsonl").len();
    assert_eq!(late, reference.lines("late.jsonl").len());
}

#[test]
fn a_checkpoint_to_restore_from_that_is_missing_or_partitioned_otherwise_is_an_error() {
    let source = job("", true);
    let id = run_until_checkpointed(&source, command(&source));
    let fails = |fork: &Job| {
        let out = command(fork).output().unwrap();
        assert!(!out.status.success(), "{}", stderr(&out));
        assert!(
            fork.lines("results.jsonl").is_empty(),
            "nothing runs without the state asked for"
        );
        stderr(&out)
    };
    let missing = fails(&fork_of(&source, Some(id + 1000), |y| y));
    assert!(
        missing.contains("spec.checkpoints.restoreFrom: job default/semantics")
            && missing.contains(&format!("checkpoint {}", id + 1000)),
        "{missing}"
    );
    let other = fails(&fork_of(&source, None, |y| {
        y.replace("partitions: 3", "partitions: 6")
    }));
    assert!(other.contains("this job has 6 partitions"), "{other}");
}

#[test]
fn a_new_state_epoch_starts_over_and_then_restores_its_own_checkpoints() {
    let reference = job("", true);
    assert!(command(&reference).output().unwrap().status.success());
    let crashed = job("", true);
    run_until_checkpointed(&crashed, command(&crashed));
    let in_epoch = || {
        let mut c = command(&crashed);
        c.args(["--state-epoch", "1"]);
        c
    };
    // The first run in epoch 1 restores nothing of epoch 0.
    let mut first = in_epoch().spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    first.kill().unwrap();
    let out = first.wait_with_output().unwrap();
    assert!(
        !stderr(&out).contains("restored checkpoint"),
        "{}",
        stderr(&out)
    );
    let (kills, restores) = crash_then_finish(in_epoch, &KILL_DELAYS_MS[..6]);
    println!("{kills} kills, {restores} restores in epoch 1");
    assert!(restores >= 1, "later runs restore epoch 1's checkpoints");
    assert_eq!(
        crashed.bytes("results.jsonl"),
        reference.bytes("results.jsonl")
    );
    assert_eq!(crashed.bytes("late.jsonl"), reference.bytes("late.jsonl"));
}

#[test]
fn a_held_job_reports_finished_and_a_restart_emits_nothing_again() {
    let reference = job("", true);
    assert!(command(&reference).output().unwrap().status.success());
    let held = job("", true);
    let addr = format!("127.0.0.1:{}", free_port());
    let hold = || {
        let mut c = command(&held);
        c.args(["--admin-addr", &addr, "--hold-when-finished"]);
        c
    };
    let finished = || {
        let (status, body) = http(&addr, "GET", "/checkpoints", "");
        status == 200 && serde_json::from_str::<Value>(&body).unwrap()["finished"] == true
    };
    let mut child = Reaped(spawn_until(&mut hold(), "finished: every window is out").0);
    assert!(finished(), "the admin API says finished");
    assert_eq!(http(&addr, "GET", "/readyz", "").0, 200);
    assert!(child.0.try_wait().unwrap().is_none(), "it holds");
    assert_eq!(
        held.bytes("results.jsonl"),
        reference.bytes("results.jsonl")
    );
    // Lost (a node failure) and started again, as a pod would be.
    drop(child);
    let mut again = Reaped(spawn_until(&mut hold(), "restored checkpoint").0);
    wait_for("finished again", finished);
    assert_eq!(
        held.bytes("results.jsonl"),
        reference.bytes("results.jsonl"),
        "nothing emitted twice, nothing lost"
    );
    assert_eq!(held.bytes("late.jsonl"), reference.bytes("late.jsonl"));
    interrupt(&mut again.0);
    assert!(
        !common_checkpoints(&held.path("checkpoints/default/semantics")).is_empty(),
        "the checkpoints of a held job stay"
    );
}
