//! Event-time timers, kept in memory in deterministic order: when windows
//! fire, when their state is purged, which fired windows late events
//! revised, and when keys are checked against the state TTL.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use compact_str::CompactString;

use super::window::Window;
use crate::FastSet;

pub struct Timers {
    /// Windows not fired yet, bucketed by (end, slot, start): thousands of
    /// keys share a window, so a bucket is a hash set of keys, sorted once
    /// when it fires (the order stays deterministic).
    fire: BTreeMap<(i64, usize, i64), FastSet<CompactString>>,
    /// Keys of the bucket being fired, in order.
    firing: VecDeque<(usize, String, Window)>,
    pending: usize,
    /// `pending` per slot.
    pending_by_slot: Vec<usize>,
    /// (end + lateness, slot, start, end, key) of fired windows.
    purge: BTreeSet<(i64, usize, i64, i64, CompactString)>,
    /// (slot, key, start, end) of fired windows updated by late events.
    revised: BTreeSet<(usize, CompactString, i64, i64)>,
    /// (due, slot, key): check the key against the TTL at `due`.
    ttl: BTreeSet<(i64, usize, CompactString)>,
    /// Per slot: keys with an entry in `ttl` (looked up without allocating).
    ttl_known: Vec<FastSet<CompactString>>,
}

impl Timers {
    pub fn new(slots: usize) -> Self {
        Self {
            fire: BTreeMap::new(),
            firing: VecDeque::new(),
            pending: 0,
            pending_by_slot: vec![0; slots],
            purge: BTreeSet::new(),
            revised: BTreeSet::new(),
            ttl: BTreeSet::new(),
            ttl_known: vec![FastSet::default(); slots],
        }
    }

    pub fn add_fire(&mut self, slot: usize, key: &str, w: Window) {
        if self
            .fire
            .entry((w.end, slot, w.start))
            .or_default()
            .insert(key.into())
        {
            self.pending += 1;
            self.pending_by_slot[slot] += 1;
        }
    }

    pub fn remove_fire(&mut self, slot: usize, key: &str, w: Window) {
        let bucket_id = (w.end, slot, w.start);
        if let Some(bucket) = self.fire.get_mut(&bucket_id) {
            if bucket.remove(key) {
                self.pending -= 1;
                self.pending_by_slot[slot] -= 1;
            }
            if bucket.is_empty() {
                self.fire.remove(&bucket_id);
            }
        } else if let Some(i) = self
            .firing
            .iter()
            .position(|(s, k, win)| *s == slot && k == key && *win == w)
        {
            self.firing.remove(i);
            self.pending -= 1;
            self.pending_by_slot[slot] -= 1;
        }
    }

    /// The next window due at `watermark`: earliest end first, then slot,
    /// start and key.
    pub fn pop_fire(&mut self, watermark: i64) -> Option<(usize, String, Window)> {
        if self.firing.is_empty() {
            let (&(end, slot, start), _) = self.fire.first_key_value()?;
            if end > watermark {
                return None;
            }
            let (_, keys) = self.fire.pop_first()?;
            let mut keys: Vec<String> = keys.into_iter().map(CompactString::into_string).collect();
            keys.sort_unstable();
            let window = Window { start, end };
            self.firing
                .extend(keys.into_iter().map(|key| (slot, key, window)));
        }
        let next = self.firing.pop_front()?;
        self.pending -= 1;
        self.pending_by_slot[next.0] -= 1;
        Some(next)
    }

    pub fn pending_fires(&self) -> usize {
        self.pending
    }

    /// Windows of one slot not fired yet.
    pub fn pending_fires_in(&self, slot: usize) -> usize {
        self.pending_by_slot[slot]
    }

    pub fn add_purge(&mut self, at: i64, slot: usize, key: &str, w: Window) {
        self.purge.insert((at, slot, w.start, w.end, key.into()));
    }

    pub fn pop_purge(&mut self, watermark: i64) -> Option<(usize, String, Window)> {
        if self.purge.first()?.0 > watermark {
            return None;
        }
        let (_, slot, start, end, key) = self.purge.pop_first()?;
        Some((slot, key.into_string(), Window { start, end }))
    }

    pub fn mark_revised(&mut self, slot: usize, key: &str, w: Window) {
        self.revised.insert((slot, key.into(), w.start, w.end));
    }

    pub fn unmark_revised(&mut self, slot: usize, key: &str, w: Window) {
        self.revised.remove(&(slot, key.into(), w.start, w.end));
    }

    pub fn take_revised(&mut self) -> Vec<(usize, String, Window)> {
        std::mem::take(&mut self.revised)
            .into_iter()
            .map(|(slot, key, start, end)| (slot, key.into_string(), Window { start, end }))
            .collect()
    }

    /// Makes sure the key will be checked against the TTL by `due` (a key
    /// already watched keeps its earlier check, which re-arms itself).
    pub fn watch_ttl(&mut self, slot: usize, key: &str, due: i64) {
        if !self.ttl_known[slot].contains(key) {
            self.ttl.insert((due, slot, key.into()));
            self.ttl_known[slot].insert(key.into());
        }
    }

    /// The next key whose TTL check is due at `now`.
    pub fn pop_ttl(&mut self, now: i64) -> Option<(usize, String)> {
        if self.ttl.first()?.0 > now {
            return None;
        }
        let (_, slot, key) = self.ttl.pop_first()?;
        self.ttl_known[slot].remove(key.as_str());
        Some((slot, key.into_string()))
    }
}
