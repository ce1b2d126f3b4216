//! Taking events in, and firing, revising and purging windows.

use compact_str::CompactString;
use smallvec::SmallVec;

use super::{
    aggregate::Input,
    session::{self, Placement, Session},
    timers::Until,
    window::Window,
    Engine, Outcome, WindowKind, WindowResult,
};
use crate::{
    event::Event,
    state::{KeyState, WindowEntry, Windows},
};

impl Engine {
    /// Adds one event of `partition`, ingested at `ingest_ms` (source
    /// clock), to its windows.
    pub fn process(
        &mut self,
        partition: u32,
        event: &Event,
        ingest_ms: i64,
    ) -> anyhow::Result<Outcome> {
        let Some(&slot) = self.slots.get(&partition) else {
            anyhow::bail!("partition {partition} is not owned by this processor");
        };
        self.clock = self.clock.max(ingest_ms);
        let mut inputs: SmallVec<[Input; 4]> = SmallVec::new();
        for (name, aggregate) in &self.config.aggregates {
            match event.record.input(aggregate, name) {
                Ok(input) => inputs.push(input),
                Err(reason) => {
                    self.stats[slot].invalid += 1;
                    return Ok(Outcome::Invalid(reason));
                }
            }
        }
        let behind = self
            .watermarks
            .max_seen(slot)
            .map_or(0, |max| max.saturating_sub(event.time_ms));
        self.stats[slot].record_delay(behind);
        let watermark = self.watermarks.of_slot(slot);
        let lateness = self.config.allowed_lateness_ms;
        let accepted = match &self.config.windows {
            WindowKind::Fixed(assigner) => {
                let mut windows = std::mem::take(&mut self.scratch);
                windows.clear();
                assigner.assign(event.time_ms, &mut windows);
                windows.retain(|w| w.end.saturating_add(lateness) > watermark);
                let any = !windows.is_empty();
                if any {
                    self.add_to_windows(slot, event, &windows, &inputs, ingest_ms)?;
                }
                self.scratch = windows;
                any
            }
            WindowKind::Session { gap, max_length } => {
                let (gap, max_length) = (*gap, *max_length);
                self.add_to_session(
                    slot,
                    event,
                    &inputs,
                    gap,
                    max_length,
                    (watermark, ingest_ms),
                )?
            }
        };
        if !accepted {
            let lateness_ms = watermark.saturating_sub(event.time_ms);
            self.stats[slot].record_late(lateness_ms);
            return Ok(Outcome::Late {
                lateness_ms,
                watermark,
            });
        }
        self.watermarks.observe(slot, event.time_ms, ingest_ms);
        let s = &mut self.stats[slot];
        s.accepted += 1;
        s.record_event(&event.key, ingest_ms);
        self.events_since_flush += 1;
        Ok(Outcome::Accepted)
    }

    /// Adds inputs to the key's windows (all within the allowed lateness),
    /// creating those it does not have yet, with their fire timers, and
    /// touches the key: its state is looked up once for all of it.
    fn add_to_windows(
        &mut self,
        slot: usize,
        event: &Event,
        windows: &[Window],
        inputs: &[Input],
        ingest_ms: i64,
    ) -> anyhow::Result<()> {
        let (key, time_ms) = (event.key.as_str(), event.time_ms);
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
        cached.dirty = true;
        cached.touch(timers, slot, key, ingest_ms, config.state_ttl_ms);
        let state = &mut cached.state;
        for &window in windows {
            let index = match state.find(window) {
                Some(i) => i,
                None => {
                    // A new window: its fire timer starts here.
                    timers.add_fire(slot, key, window);
                    state.insert(WindowEntry {
                        window,
                        accs: config.aggregates.iter().map(|(_, a)| a.empty()).collect(),
                        revision: 0,
                        fired: false,
                    })
                }
            };
            let entry = &mut state.windows[index];
            for (acc, input) in entry.accs.iter_mut().zip(inputs) {
                acc.add(input, time_ms);
            }
            if entry.fired {
                timers.mark_revised(slot, key, window);
                stats[slot].late_updates += 1;
            }
        }
        Ok(())
    }

