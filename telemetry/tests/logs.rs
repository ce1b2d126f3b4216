//! `EDDY_LOG_FORMAT` through the real [`eddy_telemetry::init`]: JSON lines
//! with the span fields, text by default, a clear refusal of anything else,
//! and OTLP export unchanged next to JSON logs.
//!
//! `init` installs the global subscriber and reads the process
//! environment, so each case runs in a child process: this test binary
//! again, running only [`child`] with [`CHILD`] set.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Command, Output};

use eddy_testkit::otlp::Collector;
use serde_json::{json, Value};

/// Set in the child process's environment; without it [`child`] does
/// nothing.
const CHILD: &str = "EDDY_TELEMETRY_LOGS_CHILD";

/// Exit code of a child whose `init` failed, as the binaries use.
const EXIT_INIT: i32 = 2;

/// The child's work: `init` as the binaries call it, then events inside
/// nested spans (one field recorded after its span started, as the
/// processor's restore span does), one below the log level and one
/// outside any span.
#[test]
fn child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let telemetry = match eddy_telemetry::init("info", "eddy-logs-test") {
        Ok(telemetry) => telemetry,
        Err(e) => {
            // Straight to stderr: libtest captures eprintln!.
            let _ = writeln!(std::io::stderr(), "error: telemetry: {e}");
            std::process::exit(EXIT_INIT);
        }
    };
    {
        let restore = tracing::info_span!(
            "restore",
            job = "orders",
            checkpoint = tracing::field::Empty
        );
        let _restore = restore.enter();
        restore.record("checkpoint", 42_u64);
        tracing::info_span!("upload", partition = 3_u32).in_scope(|| {
            tracing::info!(bytes = 4096_u64, "state \"uploaded\"\n(two lines)");
            tracing::debug!("below the log level");
        });
    }
    tracing::warn!(outside = true, "no span");
    drop(telemetry);
}

/// Runs [`child`] in a fresh process with `vars` on top of an environment
/// cleared of every logging and OpenTelemetry variable.
fn run_child(vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "child", "--test-threads=1"])
        .env(CHILD, "1");
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if text.starts_with("OTEL_")
            || [
                "EDDY_LOG_FORMAT",
                "EDDY_TRACES_FILTER",
                "RUST_LOG",
                "NO_COLOR",
            ]
            .contains(&text.as_ref())
        {
            command.env_remove(&name);
        }
    }
    command.envs(vars.iter().copied());
    let out = command.output().unwrap();
    eprintln!(
        "child {vars:?}: {}\n--- stderr\n{}--- stdout\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

/// Every line of the child's stderr as a JSON object (panics on any
/// other line).
fn json_lines(out: &Output) -> Vec<serde_json::Map<String, Value>> {
    assert!(out.status.success(), "{}", out.status);
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    stderr
        .lines()
        .map(|line| match serde_json::from_str(line) {
            Ok(Value::Object(object)) => object,
            other => panic!("not a JSON object ({other:?}): {line:?}"),
        })
        .collect()
}

/// Checks the child's two JSON lines field by field.
fn check_json(lines: &[serde_json::Map<String, Value>]) {
    assert_eq!(lines.len(), 2, "the debug event is filtered out: {lines:?}");
    let (event, warning) = (&lines[0], &lines[1]);
    for line in lines {
        let timestamp = line["timestamp"].as_str().expect("a timestamp");
        assert!(
            timestamp.len() >= 20 && timestamp.as_bytes()[10] == b'T' && timestamp.ends_with('Z'),
            "an RFC 3339 UTC timestamp: {timestamp}"
        );
        assert_eq!(line["target"], "logs");
    }
    assert_eq!(event["level"], "INFO");
    assert_eq!(event["message"], "state \"uploaded\"\n(two lines)");
    assert_eq!(event["bytes"], 4096);
    assert_eq!(event["span"], json!({"name": "upload", "partition": 3}));
    assert_eq!(
        event["spans"],
        json!([
            {"name": "restore", "job": "orders", "checkpoint": 42},
            {"name": "upload", "partition": 3},
        ]),
        "every enclosing span, root first, with the field recorded later"
    );
    assert_eq!(warning["level"], "WARN");
    assert_eq!(warning["message"], "no span");
    assert_eq!(warning["outside"], true);
    assert!(!warning.contains_key("span"), "{warning:?}");
    let keys: BTreeSet<&str> = warning.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["timestamp", "level", "target", "message", "outside"]),
        "{warning:?}"
    );
}

