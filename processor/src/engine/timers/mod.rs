//! Event-time timers, in deterministic order: when windows fire, when their
//! state is purged, which fired windows late events revised, and when keys
//! are checked against the state TTL.
//!
//! Fire, purge and TTL timers grow with the keys, so they live in each
//! partition's RocksDB (its `timers` column family, in every checkpoint),
//! with only their recent changes in memory (see [`index`]). Rows of
//! different partitions are taken in order of time, then partition slot,
//! then the row itself (window bounds, key).

mod index;
mod rows;

use std::{collections::BTreeSet, ops::Bound};

use compact_str::CompactString;

use self::{
    index::{Index, Rows},
    rows::{Fire, Purge, Row, Ttl},
};
use super::window::Window;
use crate::state::{PartWrite, StateStore};

/// The row holding how many rows of each kind a partition has.
const COUNTS: &[u8] = b"m/counts";

/// How far timers are due: one watermark for every slot, or one each
/// (when some partition is on a watermark of its own).
#[derive(Clone, Copy, Debug)]
pub enum Until<'a> {
    All(i64),
    Each(&'a [i64]),
}

impl Until<'_> {
    pub fn of(self, slot: usize) -> i64 {
        match self {
            Self::All(until) => until,
            Self::Each(each) => each[slot],
        }
    }
}

pub struct Timers {
    /// Partition of each slot.
    partitions: Vec<u32>,
    fire: Vec<Index<Fire>>,
    purge: Vec<Index<Purge>>,
    ttl: Vec<Index<Ttl>>,
    /// (slot, key, start, end) of fired windows updated by late events
    /// since the last firing: short-lived, kept in memory.
    revised: BTreeSet<(usize, CompactString, i64, i64)>,
    /// The earliest due time of any fire or purge row, and of any TTL
    /// row, over every slot, while known: the engine asks after every
    /// event whether anything is due, and the answer is nearly always no.
    windows_due: Option<Option<i64>>,
    ttl_due: Option<Option<i64>>,
}

/// A row due at `due` was added: the earliest stays known.
fn lower(earliest: &mut Option<Option<i64>>, due: i64) {
    if let Some(e) = earliest {
        *e = Some(e.map_or(due, |e| e.min(due)));
    }
}

/// One partition's rows in the store.
struct Stored<'a>(&'a StateStore, u32);

impl Rows for Stored<'_> {
    fn rows(&self, kind: u8, from: Bound<&[u8]>, limit: usize) -> anyhow::Result<Vec<Box<[u8]>>> {
        self.0.timer_rows(self.1, kind, from, limit)
    }

    fn has(&self, row: &[u8]) -> anyhow::Result<bool> {
        self.0.has_timer(self.1, row)
    }
}

impl Timers {
    pub fn new(partitions: &[u32]) -> Self {
        Self {
            partitions: partitions.to_vec(),
            fire: each(partitions),
            purge: each(partitions),
            ttl: each(partitions),
            revised: BTreeSet::new(),
            windows_due: None,
            ttl_due: None,
        }
    }

    /// Forgets the earliest due times (rows went, or slots changed).
    fn unknown(&mut self) {
        self.windows_due = None;
        self.ttl_due = None;
    }

    /// True when no window fires or closes by `watermark` and no fired
    /// window was revised: [`Timers::pop_fire`] and [`Timers::pop_purge`]
    /// would find nothing, nor [`Timers::take_revised`].
    pub fn windows_quiet(&mut self, store: &StateStore, watermark: i64) -> anyhow::Result<bool> {
        if !self.revised.is_empty() {
            return Ok(false);
        }
        if self.windows_due.is_none() {
            let fire = earliest(&mut self.fire, &self.partitions, store)?;
            let purge = earliest(&mut self.purge, &self.partitions, store)?;
            self.windows_due = Some(fire.into_iter().chain(purge).min());
        }
        Ok(self.windows_due.flatten().is_none_or(|due| due > watermark))
    }

    /// True when no TTL check is due at `now`.
    pub fn ttl_quiet(&mut self, store: &StateStore, now: i64) -> anyhow::Result<bool> {
        if self.ttl_due.is_none() {
            self.ttl_due = Some(earliest(&mut self.ttl, &self.partitions, store)?);
        }
        Ok(self.ttl_due.flatten().is_none_or(|due| due > now))
    }