    /// Places an event among its key's sessions; false when the session it
    /// would join is past the allowed lateness.
    fn add_to_session(
        &mut self,
        slot: usize,
        event: &Event,
        inputs: &[Input],
        gap: i64,
        max_length: i64,
        (watermark, ingest_ms): (i64, i64),
    ) -> anyhow::Result<bool> {
        let lateness = self.config.allowed_lateness_ms;
        let state = self.cache_entry(slot, &event.key)?;
        let sessions: Vec<Session> = state
            .windows
            .iter()
            .map(|e| Session {
                window: e.window,
                fired: e.fired,
            })
            .collect();
        let placement = session::place(&sessions, event.time_ms, gap, max_length);
        let target = match &placement {
            Placement::New(w) => *w,
            Placement::Join { window, .. } | Placement::Merge { window, .. } => *window,
        };
        if target.end.saturating_add(lateness) <= watermark {
            return Ok(false);
        }
        let key = event.key.as_str();
        match placement {
            Placement::New(_) => {}
            Placement::Join { index, window } => {
                let old = sessions[index].window;
                if old != window {
                    self.rebound(slot, key, old, window)?;
                }
            }
            Placement::Merge { into, from, window } => {
                let (into_w, from_w) = (sessions[into].window, sessions[from].window);
                let state = self.cache_entry(slot, key)?;
                let from_index = state.find(from_w).expect("placed among these sessions");
                let absorbed = state.windows.remove(from_index);
                let into_index = state.find(into_w).expect("placed among these sessions");
                for (acc, other) in state.windows[into_index]
                    .accs
                    .iter_mut()
                    .zip(&absorbed.accs)
                {
                    acc.merge(other);
                }
                self.timers.remove_fire(&self.store, slot, key, from_w)?;
                self.rebound(slot, key, into_w, window)?;
            }
        }
        self.add_to_windows(slot, event, &[target], inputs, ingest_ms)?;
        Ok(true)
    }

    /// Moves an unfired session to new bounds, with its fire timer.
    fn rebound(&mut self, slot: usize, key: &str, old: Window, new: Window) -> anyhow::Result<()> {
        let state = self.cache_entry(slot, key)?;
        if let Some(i) = state.find(old) {
            let mut entry = state.windows.remove(i);
            entry.window = new;
            state.insert(entry);
            self.timers.remove_fire(&self.store, slot, key, old)?;
            self.timers.add_fire(slot, key, new);
        }
        Ok(())
    }

    /// The key's state for writing: marked dirty.
    fn cache_entry(&mut self, slot: usize, key: &str) -> anyhow::Result<&mut KeyState> {
        let cached = self.state_mut(slot, key)?;
        cached.dirty = true;
        Ok(&mut cached.state)
    }

    /// Moves the watermark to what the partitions allow at `clock`, then
    /// emits, in order: revisions of fired windows updated by late events,
    /// windows the watermark has passed, and closing revisions of windows
    /// past their allowed lateness, whose state is then deleted. Also applies
    /// the state TTL and writes state back when due.
    pub fn advance(&mut self, clock: i64, out: &mut Vec<WindowResult>) -> anyhow::Result<()> {
        while self.advance_some(clock, out, usize::MAX)? {}
        Ok(())
    }

    /// [`Engine::advance`] a part at a time: stops once `out` holds
    /// `limit` results, and answers whether more are due (call again with
    /// the same clock, after taking them out, before any other event).
    pub fn advance_some(
        &mut self,
        clock: i64,
        out: &mut Vec<WindowResult>,
        limit: usize,
    ) -> anyhow::Result<bool> {
        self.clock = self.clock.max(clock);
        if self.ttl_floor_pending && self.clock != i64::MIN {
            self.ttl_floor = self.clock;
            self.ttl_floor_pending = false;
        }
        let watermark = match &self.marks {
            Some(m) => m.current(),
            None => self.watermarks.advance(self.clock),
        };
        self.bound_timers()?;
        if self.emit_due(watermark, out, limit)? {
            return Ok(true);
        }
        self.expire_keys()?;
        if self.events_since_flush >= self.config.flush_every_events && self.writable(false)? {
            self.write_back_behind()?;
        }
        Ok(false)
    }

    /// The input has ended: every window fires and closes.
    pub fn finish(&mut self, out: &mut Vec<WindowResult>) -> anyhow::Result<()> {
        while self.finish_some(out, usize::MAX)? {}
        Ok(())
    }

    /// [`Engine::finish`] a part at a time, as [`Engine::advance_some`].
    pub fn finish_some(
        &mut self,
        out: &mut Vec<WindowResult>,
        limit: usize,
    ) -> anyhow::Result<bool> {
        self.bound_timers()?;
        if self.emit_due(i64::MAX, out, limit)? {
            return Ok(true);
        }
        self.flush()?;
        Ok(false)
    }

