//! A worker: the engine of some of a processor's partitions, with what it
//! fired and staged. The run loop hands it steps (events of its
//! partitions, clock moves, the end of input) and drives every worker side
//! by side; workers share nothing, each has its own state, watermark and
//! caches, as Flink's subtasks do.

use std::collections::{BTreeMap, VecDeque};

use crate::{
    engine::{Engine, Outcome, WindowResult},
    event::{Event, Record},
    output::{
        record::{self, JobId},
        records::record_id,
        staged::Staged,
    },
    partials::{Mark, Message, Partial},
    source::Origin,
};

/// Results fired before they are staged, and staged before a worker stops
/// for the run loop to write them, at most: a window that ends for millions
/// of keys at once never holds all their results in memory.
pub(super) const FIRE_CHUNK: usize = 4096;

/// What a worker does next.
pub(super) enum Step {
    /// An event of one of its partitions, ingested at `ingest_ms`, its
    /// time as the skew guard let it through (`raw_time_ms` before that).
    Event {
        partition: u32,
        event: Event,
        raw_time_ms: i64,
        ingest_ms: i64,
        origin: Origin,
    },
    /// A record rejected before it reached the engine, with its invalid
    /// record (`id`, `line`): written out in its place among the worker's
    /// results, counted in its partition's statistics when it has one (as
    /// skewed when the skew guard rejected its time), and the clock moves.
    Rejected {
        partition: Option<u32>,
        skewed_time_ms: Option<i64>,
        ingest_ms: i64,
        id: String,
        line: Vec<u8>,
    },
    /// A message of a two-phase job's partials topic (the merge stage),
    /// still encoded.
    Partial {
        partition: u32,
        bytes: Vec<u8>,
        ingest_ms: i64,
        origin: Origin,
    },
    /// The source clock reached this (ms): the watermark may move.
    Clock(i64),
    /// The partition's input has ended.
    Finished(u32),
    /// The whole input has ended: every window fires.
    End,
}

/// Counts a worker adds to the run's, taken by the run loop.
#[derive(Default)]
pub(super) struct Tally {
    pub accepted: u64,
    pub late: u64,
    pub windows_emitted: u64,
    pub revisions: u64,
    pub invalid: BTreeMap<&'static str, u64>,
}

/// What was moving when a worker stopped for its results to be written.
#[derive(Clone, Copy)]
enum Moving {
    To(i64),
    End,
}

pub(super) struct Worker {
    pub(super) engine: Engine,
    pub(super) queue: VecDeque<Step>,
    pub(super) staged: Staged,
    pub(super) tally: Tally,
    fired: Vec<WindowResult>,
    moving: Option<Moving>,
    /// When it last sent its watermarks (the first stage of a two-phase
    /// job).
    marks: MarkState,
    /// Records done with that hold memory the run loop allocated: it frees
    /// them ([`Worker::free_spent`]). Freed here, by another thread than
    /// the one that allocated them, they cost several times as much.
    spent: Vec<Record>,
}

/// What every worker reads of the job.
pub(super) struct Context {
    pub id: JobId,
    /// `<namespace>/<name>`.
    pub job_path: String,
    /// Late events go to the late output.
    pub late_output: bool,
    /// The first stage of a two-phase job: watermarks go out with the
    /// partials.
    pub marks: bool,
    /// The job's state epoch: the merge stage takes the partials of this
    /// one only.
    pub epoch: u64,
}

impl Context {
    /// A late or invalid record (`kind`) of the record from `origin`: its
    /// id, from that origin, and the line `line` makes of the job name and
    /// the origin.
    pub(super) fn record(
        &self,
        kind: &str,
        origin: &Origin,
        line: impl FnOnce(&str, &str) -> Vec<u8>,
    ) -> (String, Vec<u8>) {
        let origin = origin.to_string();
        (
            record_id(&self.job_path, kind, &origin),
            line(&self.id.name, &origin),
        )
    }
}

