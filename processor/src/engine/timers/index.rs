//! One kind of timer of one partition: a sorted set of rows kept in the
//! partition's RocksDB, with the changes since they were last written held
//! in memory. Reading merges the two in order, so memory holds only what
//! changed (bounded by how often the engine writes), not every timer.
//!
//! Written rows go out in two steps, as the state does: handed to a batch
//! (`hand_over`), they stay visible here until the batch has `landed` in
//! RocksDB, which may happen on another thread meanwhile.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    ops::Bound,
};

use super::rows::Row;
use crate::{state::PartWrite, FastSet};

/// Where the rows of one partition and kind are stored.
pub trait Rows {
    /// Up to `limit` rows starting with `kind`, in order, from `from`.
    fn rows(&self, kind: u8, from: Bound<&[u8]>, limit: usize) -> anyhow::Result<Vec<Box<[u8]>>>;
    fn has(&self, row: &[u8]) -> anyhow::Result<bool>;
}

/// Where handed-over changes go: a partition's write batch.
pub trait Batch {
    fn put(&mut self, row: &[u8], value: &[u8]) -> anyhow::Result<()>;
    fn delete(&mut self, row: &[u8]) -> anyhow::Result<()>;
}

impl Batch for PartWrite {
    fn put(&mut self, row: &[u8], value: &[u8]) -> anyhow::Result<()> {
        self.put_timer(row, value)
    }

    fn delete(&mut self, row: &[u8]) -> anyhow::Result<()> {
        self.delete_timer(row)
    }
}

/// Rows read from RocksDB at a time (few in tests, to read often).
const READ_AHEAD: usize = if cfg!(test) { 4 } else { 256 };

pub struct Index<R: Row> {
    /// Rows added since the last hand-over; true when the row is in neither
    /// RocksDB nor a batch handed over (dropping it then needs no delete).
    added: BTreeMap<R, bool>,
    /// Rows RocksDB has, or will have once a handed-over batch lands, that
    /// are gone since the last hand-over.
    deleted: FastSet<R>,
    /// `added` and `deleted` of the batch handed over, until it lands.
    inflight_added: BTreeSet<R>,
    inflight_deleted: FastSet<R>,
    /// The next rows read from RocksDB, in order.
    ahead: VecDeque<R>,
    /// Where reading RocksDB goes on (encoded rows).
    resume: Bound<Box<[u8]>>,
    /// RocksDB had no rows after `ahead`'s.
    read_all: bool,
    /// Rows in the set.
    len: usize,
    /// The first row of the set, while known: most lookups only ask
    /// whether anything is due yet, and a pop follows each that finds it.
    head: Option<Option<R>>,
}

impl<R: Row> Default for Index<R> {
    fn default() -> Self {
        Self {
            added: BTreeMap::new(),
            deleted: FastSet::default(),
            inflight_added: BTreeSet::new(),
            inflight_deleted: FastSet::default(),
            ahead: VecDeque::new(),
            resume: Bound::Unbounded,
            read_all: false,
            len: 0,
            head: None,
        }
    }
}

impl<R: Row> Index<R> {
    pub fn len(&self) -> usize {
        self.len
    }

    /// After a restore: how many rows RocksDB holds.
    pub fn set_len(&mut self, len: usize) {
        self.len = len;
    }

    /// Changes held in memory.
    pub fn changes(&self) -> usize {
        self.added.len() + self.deleted.len()
    }

    /// Adds a row the set does not have (the engine knows it cannot).
    pub fn insert(&mut self, row: R) {
        if let Some(head) = &mut self.head {
            if head.as_ref().is_none_or(|h| row < *h) {
                *head = Some(row.clone());
            }
        }
        let fresh = !self.deleted.remove(&row);
        if self.added.insert(row, fresh).is_none() {
            self.len += 1;
        }
    }

    /// Removes a row if the set has it; whether it had.
    pub fn remove(&mut self, row: &R, db: &impl Rows) -> anyhow::Result<bool> {
        let had = if let Some(fresh) = self.added.remove(row) {
            if !fresh {
                self.deleted.insert(row.clone());
            }
            true
        } else if self.deleted.contains(row) || self.inflight_deleted.contains(row) {
            false
        } else if self.inflight_added.remove(row) || db.has(&row.encode())? {
            self.deleted.insert(row.clone());
            true
        } else {
            false
        };
        self.len -= usize::from(had);
        if had {
            self.head = None;
        }
        Ok(had)
    }

