//! Running `eddy-processor` on hand-written inputs.

#![allow(dead_code)] // each test binary uses part of this

pub mod events;
pub mod moves;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_eddy-processor");

/// 2026-01-01T00:00:00Z in epoch ms: `t(s)` is `s` seconds after it.
pub const BASE: i64 = 1_767_225_600_000;

pub fn t(seconds: f64) -> String {
    let ms = BASE + (seconds * 1000.0).round() as i64;
    jiff::Timestamp::from_millisecond(ms).unwrap().to_string()
}

/// An event of `user` at `s` seconds with `amount`, ingested at its time.
pub fn ev(user: &str, s: f64, amount: f64) -> Value {
    json!({"user": user, "ts": t(s), "at": t(s), "amount": amount})
}

/// A job over input files in a fresh directory. `spec` is YAML for the
/// spec's body (2-space indented) without source and outputs: the source
/// reads `in.jsonl` (or the given files) with a recorded ingestion time in
/// field `at`, results, late and invalid records go to files.
pub struct Job {
    pub dir: tempfile::TempDir,
}

impl Job {
    pub fn new(spec: &str, input: &[Value]) -> Self {
        Self::with_files(spec, &[("in.jsonl", input)], None)
    }

    pub fn with_files(
        spec: &str,
        files: &[(&str, &[Value])],
        partition_field: Option<&str>,
    ) -> Self {
        let lines: Vec<(&str, String)> = files
            .iter()
            .map(|(name, records)| {
                let text: Vec<String> = records.iter().map(Value::to_string).collect();
                (*name, text.join("\n") + "\n")
            })
            .collect();
        let refs: Vec<(&str, &str)> = lines.iter().map(|(n, t)| (*n, t.as_str())).collect();
        Self::with_text(spec, &refs, partition_field)
    }

