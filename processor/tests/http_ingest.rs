//! HTTP ingest: 200 only once events are durable, 429/503 with Retry-After
//! under overload instead of unbounded buffering, and every accepted event
//! in the results after a clean stop.

mod common;

use std::{
    process::{Child, Command},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::{free_port, http_full, read_lines, spawn_until, BIN};

/// Starts a processor with HTTP ingest; returns it, its address and its
/// directory.
fn start(buffer_events: u32) -> (Child, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let port = free_port();
    let yaml = format!(
        "apiVersion: eddy.dev/v1alpha1
kind: StreamJob
metadata: {{name: ingest}}
spec:
  source: {{http: {{port: {port}, bufferEvents: {buffer_events}}}}}
  partitions: 2
  keyField: user
  eventTime: {{field: ts, format: epochMillis, idleTimeout: 1h}}
  window: {{tumbling: {{size: 10s}}}}
  sinks: [{{file: {{path: {d}/results.jsonl}}}}]
  checkpoints: {{store: 'file://{d}/ckpt', interval: 200ms}}
"
    );
    std::fs::write(dir.path().join("job.yaml"), yaml).unwrap();
    let (child, rest) = spawn_until(
        Command::new(BIN)
            .arg("run")
            .arg(dir.path().join("job.yaml")),
        "HTTP ingest on http://",
    );
    (child, rest.trim_end_matches("/events").to_string(), dir)
}

/// Events all within the first 5 s of one 10 s window, so none is late
/// however concurrent posters interleave.
fn events(from: u64, n: u64) -> String {
    (from..from + n)
        .map(|i| {
            format!(
                "{{\"user\":\"u{}\",\"ts\":{}}}",
                i % 17,
                1_767_225_600_000u64 + i % 5_000
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn stop(mut child: Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            return;
        }
        assert!(Instant::now() < deadline, "did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn counted(dir: &tempfile::TempDir) -> u64 {
    read_lines(&dir.path().join("results.jsonl"))
        .iter()
        .map(|r| r["aggregates"]["count"].as_u64().unwrap())
        .sum()
}

#[test]
fn accepted_events_are_acknowledged_once_durable_and_all_counted() {
    let (child, addr, dir) = start(10_000);
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                for r in 0..10u64 {
                    let (status, _, body) =
                        http_full(&addr, "POST", "/events", &events((t * 10 + r) * 200, 200));
                    assert_eq!(status, 200, "{body}");
                    assert_eq!(body, "{\"accepted\":200}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(
        std::fs::read_dir(dir.path().join("ckpt")).is_ok(),
        "checkpoints were taken"
    );
    stop(child);
    assert_eq!(
        counted(&dir),
        8_000,
        "every acknowledged event is in the results"
    );
}

#[test]
fn overload_gets_429_with_retry_after_and_memory_stays_bounded() {
    let (child, addr, dir) = start(500);
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (addr, accepted, refused) = (addr.clone(), accepted.clone(), refused.clone());
            std::thread::spawn(move || {
                // A bounded load loop: 150 requests of 400 events per thread.
                for r in 0..150u64 {
                    let (status, head, body) = http_full(
                        &addr,
                        "POST",
                        "/events?ack=received",
                        &events((t * 150 + r) * 400, 400),
                    );
                    match status {
                        200 => {
                            accepted.fetch_add(400, Ordering::Relaxed);
                        }
                        429 => {
                            assert!(
                                head.to_ascii_lowercase().contains("retry-after: 1"),
                                "{head}"
                            );
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("{other}: {body}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let peak_kib: u64 = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    let refused = refused.load(Ordering::Relaxed);
    let accepted = accepted.load(Ordering::Relaxed);
    println!(
        "{accepted} events accepted, {refused} requests refused with 429, peak RSS {} MiB",
        peak_kib / 1024
    );
    assert!(refused > 0, "the buffer of 500 events never filled");
    assert!(accepted > 0);
    assert!(peak_kib < 300 * 1024, "peak RSS {peak_kib} KiB");
    stop(child);
    assert_eq!(
        counted(&dir),
        accepted,
        "every accepted event is in the results"
    );
}
