//! The merge stage of a two-phase job (see `crate::partials`): a partial
//! replaces its origin's last one in its key's window, the window's
//! accumulators are the merge of every origin's in origin order, and the
//! window fires, is revised and closes by the partition's watermark from
//! the origins' marks, as a window of a job in one stage does by its
//! events.
//!
//! A partial for a window the partition already closed is a replay when
//! its origin had closed the window too (the origin restarted from a
//! checkpoint and sent it again; merged when it first came), else late:
//! its origin was idle while the others' marks closed the window.

mod marks;

use smallvec::SmallVec;

pub use self::marks::OriginMarks;
use super::{aggregate::Acc, Engine, Outcome};
use crate::{
    event::Invalid,
    output::record::outranks,
    partials::{Mark, Partial},
    state::{OriginSlot, WindowEntry},
};

impl Engine {
    /// Takes a partial of `partition`, read at `ingest_ms` (source clock).
    /// A partial of a window this partition already closed is late: its
    /// origin accepted events after every origin's watermark had passed the
    /// window's allowed lateness (it was idle, or replayed).
    pub fn merge_partial(
        &mut self,
        partition: u32,
        partial: &Partial,
        ingest_ms: i64,
    ) -> anyhow::Result<Outcome> {
        let Some(&slot) = self.slots.get(&partition) else {
            anyhow::bail!("partition {partition} is not owned by this processor");
        };
        let Some(marks) = &self.marks else {
            anyhow::bail!("a partial reached an engine that is not the merge stage");
        };
        self.clock = self.clock.max(ingest_ms);
        let accs = match self.partial_accs(partial) {
            Ok(accs) => accs,
            Err(reason) => {
                self.stats[slot].invalid += 1;
                return Ok(Outcome::Invalid(reason));
            }
        };
        let watermark = marks.of_slot(slot);
        let window = partial.window;
        let closes = window.end.saturating_add(self.config.allowed_lateness_ms);
        if closes <= watermark {
            // The origin's own mark passed the window's close: it closed
            // the window before that mark, so this came before, again.
            if marks
                .of_origin(slot, partial.origin)
                .is_some_and(|m| m >= closes)
            {
                self.stats[slot].replayed += 1;
                return Ok(Outcome::Replayed);
            }
            let lateness_ms = watermark.saturating_sub(window.end);
            self.stats[slot].record_late(lateness_ms);
            return Ok(Outcome::Late {
                lateness_ms,
                watermark,
            });
        }
        let key = partial.key.as_str();
        self.make_room(slot, key)?;
        let Self {
            cache,
            config,
            timers,
            stats,
            store,
            cached_keys,
            ..
        } = self;
        let cached = super::load(
            &mut cache[slot],
            store,
            config.partitions[slot],
            key,
            cached_keys,
        )?;
        let state = &mut cached.state;
        let at = state
            .partials
            .binary_search_by(|s| (s.window, s.origin).cmp(&(window, partial.origin)));
        let before = at.ok().map(|i| &state.partials[i]);
        if before.is_some_and(|s| {
            !outranks(
                (partial.is_final, partial.revision),
                (s.is_final, s.revision),
            )
        }) {
            // Had already: a partial sent again.
            return Ok(Outcome::Accepted);
        }
        // The origin's closing revision repeats its last one.
        let closing = before
            .is_some_and(|s| partial.is_final && !s.is_final && partial.revision == s.revision + 1);
        let slot_entry = OriginSlot {
            window,
            origin: partial.origin,
            revision: partial.revision,
            is_final: partial.is_final,
            accs,
        };
        match at {
            Ok(i) => state.partials[i] = slot_entry,
            Err(i) => state.partials.insert(i, slot_entry),
        }
        cached.dirty = true;
        cached.touch(timers, slot, key, ingest_ms, config.state_ttl_ms);
        let state = &mut cached.state;
        let index = match state.find(window) {
            Some(i) => i,
            None => {
                timers.add_fire(slot, key, window);
                state.insert(WindowEntry {
                    window,
                    accs: SmallVec::new(),
                    revision: 0,
                    fired: false,
                })
            }
        };
        let mut merged: SmallVec<[Acc; 2]> =
            config.aggregates.iter().map(|(_, a)| a.empty()).collect();
        for s in state.partials.iter().filter(|s| s.window == window) {
            for (acc, other) in merged.iter_mut().zip(&s.accs) {
                acc.merge(other);
            }
        }
        let entry = &mut state.windows[index];
        entry.accs = merged;
        if entry.fired && !closing {
            timers.mark_revised(slot, key, window);
            stats[slot].late_updates += 1;
        }
        let s = &mut stats[slot];
        s.accepted += 1;
        s.record_event(&partial.key, ingest_ms);
        self.events_since_flush += 1;
        Ok(Outcome::Accepted)
    }

