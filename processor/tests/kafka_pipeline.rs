//! Kafka → processor → PostgreSQL against the real broker and database
//! started by `scripts/test-servers`, with checkpoints on the S3 server: the
//! table equals the expected results computed independently here, with and
//! without SIGKILLs, and malformed messages land in the invalid output.

mod common;

use std::{
    collections::BTreeMap,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    crash_then_finish, create_bucket, create_topics,
    events::{expected, produce, KILL_DELAYS_MS, PARTITIONS},
    query, read_lines, wait_for, with_s3_credentials, BIN,
};
use rdkafka::config::ClientConfig;

struct Run {
    dir: tempfile::TempDir,
    table: String,
}

fn job(
    brokers: &str,
    topic: &str,
    bucket: &str,
    extra_sinks: &str,
    invalid_table: Option<&str>,
) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let table = eddy_testkit::unique_name("kafka").replace('-', "_");
    let url = eddy_testkit::postgres_url();
    let s3 = eddy_testkit::s3();
    let invalid = match invalid_table {
        Some(t) => format!("{{postgres: {{url: '{url}', table: {t}, createTable: true}}}}"),
        None => format!("{{file: {{path: {d}/invalid.jsonl}}}}"),
    };
    let extra = extra_sinks.replace("{d}", &d.to_string());
    let yaml = format!(
        "apiVersion: eddy.dev/v1alpha1
kind: StreamJob
metadata: {{name: {table}}}
spec:
  source:
    kafka: {{brokers: '{brokers}', topic: {topic}, stopAtEnd: true}}
  partitions: {PARTITIONS}
  keyField: user
  eventTime: {{field: ts, format: epochMillis, maxOutOfOrderness: 2s, idleTimeout: 1h}}
  window: {{tumbling: {{size: 5s}}}}
  allowedLateness: 10s
  aggregations: [{{op: count, name: n}}, {{op: sum, field: amount, name: total}}]
  sinks: [{{postgres: {{url: '{url}', table: {table}, createTable: true}}}}{extra}]
  invalidOutput: {invalid}
  checkpoints: {{store: 's3://{bucket}/{table}', endpoint: '{}', interval: 100ms, retain: 2}}
",
        s3.endpoint
    );
    std::fs::write(dir.path().join("job.yaml"), yaml).unwrap();
    Run { dir, table }
}

