//! `GET /metrics` of a running processor: the values a known input must
//! give, and the figures of a live job (state, checkpoints, watermark).

mod common;

use std::{collections::BTreeMap, process::Command};

use common::{ev, free_port, http, interrupt, spawn_until, t, wait_for, Job, Reaped, BIN};
use serde_json::{json, Value};

/// One sample of an exposition.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap();
                    (k.to_string(), v.trim_matches('"').to_string())
                })
                .collect();
            Sample {
                name: name.to_string(),
                labels,
                value: value.parse().unwrap_or_else(|e| panic!("{l}: {e}")),
            }
        })
        .collect()
}

/// The sum of `name`'s samples whose labels include `with`.
fn sum(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            with.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

fn scrape(addr: &str) -> Vec<Sample> {
    let (status, body) = http(addr, "GET", "/metrics", "");
    assert_eq!(status, 200, "{body}");
    parse(&body)
}

#[test]
fn a_known_input_gives_known_counts() {
    // 1,000 events over 100 s, half of them of one key; 10 events 30 s
    // behind (late: 2 s windows, 1 s out-of-orderness, no lateness); 5
    // records without a time.
    let mut input: Vec<Value> = Vec::new();
    for i in 0..1000 {
        let s = i as f64 * 0.1;
        let user = if i % 2 == 0 {
            "hot".to_string()
        } else {
            format!("u{}", i % 9)
        };
        input.push(ev(&user, s, 1.0));
        if i >= 500 && i % 10 == 0 && i < 600 {
            input.push(json!({"user": "u1", "ts": t(s - 30.0), "at": t(s), "amount": 1.0}));
        }
    }
    for i in 0..5 {
        input.push(json!({"user": "u2", "at": t(100.0 + i as f64), "amount": 1.0}));
    }
    let job = Job::new(
        "  keyField: user
  partitions: 1
  eventTime: {field: ts, maxOutOfOrderness: 1s, idleTimeout: 1h}
  window: {tumbling: {size: 2s}}
  aggregations: [{op: count}]",
        &input,
    );
    let addr = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let (child, _) = spawn_until(
        Command::new(BIN)
            .arg("run")
            .arg(job.path("job.yaml"))
            .args(["--admin-addr", &admin, "--hold-when-finished"])
            .args(["--metrics-addr", &addr]),
        "finished: every window is out",
    );
    let mut child = Reaped(child);
    let m = scrape(&addr);
    let job_labels = [("job", "semantics"), ("namespace", "default")];
    assert_eq!(sum(&m, "eddy_events_read_total", &job_labels), 1015.0);
    assert_eq!(sum(&m, "eddy_events_accepted_total", &job_labels), 1000.0);
    assert_eq!(
        sum(&m, "eddy_events_late_total", &[("handling", "dropped")]),
        10.0
    );
    assert_eq!(
        sum(
            &m,
            "eddy_events_invalid_total",
            &[("reason", "missing_time")]
        ),
        5.0
    );
    let results = job.lines("results.jsonl").len() as f64;
    assert!(results > 50.0);
    assert_eq!(sum(&m, "eddy_windows_fired_total", &[]), results);
    assert_eq!(
        sum(&m, "eddy_results_written_total", &[("sink", "file-0")]),
        results
    );
    assert_eq!(sum(&m, "eddy_lateness_seconds_count", &[]), 10.0);
    let late_ratio = sum(&m, "eddy_late_dropped_ratio", &[]);
    assert!((late_ratio - 10.0 / 1015.0).abs() < 1e-9, "{late_ratio}");
    // The hot key: half of the partition's recent events.
    let top = sum(&m, "eddy_hot_key_share", &[("rank", "1")]);
    assert!((0.4..0.6).contains(&top), "{top}");
    // 1% of events ~30 s behind: keeping 99.9% takes about 30 s.
    let advice = sum(
        &m,
        "eddy_advice_out_of_orderness_seconds",
        &[("keep", "0.999")],
    );
    assert!((28.0..32.0).contains(&advice), "{advice}");
    assert!(sum(&m, "eddy_checkpoints_completed_total", &[]) >= 1.0);

    // The names behind the shares, and the advice, on the admin API.
    let (status, body) = http(&admin, "GET", "/stats", "");
    assert_eq!(status, 200, "{body}");
    let stats: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["eventsRead"], 1015);
    assert_eq!(stats["late"], 10);
    assert_eq!(stats["hotKeys"][0]["key"], "hot", "{stats}");
    let advice = &stats["advice"];
    assert_eq!(advice[0]["keep"], 0.99, "{stats}");
    assert_eq!(
        advice[0]["outOfOrdernessMs"], 0,
        "99% were in order: {stats}"
    );
    let ms = advice[1]["outOfOrdernessMs"].as_i64().unwrap();
    assert!((28_000..32_000).contains(&ms), "{stats}");
    assert_eq!(
        advice[1]["allowedLatenessMs"].as_i64().unwrap(),
        ms - 1_000,
        "beyond the job's 1 s out-of-orderness"
    );
    interrupt(&mut child.0);
}

