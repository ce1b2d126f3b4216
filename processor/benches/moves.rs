//! Partition moves between two running processors of one Kafka job: per
//! move, the pause of the moved partition (release asked → running again
//! on the other processor) and the throughput of the partitions that did
//! not move, before the move and during it. Prints a table.
//!
//! Needs the test servers (Kafka and S3):
//!
//! ```sh
//! scripts/test-servers start && eval "$(scripts/test-servers env)"
//! cargo bench -p eddy-processor --bench moves
//! ```
//!
//! `EDDY_BENCH_KEYS` (default 3,000,000): keys in the moved partition, each
//! with an open hour-long window (its state; "state" is what the processor
//! reports for it, memtables included, with a 2 GiB memory budget).
//! `EDDY_BENCH_EVENTS` (default 4,000,000): events in each partition that
//! stays, enough to keep them busy through both moves ("backlog left" says
//! whether they were).

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

#[path = "../tests/common/mod.rs"]
mod common;

use common::{create_bucket, http, spawn_until, BIN};
const START: i64 = 1_767_225_600_000;

fn main() {
    if std::env::var_os("EDDY_TEST_KAFKA_BROKERS").is_none() {
        eprintln!(
            "moves: needs the test servers: scripts/test-servers start && \
             eval \"$(scripts/test-servers env)\"; skipped"
        );
        return;
    }
    let number = |var: &str, default: u64| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.replace('_', "").parse().ok())
            .unwrap_or(default)
    };
    let keys = number("EDDY_BENCH_KEYS", 3_000_000);
    let events = number("EDDY_BENCH_EVENTS", 4_000_000);
    let brokers = eddy_testkit::kafka_brokers();
    let name = eddy_testkit::unique_name("moves");
    let topic = name.clone();
    let dir = tempfile::tempdir().unwrap();
    create_bucket(&name);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(eddy_testkit::produce::create_topics(
            &brokers,
            &[(&topic, 4)],
        ));
    let started = Instant::now();
    // Partition 0: one event per key. The others: events over 10,000 keys.
    produce(&brokers, &topic, 0, keys, |i| format!("p0-{i}"));
    for p in 1..4 {
        produce(&brokers, &topic, p, events, |i| {
            format!("p{p}-{}", i % 10_000)
        });
    }
    eprintln!(
        "produced {} events in {:.0} s",
        keys + 3 * events,
        started.elapsed().as_secs_f64()
    );
    write_job(dir.path(), &brokers, &topic, &name);

    // a builds partition 0's state alone, then takes partition 1 on.
    let (mut a, a_addr) = start(dir.path(), "a", "0");
    wait("partition 0 read", Duration::from_secs(300), || {
        accepted(&a_addr, 0) >= keys
    });
    let state = load(&a_addr, 0).map_or(0, |l| l["stateBytes"].as_u64().unwrap_or(0));
    post(&a_addr, "/partitions/1/acquire", "");
    let (mut b, b_addr) = start(dir.path(), "b", "2,3");
    std::thread::sleep(Duration::from_secs(3));

    let mut rows = Vec::new();
    for (from, to, stay) in [
        (
            &a_addr,
            &b_addr,
            vec![(&a_addr, 1), (&b_addr, 2), (&b_addr, 3)],
        ),
        (
            &b_addr,
            &a_addr,
            vec![(&a_addr, 1), (&b_addr, 2), (&b_addr, 3)],
        ),
    ] {
        rows.push(one_move(from, to, &stay, state));
        std::thread::sleep(Duration::from_secs(3));
    }
    println!();
    println!(
        "| move | state | release | acquire | pause | others before | others during | during/before | backlog left |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for r in &rows {
        println!("{r}");
    }
    println!();
    println!("goals: pause < 5 s at 100 MiB of partition state; others during >= 0.9 of before");
    for child in [&mut a, &mut b] {
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let _ = child.wait();
    }
}

