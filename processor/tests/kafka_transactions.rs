//! Exactly once through a Kafka transaction: Apache Kafka → processor → a
//! transactional output topic on the same broker, checkpoints on the S3
//! server, all started by `scripts/test-servers`.
//!
//! The output topic is read as a downstream consumer reads it
//! (`eddy_testkit::kafka`): with `read_committed`, the broker's last stable
//! offset and aborted-transaction lists decide what it sees, and what it
//! sees must be every result revision exactly once, whatever the crashes
//! did.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    process::{Command, Stdio},
};

use common::{
    crash_then_finish, create_bucket, create_topics,
    events::{expected, produce, KILL_DELAYS_MS},
    spawn_until, stderr, wait_for, with_s3_credentials, BIN,
};
use eddy_testkit::kafka::{self, Isolation};

/// The checkpoint intervals the test runs the job with. With `1h` the job
/// never stops at the end of its input either: stopping takes a last
/// checkpoint, which would commit before the test sees the open
/// transaction.
const INTERVALS: [&str; 2] = ["1h", "100ms"];

struct Run {
    dir: tempfile::TempDir,
}

impl Run {
    /// A job from the source topic to the transactional `output`.
    fn new(brokers: &str, topic: &str, output: &str, bucket: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let name = eddy_testkit::unique_name("txn");
        let yaml = format!(
            "apiVersion: eddy.dev/v1alpha1
kind: StreamJob
metadata: {{name: {name}, namespace: tests}}
spec:
  source:
    kafka: {{brokers: '{brokers}', topic: {topic}, stopAtEnd: STOP}}
  partitions: 4
  keyField: user
  eventTime: {{field: ts, format: epochMillis, maxOutOfOrderness: 2s, idleTimeout: 1h}}
  window: {{tumbling: {{size: 5s}}}}
  allowedLateness: 10s
  aggregations: [{{op: count, name: n}}, {{op: sum, field: amount, name: total}}]
  sinks: [{{kafka: {{brokers: '{brokers}', topic: {output}, transactional: true}}}}]
  invalidOutput: {{file: {{path: {}/invalid.jsonl}}}}
  checkpoints: {{store: 's3://{bucket}/{name}', endpoint: '{}', interval: INTERVAL, retain: 2}}
",
            dir.path().display(),
            eddy_testkit::s3().endpoint
        );
        for interval in INTERVALS {
            let file = dir.path().join(format!("job-{interval}.yaml"));
            let stop = if interval == "1h" { "false" } else { "true" };
            let job = yaml.replace("INTERVAL", interval).replace("STOP", stop);
            std::fs::write(file, job).unwrap();
        }
        Self { dir }
    }