    /// A partition joins, in a new last slot.
    pub fn push(&mut self, partition: u32) {
        self.unknown();
        self.partitions.push(partition);
        self.fire.push(Index::default());
        self.purge.push(Index::default());
        self.ttl.push(Index::default());
    }

    /// Partition `slot` leaves, with every timer it held in memory (its
    /// rows are in its store); the last slot takes its place.
    pub fn swap_remove(&mut self, slot: usize) {
        self.unknown();
        let last = self.partitions.len() - 1;
        self.partitions.swap_remove(slot);
        self.fire.swap_remove(slot);
        self.purge.swap_remove(slot);
        self.ttl.swap_remove(slot);
        self.revised = std::mem::take(&mut self.revised)
            .into_iter()
            .filter(|r| r.0 != slot)
            .map(|(s, key, start, end)| (if s == last { slot } else { s }, key, start, end))
            .collect();
    }

    /// After a restore: takes a slot's row counts from its store; false if
    /// the store has no timers (it is new, or from engine version 1).
    pub fn restore(&mut self, store: &StateStore, slot: usize) -> anyhow::Result<bool> {
        self.unknown();
        let Some(counts) = store.timer_value(self.partitions[slot], COUNTS)? else {
            return Ok(false);
        };
        let count = |i: usize| -> anyhow::Result<usize> {
            let bytes = counts
                .get(8 * i..8 * i + 8)
                .ok_or_else(|| anyhow::anyhow!("the timer counts row is too short"))?;
            Ok(u64::from_le_bytes(bytes.try_into()?) as usize)
        };
        self.fire[slot].set_len(count(0)?);
        self.purge[slot].set_len(count(1)?);
        self.ttl[slot].set_len(count(2)?);
        Ok(true)
    }

    pub fn add_fire(&mut self, slot: usize, key: &str, w: Window) {
        let row = Fire::new(key, w);
        lower(&mut self.windows_due, row.due());
        self.fire[slot].insert(row);
    }

    pub fn remove_fire(
        &mut self,
        store: &StateStore,
        slot: usize,
        key: &str,
        w: Window,
    ) -> anyhow::Result<()> {
        let stored = Stored(store, self.partitions[slot]);
        self.windows_due = None;
        self.fire[slot].remove(&Fire::new(key, w), &stored)?;
        Ok(())
    }

    /// The next window due at `watermark`: earliest end first, then slot,
    /// start and key.
    pub fn pop_fire(
        &mut self,
        store: &StateStore,
        watermark: Until<'_>,
    ) -> anyhow::Result<Option<(usize, CompactString, Window)>> {
        self.windows_due = None;
        Ok(pop_due(&mut self.fire, &self.partitions, store, watermark)?
            .map(|(slot, row)| (slot, row.key.clone(), row.window())))
    }

    pub fn pending_fires(&self) -> usize {
        self.fire.iter().map(Index::len).sum()
    }

    /// Windows of one slot not fired yet.
    pub fn pending_fires_in(&self, slot: usize) -> usize {
        self.fire[slot].len()
    }

    pub fn add_purge(&mut self, at: i64, slot: usize, key: &str, w: Window) {
        let row = Purge::new(at, key, w);
        lower(&mut self.windows_due, row.due());
        self.purge[slot].insert(row);
    }

    pub fn pop_purge(
        &mut self,
        store: &StateStore,
        watermark: Until<'_>,
    ) -> anyhow::Result<Option<(usize, CompactString, Window)>> {
        self.windows_due = None;
        Ok(
            pop_due(&mut self.purge, &self.partitions, store, watermark)?
                .map(|(slot, row)| (slot, row.key.clone(), row.window())),
        )
    }

    pub fn mark_revised(&mut self, slot: usize, key: &str, w: Window) {
        self.revised.insert((slot, key.into(), w.start, w.end));
    }

    pub fn unmark_revised(&mut self, slot: usize, key: &str, w: Window) {
        self.revised.remove(&(slot, key.into(), w.start, w.end));
    }

