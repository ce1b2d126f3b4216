//! A real Prometheus (Debian's, from `scripts/test-servers`) scrapes
//! running processors and evaluates the chart's alerting rules: the counts
//! of a known input arrive as they are, the hot-key alert fires for a job
//! with one hot key, the checkpoint-lag alert for a job whose checkpoints
//! cannot complete, and neither for a healthy job.

mod common;

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{ev, free_port, http, spawn_until, t, Job, Reaped, BIN};
use serde_json::{json, Value};

/// Starts `job.yaml` in `dir` with metrics on `port` (and `extra` args),
/// once it serves them.
fn processor(dir: &Path, port: u16, extra: &[&str], ready: &str) -> Reaped {
    let (child, _) = spawn_until(
        Command::new(BIN)
            .arg("run")
            .arg(dir.join("job.yaml"))
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(extra)
            .stdout(Stdio::null()),
        ready,
    );
    Reaped(child)
}

/// A generator job `name` in its own directory, checkpointing to `store`
/// (a directory in it when `None`) every second.
fn generator(name: &str, source: &str, store: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let store = store.map_or(format!("file://{d}/ckpt"), str::to_string);
    let yaml = format!(
        "apiVersion: eddy.dev/v1alpha1
kind: StreamJob
metadata: {{name: {name}, namespace: alerts}}
spec:
  source: {{generator: {source}}}
  keyField: key
  eventTime: {{field: ts}}
  window: {{tumbling: {{size: 10s}}}}
  partitions: 2
  sinks: [{{file: {{path: {d}/results.jsonl}}}}]
  checkpoints: {{store: '{store}', interval: 1s}}
"
    );
    std::fs::write(dir.path().join("job.yaml"), yaml).unwrap();
    dir
}