impl Worker {
    pub(super) fn new(engine: Engine) -> Self {
        Self {
            engine,
            queue: VecDeque::new(),
            staged: Staged::default(),
            tally: Tally::default(),
            fired: Vec::new(),
            moving: None,
            marks: MarkState::default(),
            spent: Vec::new(),
        }
    }

    /// Works through its steps: true when they are all done, false when it
    /// stopped because enough is staged (write it out, then call again).
    pub(super) fn drive(&mut self, cx: &Context) -> anyhow::Result<bool> {
        loop {
            if let Some(moving) = self.moving {
                let more = match moving {
                    Moving::To(clock) => {
                        self.engine
                            .advance_some(clock, &mut self.fired, FIRE_CHUNK)?
                    }
                    Moving::End => self.engine.finish_some(&mut self.fired, FIRE_CHUNK)?,
                };
                self.stage();
                if !more {
                    self.moving = None;
                    if cx.marks {
                        self.mark(matches!(moving, Moving::End));
                    }
                }
                if self.staged.len() >= FIRE_CHUNK {
                    return Ok(false);
                }
                continue;
            }
            let Some(step) = self.queue.pop_front() else {
                return Ok(true);
            };
            self.moving = match step {
                Step::Event {
                    partition,
                    event,
                    raw_time_ms,
                    ingest_ms,
                    origin,
                } => {
                    self.take(cx, partition, event, raw_time_ms, ingest_ms, origin)?;
                    Some(Moving::To(ingest_ms))
                }
                Step::Rejected {
                    partition,
                    skewed_time_ms,
                    ingest_ms,
                    id,
                    line,
                } => {
                    match (partition, skewed_time_ms) {
                        (Some(p), Some(time_ms)) => {
                            self.engine.record_skew_rejected(p, time_ms, ingest_ms)
                        }
                        (Some(p), None) => self.engine.record_invalid(p),
                        (None, _) => {}
                    }
                    self.staged.invalid.push((id, line));
                    Some(Moving::To(ingest_ms))
                }
                Step::Partial {
                    partition,
                    bytes,
                    ingest_ms,
                    origin,
                } => {
                    self.take_partial(cx, partition, &bytes, ingest_ms, origin)?;
                    Some(Moving::To(ingest_ms))
                }
                Step::Clock(clock) => Some(Moving::To(clock)),
                Step::Finished(partition) => {
                    self.engine.finish_partition(partition);
                    None
                }
                Step::End => Some(Moving::End),
            };
        }
    }

    /// Frees the records the worker is done with (on the run loop's
    /// thread, which allocated them).
    pub(super) fn free_spent(&mut self) {
        self.spent.clear();
    }

    /// Merges a partial, or takes marks (the merge stage).
    fn take_partial(
        &mut self,
        cx: &Context,
        partition: u32,
        bytes: &[u8],
        ingest_ms: i64,
        origin: Origin,
    ) -> anyhow::Result<()> {
        let message = match crate::partials::decode(bytes) {
            // Sent before the job started over: not this run's.
            Ok((epoch, _)) if epoch != cx.epoch => {
                self.engine.record_replayed(partition);
                return Ok(());
            }
            Ok((_, message)) => message,
            Err(reason) => {
                let reason = crate::event::Invalid::BadPartial(reason);
                self.engine.record_invalid(partition);
                self.invalid_partial(cx, &origin, &reason, bytes);
                return Ok(());
            }
        };
        match message {
            Message::Marks(marks) => {
                if let Err(reason) = self.engine.observe_marks(partition, &marks, ingest_ms)? {
                    self.engine.record_invalid(partition);
                    self.invalid_partial(cx, &origin, &reason, bytes);
                }
            }
            Message::Partial(partial) => {
                match self.engine.merge_partial(partition, &partial, ingest_ms)? {
                    Outcome::Accepted => self.tally.accepted += 1,
                    // Counted by the engine; merged when it first came.
                    Outcome::Replayed => {}
                    Outcome::Late {
                        lateness_ms,
                        watermark,
                    } => {
                        self.tally.late += 1;
                        if cx.late_output {
                            let late = cx.record("late", &origin, |job, at| {
                                let described = describe(&partial);
                                record::late_line(job, &described, lateness_ms, watermark, at)
                            });
                            self.staged.late.push(late);
                        }
                    }
                    Outcome::Invalid(reason) => self.invalid_partial(cx, &origin, &reason, bytes),
                }
            }
        }
        Ok(())
    }