    /// Input files given as raw text (for malformed lines).
    pub fn with_text(spec: &str, files: &[(&str, &str)], partition_field: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let mut paths = Vec::new();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
            paths.push(format!("{d}/{name}"));
        }
        let partition = partition_field
            .map(|f| format!(", partitionField: {f}"))
            .unwrap_or_default();
        // A spec that names its own result sinks keeps them.
        let results = if spec.contains("\n  sinks:") {
            String::new()
        } else {
            format!("  sinks: [{{file: {{path: {d}/results.jsonl}}}}]\n")
        };
        let yaml = format!(
            "apiVersion: eddy.dev/v1alpha1\nkind: StreamJob\nmetadata:\n  name: semantics\nspec:\n  \
             source:\n    file: {{paths: [{}], ingestionTimeField: at{partition}}}\n{spec}\n{results}  \
             lateOutput: {{file: {{path: {d}/late.jsonl}}}}\n  \
             invalidOutput: {{file: {{path: {d}/invalid.jsonl}}}}\n  \
             checkpoints: {{store: 'file://{d}/checkpoints', interval: 200ms}}\n",
            paths.join(", ")
        );
        std::fs::write(dir.path().join("job.yaml"), yaml).unwrap();
        Self { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn run_with(&self, args: &[&str]) -> Output {
        let out = Command::new(BIN)
            .arg("run")
            .arg(self.path("job.yaml"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn run(&self) -> Output {
        self.run_with(&[])
    }

    pub fn lines(&self, name: &str) -> Vec<Value> {
        read_lines(&self.path(name))
    }

    pub fn bytes(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap_or_default()
    }

    /// Results as compact tuples: key, window start and end (seconds after
    /// BASE), aggregates, revision, final.
    pub fn results(&self) -> Vec<Value> {
        self.lines("results.jsonl").iter().map(compact).collect()
    }
}

/// A result as a compact tuple, without the job's name and the id made of
/// it: key, window start and end (seconds after BASE), aggregates,
/// revision, final.
pub fn compact(r: &Value) -> Value {
    let s = |f: &str| (r["window"][f].as_i64().unwrap() - BASE) as f64 / 1000.0;
    json!([
        r["key"],
        s("startMs"),
        s("endMs"),
        r["aggregates"],
        r["revision"],
        r["final"]
    ])
}

/// A child process killed when dropped: a test that fails leaves no
/// processor behind (holding its output pipes open).
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[allow(unused_imports)] // not every test binary asks for a port
pub use eddy_testkit::free_port;

pub fn read_lines(path: &Path) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A minimal HTTP/1.1 request; returns status, headers and body.
pub fn http_full(addr: &str, method: &str, path: &str, body: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (status, head.to_string(), body.to_string())
}

/// A minimal HTTP/1.1 request; returns status and body.
pub fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let (status, _, body) = http_full(addr, method, path, body);
    (status, body)
}

/// Spawns `command` with stderr piped and waits for a stderr line starting
/// with `prefix`; returns the child and the rest of that line. The rest of
/// stderr is drained in the background.
pub fn spawn_until(
    command: &mut std::process::Command,
    prefix: &str,
) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = command
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let rest = loop {
        let Some(line) = lines.next() else {
            panic!("stderr closed before {prefix:?}:\n{}", seen.join("\n"));
        };
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix(prefix) {
            break rest.to_string();
        }
        seen.push(line);
    };
    std::thread::spawn(move || {
        for line in lines {
            if std::env::var_os("EDDY_TEST_ECHO").is_some() {
                eprintln!("{}", line.unwrap_or_default());
            }
        }
    });
    (child, rest)
}

/// Creates a bucket on the S3 server started by `scripts/test-servers`.
pub fn create_bucket(bucket: &str) {
    use eddy_processor::checkpoint::{store::S3Settings, Store};
    let s3 = eddy_testkit::s3();
    let settings = S3Settings {
        endpoint: Some(s3.endpoint),
        region: "us-east-1".into(),
        path_style: true,
        access_key: s3.access_key,
        secret_key: s3.secret_key,
    };
    let Store::S3(store) = Store::open(&format!("s3://{bucket}"), "", Some(settings)).unwrap()
    else {
        unreachable!("an s3:// URL opens an S3 store")
    };
    let (client, _) = store.client();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(client.create_bucket().bucket(bucket).send())
        .unwrap();
}

/// Runs a query on the PostgreSQL server started by `scripts/test-servers`.
pub fn query(sql: &str) -> Vec<tokio_postgres::Row> {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let (client, connection) =
            tokio_postgres::connect(&eddy_testkit::postgres_url(), tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(connection);
        client.query(sql, &[]).await.unwrap()
    })
}

/// Polls `done` every 50 ms for up to 20 s; fails the test naming `what`.
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Stops a running processor as Ctrl-C does and checks it exits cleanly.
pub fn interrupt(child: &mut std::process::Child) {
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}

/// Creates Kafka topics on the broker started by `scripts/test-servers`.
pub fn create_topics(brokers: &str, topics: &[(&str, i32)]) {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(eddy_testkit::produce::create_topics(brokers, topics));
}

/// Gives a processor the S3 test server's credentials, as the operator
/// does from `credentialsSecret`.
pub fn with_s3_credentials(command: &mut Command) -> &mut Command {
    let s3 = eddy_testkit::s3();
    command
        .env("AWS_ACCESS_KEY_ID", s3.access_key)
        .env("AWS_SECRET_ACCESS_KEY", s3.secret_key)
}

/// Runs the command from `command` once per delay, SIGKILLing it after that
/// many milliseconds if it still runs, then once more to its successful
/// end; a run that ends before its kill is that end (a rerun of a finished
/// job would start over). Returns the kills and the restores from
/// checkpoints the runs reported.
pub fn crash_then_finish(
    mut command: impl FnMut() -> Command,
    delays_ms: &[u64],
) -> (usize, usize) {
    let (mut kills, mut restores) = (0, 0);
    for (attempt, delay) in delays_ms.iter().chain([&0]).enumerate() {
        let mut child = command().spawn().unwrap();
        let last = attempt == delays_ms.len();
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(*delay);
        while !last && std::time::Instant::now() < deadline && child.try_wait().unwrap().is_none() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let killed = !last && child.try_wait().unwrap().is_none();
        if killed {
            child.kill().unwrap();
            kills += 1;
        }
        let out = child.wait_with_output().unwrap();
        restores += stderr(&out).matches("restored checkpoint").count();
        if !killed {
            assert!(out.status.success(), "{}", stderr(&out));
            break;
        }
    }
    (kills, restores)
}
