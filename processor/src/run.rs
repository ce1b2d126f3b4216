//! The run loop: source → extraction → skew guard → engine → sinks, with a
//! progress line every second, until the source ends or a stop is asked.

use std::time::{Duration, Instant};

use eddy_api::spec::LateDataPolicy;
use tokio::sync::watch;

use crate::{
    engine::{Engine, Outcome, WindowResult},
    job::JobPlan,
    output::{record, sink::LineSink},
    progress::{self, Counters},
    source::{generator::Generator, Poll, SourceRecord},
};

/// Where everything goes.
pub struct Outputs {
    pub results: Vec<LineSink>,
    pub late: LineSink,
    pub invalid: LineSink,
}

impl Outputs {
    /// Opens the sinks the plan names.
    pub fn open(plan: &JobPlan) -> anyhow::Result<Self> {
        Ok(Self {
            results: plan
                .sinks
                .iter()
                .map(LineSink::open)
                .collect::<Result<_, _>>()?,
            late: LineSink::open(&plan.late_output)?,
            invalid: LineSink::open(&plan.invalid_output)?,
        })
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        for sink in self
            .results
            .iter_mut()
            .chain([&mut self.late, &mut self.invalid])
        {
            sink.flush()
                .map_err(|e| anyhow::anyhow!("flushing {}: {e}", sink.name()))?;
        }
        Ok(())
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The source ended and every window was emitted.
    Finished,
    /// A stop was asked; open windows were not emitted.
    Stopped,
}

/// What a run did.
#[derive(Debug)]
pub struct Report {
    pub ending: Ending,
    pub counters: Counters,
    pub open_windows: usize,
    pub elapsed: Duration,
}

/// Runs a planned job until its source ends or `stop` turns true. Progress
/// lines go to `progress_out` once a second.
pub async fn run(
    plan: JobPlan,
    mut outputs: Outputs,
    mut stop: watch::Receiver<bool>,
    mut progress_out: impl FnMut(&str),
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut source = Generator::new(plan.generator.clone(), started)?;
    let mut job = Job {
        engine: Engine::new(plan.engine.clone()),
        counters: Counters::default(),
        fired: Vec::new(),
        plan,
    };
    let mut tick = Tick::new(started);
    let ending = loop {
        if *stop.borrow() {
            break Ending::Stopped;
        }
        match source.poll(Instant::now()) {
            Poll::Ready(batch) => {
                job.take(batch, &mut outputs)?;
                job.engine.fire(&mut job.fired);
                job.emit(&mut outputs)?;
                tokio::task::yield_now().await;
            }
            Poll::Pending(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.min(tick.next).into()) => {}
                    _ = stop.changed() => {}
                }
            }
            Poll::End => {
                job.engine.fire_all(&mut job.fired);
                job.emit(&mut outputs)?;
                break Ending::Finished;
            }
        }
        if let Some(rate) = tick.due(job.counters.events) {
            progress_out(&progress::line(rate, job.engine.watermark(), &job.counters));
            outputs.flush()?;
        }
    };
    outputs.flush()?;
    Ok(Report {
        ending,
        counters: job.counters,
        open_windows: job.engine.open_windows(),
        elapsed: started.elapsed(),
    })
}

struct Job {
    plan: JobPlan,
    engine: Engine,
    counters: Counters,
    fired: Vec<WindowResult>,
}

impl Job {
    fn take(&mut self, batch: Vec<SourceRecord>, outputs: &mut Outputs) -> anyhow::Result<()> {
        let name = self.plan.id.name.as_str();
        for SourceRecord { value, ingest_ms } in batch {
            self.counters.events += 1;
            let mut event = match self.plan.extractor.extract(value) {
                Ok(event) => event,
                Err((reason, raw)) => {
                    self.counters.invalid += 1;
                    let line = record::invalid_line(name, &raw, &reason.to_string());
                    outputs.invalid.write_line(&line)?;
                    continue;
                }
            };
            event.time_ms = match self.plan.skew.check(event.time_ms, ingest_ms) {
                Ok(time_ms) => time_ms,
                Err(reason) => {
                    self.counters.invalid += 1;
                    let line = record::invalid_line(name, &event.record, &reason.to_string());
                    outputs.invalid.write_line(&line)?;
                    continue;
                }
            };
            match self.engine.process(&event) {
                Outcome::Accepted => self.counters.accepted += 1,
                Outcome::Late {
                    lateness_ms,
                    watermark,
                } => {
                    self.counters.late += 1;
                    if self.plan.late_policy == LateDataPolicy::Output {
                        let line = record::late_line(name, &event.record, lateness_ms, watermark);
                        outputs.late.write_line(&line)?;
                    }
                }
                Outcome::Invalid(reason) => {
                    self.counters.invalid += 1;
                    let line = record::invalid_line(name, &event.record, &reason.to_string());
                    outputs.invalid.write_line(&line)?;
                }
            }
        }
        Ok(())
    }

    fn emit(&mut self, outputs: &mut Outputs) -> anyhow::Result<()> {
        for result in self.fired.drain(..) {
            let line = record::result_line(&self.plan.id, &result);
            for sink in &mut outputs.results {
                sink.write_line(&line)
                    .map_err(|e| anyhow::anyhow!("writing to {}: {e}", sink.name()))?;
            }
            self.counters.windows_emitted += 1;
        }
        Ok(())
    }
}

/// Once-a-second timer that also measures the event rate between ticks.
struct Tick {
    next: Instant,
    last: Instant,
    last_events: u64,
}

impl Tick {
    fn new(now: Instant) -> Self {
        Self {
            next: now + Duration::from_secs(1),
            last: now,
            last_events: 0,
        }
    }

    /// The events/s since the last tick, when a tick is due.
    fn due(&mut self, events: u64) -> Option<f64> {
        let now = Instant::now();
        if now < self.next {
            return None;
        }
        let secs = now.duration_since(self.last).as_secs_f64().max(1e-9);
        let rate = (events - self.last_events) as f64 / secs;
        self.last = now;
        self.last_events = events;
        self.next = now + Duration::from_secs(1);
        Some(rate)
    }
}