    /// Emits what is due at `watermark` until `out` holds `limit` results;
    /// true if it stopped there (more may be due).
    fn emit_due(
        &mut self,
        watermark: i64,
        out: &mut Vec<WindowResult>,
        limit: usize,
    ) -> anyhow::Result<bool> {
        let lateness = self.config.allowed_lateness_ms;
        // Partitions on a watermark of their own fire by it (rare: after
        // one joined); the end of input fires everything.
        let each = (watermark != i64::MAX)
            .then(|| match &self.marks {
                Some(m) => m.each(),
                None => self.watermarks.each_slot(),
            })
            .flatten();
        if each.is_none() && self.timers.windows_quiet(&self.store, watermark)? {
            return Ok(false);
        }
        for (slot, key, window) in self.timers.take_revised() {
            self.emit(slot, key, window, false, out)?;
        }
        let until = match &each {
            Some(each) => Until::Each(each),
            None => Until::All(watermark),
        };
        loop {
            if out.len() >= limit {
                return Ok(true);
            }
            let Some((slot, key, window)) = self.timers.pop_fire(&self.store, until)? else {
                break;
            };
            // Final unless late events may still revise it (at the end of
            // input, or after a long idle stretch, lateness is already over).
            let is_final = window.end.saturating_add(lateness) <= until.of(slot);
            // A final revision deletes the window; otherwise it closes
            // once its lateness is over.
            if is_final {
                self.emit(slot, key, window, true, out)?;
            } else if self.emit(slot, key.clone(), window, false, out)? {
                let at = window.end.saturating_add(lateness);
                self.timers.add_purge(at, slot, &key, window);
            }
        }
        loop {
            if out.len() >= limit {
                return Ok(true);
            }
            let Some((slot, key, window)) = self.timers.pop_purge(&self.store, until)? else {
                break;
            };
            // A closing revision marks the result final.
            self.timers.unmark_revised(slot, &key, window);
            self.emit(slot, key, window, true, out)?;
        }
        Ok(false)
    }

    /// Emits the next revision of a window, and deletes it when the
    /// revision is final; false if it no longer exists. One lookup of the
    /// key's state for all of it.
    fn emit(
        &mut self,
        slot: usize,
        key: CompactString,
        window: Window,
        is_final: bool,
        out: &mut Vec<WindowResult>,
    ) -> anyhow::Result<bool> {
        self.make_room(slot, &key)?;
        let Self {
            cache,
            config,
            store,
            cached_keys,
            ..
        } = self;
        let partition = config.partitions[slot];
        let cached = super::load(&mut cache[slot], store, partition, &key, cached_keys)?;
        cached.dirty = true;
        let state = &mut cached.state;
        let Some(index) = state.find(window) else {
            return Ok(false);
        };
        let entry = &mut state.windows[index];
        entry.revision += 1;
        entry.fired = true;
        let partial = match config.stage {
            crate::partials::Stage::Partial => Some(postcard::to_allocvec(&entry.accs)?),
            _ => None,
        };
        out.push(WindowResult {
            partition,
            key,
            window,
            aggregates: config
                .aggregates
                .iter()
                .zip(&entry.accs)
                .map(|((_, agg), acc)| agg.result(acc))
                .collect(),
            revision: entry.revision,
            is_final,
            partial,
        });
        if is_final {
            state.windows.remove(index);
            if !state.partials.is_empty() {
                state.partials.retain(|s| s.window != window);
            }
        }
        Ok(true)
    }

    /// Deletes the open windows of keys not updated within the TTL (they
    /// would otherwise wait forever for a stalled watermark), counting them.
    /// Fired windows stay until the watermark passes their lateness, so a
    /// late event can never restart one at revision 1.
    fn expire_keys(&mut self) -> anyhow::Result<()> {
        let clock = self.clock;
        if self.ttl_floor_pending || self.timers.ttl_quiet(&self.store, clock)? {
            return Ok(());
        }
        let ttl = self.config.state_ttl_ms;
        while let Some((slot, key, due)) = self.timers.pop_ttl(&self.store, clock)? {
            // Look without caching: most checked keys are long gone.
            let (found, read) = match self.cache[slot].get(key.as_str()) {
                Some(c) => ((c.state.ttl_check, c.state.last_update_ms), None),
                None => match self.store.get(self.config.partitions[slot], &key)? {
                    Some(s) => ((s.ttl_check, s.last_update_ms), Some(s)),
                    None => continue,
                },
            };
            // A check the key's state does not name is stale: its state was
            // deleted and came back with a check of its own.
            let (Some(check), last) = found else {
                continue;
            };
            if check != due {
                continue;
            }
            // The key's state changes below: cache what was just read.
            if let Some(state) = read {
                self.cache_read(slot, &key, state)?;
            }
            let next = last.max(self.ttl_floor).saturating_add(ttl);
            if next > clock {
                self.cache_entry(slot, &key)?.ttl_check = Some(next);
                self.timers.add_ttl(slot, &key, next);
                continue;
            }
            let state = self.cache_entry(slot, &key)?;
            let (expired, kept): (Windows, Windows) = std::mem::take(&mut state.windows)
                .into_iter()
                .partition(|e| !e.fired);
            state.windows = kept;
            if !state.partials.is_empty() {
                let windows = &state.windows;
                state
                    .partials
                    .retain(|s| windows.iter().any(|e| e.window == s.window));
            }
            let still_held = !state.windows.is_empty();
            let next = clock.saturating_add(ttl);
            state.ttl_check = still_held.then_some(next);
            for entry in expired {
                self.timers
                    .remove_fire(&self.store, slot, &key, entry.window)?;
                self.counters.expired_windows += 1;
            }
            if still_held {
                self.timers.add_ttl(slot, &key, next);
            }
        }
        Ok(())
    }
}