/// Moves partition 0 from `from` to `to`, measuring the partitions in
/// `stay` (processor, partition) before and during; a table row.
fn one_move(from: &str, to: &str, stay: &[(&String, u32)], state: u64) -> String {
    let total = || -> u64 { stay.iter().map(|(addr, p)| accepted(addr, *p)).sum() };
    // Figures refresh once a second: windows of a few seconds.
    let (before_at, before) = (Instant::now(), total());
    std::thread::sleep(Duration::from_secs(4));
    let (moving_at, moving) = (Instant::now(), total());
    let rate_before = (moving - before) as f64 / moving_at.duration_since(before_at).as_secs_f64();
    let (status, released) = post(from, "/partitions/0/release", "");
    assert_eq!(status, 200, "{released}");
    let released_at = Instant::now();
    let id = released["checkpoint"].as_u64().unwrap();
    let (status, acquired) = post(
        to,
        "/partitions/0/acquire",
        &format!("{{\"checkpoint\": {id}}}"),
    );
    assert_eq!(status, 200, "{acquired}");
    let acquired_at = Instant::now();
    // At least four seconds of "during", from the release on.
    let until = acquired_at.max(moving_at + Duration::from_secs(4)) + Duration::from_secs(1);
    std::thread::sleep(until.saturating_duration_since(Instant::now()));
    let (after_at, after) = (Instant::now(), total());
    let rate_during = (after - moving) as f64 / after_at.duration_since(moving_at).as_secs_f64();
    let backlog_left = stay.iter().all(|(addr, p)| {
        load(addr, *p)
            .and_then(|l| l["backlog"].as_u64())
            .unwrap_or(0)
            > 0
    });
    let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    format!(
        "| 0: {} → {} | {:.0} MiB | {} | {} | {} | {:.0}/s | {:.0}/s | {:.2} | {} |",
        port(from),
        port(to),
        state as f64 / (1 << 20) as f64,
        secs(released_at - moving_at),
        secs(acquired_at - released_at),
        secs(acquired_at - moving_at),
        rate_before,
        rate_during,
        rate_during / rate_before.max(1.0),
        if backlog_left {
            "yes"
        } else {
            "no: raise EDDY_BENCH_EVENTS"
        }
    )
}

fn port(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap_or(addr)
}

fn produce(brokers: &str, topic: &str, partition: i32, count: u64, key: impl Fn(u64) -> String) {
    const CHUNK: u64 = 500_000;
    let mut from = 0;
    while from < count {
        let to = (from + CHUNK).min(count);
        let messages: Vec<(i32, String)> = (from..to)
            .map(|i| {
                // Spread over half an hour: every event in one open window.
                let ts = START + (i as f64 * 1_800_000.0 / count as f64) as i64;
                let event = serde_json::json!({"user": key(i), "ts": ts, "amount": 1});
                (partition, event.to_string())
            })
            .collect();
        eddy_testkit::produce::produce(brokers, topic, &messages);
        from = to;
    }
}

fn write_job(dir: &std::path::Path, brokers: &str, topic: &str, name: &str) {
    let s3 = eddy_testkit::s3();
    let yaml = format!(
        "apiVersion: eddy.dev/v1alpha1
kind: StreamJob
metadata: {{name: {name}}}
spec:
  source:
    kafka: {{brokers: '{brokers}', topic: {topic}}}
  partitions: 4
  keyField: user
  eventTime: {{field: ts, format: epochMillis, maxOutOfOrderness: 5s, idleTimeout: 1h}}
  window: {{tumbling: {{size: 1h}}}}
  aggregations: [{{op: count, name: n}}, {{op: sum, field: amount, name: total}}]
  sinks: [{{stdout: {{}}}}]
  state: {{memoryBudget: 2Gi}}
  checkpoints: {{store: 's3://{name}/job', endpoint: '{}', interval: 30s, retain: 3}}
",
        s3.endpoint
    );
    std::fs::write(dir.join("job.yaml"), yaml).unwrap();
}

/// A processor of the job running `partitions`, and its admin address.
fn start(dir: &std::path::Path, name: &str, partitions: &str) -> (Child, String) {
    let s3 = eddy_testkit::s3();
    let (child, addr) = spawn_until(
        Command::new(BIN)
            .env("AWS_ACCESS_KEY_ID", s3.access_key)
            .env("AWS_SECRET_ACCESS_KEY", s3.secret_key)
            .arg("run")
            .arg(dir.join("job.yaml"))
            .args(["--partitions", partitions, "--admin-addr", "127.0.0.1:0"])
            .arg("--state-dir")
            .arg(dir.join(name))
            .stdout(Stdio::null()),
        "admin API on http://",
    );
    wait("ready", Duration::from_secs(60), || {
        http(&addr, "GET", "/readyz", "").0 == 200
    });
    (child, addr)
}

fn load(addr: &str, partition: u32) -> Option<Value> {
    let (_, body) = http(addr, "GET", "/partitions", "");
    let v: Value = serde_json::from_str(&body).ok()?;
    v["loads"]
        .as_array()?
        .iter()
        .find(|l| l["partition"] == partition)
        .cloned()
}

fn accepted(addr: &str, partition: u32) -> u64 {
    load(addr, partition).map_or(0, |l| l["accepted"].as_u64().unwrap_or(0))
}

fn post(addr: &str, path: &str, body: &str) -> (u16, Value) {
    let (status, body) = http(addr, "POST", path, body);
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

fn wait(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
