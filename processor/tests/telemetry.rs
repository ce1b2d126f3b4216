//! The processor binary exports its spans over OTLP when the standard
//! OpenTelemetry variables ask for it: checkpoints (with their upload as a
//! child) and the restore at start-up reach a real OTLP endpoint.

mod common;

use std::process::Command;

use common::{interrupt, spawn_until, wait_for, BIN};
use eddy_testkit::otlp::{Collector, ReceivedSpan};

fn job(dir: &std::path::Path) -> std::path::PathBuf {
    let d = dir.display();
    let yaml = format!(
        "apiVersion: eddy.dev/v1alpha1
kind: StreamJob
metadata: {{name: traced}}
spec:
  source: {{generator: {{rate: 2000, realtime: true, keys: 50}}}}
  keyField: user
  eventTime: {{field: ts, idleTimeout: 1s}}
  window: {{tumbling: {{size: 1s}}}}
  partitions: 2
  sinks: [{{file: {{path: {d}/results.jsonl}}}}]
  checkpoints: {{store: 'file://{d}/ckpt', interval: 200ms}}
"
    );
    let path = dir.join("job.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Runs the job until `spans` holds a completed checkpoint upload, then
/// stops it with SIGINT (a clean stop flushes the spans not yet sent).
fn run_until_checkpointed(job: &std::path::Path, endpoint: &str, spans: impl Fn() -> usize) {
    let (mut child, _) = spawn_until(
        Command::new(BIN)
            .arg("run")
            .arg(job)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            // Export promptly rather than every 5 s.
            .env("OTEL_BSP_SCHEDULE_DELAY", "100"),
        "running job",
    );
    let before = spans();
    wait_for("a checkpoint span", || spans() != before);
    interrupt(&mut child);
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_and_restores_are_traced() {
    let collector = Collector::http().await;
    let received = collector.received.clone();
    let dir = tempfile::tempdir().unwrap();
    let job = job(dir.path());
    let endpoint = collector.endpoint.clone();
    let upload_ids = move || -> Vec<u64> {
        named(&received.spans(), "checkpoint.upload")
            .iter()
            .map(|u| u.attributes["id"].parse().unwrap())
            .collect()
    };
    let first_run = tokio::task::spawn_blocking(move || {
        run_until_checkpointed(&job, &endpoint, || upload_ids().len());
        let first_run = upload_ids();
        // Again: this run restores what the first one checkpointed.
        run_until_checkpointed(&job, &endpoint, || upload_ids().len());
        first_run
    })
    .await
    .unwrap();

    let spans = collector.received.spans();
    assert!(
        spans.iter().all(|s| s.service == "eddy-processor"),
        "{spans:?}"
    );
    let checkpoints = named(&spans, "checkpoint");
    let uploads = named(&spans, "checkpoint.upload");
    assert!(!uploads.is_empty());
    for upload in &uploads {
        let parent = checkpoints
            .iter()
            .find(|c| c.span_id == upload.parent_span_id)
            .unwrap_or_else(|| panic!("upload without its checkpoint: {upload:?}"));
        assert_eq!(parent.trace_id, upload.trace_id);
        assert_eq!(parent.attributes["id"], upload.attributes["id"]);
        assert_eq!(parent.attributes["partitions"], "[0, 1]");
        let total: u64 = upload.attributes["bytes_total"].parse().unwrap();
        assert!(total > 0, "{upload:?}");
    }

    let restores = named(&spans, "restore");
    assert_eq!(restores.len(), 2, "one restore per start: {restores:?}");
    // The first start finds nothing; the second restores a checkpoint the
    // first run completed.
    assert!(restores[0].events.is_empty(), "{:?}", restores[0]);
    assert_eq!(restores[1].events, ["restored"], "{:?}", restores[1]);
    let newest = first_run.iter().max().unwrap().to_string();
    assert_eq!(restores[1].attributes["checkpoint"], newest, "{restores:?}");
}

#[test]
fn an_unsupported_exporter_setting_refuses_to_start_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("run")
        .arg(job(dir.path()))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("OTEL_EXPORTER_OTLP_PROTOCOL=\"thrift\" is not supported"),
        "{err}"
    );
}