    pub fn take_revised(&mut self) -> Vec<(usize, CompactString, Window)> {
        std::mem::take(&mut self.revised)
            .into_iter()
            .map(|(slot, key, start, end)| (slot, key, Window { start, end }))
            .collect()
    }

    /// Checks the key against the TTL at `due`. The key's state records
    /// `due` as its pending check: other checks found for it are stale.
    pub fn add_ttl(&mut self, slot: usize, key: &str, due: i64) {
        lower(&mut self.ttl_due, due);
        self.ttl[slot].insert(Ttl {
            due,
            key: key.into(),
        });
    }

    /// The next TTL check due at `now`: slot, key and when it was due.
    pub fn pop_ttl(
        &mut self,
        store: &StateStore,
        now: i64,
    ) -> anyhow::Result<Option<(usize, String, i64)>> {
        self.ttl_due = None;
        Ok(
            pop_due(&mut self.ttl, &self.partitions, store, Until::All(now))?
                .map(|(slot, row)| (slot, row.key.into_string(), row.due)),
        )
    }

    /// Changes held in memory, over every kind and partition.
    pub fn changes(&self) -> usize {
        let fire: usize = self.fire.iter().map(Index::changes).sum();
        let purge: usize = self.purge.iter().map(Index::changes).sum();
        let ttl: usize = self.ttl.iter().map(Index::changes).sum();
        fire + purge + ttl
    }

    /// Adds the changes since the last hand-over, and each partition's row
    /// counts, to the partitions' batches; until [`Timers::landed`] they
    /// are still read from memory.
    pub fn hand_over(&mut self, parts: &mut [PartWrite]) -> anyhow::Result<()> {
        for part in parts {
            let Some(slot) = self.partitions.iter().position(|p| *p == part.partition) else {
                continue;
            };
            self.fire[slot].hand_over(part)?;
            self.purge[slot].hand_over(part)?;
            self.ttl[slot].hand_over(part)?;
            let counts: Vec<u8> = [
                self.fire[slot].len(),
                self.purge[slot].len(),
                self.ttl[slot].len(),
            ]
            .into_iter()
            .flat_map(|n| (n as u64).to_le_bytes())
            .collect();
            part.put_timer(COUNTS, &counts)?;
        }
        Ok(())
    }

    /// The batches handed over are in RocksDB.
    pub fn landed(&mut self) {
        self.fire.iter_mut().for_each(Index::landed);
        self.purge.iter_mut().for_each(Index::landed);
        self.ttl.iter_mut().for_each(Index::landed);
    }
}

/// An empty index per partition.
fn each<R: Row>(partitions: &[u32]) -> Vec<Index<R>> {
    partitions.iter().map(|_| Index::default()).collect()
}

/// The earliest due time of any slot's rows.
fn earliest<R: Row>(
    indexes: &mut [Index<R>],
    partitions: &[u32],
    store: &StateStore,
) -> anyhow::Result<Option<i64>> {
    let mut earliest = None;
    for (index, partition) in indexes.iter_mut().zip(partitions) {
        if let Some(due) = index.next_due(&Stored(store, *partition))? {
            earliest = Some(earliest.map_or(due, |e: i64| e.min(due)));
        }
    }
    Ok(earliest)
}

/// Pops the earliest row due by `until` over all slots: by due time, then
/// slot, then the row.
fn pop_due<R: Row>(
    indexes: &mut [Index<R>],
    partitions: &[u32],
    store: &StateStore,
    until: Until<'_>,
) -> anyhow::Result<Option<(usize, R)>> {
    let mut best: Option<(usize, R)> = None;
    for (slot, index) in indexes.iter_mut().enumerate() {
        let stored = Stored(store, partitions[slot]);
        let until = until.of(slot);
        if index.next_due(&stored)?.is_none_or(|due| due > until) {
            continue;
        }
        let Some(row) = index.first(&stored)?.cloned() else {
            continue;
        };
        let earlier = match &best {
            None => true,
            Some((s, b)) => (row.due(), slot, &row) < (b.due(), *s, b),
        };
        if row.due() <= until && earlier {
            best = Some((slot, row));
        }
    }
    if let Some((slot, row)) = &best {
        indexes[*slot].pop(row);
    }
    Ok(best)
}
