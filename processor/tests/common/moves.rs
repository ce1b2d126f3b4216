//! Processors of one Kafka job started side by side, each owning some
//! partitions, and partitions moved between them through the admin API.

use std::{
    process::{Child, Command},
    sync::mpsc::Receiver,
};

use serde_json::Value;

use super::{http, spawn_until, wait_for, with_s3_credentials, BIN};

/// Processor `name` of the job owning `partitions` (named as a pod is),
/// with its admin address.
pub fn start(dir: &std::path::Path, name: &str, partitions: &str) -> (Child, String) {
    let mut command = Command::new(BIN);
    with_s3_credentials(&mut command)
        .arg("run")
        .arg(dir.join("job.yaml"))
        .args(["--partitions", partitions, "--admin-addr", "127.0.0.1:0"])
        .args(["--pod-name", name])
        .arg("--state-dir")
        .arg(dir.join(name));
    let (child, addr) = spawn_until(&mut command, "admin API on http://");
    wait_for("ready", || http(&addr, "GET", "/readyz", "").0 == 200);
    (child, addr)
}

/// Pod `pod` (`<job>-<ordinal>`) of the job, owning what `assignment.yaml`
/// in `dir` gives it: its admin address once it serves, and its stderr
/// lines from then on.
pub fn start_pod(dir: &std::path::Path, pod: &str) -> (Child, String, Receiver<String>) {
    use std::io::BufRead;
    let mut command = Command::new(BIN);
    let mut child = with_s3_credentials(&mut command)
        .arg("run")
        .arg(dir.join("job.yaml"))
        .arg("--assignment")
        .arg(dir.join("assignment.yaml"))
        .args(["--pod-name", pod, "--admin-addr", "127.0.0.1:0"])
        .arg("--state-dir")
        .arg(dir.join(pod))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("stderr closed").unwrap();
        if let Some(addr) = line.strip_prefix("admin API on http://") {
            break addr.to_string();
        }
    };
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Read to the end even when nobody listens: a closed pipe would
        // fail the processor's next line.
        for line in lines.map_while(Result::ok) {
            let _ = send.send(line);
        }
    });
    (child, addr, receive)
}

/// Waits until each processor at `addrs` has read `at_least` events.
pub fn wait_until_read(addrs: &[&str], at_least: u64) {
    let read = |addr: &str| {
        let (_, body) = http(addr, "GET", "/stats", "");
        serde_json::from_str::<Value>(&body).unwrap()["eventsRead"]
            .as_u64()
            .unwrap()
    };
    wait_for("each to have read some", || {
        addrs.iter().all(|a| read(a) >= at_least)
    });
}

pub fn post(addr: &str, path: &str, body: &str) -> (u16, Value) {
    let (status, body) = http(addr, "POST", path, body);
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

pub fn owned(addr: &str) -> Value {
    let (_, body) = http(addr, "GET", "/partitions", "");
    serde_json::from_str::<Value>(&body).unwrap()["partitions"].clone()
}

/// Moves `partition` from the processor at `from` to the one at `to`.
pub fn moved(from: &str, to: &str, partition: u32) -> u64 {
    moved_in(from, to, partition, None)
}

/// Moves `partition` as part of assignment `version`, if any.
pub fn moved_in(from: &str, to: &str, partition: u32, version: Option<u64>) -> u64 {
    let release = version.map_or(String::new(), |v| format!("{{\"assignment\": {v}}}"));
    let (status, released) = post(from, &format!("/partitions/{partition}/release"), &release);
    assert_eq!(status, 200, "{released}");
    let id = released["checkpoint"].as_u64().unwrap();
    let body = match version {
        Some(v) => format!("{{\"checkpoint\": {id}, \"assignment\": {v}}}"),
        None => format!("{{\"checkpoint\": {id}}}"),
    };
    let (status, acquired) = post(to, &format!("/partitions/{partition}/acquire"), &body);
    assert_eq!(status, 200, "{acquired}");
    assert_eq!(acquired["checkpoint"], id, "from its release checkpoint");
    id
}