    /// Stages the invalid record of a partials message.
    fn invalid_partial(
        &mut self,
        cx: &Context,
        origin: &Origin,
        reason: &crate::event::Invalid,
        bytes: &[u8],
    ) {
        *self.tally.invalid.entry(reason.kind()).or_default() += 1;
        let invalid = cx.record("invalid", origin, |job, at| {
            let raw = hex::encode(&bytes[..bytes.len().min(256)]);
            record::unreadable_line(job, &raw, &reason.to_string(), at)
        });
        self.staged.invalid.push(invalid);
    }

    fn take(
        &mut self,
        cx: &Context,
        partition: u32,
        event: Event,
        raw_time_ms: i64,
        ingest_ms: i64,
        origin: Origin,
    ) -> anyhow::Result<()> {
        let clamped = raw_time_ms != event.time_ms;
        self.engine
            .record_skew(partition, raw_time_ms, ingest_ms, clamped);
        match self.engine.process(partition, &event, ingest_ms)? {
            Outcome::Accepted => self.tally.accepted += 1,
            Outcome::Late {
                lateness_ms,
                watermark,
            } => {
                self.tally.late += 1;
                if cx.late_output {
                    let late = cx.record("late", &origin, |job, at| {
                        let event = event.record.to_value();
                        record::late_line(job, &event, lateness_ms, watermark, at)
                    });
                    self.staged.late.push(late);
                }
            }
            Outcome::Invalid(reason) => {
                *self.tally.invalid.entry(reason.kind()).or_default() += 1;
                let invalid = cx.record("invalid", &origin, |job, at| {
                    record::invalid_line(job, &event.record.to_value(), &reason.to_string(), at)
                });
                self.staged.invalid.push(invalid);
            }
            // Partials only: an event is never a replay of one.
            Outcome::Replayed => {}
        }
        if !matches!(event.record, Record::Generated(_)) {
            self.spent.push(event.record);
        }
        Ok(())
    }

    /// Stages what fired, for the run loop to encode and write.
    fn stage(&mut self) {
        for result in &self.fired {
            self.tally.windows_emitted += 1;
            self.tally.revisions += u64::from(result.revision > 1);
            self.marks.closed |= result.revision == 1 || result.is_final;
        }
        self.staged.results.append(&mut self.fired);
    }

    /// In the first stage of a two-phase job, after a move of the
    /// watermark (`end`: to the end of input): stages the watermarks of its
    /// partitions after the partials they cover, when the second stage
    /// needs them (see [`MarkState`]).
    fn mark(&mut self, end: bool) {
        // Most moves (one per event) change nothing worth sending: known
        // without building the marks.
        if !end
            && !self
                .marks
                .may_be_due(self.engine.watermark(), self.engine.clock())
        {
            return;
        }
        let marks = if end {
            self.engine.end_marks()
        } else {
            self.engine.marks()
        };
        if self.marks.due(&marks, self.engine.clock()) {
            self.staged.mark(marks);
        }
    }
}

/// Event time between two sends of an unchanged first stage's watermarks
/// while nothing closes: how far the second stage may trail it.
const MARK_EVERY_MS: i64 = 1_000;

/// Source-clock time after which unchanged marks are sent again: a merge
/// stage that joined or moved learns every origin's mark within it.
const MARK_AGAIN_MS: i64 = 2_000;

