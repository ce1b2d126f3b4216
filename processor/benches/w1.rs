//! The W1 benchmark: runs `eddy-processor run` on StreamJob files the way a
//! user does (release build, results serialised to stdout), one process per
//! row, and prints a table with each row's events/s, peak RSS, checkpoint
//! pauses and results, checking that the final results' counts add up to
//! the events accepted. The reference is the tight in-memory loop
//! (`w1/limit.rs`, compiled with `rustc -O`), timed in the same run.
//!
//!     cargo bench --bench w1
//!
//! `EDDY_BENCH_SCALE` (default 1.0) scales every row's event count, e.g.
//! 0.1 for a quick look; `EDDY_BENCH_ROWS` picks rows by name prefix
//! (comma separated: `w1,w1x2,json,jsonx2,single,uniform,keys`). Each row
//! is printed when it is done, the table at the end.
//!
//! Rows (one worker thread unless the name ends in `x2`):
//! - `w1`: W1 as `w1/w1.yaml` gives it: 20M generated events, 100K keys
//!   with Zipf 1.1, 60 s tumbling windows, count and sum, 5 s bounded
//!   out-of-orderness, RocksDB state, checkpoints every 10 s to a local
//!   directory.
//! - `w1x2`: the same on two worker threads.
//! - `json`, `jsonx2`: the same events read from a JSON-lines file
//!   (written first, with each event's ingestion time and partition, so the
//!   run sees what W1 sees), on one worker thread and on two.
//! - `single` / `uniform`: 5M events on one key, and on 100K keys without
//!   skew.
//! - `keys`: 10M keys without skew, 2-hour windows, a 128 MiB memory budget:
//!   state far larger than memory.

