//! Partitions joining and leaving a running engine: a partition moved to
//! another processor is released here right after a checkpoint took its
//! state, and acquired there from that checkpoint, while the engine's
//! other partitions go on.

use super::{stats::PartitionStats, Engine};
use crate::FastMap;

impl Engine {
    /// Stops running `partition`: its slot, cached keys, timers held in
    /// memory, statistics and watermark go, and its RocksDB instance is
    /// closed (once a checkpoint writing it lets it go). Call it right
    /// after a checkpoint's hand-over, so nothing of it is only in memory:
    /// changes not handed over are an error, never dropped.
    pub fn release(&mut self, partition: u32) -> anyhow::Result<()> {
        let Some(&slot) = self.slots.get(&partition) else {
            anyhow::bail!("partition {partition} is not run here");
        };
        if self.cache[slot].values().any(|c| c.dirty) {
            anyhow::bail!(
                "partition {partition} has state changed since the last checkpoint: \
                 it is released only right after one"
            );
        }
        self.slots.remove(&partition);
        let last = self.config.partitions.len() - 1;
        self.config.partitions.swap_remove(slot);
        self.cached_keys -= self.cache.swap_remove(slot).len();
        self.stats.swap_remove(slot);
        self.watermarks.swap_remove(slot);
        if let Some(m) = &mut self.marks {
            m.swap_remove(slot);
        }
        self.timers.swap_remove(slot);
        if slot != last {
            self.slots.insert(self.config.partitions[slot], slot);
        }
        self.store.close_partition(partition);
        Ok(())
    }

    /// Starts running `partition`, whose RocksDB directory holds its
    /// restored checkpoint (or nothing, for a partition without one): its
    /// timers from there, its watermark from `max_event_time`, and `floor`,
    /// the watermark that decided for it where it ran: behind this
    /// engine's, it goes on from its own until it catches up, so its events
    /// are late here exactly when they would have been there; ahead, it
    /// never goes below it.
    pub fn acquire(
        &mut self,
        partition: u32,
        max_event_time: Option<i64>,
        floor: Option<i64>,
    ) -> anyhow::Result<()> {
        if self.slots.contains_key(&partition) {
            anyhow::bail!("partition {partition} is already run here");
        }
        // Timers rebuilt below are written at once: after the checkpoint
        // in flight has written what it was handed.
        self.writable(true)?;
        self.store.open_partition(partition)?;
        let slot = self.config.partitions.len();
        self.config.partitions.push(partition);
        self.slots.insert(partition, slot);
        self.cache.push(FastMap::default());
        self.stats.push(PartitionStats::new(
            partition,
            self.config.top_k,
            self.config.hot_key_span_ms,
        ));
        self.watermarks.push(self.clock);
        self.timers.push(partition);
        if !self.timers.restore(&self.store, slot)? {
            self.rebuild_timers(slot)?;
        }
        if let Some(max) = max_event_time {
            self.watermarks.restore(slot, max);
        }
        // Without one (it had no event yet), it starts behind: its events
        // are not late for having been read later than the others'.
        self.watermarks.set_floor(slot, floor.unwrap_or(i64::MIN));
        if let Some(m) = &mut self.marks {
            m.push();
            if let Some(floor) = floor {
                m.restore(slot, floor);
            }
        }
        Ok(())
    }

    /// A partition's largest event time and deciding watermark, as a
    /// checkpoint records them.
    pub fn marks_of(&self, partition: u32) -> Option<(Option<i64>, Option<i64>)> {
        let slot = *self.slots.get(&partition)?;
        let floor = Some(self.deciding(slot)).filter(|w| *w != i64::MIN);
        Some((self.watermarks.max_seen(slot), floor))
    }

    /// The partitions this engine runs.
    pub fn partitions(&self) -> &[u32] {
        &self.config.partitions
    }
}

/// Partition number to slot: a table indexed by the partition (partition
/// numbers are small), looked up for every event without hashing.
#[derive(Debug, Default)]
pub(super) struct Slots(Vec<Option<usize>>);

impl Slots {
    pub(super) fn get(&self, partition: &u32) -> Option<&usize> {
        self.0.get(*partition as usize)?.as_ref()
    }

    pub(super) fn contains_key(&self, partition: &u32) -> bool {
        self.get(partition).is_some()
    }

    pub(super) fn insert(&mut self, partition: u32, slot: usize) {
        let at = partition as usize;
        if self.0.len() <= at {
            self.0.resize(at + 1, None);
        }
        self.0[at] = Some(slot);
    }

    pub(super) fn remove(&mut self, partition: &u32) {
        if let Some(slot) = self.0.get_mut(*partition as usize) {
            *slot = None;
        }
    }
}

impl FromIterator<(u32, usize)> for Slots {
    fn from_iter<I: IntoIterator<Item = (u32, usize)>>(pairs: I) -> Self {
        let mut slots = Self::default();
        for (partition, slot) in pairs {
            slots.insert(partition, slot);
        }
        slots
    }
}