    /// The processor with checkpoints every `interval` (one of
    /// [`INTERVALS`]).
    fn command(&self, interval: &str) -> Command {
        let file = self.dir.path().join(format!("job-{interval}.yaml"));
        let mut c = Command::new(BIN);
        with_s3_credentials(&mut c)
            .arg("run")
            .arg(file)
            .arg("--state-dir")
            .arg(self.dir.path().join("state"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }
}

/// A result message: (id, revision) and ((key, window start), (n, total)).
type Result = ((String, u64), ((String, i64), (u64, f64)));

fn parse(message: &kafka::Message) -> Result {
    let r: serde_json::Value = serde_json::from_slice(message.value.as_ref().unwrap()).unwrap();
    let id = r["id"].as_str().unwrap().to_string();
    assert_eq!(
        message.key.as_deref(),
        Some(id.as_bytes()),
        "keyed by result id"
    );
    (
        (id, r["revision"].as_u64().unwrap()),
        (
            (
                r["key"].as_str().unwrap().to_string(),
                r["window"]["startMs"].as_i64().unwrap(),
            ),
            (
                r["aggregates"]["n"].as_u64().unwrap(),
                r["aggregates"]["total"].as_f64().unwrap(),
            ),
        ),
    )
}

/// What a `read_committed` and a `read_uncommitted` consumer see of the
/// output topic's only partition. The uncommitted read comes first, so the
/// committed one sees at least the records it saw (a running processor
/// keeps writing).
fn output(brokers: &str, topic: &str) -> (kafka::Partition, kafka::Partition) {
    let everything = kafka::read(brokers, topic, 0, Isolation::Uncommitted);
    let committed = kafka::read(brokers, topic, 0, Isolation::Committed);
    (committed, everything)
}

/// Produces the input, creates the output topic and the bucket; returns
/// the brokers, the input and output topics, and the run's job files.
fn set_up() -> (String, String, String, Run) {
    let brokers = eddy_testkit::kafka_brokers();
    let topic = eddy_testkit::unique_name("events");
    let output_topic = eddy_testkit::unique_name("committed");
    let bucket = eddy_testkit::unique_name("txn");
    produce(&brokers, &topic);
    create_topics(&brokers, &[(&output_topic, 1)]);
    create_bucket(&bucket);
    let run = Run::new(&brokers, &topic, &output_topic, &bucket);
    (brokers, topic, output_topic, run)
}

#[test]
fn a_transactional_topic_commits_every_result_once_despite_crashes() {
    let (brokers, _, output_topic, run) = set_up();

    // 1. No checkpoint yet: results are written in an open transaction that
    // a read_committed consumer does not see, and a SIGKILL leaves it open
    // until the next start's producer aborts it.
    let mut child = run.command("1h").spawn().unwrap();
    let (mut committed, mut everything) = Default::default();
    wait_for("results in an open transaction", || {
        (committed, everything) = output(&brokers, &output_topic);
        !everything.messages.is_empty()
    });
    assert!(
        committed.messages.is_empty() && committed.has_open_transaction(),
        "nothing commits before a checkpoint: {committed:?}"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    // 2. Killed when the checkpoint of the second transaction with results
    // is in the store, before that transaction commits: the next start
    // restores the checkpoint of the first, whose results are the last
    // committed, not the newer one, whose results were aborted.
    let out = run
        .command("100ms")
        .env("EDDY_TEST_CRASH_BEFORE_COMMIT", "2")
        .output()
        .unwrap();
    let message = stderr(&out);
    let ids: Vec<&str> = message
        .split("aborting before committing checkpoint ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .map(|line| line.split("; last committed: ").collect())
        .unwrap_or_else(|| panic!("no crash before a commit:\n{message}"));
    let (crashed, last_committed) = (ids[0], ids[1]);
    assert_ne!(last_committed, "none", "the first transaction committed");
    let (committed, everything) = output(&brokers, &output_topic);
    assert!(
        committed.has_open_transaction() && everything.messages.len() > committed.messages.len(),
        "checkpoint {crashed}'s transaction holds results a read_committed consumer cannot see"
    );
    let (mut next, restored) = spawn_until(&mut run.command("100ms"), "restored checkpoint ");
    next.kill().unwrap();
    next.wait().unwrap();
    assert!(
        restored.starts_with(&format!("{last_committed} of 4 partitions")),
        "checkpoint {crashed} was not committed, {last_committed} was; restored {restored}"
    );

    // 3. SIGKILLed at a dozen moments, then run to the end.
    let (kills, restores) = crash_then_finish(|| run.command("100ms"), &KILL_DELAYS_MS);

    let (committed, everything) = output(&brokers, &output_topic);
    let aborted = everything.messages.len() - committed.messages.len();
    println!(
        "{kills} kills, {restores} restores; {} messages committed, {aborted} aborted",
        committed.messages.len(),
    );
    assert!(kills >= 10, "only {kills} kills");
    assert!(restores >= 1, "no restore happened");
    assert!(aborted > 0, "the first kill aborted a transaction");
    assert!(
        !committed.has_open_transaction(),
        "every transaction ended: {} < {}",
        committed.end,
        committed.high_watermark
    );

    let mut seen = BTreeSet::new();
    let mut revisions: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut latest = BTreeMap::new();
    for message in &committed.messages {
        let ((id, revision), (window, aggregates)) = parse(message);
        assert!(
            seen.insert((id.clone(), revision)),
            "result {id} revision {revision} committed twice"
        );
        revisions.entry(id).or_default().push(revision);
        latest.insert(window, aggregates);
    }
    for (id, revs) in &revisions {
        let wanted: Vec<u64> = (1..=revs.len() as u64).collect();
        assert_eq!(revs, &wanted, "revisions of {id}: in order, none missing");
    }
    assert_eq!(
        latest,
        expected(),
        "the last committed revision of every result is the expected one"
    );
}

/// Partitions move between two running processors that write through
/// Kafka transactions: the old owner's release checkpoint commits the
/// partition's results up to its cut, the new owner commits them from
/// there. The new owner is then killed and restarted owning what it owns
/// now: each partition restores the checkpoint its results were last
/// committed with (they differ after the move), so read_committed sees
/// every result revision once.
#[test]
fn partitions_move_between_transactional_processors_and_every_result_commits_once() {
    use common::moves::{moved, owned, start, wait_until_read};
    let (brokers, topic, output_topic, run) = set_up();
    let dir = run.dir.path();
    write_moving_job(dir, "300ms");
    let (mut a, a_addr) = start(dir, "a", "0,1");
    let (mut b, b_addr) = start(dir, "b", "2,3");
    wait_until_read(&[&a_addr, &b_addr], 5_000);
    let one = moved(&a_addr, &b_addr, 1);
    let two = moved(&b_addr, &a_addr, 2);
    println!("moved 1 (checkpoint {one}) and 2 (checkpoint {two})");
    assert_eq!(owned(&a_addr), serde_json::json!([0, 2]));
    assert_eq!(owned(&b_addr), serde_json::json!([1, 3]));
    // Killed at once: what b wrote for partition 1 since it took it over is
    // in a transaction that never commits.
    b.kill().unwrap();
    b.wait().unwrap();
    let (mut b, _) = start(dir, "b", "1,3");
    close_every_window(&brokers, &topic);
    assert_every_result_commits_once(&brokers, &output_topic, || {});
    common::interrupt(&mut a);
    common::interrupt(&mut b);
}

/// A partition's results can be committed last with a checkpoint its
/// former owner took: a release checkpoint records it only when its
/// transaction has results. Its new owner keeps that checkpoint in the
/// store until its own transactions record a newer one, whatever its own
/// last commit was, so a restart restores the partition from there. Here
/// every checkpoint is asked for by id: `a` commits results with 5 and
/// nothing after (no new input), `b` with 3; partition 1 moves with 8,
/// whose transaction has no results; `b` takes three more checkpoints of
/// it (retaining two) before it is killed and restarted.
#[test]
fn a_moved_partition_keeps_the_checkpoint_its_results_were_committed_with() {
    use common::moves::{moved, start, wait_until_read};
    let (brokers, topic, output_topic, run) = set_up();
    let dir = run.dir.path();
    write_moving_job(dir, "1h");
    let (mut a, a_addr) = start(dir, "a", "0,1");
    let (mut b, b_addr) = start(dir, "b", "2,3");
    let all = 2 * common::events::PER_PARTITION as u64;
    wait_until_read(&[&a_addr, &b_addr], all);
    checkpoint(&b_addr, 3);
    for id in [5, 6, 7] {
        checkpoint(&a_addr, id);
    }
    assert_eq!(moved(&a_addr, &b_addr, 1), 8);
    for id in [10, 11, 12] {
        checkpoint(&b_addr, id);
    }
    b.kill().unwrap();
    b.wait().unwrap();
    let (mut b, b_addr) = start(dir, "b", "1,2,3");
    let (_, restored) = common::http(&b_addr, "GET", "/checkpoints", "");
    let restored: serde_json::Value = serde_json::from_str(&restored).unwrap();
    assert_eq!(restored["restoreFallbacks"], 0, "{restored}");
    close_every_window(&brokers, &topic);
    assert_every_result_commits_once(&brokers, &output_topic, || {
        for addr in [&a_addr, &b_addr] {
            common::http(addr, "POST", "/checkpoints", "");
        }
    });
    common::interrupt(&mut a);
    common::interrupt(&mut b);
}

/// The job for processors that move partitions between them, checkpointing
/// every `interval`, reading on past the end of the topic.
fn write_moving_job(dir: &std::path::Path, interval: &str) {
    let job = std::fs::read_to_string(dir.join("job-100ms.yaml"))
        .unwrap()
        .replace("stopAtEnd: true", "stopAtEnd: false")
        .replace("interval: 100ms", &format!("interval: {interval}"))
        .lines()
        .map(|l| match l.starts_with("  invalidOutput:") {
            // A file of one processor cannot follow moving partitions.
            true => "  invalidOutput: {stderr: {}}",
            false => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("job.yaml"), job).unwrap();
}

/// Takes checkpoint `id` on the processor at `addr` (once the one in
/// flight, if any, is done) and waits until it is complete.
fn checkpoint(addr: &str, id: u64) {
    let body = format!("{{\"id\": {id}}}");
    wait_for(&format!("checkpoint {id} taken"), || {
        common::http(addr, "POST", "/checkpoints", &body).0 == 202
    });
    wait_for(&format!("checkpoint {id} complete"), || {
        let (_, list) = common::http(addr, "GET", "/checkpoints", "");
        let list: serde_json::Value = serde_json::from_str(&list).unwrap();
        list["checkpoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == id)
    });
}

/// An event far ahead in every partition closes every window.
fn close_every_window(brokers: &str, topic: &str) {
    let ends: Vec<(i32, String)> = (0..4)
        .map(|p| {
            let ts = common::events::START + 36_000_000;
            let end = serde_json::json!({"user": format!("end-{p}"), "ts": ts, "amount": 0});
            (p, end.to_string())
        })
        .collect();
    eddy_testkit::produce::produce(brokers, topic, &ends);
}

/// Waits until the committed output has every window at its expected
/// value, then checks that no result revision was committed twice.
/// `nudge` runs between looks (processors that do not checkpoint on their
/// own are asked to).
fn assert_every_result_commits_once(brokers: &str, output_topic: &str, nudge: impl Fn()) {
    let committed_all = || {
        let (committed, _) = output(brokers, output_topic);
        let mut latest = BTreeMap::new();
        for message in &committed.messages {
            let (_, (window, aggregates)) = parse(message);
            if !window.0.starts_with("end-") {
                latest.insert(window, aggregates);
            }
        }
        (committed, latest)
    };
    let expected = expected();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    let committed = loop {
        let (committed, latest) = committed_all();
        if latest == expected {
            break committed;
        }
        if std::time::Instant::now() >= deadline {
            let wrong: Vec<_> = expected
                .iter()
                .filter(|(k, v)| latest.get(*k) != Some(*v))
                .collect();
            let first: Vec<_> = wrong
                .iter()
                .take(5)
                .map(|(k, v)| format!("{k:?}: {:?}, not {v:?}", latest.get(*k)))
                .collect();
            panic!(
                "{} of {} windows not at their expected values, as {}",
                wrong.len(),
                expected.len(),
                first.join("; ")
            );
        }
        nudge();
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    let mut seen = BTreeSet::new();
    for message in &committed.messages {
        let ((id, revision), _) = parse(message);
        assert!(
            seen.insert((id.clone(), revision)),
            "result {id} revision {revision} committed twice"
        );
    }
}
