//! A real Prometheus evaluating the chart's alert rules over the
//! processors' metrics, and a real Alertmanager delivering the alerts to
//! a webhook (the operator's), both from Debian's packages
//! (`scripts/test-servers install`), on loopback, for one test.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use eddy_testkit::free_port;
use serde_json::{json, Value};

/// Prometheus and Alertmanager, stopped when dropped.
pub struct Alerting {
    prometheus: Child,
    alertmanager: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Alerting {
    fn drop(&mut self) {
        for child in [&mut self.prometheus, &mut self.alertmanager] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The chart's PrometheusRule, rendered with `values` (`key=value`), as a
/// Prometheus rule file in `dir`.
fn rule_file(dir: &Path, values: &[&str]) -> std::path::PathBuf {
    let chart = super::repo().join("charts/eddy");
    let mut args = vec![
        "template".to_string(),
        "eddy".into(),
        chart.display().to_string(),
        "--show-only".into(),
        "templates/prometheusrule.yaml".into(),
        "--set".into(),
        "monitoring.prometheusRule.enabled=true".into(),
    ];
    for v in values {
        args.extend([
            "--set".into(),
            format!("monitoring.prometheusRule.alerts.{v}"),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let rendered = super::helm(&args);
    let rule: Value = serde_yaml_ng::from_str(&rendered).unwrap();
    let path = dir.join("rules.json");
    let groups = json!({ "groups": rule["spec"]["groups"] });
    std::fs::write(&path, groups.to_string()).unwrap();
    path
}

fn spawn(program: String, args: Vec<String>, log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Waits until `GET http://addr/-/ready` answers 200.
fn wait_ready(what: &str, addr: &str) {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ready = std::net::TcpStream::connect(addr).is_ok_and(|mut s| {
            let mut answer = String::new();
            write!(s, "GET /-/ready HTTP/1.0\r\nHost: {addr}\r\n\r\n").is_ok()
                && s.read_to_string(&mut answer).is_ok()
                && answer.lines().next().is_some_and(|l| l.contains(" 200 "))
        });
        if ready {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} not ready at {addr}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Alerting {
    /// Prometheus scraping `targets` (`host:port` of processor metrics)
    /// every second and evaluating the chart's rules (with `rule_values`)
    /// every second; Alertmanager sending what fires to `webhook` at once,
    /// again every 10 s while it fires, and when it resolves.
    pub fn start(targets: &[String], rule_values: &[&str], webhook: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let am_addr = format!("127.0.0.1:{}", free_port());
        // JSON is YAML: both read these files.
        let am_config = json!({
            "route": {
                "receiver": "eddy-operator",
                "group_by": ["alertname", "namespace", "job"],
                "group_wait": "1s",
                "group_interval": "1s",
                "repeat_interval": "10s",
            },
            "receivers": [{
                "name": "eddy-operator",
                "webhook_configs": [{"url": webhook, "send_resolved": true}],
            }],
        });
        let am_config_path = dir.path().join("alertmanager.json");
        std::fs::write(&am_config_path, am_config.to_string()).unwrap();
        let alertmanager = spawn(
            eddy_testkit::alertmanager(),
            vec![
                format!("--config.file={}", am_config_path.display()),
                format!("--storage.path={}", dir.path().join("am").display()),
                format!("--web.listen-address={am_addr}"),
                // One Alertmanager: no gossip with peers.
                "--cluster.listen-address=".into(),
            ],
            &dir.path().join("alertmanager.log"),
        );
        let rules = rule_file(dir.path(), rule_values);
        let prom_addr = format!("127.0.0.1:{}", free_port());
        let config = json!({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [rules],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [am_addr]}]}]},
            "scrape_configs": [{
                "job_name": "eddy-processors",
                // The processors' own `namespace` and `job` labels name the
                // StreamJob, as the chart's PodMonitor keeps them.
                "honor_labels": true,
                "static_configs": [{"targets": targets}],
            }],
        });
        let config_path = dir.path().join("prometheus.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let prometheus = spawn(
            eddy_testkit::prometheus(),
            vec![
                format!("--config.file={}", config_path.display()),
                format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()),
                format!("--web.listen-address={prom_addr}"),
            ],
            &dir.path().join("prometheus.log"),
        );
        let alerting = Self {
            prometheus,
            alertmanager,
            _dir: dir,
        };
        wait_ready("Alertmanager", &am_addr);
        wait_ready("Prometheus", &prom_addr);
        alerting
    }
}