#[test]
fn json_gives_one_object_per_line_with_the_span_fields() {
    let out = run_child(&[("EDDY_LOG_FORMAT", "json"), ("RUST_LOG", "info")]);
    check_json(&json_lines(&out));
    // The default filter applies as well when RUST_LOG is unset.
    let out = run_child(&[("EDDY_LOG_FORMAT", "JSON")]);
    check_json(&json_lines(&out));
}

#[test]
fn rust_log_still_picks_the_level() {
    let out = run_child(&[("EDDY_LOG_FORMAT", "json"), ("RUST_LOG", "warn")]);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["level"], "WARN");
    let out = run_child(&[("EDDY_LOG_FORMAT", "json"), ("RUST_LOG", "debug")]);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[1]["level"], "DEBUG");
    assert_eq!(lines[1]["message"], "below the log level");
}

#[test]
fn text_is_the_default() {
    for vars in [
        &[][..],
        &[("EDDY_LOG_FORMAT", "")][..],
        &[("EDDY_LOG_FORMAT", "text")][..],
    ] {
        let mut vars = vars.to_vec();
        vars.push(("NO_COLOR", "1"));
        let out = run_child(&vars);
        assert!(out.status.success(), "{}", out.status);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            stderr
                .lines()
                .all(|line| serde_json::from_str::<Value>(line).is_err()),
            "{vars:?}: {stderr}"
        );
        assert!(
            stderr.contains(
                "INFO restore{job=\"orders\" checkpoint=42}:upload{partition=3}: logs: state \"uploaded\""
            ),
            "{vars:?}: {stderr}"
        );
        assert!(
            stderr.contains("WARN logs: no span outside=true"),
            "{vars:?}: {stderr}"
        );
        assert!(!stderr.contains("below the log level"), "{stderr}");
    }
}

#[test]
fn an_unknown_format_stops_init_with_a_clear_error() {
    for value in ["xml", "logfmt", "jsonl"] {
        let out = run_child(&[("EDDY_LOG_FORMAT", value)]);
        assert_eq!(out.status.code(), Some(EXIT_INIT), "{value}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(
            stderr,
            format!(
                "error: telemetry: EDDY_LOG_FORMAT=\"{value}\" is not supported: use one of text, json\n"
            ),
            "nothing else is logged"
        );
    }
}

/// JSON logs and OTLP export side by side: the spans still reach the
/// collector with their attributes and parent, and stderr is still JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_keep_otlp_export_working() {
    let collector = Collector::http().await;
    let endpoint = collector.endpoint.clone();
    let out = tokio::task::spawn_blocking(move || {
        run_child(&[
            ("EDDY_LOG_FORMAT", "json"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ])
    })
    .await
    .unwrap();
    check_json(&json_lines(&out));
    let spans = collector.received.spans();
    let span = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} span in {spans:?}"))
    };
    let (restore, upload) = (span("restore"), span("upload"));
    assert_eq!(restore.service, "eddy-logs-test");
    assert_eq!(
        restore.attributes.get("job").map(String::as_str),
        Some("orders")
    );
    assert_eq!(
        restore.attributes.get("checkpoint").map(String::as_str),
        Some("42")
    );
    assert_eq!(
        upload.attributes.get("partition").map(String::as_str),
        Some("3")
    );
    assert_eq!(upload.parent_span_id, restore.span_id);
    assert_eq!(upload.trace_id, restore.trace_id);
    assert!(
        upload.events.iter().any(|e| e.starts_with("state")),
        "{:?}",
        upload.events
    );
}
