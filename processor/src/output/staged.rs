//! What a worker produced, held until the run loop writes it: workers run
//! side by side, the sinks are the processor's own, one writer at a time.
//! Results are encoded as they are written, on the run loop's thread,
//! while the workers go on with the next events.

use std::sync::Arc;

use super::{
    outputs::Outputs,
    record::{self, JobId, ResultEncoder},
};
use crate::{engine::WindowResult, partials::Mark};

/// A result, encoded.
#[derive(Default)]
pub struct StagedResult {
    pub id: String,
    pub line: Vec<u8>,
    /// Kept only when a table sink needs its fields.
    pub result: Option<WindowResult>,
    /// The names of its aggregates.
    pub names: Arc<[Arc<str>]>,
}

/// Results and late records in the order they were made.
#[derive(Default)]
pub struct Staged {
    pub results: Vec<WindowResult>,
    /// Late records: id and line.
    pub late: Vec<(String, Vec<u8>)>,
    /// Invalid records: id and line.
    pub invalid: Vec<(String, Vec<u8>)>,
    /// Watermarks of a two-phase job's first stage, each to be written
    /// after the first so many of `results`.
    pub marks: Vec<(usize, Vec<Mark>)>,
}

impl Staged {
    /// Entries held.
    pub fn len(&self) -> usize {
        self.results.len() + self.late.len() + self.invalid.len() + self.marks.len()
    }

    /// Watermarks, to be written after the results staged so far.
    pub fn mark(&mut self, marks: Vec<Mark>) {
        self.marks.push((self.results.len(), marks));
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes everything held to `outputs`, in order, results encoded by
    /// `writer`, and empties itself (keeping its room for the next batch).
    pub fn write_to(
        &mut self,
        outputs: &mut Outputs,
        writer: &mut ResultWriter,
    ) -> anyhow::Result<()> {
        for (id, line) in self.late.drain(..) {
            outputs.write_late(&id, &line)?;
        }
        for (id, line) in self.invalid.drain(..) {
            outputs.write_invalid(&id, &line)?;
        }
        let mut marks = self.marks.drain(..).peekable();
        for (i, r) in self.results.drain(..).enumerate() {
            while let Some((_, m)) = marks.next_if(|(at, _)| *at <= i) {
                outputs.write_marks(&m)?;
            }
            writer.write(r, outputs)?;
        }
        for (_, m) in marks {
            outputs.write_marks(&m)?;
        }
        Ok(())
    }
}

/// Encodes results as the sinks get them, their id and JSON line, into
/// buffers reused from one result to the next.
/// What the result sinks need of each result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// Its id and line (files, Kafka topics, HTTP).
    Line,
    /// Its fields too (a table sink).
    LineAndFields,
    /// Its fields only: the first stage's partials topic, whose records
    /// are the accumulators (no id or line is built).
    Fields,
}

pub struct ResultWriter {
    job: JobId,
    needs: Needs,
    encoder: ResultEncoder,
    current: StagedResult,
}

impl ResultWriter {
    /// A writer of `job`'s results, whose aggregates are named `names`.
    pub fn new(job: JobId, names: Arc<[Arc<str>]>, needs: Needs) -> Self {
        Self {
            encoder: ResultEncoder::new(&job, &names),
            job,
            needs,
            current: StagedResult {
                names,
                ..StagedResult::default()
            },
        }
    }

    /// Encodes `result` as its sinks need it and writes it to every one.
    pub fn write(&mut self, result: WindowResult, outputs: &mut Outputs) -> anyhow::Result<()> {
        let StagedResult { id, line, .. } = &mut self.current;
        if self.needs != Needs::Fields {
            let w = result.window;
            id.clear();
            record::write_result_id(id, &self.job, &result.key, w.start, w.end);
            line.clear();
            self.encoder.write_line(line, id, &result);
        }
        self.current.result = (self.needs != Needs::Line).then_some(result);
        outputs.write_result(&self.current)
    }
}
