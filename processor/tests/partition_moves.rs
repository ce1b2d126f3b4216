//! Partitions moving between two running processors of one Kafka job
//! through the admin API (`POST /partitions/{p}/release` and `/acquire`),
//! mid-stream, against the real broker, S3 server and PostgreSQL: the
//! table is exactly the expected results, the processors own what they
//! were given, and the moves answer retries and refusals as documented.

mod common;

use std::{
    collections::BTreeMap,
    process::Command,
    time::{Duration, Instant},
};

use common::{
    create_bucket,
    events::{expected, produce, START},
    http, interrupt,
    moves::{moved, moved_in, owned, post, start, start_pod, wait_until_read},
    query, spawn_until, wait_for, BIN,
};
use serde_json::Value;

fn job_yaml(dir: &std::path::Path, brokers: &str, topic: &str, bucket: &str, table: &str) {
    let url = eddy_testkit::postgres_url();
    let s3 = eddy_testkit::s3();
    let yaml = format!(
        "apiVersion: eddy.dev/v1alpha1
kind: StreamJob
metadata: {{name: {table}}}
spec:
  source:
    kafka: {{brokers: '{brokers}', topic: {topic}}}
  partitions: 4
  keyField: user
  eventTime: {{field: ts, format: epochMillis, maxOutOfOrderness: 2s, idleTimeout: 1h}}
  window: {{tumbling: {{size: 5s}}}}
  allowedLateness: 10s
  aggregations: [{{op: count, name: n}}, {{op: sum, field: amount, name: total}}]
  sinks: [{{postgres: {{url: '{url}', table: {table}, createTable: true}}}}]
  invalidOutput: {{stderr: {{}}}}
  checkpoints: {{store: 's3://{bucket}/{table}', endpoint: '{}', interval: 200ms, retain: 3}}
",
        s3.endpoint
    );
    std::fs::write(dir.join("job.yaml"), yaml).unwrap();
}

fn table(name: &str) -> BTreeMap<(String, i64), (u64, f64)> {
    let sql = format!(
        "SELECT key, (extract(epoch from window_start) * 1000)::bigint, \
         (aggregates->>'n')::bigint, (aggregates->>'total')::float8 FROM {name} \
         WHERE final AND key NOT LIKE 'end-%'"
    );
    query(&sql)
        .iter()
        .map(|r| ((r.get(0), r.get(1)), (r.get::<_, i64>(2) as u64, r.get(3))))
        .collect()
}

#[test]
fn partitions_move_between_running_processors_and_the_table_stays_exact() {
    let brokers = eddy_testkit::kafka_brokers();
    let topic = eddy_testkit::unique_name("moves");
    let bucket = eddy_testkit::unique_name("moves");
    let name = eddy_testkit::unique_name("moves").replace('-', "_");
    produce(&brokers, &topic);
    create_bucket(&bucket);
    let dir = tempfile::tempdir().unwrap();
    job_yaml(dir.path(), &brokers, &topic, &bucket, &name);
    let (mut a, a_addr) = start(dir.path(), "a", "0,1");
    let (mut b, b_addr) = start(dir.path(), "b", "2,3");

    // Mid-stream (each has 100,000 events to read): 1 goes to b, 3 to a.
    wait_until_read(&[&a_addr, &b_addr], 5_000);
    let started = Instant::now();
    let one = moved(&a_addr, &b_addr, 1);
    let three = moved(&b_addr, &a_addr, 3);
    println!(
        "moved 1 (checkpoint {one}) and 3 (checkpoint {three}) in {:?}",
        started.elapsed()
    );
    assert_eq!(owned(&a_addr), serde_json::json!([0, 3]));
    assert_eq!(owned(&b_addr), serde_json::json!([1, 2]));
    // Each one's load follows it (refreshed once a second).
    let loaded = |addr: &str| -> Vec<u64> {
        let (_, body) = http(addr, "GET", "/partitions", "");
        let loads = serde_json::from_str::<Value>(&body).unwrap()["loads"].clone();
        let loads = loads.as_array().cloned().unwrap_or_default();
        loads
            .iter()
            .map(|l| l["partition"].as_u64().unwrap())
            .collect()
    };
    wait_for("loads of the partitions run", || {
        loaded(&a_addr) == [0, 3] && loaded(&b_addr) == [1, 2]
    });

    // A retried release answers the same; what is not here is refused.
    let (status, again) = post(&a_addr, "/partitions/1/release", "");
    assert_eq!((status, again["checkpoint"].as_u64()), (200, Some(one)));
    let (status, refused) = post(&a_addr, "/partitions/0/acquire", "");
    assert_eq!(status, 409, "{refused}");
    let (status, refused) = post(&a_addr, "/partitions/2/release", "");
    assert_eq!(status, 409, "{refused}");
    let (status, refused) = post(&a_addr, "/partitions/9/acquire", "");
    assert_eq!(status, 400, "{refused}");
    let (status, refused) = post(&b_addr, "/partitions/0/acquire", "{\"checkpoint\": 99999}");
    assert_eq!(status, 409, "not that new: {refused}");
    assert_eq!(owned(&b_addr), serde_json::json!([1, 2]), "nothing joined");

    // An event far ahead in every partition moves every watermark past the
    // last window: all results end final.
    let ends: Vec<(i32, String)> = (0..4)
        .map(|p| {
            let end = serde_json::json!({"user": format!("end-{p}"), "ts": START + 36_000_000, "amount": 0});
            (p, end.to_string())
        })
        .collect();
    eddy_testkit::produce::produce(&brokers, &topic, &ends);
    let expected = expected();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut got = table(&name);
    while got != expected {
        assert!(
            Instant::now() < deadline,
            "{} of {} results final; differing: {:?}",
            got.len(),
            expected.len(),
            expected.iter().find(|(k, v)| got.get(*k) != Some(*v))
        );
        std::thread::sleep(Duration::from_millis(500));
        got = table(&name);
    }
    let extra: Vec<_> = got.keys().filter(|k| !expected.contains_key(*k)).collect();
    assert!(extra.is_empty(), "{extra:?}");
    interrupt(&mut a);
    interrupt(&mut b);
}

