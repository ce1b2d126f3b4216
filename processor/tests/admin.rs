//! The admin HTTP API on a running processor: trigger and list checkpoints,
//! a final checkpoint that stops consumption until resumed, probes.

mod common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use common::{http, spawn_until, BIN};
use serde_json::Value;

fn list(addr: &str) -> Value {
    let (status, body) = http(addr, "GET", "/checkpoints", "");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn checkpoints_on_demand_final_checkpoint_pauses_until_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let yaml = format!(
        "apiVersion: eddy.dev/v1alpha1
kind: StreamJob
metadata: {{name: admin}}
spec:
  source: {{generator: {{rate: 2000, realtime: true, keys: 50}}}}
  keyField: user
  eventTime: {{field: ts, idleTimeout: 1s}}
  window: {{tumbling: {{size: 1s}}}}
  sinks: [{{file: {{path: {d}/results.jsonl}}}}]
  checkpoints: {{store: 'file://{d}/ckpt', interval: 1h}}
"
    );
    std::fs::write(dir.path().join("job.yaml"), yaml).unwrap();
    let (mut child, addr) = spawn_until(
        Command::new(BIN)
            .args(["run", "--admin-addr", "127.0.0.1:0"])
            .arg(dir.path().join("job.yaml")),
        "admin API on http://",
    );

    assert_eq!(http(&addr, "GET", "/healthz", "").0, 200);
    wait_for("ready", || http(&addr, "GET", "/readyz", "").0 == 200);
    assert_eq!(list(&addr)["checkpoints"], serde_json::json!([]));

    // On demand.
    let (status, body) = http(&addr, "POST", "/checkpoints", "");
    assert_eq!(status, 202, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_u64()
        .unwrap();
    wait_for("checkpoint completed", || {
        list(&addr)["checkpoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == id)
    });
    let listed = list(&addr);
    let c = &listed["checkpoints"][0];
    assert!(c["bytesTotal"].as_u64().unwrap() > 0, "{listed}");
    assert!(c["time"].as_str().unwrap().starts_with("20"), "{listed}");
    assert!(listed["lastCompletedAgeSeconds"].as_u64().unwrap() < 60);

    // Final: consumption stops until resumed.
    let (status, body) = http(&addr, "POST", "/checkpoints", "{\"final\": true}");
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        http(&addr, "GET", "/readyz", "").0,
        503,
        "paused: not ready"
    );
    wait_for("final checkpoint completed", || {
        list(&addr)["checkpoints"].as_array().unwrap().len() == 2
    });
    let results = dir.path().join("results.jsonl");
    let size = || std::fs::metadata(&results).map_or(0, |m| m.len());
    std::thread::sleep(Duration::from_millis(300));
    let paused_size = size();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(size(), paused_size, "nothing is processed while paused");
    assert_eq!(http(&addr, "POST", "/resume", "").0, 204);
    wait_for("results after resuming", || size() > paused_size);
    assert_eq!(http(&addr, "GET", "/readyz", "").0, 200);

    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}