#[test]
fn a_live_job_reports_state_checkpoints_and_its_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let yaml = format!(
        "apiVersion: eddy.dev/v1alpha1
kind: StreamJob
metadata: {{name: live, namespace: team}}
spec:
  source: {{generator: {{rate: 500, realtime: true, keys: 200}}}}
  keyField: user
  eventTime: {{field: ts, maxOutOfOrderness: 1s}}
  window: {{tumbling: {{size: 1h}}}}
  partitions: 2
  sinks: [{{file: {{path: {d}/results.jsonl}}}}]
  checkpoints: {{store: 'file://{d}/ckpt', interval: 300ms}}
"
    );
    std::fs::write(dir.path().join("job.yaml"), yaml).unwrap();
    let (child, addr) = spawn_until(
        Command::new(BIN)
            .arg("run")
            .arg(dir.path().join("job.yaml"))
            .args(["--metrics-addr", "127.0.0.1:0"]),
        "metrics on http://",
    );
    let mut child = Reaped(child);
    let addr = addr.trim_end_matches("/metrics").to_string();
    wait_for("two checkpoints and a second of rates", || {
        let m = scrape(&addr);
        sum(&m, "eddy_checkpoints_completed_total", &[]) >= 2.0
            && ["0", "1"]
                .iter()
                .all(|p| sum(&m, "eddy_partition_events_per_second", &[("partition", p)]) > 0.0)
    });
    let m = scrape(&addr);
    let team = [("job", "live"), ("namespace", "team")];
    for p in ["0", "1"] {
        let part = [("partition", p)];
        assert!(sum(&m, "eddy_state_bytes", &part) > 0.0, "partition {p}");
        assert!(sum(&m, "eddy_state_keys", &part) > 0.0, "partition {p}");
        assert!(sum(&m, "eddy_open_windows", &part) > 0.0, "partition {p}");
        assert!(sum(&m, "eddy_partition_events_per_second", &part) > 0.0);
    }
    assert!(sum(&m, "eddy_events_read_total", &team) > 0.0);
    assert_eq!(sum(&m, "eddy_windows_fired_total", &[]), 0.0, "1 h windows");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last = sum(&m, "eddy_checkpoint_last_completed_timestamp_seconds", &[]);
    assert!((now - last).abs() < 30.0, "{last} vs {now}");
    assert!(sum(&m, "eddy_checkpoint_duration_seconds_count", &[]) >= 2.0);
    assert!(sum(&m, "eddy_checkpoint_size_bytes", &[]) > 0.0);
    let lag = sum(&m, "eddy_watermark_lag_seconds", &team);
    assert!(
        (0.0..30.0).contains(&lag),
        "real time, 1 s out-of-orderness: {lag}"
    );
    let busy = sum(&m, "eddy_busy_ratio", &[]);
    assert!((0.0..=1.0).contains(&busy), "{busy}");
    interrupt(&mut child.0);
}

#[test]
fn the_kafka_backlog_is_what_was_produced_and_not_read() {
    let brokers = eddy_testkit::kafka_brokers();
    let topic = eddy_testkit::unique_name("backlog");
    common::create_topics(&brokers, &[(&topic, 2)]);
    let batch = |from: usize, n: usize| -> Vec<(i32, String)> {
        (from..from + n)
            .map(|i| {
                let event = ev(&format!("u{}", i % 5), i as f64, 1.0);
                ((i % 2) as i32, event.to_string())
            })
            .collect()
    };
    eddy_testkit::produce::produce(&brokers, &topic, &batch(0, 100));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let yaml = format!(
        "apiVersion: eddy.dev/v1alpha1
kind: StreamJob
metadata: {{name: backlog}}
spec:
  source: {{kafka: {{brokers: '{brokers}', topic: {topic}, startFrom: earliest}}}}
  keyField: user
  eventTime: {{field: ts}}
  window: {{tumbling: {{size: 1m}}}}
  partitions: 2
  sinks: [{{file: {{path: {d}/results.jsonl}}}}]
  checkpoints: {{store: 'file://{d}/ckpt', interval: 1h}}
"
    );
    std::fs::write(dir.path().join("job.yaml"), yaml).unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let (child, admin) = spawn_until(
        Command::new(BIN)
            .arg("run")
            .arg(dir.path().join("job.yaml"))
            .args(["--metrics-addr", &metrics, "--admin-addr", "127.0.0.1:0"]),
        "admin API on http://",
    );
    let mut child = Reaped(child);
    let backlog = || sum(&scrape(&metrics), "eddy_source_backlog_records", &[]);
    let backlog_becomes = |want: f64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while backlog() != want {
            let now = backlog();
            assert!(
                std::time::Instant::now() < deadline,
                "backlog {now}, not {want}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    let read = || sum(&scrape(&metrics), "eddy_events_read_total", &[]);
    wait_for("the first 100 read", || read() == 100.0);
    // Paused by a final checkpoint, it reads nothing while more arrives.
    let (status, body) = http(&admin, "POST", "/checkpoints", r#"{"final": true}"#);
    assert_eq!(status, 202, "{body}");
    eddy_testkit::produce::produce(&brokers, &topic, &batch(100, 60));
    // The end offsets are read again every 5 s.
    backlog_becomes(60.0);
    assert_eq!(read(), 100.0, "paused");
    assert_eq!(http(&admin, "POST", "/resume", "").0, 204);
    wait_for("the rest read", || read() == 160.0);
    backlog_becomes(0.0);
    interrupt(&mut child.0);
}
