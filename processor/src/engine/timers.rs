//! Event-time timers, kept in memory in deterministic order: when windows
//! fire, when their state is purged, which fired windows late events
//! revised, and when keys are checked against the state TTL.

use std::collections::{BTreeSet, HashSet};

use super::window::Window;

type KeyId = (usize, String);

#[derive(Default)]
pub struct Timers {
    /// (end, slot, start, key) of windows not fired yet.
    fire: BTreeSet<(i64, usize, i64, String)>,
    /// (end + lateness, slot, start, end, key) of fired windows.
    purge: BTreeSet<(i64, usize, i64, i64, String)>,
    /// (slot, key, start, end) of fired windows updated by late events.
    revised: BTreeSet<(usize, String, i64, i64)>,
    /// (due, slot, key): check the key against the TTL at `due`.
    ttl: BTreeSet<(i64, usize, String)>,
    ttl_known: HashSet<KeyId>,
}

impl Timers {
    pub fn add_fire(&mut self, slot: usize, key: &str, w: Window) {
        self.fire.insert((w.end, slot, w.start, key.to_string()));
    }

    pub fn remove_fire(&mut self, slot: usize, key: &str, w: Window) {
        self.fire.remove(&(w.end, slot, w.start, key.to_string()));
    }

    /// The next window due at `watermark`, earliest end first.
    pub fn pop_fire(&mut self, watermark: i64) -> Option<(usize, String, Window)> {
        if self.fire.first()?.0 > watermark {
            return None;
        }
        let (end, slot, start, key) = self.fire.pop_first()?;
        Some((slot, key, Window { start, end }))
    }

    pub fn pending_fires(&self) -> usize {
        self.fire.len()
    }

    pub fn add_purge(&mut self, at: i64, slot: usize, key: &str, w: Window) {
        self.purge
            .insert((at, slot, w.start, w.end, key.to_string()));
    }

    pub fn remove_purge(&mut self, at: i64, slot: usize, key: &str, w: Window) {
        self.purge
            .remove(&(at, slot, w.start, w.end, key.to_string()));
    }

    pub fn pop_purge(&mut self, watermark: i64) -> Option<(usize, String, Window)> {
        if self.purge.first()?.0 > watermark {
            return None;
        }
        let (_, slot, start, end, key) = self.purge.pop_first()?;
        Some((slot, key, Window { start, end }))
    }

    pub fn mark_revised(&mut self, slot: usize, key: &str, w: Window) {
        self.revised.insert((slot, key.to_string(), w.start, w.end));
    }

    pub fn unmark_revised(&mut self, slot: usize, key: &str, w: Window) {
        self.revised
            .remove(&(slot, key.to_string(), w.start, w.end));
    }

    pub fn take_revised(&mut self) -> Vec<(usize, String, Window)> {
        std::mem::take(&mut self.revised)
            .into_iter()
            .map(|(slot, key, start, end)| (slot, key, Window { start, end }))
            .collect()
    }

    /// Makes sure the key will be checked against the TTL by `due`.
    pub fn watch_ttl(&mut self, slot: usize, key: &str, due: i64) {
        let id = (slot, key.to_string());
        if !self.ttl_known.contains(&id) {
            self.ttl.insert((due, slot, key.to_string()));
            self.ttl_known.insert(id);
        }
    }

    /// The next key whose TTL check is due at `now`.
    pub fn pop_ttl(&mut self, now: i64) -> Option<(usize, String)> {
        if self.ttl.first()?.0 > now {
            return None;
        }
        let (_, slot, key) = self.ttl.pop_first()?;
        self.ttl_known.remove(&(slot, key.clone()));
        Some((slot, key))
    }
}