/// A pod restarted right after a move, on the assignment from before it
/// (the kubelet refreshes a ConfigMap volume only every minute or so),
/// does not run the partition it gave away beside its new owner: the
/// move's checkpoints carry the newer assignment version, so it waits,
/// alive and not ready, until its file shows that version.
#[test]
fn a_pod_restarted_on_an_assignment_older_than_a_move_waits_for_the_new_one() {
    let brokers = eddy_testkit::kafka_brokers();
    let topic = eddy_testkit::unique_name("stale");
    let bucket = eddy_testkit::unique_name("stale");
    let name = eddy_testkit::unique_name("stale").replace('-', "_");
    produce(&brokers, &topic);
    create_bucket(&bucket);
    let dir = tempfile::tempdir().unwrap();
    job_yaml(dir.path(), &brokers, &topic, &bucket, &name);
    let assign = |version: u64, first: &str, second: &str| {
        let yaml = format!(
            "version: {version}\npods:\n- {{ordinal: 0, partitions: [{first}]}}\n- {{ordinal: 1, partitions: [{second}]}}\n"
        );
        std::fs::write(dir.path().join("assignment.yaml"), yaml).unwrap();
    };
    assign(1, "0, 1", "2, 3");
    let ready = |addr: &str| http(addr, "GET", "/readyz", "").0 == 200;
    let (mut first, first_addr, first_lines) = start_pod(dir.path(), "stale-0");
    let (mut second, second_addr, second_lines) = start_pod(dir.path(), "stale-1");
    wait_for("both ready", || ready(&first_addr) && ready(&second_addr));
    wait_until_read(&[&first_addr, &second_addr], 5_000);
    // Should the move fail, what the processors said tells why.
    let move_one = std::panic::catch_unwind(|| moved_in(&first_addr, &second_addr, 1, Some(2)));
    if let Err(e) = move_one {
        let said = |lines: &std::sync::mpsc::Receiver<String>| lines.try_iter().collect::<Vec<_>>();
        panic!(
            "{e:?}; the first said {:#?}; the second said {:#?}",
            said(&first_lines),
            said(&second_lines)
        );
    }
    assert_eq!(owned(&second_addr), serde_json::json!([1, 2, 3]));

    // Killed before its ConfigMap shows the move, and started on it.
    first.kill().unwrap();
    first.wait().unwrap();
    let (mut first, first_addr, lines) = start_pod(dir.path(), "stale-0");
    let mut seen = Vec::new();
    let waiting = loop {
        match lines.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.contains("assignment version 1 is older than partition") => {
                break line
            }
            Ok(line) => seen.push(line),
            Err(e) => panic!("no line saying why it waits ({e}); it said {seen:#?}"),
        }
    };
    println!("{waiting}");
    std::thread::sleep(Duration::from_secs(3));
    assert!(!ready(&first_addr), "not ready on the old assignment");
    assert!(first.try_wait().unwrap().is_none(), "alive while it waits");

    assign(2, "0", "1, 2, 3");
    wait_for("ready on the new assignment", || ready(&first_addr));
    assert_eq!(owned(&first_addr), serde_json::json!([0]));
    assert_eq!(owned(&second_addr), serde_json::json!([1, 2, 3]));
    interrupt(&mut first);
    interrupt(&mut second);
}

