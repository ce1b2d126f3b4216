//! Engine benchmark: prints a table. Run with `cargo bench
//! --bench engine`; `EDDY_BENCH_EVENTS` scales the main workload (default
//! 20,000,000) and `EDDY_BENCH_SKEW_EVENTS` the hot-key comparison (default
//! 1,000,000).
//!
//! 1. The generator workload with RocksDB state: 100K keys with Zipf 1.1
//!    skew, 60 s tumbling windows, count and sum, 5 s out-of-orderness.
//! 2. A single-key stream against a uniform 100K-key stream of the same
//!    size: the in-memory pre-aggregation should make the hot key cost no
//!    more than any key.
//!
//! Results go to a discarding sink, so the figures are the processor's own.

use std::{
    io,
    time::{Duration, Instant},
};

use eddy_processor::{
    job,
    output::sink::lines::LineSink,
    run::{Outputs, Pipeline},
    source::Poll,
};

struct Figures {
    name: String,
    events: u64,
    elapsed: Duration,
    peak_rss: u64,
    max_state: u64,
    windows: u64,
}

fn main() -> anyhow::Result<()> {
    let events = env_u64("EDDY_BENCH_EVENTS", 20_000_000);
    let skew_events = env_u64("EDDY_BENCH_SKEW_EVENTS", 1_000_000);
    let mut rows = Vec::new();
    rows.push(workload(
        "generator: 100K keys, Zipf 1.1",
        events,
        100_000,
        1.1,
        true,
    )?);
    let single = workload("single key", skew_events, 1, 0.0, false)?;
    let uniform = workload("uniform over 100K keys", skew_events, 100_000, 0.0, false)?;
    let ratio = single.elapsed.as_secs_f64() / uniform.elapsed.as_secs_f64();
    rows.push(single);
    rows.push(uniform);

    println!();
    println!(
        "{:<34} {:>12} {:>9} {:>12} {:>10} {:>12} {:>9}",
        "workload", "events", "seconds", "events/s", "peak RSS", "max state", "windows"
    );
    for r in &rows {
        println!(
            "{:<34} {:>12} {:>9.2} {:>12.0} {:>10} {:>12} {:>9}",
            r.name,
            r.events,
            r.elapsed.as_secs_f64(),
            r.events as f64 / r.elapsed.as_secs_f64(),
            mib(r.peak_rss),
            mib(r.max_state),
            r.windows
        );
    }
    println!();
    println!("single key / uniform keys time: {ratio:.2}x (goal: at most 2x)");
    Ok(())
}

/// Runs one generator workload through the full pipeline (extraction,
/// partitioning, skew guard, engine, RocksDB, result serialisation).
fn workload(
    name: &str,
    count: u64,
    keys: u64,
    skew: f64,
    sample_state: bool,
) -> anyhow::Result<Figures> {
    let yaml = format!(
        "apiVersion: eddy.dev/v1alpha1
kind: StreamJob
metadata: {{name: bench}}
spec:
  source:
    generator: {{seed: 1, count: {count}, rate: 20000, keys: {keys}, keySkew: {skew}, jitter: 3s}}
  keyField: key
  eventTime: {{field: ts, format: epochMillis, maxOutOfOrderness: 5s}}
  window: {{tumbling: {{size: 60s}}}}
  aggregations: [{{op: count}}, {{op: sum, field: value}}]
  state: {{memoryBudget: 256Mi}}
"
    );
    let job = eddy_api::load::parse_valid(&yaml)?;
    let plan = job::plan(&job, 0, None)?;
    let dir = tempfile::tempdir()?;
    reset_peak_rss();
    let started = Instant::now();
    let runtime = tokio::runtime::Runtime::new()?;
    let (mut pipeline, mut source) = runtime.block_on(Pipeline::new(plan, dir.path(), started))?;
    let discard = || Box::new(LineSink::to_writer("discard", Box::new(io::sink())));
    let mut outputs = Outputs::of(vec![discard()], discard(), discard());
    let mut max_state = 0;
    let mut next_sample = count / 10;
    loop {
        match source.poll(Instant::now())? {
            Poll::Ready(batch) => pipeline.take(batch, source.clock(), &mut outputs)?,
            Poll::Pending(_) => unreachable!("the generator is not paced"),
            Poll::End => break,
        }
        if sample_state && pipeline.counters().events >= next_sample {
            let sizes = pipeline.state_sizes()?;
            max_state = max_state.max(sizes.values().sum());
            next_sample += count / 10;
        }
    }
    pipeline.finish(&mut outputs)?;
    let elapsed = started.elapsed();
    let windows = pipeline.counters().windows_emitted;
    eprintln!("{name}: {count} events in {:.1}s", elapsed.as_secs_f64());
    Ok(Figures {
        name: name.into(),
        events: count,
        elapsed,
        peak_rss: peak_rss(),
        max_state,
        windows,
    })
}

fn env_u64(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// Peak resident set size of this process (Linux), in bytes.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Resets the peak RSS so each workload reports its own (Linux).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}