/// The chart's alerting rules as a Prometheus rule file, with thresholds
/// and durations short enough for a test.
fn rule_file(dir: &Path) -> std::path::PathBuf {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/eddy");
    let out = Command::new(eddy_testkit::helm())
        .args(["template", "eddy"])
        .arg(&chart)
        .args(["--show-only", "templates/prometheusrule.yaml"])
        .args(["--set", "monitoring.prometheusRule.enabled=true"])
        .args([
            "--set",
            "monitoring.prometheusRule.alerts.checkpointLag.thresholdSeconds=5",
        ])
        .args([
            "--set",
            "monitoring.prometheusRule.alerts.checkpointLag.for=0s",
        ])
        .args(["--set", "monitoring.prometheusRule.alerts.hotKey.for=0s"])
        .args([
            "--set",
            "monitoring.prometheusRule.alerts.hotKey.window=10s",
        ])
        .args([
            "--set",
            "monitoring.prometheusRule.alerts.hotKey.minEventsPerSecond=10",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rule: Value = serde_yaml_ng::from_slice(&out.stdout).unwrap();
    let path = dir.join("rules.yml");
    std::fs::write(&path, serde_yaml_ng::to_string(&rule["spec"]).unwrap()).unwrap();
    path
}

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Prometheus {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes `targets` every second and evaluates `rules` every second.
    fn start(targets: &[u16]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rules = rule_file(dir.path());
        let targets: Vec<String> = targets.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let config = json!({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [rules],
            "scrape_configs": [{
                "job_name": "eddy",
                "honor_labels": true,
                "static_configs": [{"targets": targets}],
            }],
        });
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, serde_yaml_ng::to_string(&config).unwrap()).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(eddy_testkit::prometheus())
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let prometheus = Self {
            child,
            addr,
            _dir: dir,
        };
        prometheus.until("Prometheus to be ready", Duration::from_secs(60), |p| {
            let ok = std::net::TcpStream::connect(&p.addr).is_ok()
                && http(&p.addr, "GET", "/-/ready", "").0 == 200;
            ok.then_some(())
        });
        prometheus
    }

    /// `GET path` as HTTP/1.0, so the answer is not chunked.
    fn api(&self, path: &str) -> Value {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&self.addr).unwrap();
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{path}: {response}"
        );
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }

    /// The value of an instant query that yields one series, if it does.
    fn value(&self, query: &str) -> Option<f64> {
        let answer = self.api(&format!("/api/v1/query?query={}", encode(query)));
        let result = answer["data"]["result"].as_array()?;
        let [one] = result.as_slice() else {
            return None;
        };
        one["value"][1].as_str()?.parse().ok()
    }

    /// Alerts now firing, as (name, job).
    fn firing(&self) -> Vec<(String, String)> {
        self.api("/api/v1/alerts")["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["state"] == "firing")
            .map(|a| {
                let l = &a["labels"];
                (
                    l["alertname"].as_str().unwrap_or_default().to_string(),
                    l["job"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    fn until<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check(self) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

#[test]
fn prometheus_scrapes_exact_counts_and_the_alerts_fire_where_they_should() {
    // A finite input with known counts, held at its end.
    let mut input: Vec<Value> = (0..600)
        .map(|i| ev(&format!("u{}", i % 7), i as f64 * 0.1, 1.0))
        .collect();
    input.push(json!({"user": "u1", "ts": t(1.0), "at": t(59.0), "amount": 1.0}));
    input.push(json!({"user": "u1", "at": t(60.0), "amount": 1.0}));
    let known = Job::new(
        "  keyField: user
  partitions: 1
  eventTime: {field: ts, maxOutOfOrderness: 1s, idleTimeout: 1h}
  window: {tumbling: {size: 2s}}",
        &input,
    );
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let admin = format!("127.0.0.1:{}", free_port());
    let _known = processor(
        known.dir.path(),
        ports[0],
        &["--admin-addr", &admin, "--hold-when-finished"],
        "finished: every window is out",
    );
    // One key carries nearly every event.
    let hot = generator(
        "hot",
        "{rate: 300, realtime: true, keys: 20, keySkew: 3.0}",
        None,
    );
    let _hot = processor(hot.path(), ports[1], &[], "metrics on http://");
    // Checkpoints that can never be written.
    let blocked = generator(
        "blocked",
        "{rate: 100, realtime: true, keys: 1000}",
        Some("file:///proc/eddy-cannot-write-here"),
    );
    let _blocked = processor(blocked.path(), ports[2], &[], "metrics on http://");
    let healthy = generator("healthy", "{rate: 300, realtime: true, keys: 1000}", None);
    let _healthy = processor(healthy.path(), ports[3], &[], "metrics on http://");

    let prometheus = Prometheus::start(&ports);
    let minute = Duration::from_secs(60);
    let exact = |query: &str, want: f64| {
        let got = prometheus.until(query, minute, |p| p.value(query));
        assert_eq!(got, want, "{query}");
    };
    exact(r#"eddy_events_read_total{job="semantics"}"#, 602.0);
    exact(r#"sum(eddy_events_accepted_total{job="semantics"})"#, 600.0);
    exact(
        r#"sum(eddy_events_late_total{job="semantics",handling="dropped"})"#,
        1.0,
    );
    exact(
        r#"sum(eddy_events_invalid_total{job="semantics",reason="missing_time"})"#,
        1.0,
    );
    let results = known.lines("results.jsonl").len() as f64;
    exact(r#"eddy_windows_fired_total{job="semantics"}"#, results);
    prometheus.until("state bytes of a live job", minute, |p| {
        p.value(r#"sum(eddy_state_bytes{job="healthy"})"#)
            .filter(|b| *b > 0.0)
    });
    prometheus.until("checkpoints of the healthy job", minute, |p| {
        p.value(r#"eddy_checkpoints_completed_total{job="healthy"}"#)
            .filter(|n| *n >= 2.0)
    });
    prometheus.until("failed checkpoints of the blocked job", minute, |p| {
        p.value(r#"eddy_checkpoints_failed_total{job="blocked"}"#)
            .filter(|n| *n >= 1.0)
    });

    let wanted = [("EddyHotKey", "hot"), ("EddyCheckpointLag", "blocked")];
    let firing = prometheus.until("the hot-key and checkpoint-lag alerts", 2 * minute, |p| {
        let firing = p.firing();
        wanted
            .iter()
            .all(|(a, j)| firing.iter().any(|(fa, fj)| fa == a && fj == j))
            .then_some(firing)
    });
    println!("firing: {firing:?}");
    // A little longer: the healthy job stays quiet.
    std::thread::sleep(Duration::from_secs(5));
    let firing = prometheus.firing();
    for (alert, job) in &firing {
        assert_ne!(
            job, "healthy",
            "{alert} fired for the healthy job: {firing:?}"
        );
    }
    assert!(
        !firing
            .iter()
            .any(|(a, j)| a == "EddyHotKey" && j == "blocked"),
        "uniform keys are not hot: {firing:?}"
    );
    assert!(
        !firing
            .iter()
            .any(|(a, j)| a == "EddyCheckpointLag" && j == "hot"),
        "checkpoints every second do not lag: {firing:?}"
    );
}