/// Only Kafka partitions move (a generator has one position for all its
/// partitions), and only where no output is a file of the processor.
#[test]
fn a_source_with_one_position_or_a_file_output_refuses_moves() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    for (sink, why) in [
        (
            format!("{{file: {{path: {d}/results.jsonl}}}}"),
            "is a file",
        ),
        ("{stdout: {}}".to_string(), "generator"),
    ] {
        let yaml = format!(
            "apiVersion: eddy.dev/v1alpha1
kind: StreamJob
metadata: {{name: fixed}}
spec:
  source: {{generator: {{rate: 1000, realtime: true, keys: 50}}}}
  partitions: 2
  keyField: user
  eventTime: {{field: ts}}
  window: {{tumbling: {{size: 1s}}}}
  sinks: [{sink}]
  checkpoints: {{store: 'file://{d}/ckpt', interval: 1h}}
"
        );
        std::fs::write(dir.path().join("job.yaml"), yaml).unwrap();
        let (mut child, addr) = spawn_until(
            Command::new(BIN)
                .args(["run", "--admin-addr", "127.0.0.1:0"])
                .arg(dir.path().join("job.yaml"))
                .stdout(std::process::Stdio::null()),
            "admin API on http://",
        );
        wait_for("ready", || http(&addr, "GET", "/readyz", "").0 == 200);
        let (status, refused) = post(&addr, "/partitions/1/release", "");
        assert_eq!(status, 409, "{refused}");
        assert!(
            refused["error"].as_str().unwrap().contains(why),
            "{why}: {refused}"
        );
        assert_eq!(owned(&addr), serde_json::json!([0, 1]), "nothing moved");
        let (status, _) = post(&addr, "/partitions/1/release", "{\"bogus\": 1}");
        assert_eq!(status, 400);
        interrupt(&mut child);
    }
}

/// A release whose checkpoint cannot be stored keeps the partition: `500`
/// with `"kept": true`, and it still runs here (a later release works).
#[test]
fn a_release_whose_checkpoint_fails_keeps_the_partition() {
    let brokers = eddy_testkit::kafka_brokers();
    let topic = eddy_testkit::unique_name("kept");
    common::create_topics(&brokers, &[(&topic, 2)]);
    let events: Vec<(i32, String)> = (0..2_000)
        .map(|i| {
            let event = serde_json::json!({"user": format!("u{i}"), "ts": START + i, "amount": 1});
            (i as i32 % 2, event.to_string())
        })
        .collect();
    eddy_testkit::produce::produce(&brokers, &topic, &events);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let yaml = format!(
        "apiVersion: eddy.dev/v1alpha1
kind: StreamJob
metadata: {{name: kept}}
spec:
  source:
    kafka: {{brokers: '{brokers}', topic: {topic}}}
  partitions: 2
  keyField: user
  eventTime: {{field: ts, format: epochMillis}}
  window: {{tumbling: {{size: 1h}}}}
  aggregations: [{{op: count, name: n}}]
  sinks: [{{stdout: {{}}}}]
  checkpoints: {{store: 'file://{d}/store', interval: 1h}}
"
    );
    std::fs::write(dir.path().join("job.yaml"), yaml).unwrap();
    let (mut child, addr) = start(dir.path(), "state", "0,1");
    // The store turns into a file: no checkpoint can be written.
    let store = dir.path().join("store");
    let _ = std::fs::remove_dir_all(&store);
    std::fs::write(&store, "not a directory").unwrap();
    let (status, kept) = post(&addr, "/partitions/1/release", "");
    assert_eq!(status, 500, "{kept}");
    assert_eq!(kept["kept"], true, "{kept}");
    assert_eq!(owned(&addr), serde_json::json!([0, 1]), "still run here");
    // With the store back, the same partition is released.
    std::fs::remove_file(&store).unwrap();
    let (status, released) = post(&addr, "/partitions/1/release", "");
    assert_eq!(status, 200, "{released}");
    assert_eq!(owned(&addr), serde_json::json!([0]));
    interrupt(&mut child);
}