    /// When the first row is due, if there is one.
    pub fn next_due(&mut self, db: &impl Rows) -> anyhow::Result<Option<i64>> {
        Ok(self.first(db)?.map(Row::due))
    }

    /// The first row, if any.
    pub fn first(&mut self, db: &impl Rows) -> anyhow::Result<Option<&R>> {
        if self.head.is_none() {
            let head = self.find_first(db)?;
            self.head = Some(head);
        }
        Ok(self.head.as_ref().and_then(Option::as_ref))
    }

    /// The first row, looked up.
    fn find_first(&mut self, db: &impl Rows) -> anyhow::Result<Option<R>> {
        self.read_ahead(db)?;
        let candidates = [
            self.added.first_key_value().map(|(row, _)| row),
            self.inflight_added.first(),
            self.ahead.front(),
        ];
        Ok(candidates.into_iter().flatten().min().cloned())
    }

    /// Removes `row`, which [`Index::first`] answered.
    pub fn pop(&mut self, row: &R) {
        let mut stored = false;
        // Most often the first row added: taken from the tree's left edge
        // without comparing it to the rows on the way down.
        let fresh = match self.added.first_entry() {
            Some(first) if first.key() == row => Some(first.remove()),
            _ => self.added.remove(row),
        };
        if let Some(fresh) = fresh {
            stored |= !fresh;
        }
        stored |= self.inflight_added.remove(row);
        if self.ahead.front() == Some(row) {
            self.ahead.pop_front();
            stored = true;
        }
        if stored {
            self.deleted.insert(row.clone());
        }
        self.len -= 1;
        self.head = None;
    }

    /// Puts the changes since the last hand-over into `part`'s batch; they
    /// stay visible here until [`Index::landed`].
    pub fn hand_over(&mut self, part: &mut impl Batch) -> anyhow::Result<()> {
        debug_assert!(self.inflight_added.is_empty() && self.inflight_deleted.is_empty());
        let mut row = Vec::new();
        for r in self.added.keys() {
            r.encode_into(&mut row);
            part.put(&row, &[])?;
        }
        for r in &self.deleted {
            r.encode_into(&mut row);
            part.delete(&row)?;
        }
        self.inflight_added = std::mem::take(&mut self.added).into_keys().collect();
        self.inflight_deleted = std::mem::take(&mut self.deleted);
        Ok(())
    }

    /// The batch handed over is in RocksDB: reading starts again from the
    /// first row it or the read-ahead held.
    pub fn landed(&mut self) {
        let lowest = [self.inflight_added.first(), self.ahead.front()]
            .into_iter()
            .flatten()
            .min()
            .map(R::encode);
        if let Some(lowest) = lowest {
            let before = match &self.resume {
                Bound::Unbounded => false,
                Bound::Included(at) | Bound::Excluded(at) => *lowest <= **at,
            };
            if before {
                self.resume = Bound::Included(lowest.into_boxed_slice());
            }
        }
        self.inflight_added.clear();
        self.inflight_deleted.clear();
        self.ahead.clear();
        self.read_all = false;
        // The head may have come from what was just cleared: a pop finds
        // its row where a fresh look put it.
        self.head = None;
    }

    /// Makes `ahead`'s front the first row RocksDB has that is not gone,
    /// reading more when needed.
    fn read_ahead(&mut self, db: &impl Rows) -> anyhow::Result<()> {
        loop {
            while let Some(front) = self.ahead.front() {
                if !self.deleted.contains(front) && !self.inflight_deleted.contains(front) {
                    return Ok(());
                }
                self.ahead.pop_front();
            }
            if self.read_all {
                return Ok(());
            }
            let rows = db.rows(R::KIND, self.resume.as_ref().map(|r| &**r), READ_AHEAD)?;
            self.read_all = rows.len() < READ_AHEAD;
            for row in &rows {
                self.ahead.push_back(R::decode(row)?);
            }
            if let Some(last) = rows.into_iter().last() {
                self.resume = Bound::Excluded(last);
            }
        }
    }
}

#[cfg(test)]
mod tests;