    /// Takes marks of the origins, read in `partition` at `ingest_ms`.
    pub fn observe_marks(
        &mut self,
        partition: u32,
        marks: &[Mark],
        ingest_ms: i64,
    ) -> anyhow::Result<Result<(), Invalid>> {
        let Some(&slot) = self.slots.get(&partition) else {
            anyhow::bail!("partition {partition} is not owned by this processor");
        };
        let Some(origins) = &mut self.marks else {
            anyhow::bail!("marks reached an engine that is not the merge stage");
        };
        self.clock = self.clock.max(ingest_ms);
        for mark in marks {
            if !origins.observe(slot, mark) {
                return Ok(Err(Invalid::BadPartial(format!(
                    "a mark of partition {} of the first stage, which the job does not have",
                    mark.origin
                ))));
            }
        }
        Ok(Ok(()))
    }

    /// The watermarks of this engine's partitions as the first stage of a
    /// two-phase job sends them: each partition's deciding watermark, and
    /// whether it is idle.
    pub fn marks(&self) -> Vec<Mark> {
        self.config
            .partitions
            .iter()
            .enumerate()
            .map(|(slot, p)| Mark {
                origin: *p,
                watermark: self.deciding(slot),
                idle: self.watermarks.is_idle(slot, self.clock),
            })
            .collect()
    }

    /// [`Engine::marks`] at the end of the input: everything fired.
    pub fn end_marks(&self) -> Vec<Mark> {
        self.config
            .partitions
            .iter()
            .map(|p| Mark {
                origin: *p,
                watermark: i64::MAX,
                idle: false,
            })
            .collect()
    }

    /// Every origin of every partition of this engine sent the end of its
    /// input (the merge stage's end of input).
    pub fn origins_finished(&self) -> bool {
        self.marks
            .as_ref()
            .is_some_and(|m| (0..self.config.partitions.len()).all(|s| m.finished(s)))
    }

    /// Counts a partials record of `partition` dropped because the job
    /// sent it before it started over (another state epoch).
    pub fn record_replayed(&mut self, partition: u32) {
        if let Some(&slot) = self.slots.get(&partition) {
            self.stats[slot].replayed += 1;
        }
    }

    /// A partial's accumulators, if they are this job's.
    fn partial_accs(&self, partial: &Partial) -> Result<SmallVec<[Acc; 2]>, Invalid> {
        let origins = self.marks.as_ref().map_or(0, |m| m.origins());
        if partial.origin as usize >= origins {
            return Err(Invalid::BadPartial(format!(
                "a partial of partition {} of the first stage, which the job does not have",
                partial.origin
            )));
        }
        let accs: SmallVec<[Acc; 2]> = postcard::from_bytes(&partial.accs)
            .map_err(|e| Invalid::BadPartial(format!("its accumulators do not decode: {e}")))?;
        let aggregates = &self.config.aggregates;
        let same = accs.len() == aggregates.len()
            && accs
                .iter()
                .zip(aggregates)
                .all(|(acc, (_, aggregate))| aggregate.holds(acc));
        if !same {
            return Err(Invalid::BadPartial(
                "its accumulators are not those of this job's aggregations (a first stage \
                 of another version of the job?)"
                    .into(),
            ));
        }
        Ok(accs)
    }
}

#[cfg(test)]
mod tests;
