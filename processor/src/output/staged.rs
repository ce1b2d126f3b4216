//! What a worker produced, held until the run loop writes it: workers run
//! side by side, the sinks are the processor's own, one writer at a time.

use super::outputs::Outputs;
use crate::engine::WindowResult;

/// A result, encoded.
pub struct StagedResult {
    pub id: String,
    pub line: Vec<u8>,
    /// Kept only when a table sink needs its fields.
    pub result: Option<WindowResult>,
}

/// Results and late records in the order they were made.
#[derive(Default)]
pub struct Staged {
    pub results: Vec<StagedResult>,
    /// Late records: id and line.
    pub late: Vec<(String, Vec<u8>)>,
    /// Invalid records: id and line.
    pub invalid: Vec<(String, Vec<u8>)>,
}

impl Staged {
    /// Entries held.
    pub fn len(&self) -> usize {
        self.results.len() + self.late.len() + self.invalid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes everything held to `outputs`, in order, and empties itself
    /// (keeping its room for the next batch).
    pub fn write_to(&mut self, outputs: &mut Outputs) -> anyhow::Result<()> {
        for (id, line) in self.late.drain(..) {
            outputs.write_late(&id, &line)?;
        }
        for (id, line) in self.invalid.drain(..) {
            outputs.write_invalid(&id, &line)?;
        }
        for r in self.results.drain(..) {
            outputs.write_result(&r)?;
        }
        Ok(())
    }
}