use std::{
    io::{BufRead, BufReader, BufWriter, Read, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::Context;
use eddy_api::spec::TimeFormat;
use eddy_processor::engine::partition_of;
use eddy_processor::source::{
    generator::{Generator, GeneratorConfig},
    Payload, Poll,
};

const W1: &str = include_str!("w1/w1.yaml");
const LIMIT: &str = "processor/benches/w1/limit.rs";

struct Row {
    name: &'static str,
    events: u64,
    seconds: f64,
    peak_rss_kib: u64,
    pauses_ms: Vec<u64>,
    results: u64,
    accepted: u64,
    counted: u64,
}

fn main() -> anyhow::Result<()> {
    let scale: f64 = env("EDDY_BENCH_SCALE").map_or(Ok(1.0), |s| s.parse())?;
    let wanted: Vec<String> = env("EDDY_BENCH_ROWS")
        .map(|s| s.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let want = |name: &str| wanted.is_empty() || wanted.iter().any(|w| name.starts_with(w));
    let n = |full: u64| ((full as f64 * scale) as u64).max(1000);
    let work = tempfile::tempdir()?;
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_eddy-processor"));

    let w1_events = n(20_000_000);
    let limit = limit_events_per_second(work.path(), w1_events)?;
    let mut rows = Vec::new();
    let w1 = W1.replace("count: 20000000", &format!("count: {w1_events}"));
    if want("w1") {
        push(
            &mut rows,
            limit,
            run(&bin, work.path(), "w1", w1_events, &workers(&w1, 1))?,
        );
    }
    if want("w1x2") {
        push(
            &mut rows,
            limit,
            run(&bin, work.path(), "w1x2", w1_events, &workers(&w1, 2))?,
        );
    }
    if want("json") || want("jsonx2") {
        let file = work.path().join("w1.jsonl");
        write_events(&w1, &file)?;
        let job = w1
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("generator:") {
                    format!(
                        "    file: {{paths: [{:?}], partitionField: partition, ingestionTimeField: ingest}}",
                        file.display().to_string()
                    )
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        if want("json") {
            push(
                &mut rows,
                limit,
                run(&bin, work.path(), "json", w1_events, &workers(&job, 1))?,
            );
        }
        if want("jsonx2") {
            push(
                &mut rows,
                limit,
                run(&bin, work.path(), "jsonx2", w1_events, &workers(&job, 2))?,
            );
        }
        std::fs::remove_file(&file)?;
    }
    let skew_events = n(5_000_000);
    let variant = |keys: u64, skew: f64, count: u64| {
        workers(W1, 1)
            .replace("count: 20000000", &format!("count: {count}"))
            .replace("keys: 100000", &format!("keys: {keys}"))
            .replace("keySkew: 1.1", &format!("keySkew: {skew}"))
    };
    if want("single") {
        let job = variant(1, 0.0, skew_events);
        push(
            &mut rows,
            limit,
            run(&bin, work.path(), "single", skew_events, &job)?,
        );
    }
    if want("uniform") {
        let job = variant(100_000, 0.0, skew_events);
        push(
            &mut rows,
            limit,
            run(&bin, work.path(), "uniform", skew_events, &job)?,
        );
    }
    if want("keys") {
        // 5,000 events per second of event time: 30M events stay within
        // one 2-hour window, so every key seen is live until the end.
        let events = n(30_000_000);
        let job = variant(n(10_000_000), 0.0, events)
            .replace("rate: 1000", "rate: 5000")
            .replace("size: 60s", "size: 2h")
            .replace("  keyField:", "  state: {memoryBudget: 128Mi}\n  keyField:");
        push(
            &mut rows,
            limit,
            run(&bin, work.path(), "keys", events, &job)?,
        );
    }
    print_table(limit, &rows);
    Ok(())
}

/// The job with `n` worker threads.
fn workers(job: &str, n: u32) -> String {
    job.replace("  keyField:", &format!("  workers: {n}\n  keyField:"))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

/// Compiles and runs the in-memory loop; its events/s.
fn limit_events_per_second(work: &Path, events: u64) -> anyhow::Result<f64> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let exe = work.join("limit");
    let status = Command::new("rustc")
        .args(["-O", "-o"])
        .arg(&exe)
        .arg(root.join(LIMIT))
        .status()
        .context("running rustc for the reference loop")?;
    anyhow::ensure!(status.success(), "rustc failed on {LIMIT}");
    let started = Instant::now();
    let out = Command::new(&exe).arg(events.to_string()).output()?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(out.status.success(), "the reference loop failed");
    Ok(events as f64 / seconds)
}

/// Writes the events of a generator job as JSON lines, each with its
/// ingestion time in `ingest` and in `partition` the partition the
/// generator job puts it in (its key's), as a keyed Kafka topic would.
fn write_events(job_yaml: &str, file: &Path) -> anyhow::Result<()> {
    let job: eddy_api::StreamJob = serde_yaml_ng::from_str(job_yaml)?;
    let eddy_api::spec::SourceSpec {
        generator: Some(g), ..
    } = &job.spec.source
    else {
        anyhow::bail!("not a generator job");
    };
    let config = GeneratorConfig::from_spec(g, "key", "ts", TimeFormat::EpochMillis, 0)?;
    let mut generator = Generator::new(config, Instant::now())?;
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(file)?);
    while let Poll::Ready(batch) = generator.poll(Instant::now()) {
        for record in batch.records {
            let Payload::Generated(generated) = record.payload else {
                anyhow::bail!("the generator made something else");
            };
            let mut value = generated.to_value();
            value["ingest"] = record.ingest_ms.into();
            let key = value["key"]
                .as_str()
                .context("a generated event without a key")?;
            value["partition"] = partition_of(key, job.spec.partitions).into();
            serde_json::to_writer(&mut out, &value)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Runs one job file in its own process, reading its results as they come.
fn run(bin: &Path, work: &Path, name: &'static str, events: u64, job: &str) -> anyhow::Result<Row> {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir)?;
    let job = job.replace(
        "file://w1-checkpoints",
        &format!("file://{}/ckpt", dir.display()),
    );
    let file = dir.join("job.yaml");
    std::fs::write(&file, job)?;
    eprintln!("[w1] {name}: {events} events");
    let started = Instant::now();
    let mut child = Command::new(bin)
        .arg("run")
        .arg(&file)
        .env("EDDY_STATE_DIR", dir.join("state"))
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        BufReader::new(stderr)
            .read_to_string(&mut text)
            .map(|_| text)
    });
    // Read with as little work as can check the counts (one buffer, the
    // final flag where a result line ends): this process shares the cores.
    let (mut results, mut counted) = (0, 0);
    let mut stdout = BufReader::with_capacity(1 << 20, child.stdout.take().expect("piped"));
    let mut line = Vec::new();
    while stdout.read_until(b'\n', &mut line)? > 0 {
        results += 1;
        if line.trim_ascii_end().ends_with(b"\"final\":true}") {
            let text = std::str::from_utf8(&line)?;
            counted += field_u64(text, "\"count\":").context("a result without a count")?;
        }
        line.clear();
    }
    let (status, peak_rss_kib) = wait_with_peak_rss(child.id())?;
    let seconds = started.elapsed().as_secs_f64();
    let stderr = errors.join().expect("stderr reader")?;
    anyhow::ensure!(
        status == 0,
        "{name} exited with {status}:\n{}",
        tail(&stderr)
    );
    let pauses_ms = stderr
        .lines()
        .filter_map(|l| l.strip_suffix(" ms in all"))
        .filter_map(|l| l.split(", ").find_map(|p| p.strip_suffix(" ms paused")))
        .map(str::parse)
        .collect::<Result<Vec<u64>, _>>()?;
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("finished: "))
        .with_context(|| format!("{name}: no summary line:\n{}", tail(&stderr)))?;
    let total = field_u64(summary, "finished: ").context("events in the summary")?;
    let late = field_u64(summary, "emitted, ").context("late in the summary")?;
    let invalid = field_u64(summary, "late, ").context("invalid in the summary")?;
    anyhow::ensure!(
        total == events,
        "{name}: {total} events read, {events} made"
    );
    Ok(Row {
        name,
        events,
        seconds,
        peak_rss_kib,
        pauses_ms,
        results,
        accepted: total - late - invalid,
        counted,
    })
}

/// The unsigned integer right after `prefix` in `text`.
fn field_u64(text: &str, prefix: &str) -> Option<u64> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// Waits for a child, returning its exit code and its own peak RSS (KiB),
/// which only the kernel's accounting at exit gives exactly.
fn wait_with_peak_rss(pid: u32) -> anyhow::Result<(i32, u64)> {
    let mut status = 0;
    // SAFETY: rusage is plain data filled in by the kernel; the child is
    // ours and not waited for elsewhere.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    anyhow::ensure!(waited == pid as libc::pid_t, "wait4 failed");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    Ok((code, usage.ru_maxrss as u64))
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Keeps a finished row, printing it at once (a long run stopped early
/// still shows the rows it finished).
fn push(rows: &mut Vec<Row>, limit: f64, row: Row) {
    eprintln!("[w1] done: {}", row_line(&row, limit));
    rows.push(row);
}

/// A row of the table.
fn row_line(r: &Row, limit: f64) -> String {
    let rate = r.events as f64 / r.seconds;
    let mut p = r.pauses_ms.clone();
    p.sort_unstable();
    format!(
        "| {} | {} | {:.0} | {:.3} | {} MiB | {} ms | {} ms | {} ms | {} | {} | {} |",
        r.name,
        r.events,
        rate,
        rate / limit,
        r.peak_rss_kib / 1024,
        percentile(&p, 0.5),
        percentile(&p, 0.99),
        p.last().copied().unwrap_or(0),
        p.len(),
        r.results,
        if r.counted == r.accepted {
            format!("yes ({} accepted)", r.accepted)
        } else {
            format!("NO: {} counted, {} accepted", r.counted, r.accepted)
        }
    )
}

fn print_table(limit: f64, rows: &[Row]) {
    println!();
    println!(
        "reference loop (w1/limit.rs, rustc -O): {:.2}M events/s",
        limit / 1e6
    );
    println!();
    println!("| row | events | events/s | of loop | peak RSS | pause p50 | p99 | max | checkpoints | results | counts add up |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for r in rows {
        println!("{}", row_line(r, limit));
    }
    println!();
    println!("goals (one worker): w1 >= 0.25 of the loop (0.13 at least), json >= 1.5M events/s,");
    println!("peak RSS < 600 MiB, pause p99 < 50 ms; keys: RSS <= 128 MiB + 150 MiB,");
    println!("events/s >= w1's / 3, pause p99 < 100 ms.");
    let rate = |name: &str| {
        rows.iter()
            .find(|r| r.name == name)
            .map(|r| r.events as f64 / r.seconds)
    };
    if let (Some(w1), Some(keys)) = (rate("w1"), rate("keys")) {
        println!("keys / w1 events/s: {:.2}", keys / w1);
    }
    for (one, two) in [("w1", "w1x2"), ("json", "jsonx2")] {
        if let (Some(a), Some(b)) = (rate(one), rate(two)) {
            println!("{two} / {one} events/s: {:.2} (goal: 1.8 or more)", b / a);
        }
    }
    if let (Some(s), Some(u)) = (
        rows.iter().find(|r| r.name == "single"),
        rows.iter().find(|r| r.name == "uniform"),
    ) {
        println!("single key / uniform time: {:.2}x", s.seconds / u.seconds);
    }
}