fn command(run: &Run) -> Command {
    let mut c = Command::new(BIN);
    with_s3_credentials(&mut c)
        .arg("run")
        .arg(run.dir.path().join("job.yaml"))
        .arg("--state-dir")
        .arg(run.dir.path().join("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn table(run: &Run) -> BTreeMap<(String, i64), (u64, f64)> {
    let sql = format!(
        "SELECT key, (extract(epoch from window_start) * 1000)::bigint, (aggregates->>'n')::bigint, \
         (aggregates->>'total')::float8, final FROM {}",
        run.table
    );
    query(&sql)
        .iter()
        .map(|r| {
            assert!(r.get::<_, bool>(4), "every row ends final");
            ((r.get(0), r.get(1)), (r.get::<_, i64>(2) as u64, r.get(3)))
        })
        .collect()
}

#[test]
fn kafka_to_postgres_is_exactly_the_expected_results_with_and_without_crashes() {
    let brokers = eddy_testkit::kafka_brokers();
    let topic = eddy_testkit::unique_name("events");
    let bucket = eddy_testkit::unique_name("pipeline");
    produce(&brokers, &topic);
    create_bucket(&bucket);
    let expected = expected();
    assert!(expected.len() > 10_000);

    // Uninterrupted.
    let clean = job(&brokers, &topic, &bucket, "", None);
    let out = command(&clean).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(table(&clean), expected);
    let invalid = read_lines(&clean.dir.path().join("invalid.jsonl"));
    let reasons: BTreeMap<String, usize> = invalid.iter().fold(BTreeMap::new(), |mut m, r| {
        let reason = r["reason"].as_str().unwrap();
        *m.entry(reason.split(':').next().unwrap().to_string())
            .or_default() += 1;
        m
    });
    assert_eq!(
        reasons,
        BTreeMap::from([
            ("missing key field \"user\"".into(), 20),
            ("not JSON".into(), 20)
        ])
    );

    // SIGKILLed at ten or more moments, restarted each time.
    let output = eddy_testkit::unique_name("results");
    create_topics(&brokers, &[(&output, 1)]);
    let invalid_table = eddy_testkit::unique_name("invalid").replace('-', "_");
    let crashed = job(
        &brokers,
        &topic,
        &bucket,
        &format!(", {{kafka: {{brokers: '{brokers}', topic: {output}}}}}"),
        Some(&invalid_table),
    );
    // The first run lives 3 s, long enough to complete a checkpoint even on
    // a loaded machine, so later runs have one to restore; the others are
    // short enough that the job (tens of seconds of work, plus a restore at
    // each start) is still running at every one of them.
    let delays: Vec<u64> = [3_000].into_iter().chain(KILL_DELAYS_MS).collect();
    let (kills, restores) = crash_then_finish(|| command(&crashed), &delays);
    println!("{kills} kills, {restores} restores from checkpoints");
    assert!(kills >= 10, "only {kills} kills");
    assert!(restores >= 1, "no restore happened");
    assert_eq!(
        table(&crashed),
        expected,
        "no missing, extra or double-counted rows"
    );
    assert_eq!(
        topic_results(&brokers, &output),
        expected,
        "the output topic, keeping the highest-ranked revision per result id"
    );
    assert_eq!(
        invalid_rows(&invalid_table),
        BTreeMap::from([
            ("missing key field \"user\"".into(), 20),
            ("not JSON".into(), 20)
        ]),
        "each malformed message once in the invalid table, despite the replays"
    );
}

/// Kind and reason of each row of an invalid-records table.
fn invalid_rows(table: &str) -> BTreeMap<String, usize> {
    let mut reasons = BTreeMap::new();
    for row in query(&format!(
        "SELECT kind, record->>'reason', record->>'origin' FROM {table}"
    )) {
        assert_eq!(row.get::<_, String>(0), "invalid");
        assert!(row.get::<_, String>(2).starts_with('k'), "kafka origins");
        let reason: String = row.get(1);
        *reasons
            .entry(reason.split(':').next().unwrap().to_string())
            .or_default() += 1;
    }
    reasons
}

/// Reads a whole output topic and keeps the highest-ranked revision per
/// result id (a final one, else the highest), which must be final.
fn topic_results(brokers: &str, topic: &str) -> BTreeMap<(String, i64), (u64, f64)> {
    use rdkafka::{
        consumer::{BaseConsumer, Consumer},
        Message, Offset, TopicPartitionList,
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", topic)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&list).unwrap();
    let mut best: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut read = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while read < high {
        assert!(Instant::now() < deadline, "read {read} of {high} messages");
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message.unwrap();
        read = message.offset() + 1;
        let r: serde_json::Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
        let id = std::str::from_utf8(message.key().unwrap())
            .unwrap()
            .to_string();
        assert_eq!(
            r["id"].as_str(),
            Some(id.as_str()),
            "messages are keyed by result id"
        );
        let rank = |r: &serde_json::Value| {
            (
                r["final"].as_bool().unwrap(),
                r["revision"].as_u64().unwrap() as u32,
            )
        };
        if best.get(&id).is_none_or(|b| rank(&r) > rank(b)) {
            best.insert(id, r);
        }
    }
    best.values()
        .map(|r| {
            assert_eq!(r["final"], true, "every result ends final: {r}");
            (
                (
                    r["key"].as_str().unwrap().to_string(),
                    r["window"]["startMs"].as_i64().unwrap(),
                ),
                (
                    r["aggregates"]["n"].as_u64().unwrap(),
                    r["aggregates"]["total"].as_f64().unwrap(),
                ),
            )
        })
        .collect()
}

/// Resident and peak resident memory of a process, in MiB.
fn memory_mib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A sink that cannot keep up stops consumption instead of piling up
/// results: while another session holds an exclusive lock on the results
/// table, the processor writes nothing anywhere (its memory is printed, not
/// asserted); once the lock goes, it finishes with exactly the expected
/// table.
#[test]
fn a_blocked_table_sink_stops_consumption_until_it_drains() {
    let brokers = eddy_testkit::kafka_brokers();
    let topic = eddy_testkit::unique_name("slow");
    let bucket = eddy_testkit::unique_name("slow");
    produce(&brokers, &topic);
    create_bucket(&bucket);
    let run = job(
        &brokers,
        &topic,
        &bucket,
        ", {file: {path: '{d}/results.jsonl'}}",
        None,
    );
    let mut child = command(&run).spawn().unwrap();
    let pid = child.id();

    // Lock the table as soon as the sink has created it, and hold the lock
    // until told to let go.
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let name = run.table.clone();
    let locker = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let (mut client, connection) =
                tokio_postgres::connect(&eddy_testkit::postgres_url(), tokio_postgres::NoTls)
                    .await
                    .unwrap();
            tokio::spawn(connection);
            loop {
                let exists = client
                    .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
                    .await
                    .unwrap();
                if exists.get::<_, bool>(0) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let tx = client.transaction().await.unwrap();
            tx.batch_execute(&format!("LOCK TABLE {name} IN ACCESS EXCLUSIVE MODE"))
                .await
                .unwrap();
            locked_tx.send(()).unwrap();
            tokio::task::spawn_blocking(move || release_rx.recv())
                .await
                .unwrap()
                .unwrap();
            tx.commit().await.unwrap();
        });
    });
    locked_rx.recv_timeout(Duration::from_secs(60)).unwrap();

    // The loop fills the table's backlog, then stops writing anything.
    let results = run.dir.path().join("results.jsonl");
    let size = || std::fs::metadata(&results).map_or(0, |m| m.len());
    wait_for("writes to stop behind the locked table", || {
        let earlier = size();
        std::thread::sleep(Duration::from_millis(500));
        size() == earlier
    });
    let (before, (rss_before, _)) = (size(), memory_mib(pid));
    let mut rss_max = rss_before;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(150));
        rss_max = rss_max.max(memory_mib(pid).0);
    }
    let after = size();
    assert!(
        child.try_wait().unwrap().is_none(),
        "the job ended while its table was locked"
    );
    assert_eq!(before, after, "results kept flowing past a blocked sink");
    println!(
        "while the table was locked: {after} bytes of results written, \
         RSS {rss_before} MiB then at most {rss_max} MiB, peak so far {} MiB",
        memory_mib(pid).1
    );

    release_tx.send(()).unwrap();
    locker.join().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(size() > after, "it went on once the lock was released");
    assert_eq!(table(&run), expected());
}