/// When a first-stage worker sends its watermarks. After windows fire or
/// close (the partials of a firing must reach the second stage before the
/// mark that lets it fire: it fires once with all of them, and a late
/// update after that is a revision there too), when a partition turns idle
/// or active, every [`MARK_EVERY_MS`] of event time, and unchanged every
/// [`MARK_AGAIN_MS`] of the source clock.
#[derive(Default)]
struct MarkState {
    /// Partials of fired or closed windows were staged since the last
    /// marks.
    closed: bool,
    last: Option<Vec<Mark>>,
    /// The source clock when they were sent.
    sent_at: i64,
}

impl MarkState {
    /// Whether marks may be due with the engine's watermark at `watermark`
    /// and its clock at `clock`: false when [`MarkState::due`] would
    /// surely say no (nothing closed or nothing moved, no second of event
    /// time, no heartbeat; idleness changes wait for the heartbeat).
    fn may_be_due(&self, watermark: i64, clock: i64) -> bool {
        let Some(last) = &self.last else {
            return true;
        };
        let lowest = last.iter().map(|m| m.watermark).min().unwrap_or(i64::MIN);
        let moved = watermark > lowest;
        (moved && (self.closed || watermark.saturating_sub(lowest) >= MARK_EVERY_MS))
            || clock.saturating_sub(self.sent_at) >= MARK_AGAIN_MS
    }

    /// Whether `marks` are to be sent at source clock `clock`; remembers
    /// them if so.
    fn due(&mut self, marks: &[Mark], clock: i64) -> bool {
        let again = clock.saturating_sub(self.sent_at) >= MARK_AGAIN_MS;
        let due = again
            || match &self.last {
                None => true,
                Some(last) if last.len() != marks.len() => true,
                Some(last) => last.iter().zip(marks).any(|(a, b)| {
                    a.origin != b.origin
                        || a.idle != b.idle
                        || (b.watermark > a.watermark
                            && (self.closed
                                || b.watermark.saturating_sub(a.watermark) >= MARK_EVERY_MS))
                }),
            };
        if due {
            self.last = Some(marks.to_vec());
            self.closed = false;
            self.sent_at = clock;
        }
        due
    }
}

/// A partial as the late output shows it.
fn describe(partial: &Partial) -> serde_json::Value {
    serde_json::json!({
        "partial": {
            "key": partial.key,
            "window": {
                "start": crate::event::rfc3339(partial.window.start),
                "end": crate::event::rfc3339(partial.window.end),
            },
            "origin": partial.origin,
            "revision": partial.revision,
            "final": partial.is_final,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(watermark: i64, idle: bool) -> Vec<Mark> {
        vec![Mark {
            origin: 0,
            watermark,
            idle,
        }]
    }

    #[test]
    fn marks_go_out_after_closings_changes_and_now_and_then() {
        let mut m = MarkState::default();
        assert!(m.due(&at(100, false), 0), "the first ones");
        assert!(!m.due(&at(100, false), 10), "nothing new");
        assert!(!m.due(&at(600, false), 20), "a small step, nothing closed");
        m.closed = true;
        assert!(m.due(&at(700, false), 30), "after a window fired");
        assert!(m.due(&at(700, true), 40), "turned idle");
        assert!(m.due(&at(1_800, true), 50), "a second of event time");
        assert!(!m.due(&at(1_800, true), 2_000));
        assert!(m.due(&at(1_800, true), 2_050), "again, unchanged");
    }

    #[test]
    fn most_moves_are_known_not_to_need_marks() {
        let mut m = MarkState::default();
        assert!(m.may_be_due(100, 0), "none sent yet");
        m.due(&at(100, false), 0);
        assert!(!m.may_be_due(100, 10));
        assert!(!m.may_be_due(600, 20));
        assert!(m.may_be_due(1_100, 20), "a second of event time");
        m.closed = true;
        assert!(m.may_be_due(101, 20), "moved after a window fired");
        assert!(!m.may_be_due(100, 20), "fired, but not moved");
        assert!(m.may_be_due(100, 2_000), "the heartbeat");
    }
}
