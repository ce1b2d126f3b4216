//! The admin HTTP API on a running processor: trigger and list checkpoints,
//! a final checkpoint that stops consumption until resumed, probes.

mod common;

use std::{process::Command, time::Duration};

use common::{http, interrupt, spawn_until, wait_for, BIN};
use serde_json::Value;

fn list(addr: &str) -> Value {
    let (status, body) = http(addr, "GET", "/checkpoints", "");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
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

    interrupt(&mut child);
}

/// Run the way the operator runs a pod: partitions from the assignment by
/// the pod's ordinal, checkpoints only when asked, under the operator's ids.
#[test]
fn operator_assigned_partitions_and_checkpoint_ids() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let yaml = format!(
        "apiVersion: eddy.dev/v1alpha1
kind: StreamJob
metadata: {{name: pods}}
spec:
  source: {{generator: {{rate: 2000, realtime: true, keys: 50}}}}
  keyField: user
  eventTime: {{field: ts, idleTimeout: 1s}}
  window: {{tumbling: {{size: 1s}}}}
  partitions: 4
  parallelism: 2
  sinks: [{{file: {{path: {d}/results.jsonl}}}}]
  checkpoints: {{store: 'file://{d}/ckpt', interval: 100ms}}
"
    );
    std::fs::write(dir.path().join("job.yaml"), yaml).unwrap();
    std::fs::write(
        dir.path().join("assignment.yaml"),
        "- {ordinal: 0, partitions: [0, 1]}\n- {ordinal: 1, partitions: [2, 3]}\n",
    )
    .unwrap();
    let (mut child, addr) = spawn_until(
        Command::new(BIN)
            .args([
                "run",
                "--admin-addr",
                "127.0.0.1:0",
                "--external-checkpoints",
            ])
            .arg("--assignment")
            .arg(dir.path().join("assignment.yaml"))
            .arg(dir.path().join("job.yaml"))
            .env("POD_NAME", "pods-1"),
        "admin API on http://",
    );
    wait_for("ready", || http(&addr, "GET", "/readyz", "").0 == 200);
    // The spec's 100 ms interval is the operator's business now.
    std::thread::sleep(Duration::from_millis(600));
    let listed = list(&addr);
    assert_eq!(listed["checkpoints"], serde_json::json!([]), "{listed}");
    assert!(listed["nextId"].as_u64().unwrap() <= 1, "{listed}");

    let post = |body: &str| {
        let (status, body) = http(&addr, "POST", "/checkpoints", body);
        (status, serde_json::from_str::<Value>(&body).unwrap())
    };
    let (status, body) = post("{\"id\": 7}");
    assert_eq!((status, body["id"].as_u64()), (202, Some(7)), "{body}");
    // A retry of the same request is answered the same way.
    let (status, body) = post("{\"id\": 7}");
    assert_eq!((status, body["id"].as_u64()), (202, Some(7)), "{body}");
    wait_for("checkpoint 7 completed", || {
        list(&addr)["checkpoints"][0]["id"] == 7
    });
    let (status, body) = post("{\"id\": 7}");
    assert_eq!(status, 202, "completed ids are acknowledged again: {body}");
    let (status, body) = post("{\"id\": 5}");
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("at least 8"),
        "{body}"
    );
    assert_eq!(list(&addr)["nextId"], 8);
    let (status, body) = post("{\"final\": true, \"junk\": 1}");
    assert_eq!(status, 400, "unknown fields are refused: {body}");

    // Only the pod's own partitions are checkpointed.
    let mut parts: Vec<String> = std::fs::read_dir(dir.path().join("ckpt/default/pods"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    parts.sort();
    assert_eq!(parts, ["p2", "p3"]);
    for p in &parts {
        let manifest = dir
            .path()
            .join(format!("ckpt/default/pods/{p}/checkpoints/{:020}.json", 7));
        assert!(manifest.exists(), "{}", manifest.display());
    }

    interrupt(&mut child);
}

#[test]
fn a_pod_without_an_entry_in_the_assignment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("job.yaml"),
        "apiVersion: eddy.dev/v1alpha1
kind: StreamJob
metadata: {name: pods}
spec:
  source: {generator: {rate: 10}}
  keyField: user
  eventTime: {field: ts}
  window: {tumbling: {size: 1s}}
  partitions: 2
",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("assignment.yaml"),
        "- {ordinal: 0, partitions: [0, 1]}\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("run")
        .arg(dir.path().join("job.yaml"))
        .arg("--assignment")
        .arg(dir.path().join("assignment.yaml"))
        .args(["--pod-name", "pods-3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("gives pod pods-3 (ordinal 3) no partitions"),
        "{stderr}"
    );
}