/// A Kafka producer's periodic push waits for no acknowledgment, yet a
/// message that cannot be delivered surfaces at a push (and at a flush),
/// never dropped: here one larger than the producer takes and one to a
/// partition the topic lacks (refused outright, or failed by a delivery
/// report while the producer does not yet know the topic).
#[test]
fn an_undeliverable_message_surfaces_at_the_next_push() {
    use eddy_processor::output::sink::kafka::Producer;
    let brokers = eddy_testkit::kafka_brokers();
    let topic = eddy_testkit::unique_name("undeliverable");
    create_topics(&brokers, &[(&topic, 1)]);
    let ours = [
        ("message.max.bytes", "1000"),
        ("message.timeout.ms", "3000"),
    ];
    let producer = Producer::create(&brokers, &ours, &BTreeMap::new(), "a test").unwrap();
    producer.delivered("a test").unwrap();
    producer.send_to(&topic, 0, &[b'x'; 2_000]);
    let refused = producer.delivered("a test").unwrap_err().to_string();
    assert!(
        refused.contains("1 messages were not delivered"),
        "{refused}"
    );
    producer.send_to(&topic, 0, b"{}");
    producer.flush("a test").unwrap();

    producer.send_to(&topic, 7, b"{}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let failed = loop {
        if let Err(e) = producer.delivered("a test") {
            break e.to_string();
        }
        assert!(Instant::now() < deadline, "the failure never surfaced");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(failed.contains("1 messages were not delivered"), "{failed}");
}
