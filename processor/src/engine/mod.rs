//! The event-time engine: assigns events to keyed windows, keeps their
//! aggregates in RocksDB behind an in-memory write-back cache, tracks
//! per-partition watermarks, fires windows when the watermark passes their
//! end, revises them for late events within the allowed lateness, and
//! deletes their state afterwards. Synchronous and deterministic: the same
//! events in the same order give the same results in the same order.

pub mod advice;
pub mod aggregate;
mod config;
pub mod hotkeys;
mod merge;
mod partitions;
mod process;
mod sample;
pub mod session;
pub mod skew;
pub mod stats;
mod timers;
pub mod watermark;
pub mod window;

use std::collections::BTreeMap;

use compact_str::CompactString;
use hashbrown::hash_map::EntryRef;

use eddy_api::spec::CalendarUnit;

use serde_json::Value;

pub use self::config::{EngineConfig, WindowKind};
use self::{
    stats::PartitionStats,
    timers::Timers,
    watermark::Watermarks,
    window::{Assigner, Window},
};
use crate::{
    event::Invalid,
    state::{KeyState, Landing, PartWrite, StateStore, WritesBehind},
    FastMap,
};

/// What happened to one event.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// It updated at least one window.
    Accepted,
    /// Every window it belongs to is past the allowed lateness:
    /// `lateness_ms` is how far behind the watermark its time was.
    Late {
        lateness_ms: i64,
        watermark: i64,
    },
    Invalid(Invalid),
    /// The merge stage: a partial for a window already closed, which its
    /// origin had closed too (its mark had passed the window's lateness):
    /// sent again by an origin restarted from a checkpoint, merged when it
    /// first came. Dropped and counted, neither late nor invalid.
    Replayed,
}

/// A result: one revision of a key's window.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowResult {
    pub partition: u32,
    /// Inline when short (most keys): no allocation per result.
    pub key: CompactString,
    pub window: Window,
    /// The aggregates' values, in the order of the job's aggregations
    /// ([`EngineConfig::aggregates`] has their names): a result does not
    /// carry the names, which every result of a job shares.
    pub aggregates: AggregateValues,
    /// 1 for the first result of the window, higher for each revision.
    pub revision: u32,
    /// No further revision of this result will follow.
    pub is_final: bool,
    /// In the first stage of a two-phase job: the window's accumulators,
    /// encoded as the state encodes them (what the second stage merges).
    pub partial: Option<Vec<u8>>,
}

/// A result's aggregate values, inline for up to two.
pub type AggregateValues = smallvec::SmallVec<[Value; 2]>;

/// Counters over all partitions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineCounters {
    /// Windows dropped by the state TTL before they could fire.
    pub expired_windows: u64,
    /// Write-backs of the cache to RocksDB.
    pub flushes: u64,
}

/// A key's state held in memory.
struct Cached {
    state: KeyState,
    dirty: bool,
    /// Looked up again since it was cached or last survived an eviction.
    used: bool,
}

pub struct Engine {
    config: EngineConfig,
    store: StateStore,
    /// Partition number → slot in `stats` and the watermarks.
    slots: partitions::Slots,
    /// Per slot: keys held in memory.
    cache: Vec<FastMap<CompactString, Cached>>,
    cached_keys: usize,
    timers: Timers,
    watermarks: Watermarks,
    stats: Vec<PartitionStats>,
    counters: EngineCounters,
    /// Source clock: the latest ingestion time seen (ms).
    clock: i64,
    /// TTL deadlines count from no earlier than this (the first clock after
    /// a restore).
    ttl_floor: i64,
    ttl_floor_pending: bool,
    events_since_flush: u64,
    /// Steps since the timers' changes were last counted.
    steps_since_bound: u32,
    scratch: Vec<Window>,
    /// A checkpoint is writing the changes handed to it: nothing is
    /// written to RocksDB until it lands.
    held: Option<Landing>,
    /// Counts this engine's write-backs in flight (with those of the
    /// processor's other engines, once shared).
    writes_behind: WritesBehind,
    /// In the merge stage of a two-phase job: the origins' watermarks,
    /// which decide instead of `watermarks`.
    marks: Option<merge::OriginMarks>,
}

/// The stable partition of a key: xxh3 of its bytes modulo the partition
/// count. Never changes across versions or runs.
pub fn partition_of(key: &str, partitions: u32) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % u64::from(partitions.max(1))) as u32
}

impl Engine {
    /// An engine over an empty store.
    pub fn new(config: EngineConfig, store: StateStore) -> Self {
        let slots = config
            .partitions
            .iter()
            .enumerate()
            .map(|(slot, p)| (*p, slot))
            .collect();
        let stats = config
            .partitions
            .iter()
            .map(|p| PartitionStats::new(*p, config.top_k, config.hot_key_span_ms))
            .collect();
        let marks = match config.stage {
            crate::partials::Stage::Merge { origins } => {
                Some(merge::OriginMarks::new(config.partitions.len(), origins))
            }
            _ => None,
        };
        Self {
            marks,
            watermarks: Watermarks::new(
                config.partitions.len(),
                config.max_out_of_orderness_ms,
                config.idle_timeout_ms,
            ),
            slots,
            cache: (0..config.partitions.len())
                .map(|_| FastMap::default())
                .collect(),
            cached_keys: 0,
            timers: Timers::new(&config.partitions),
            stats,
            counters: EngineCounters::default(),
            clock: i64::MIN,
            ttl_floor: i64::MIN,
            ttl_floor_pending: false,
            events_since_flush: 0,
            steps_since_bound: 0,
            scratch: Vec::new(),
            held: None,
            writes_behind: WritesBehind::default(),
            store,
            config,
        }
    }

    /// Counts this engine's write-backs in flight in `writes`.
    pub fn count_writes_behind(&mut self, writes: &WritesBehind) {
        self.writes_behind = writes.clone();
    }

    /// Whether this engine owns `partition`.
    pub fn owns(&self, partition: u32) -> bool {
        self.slots.contains_key(&partition)
    }

    /// The processor watermark as of the last [`Engine::advance`].
    pub fn watermark(&self) -> i64 {
        match &self.marks {
            Some(m) => m.current(),
            None => self.watermarks.current(),
        }
    }

    /// A partition's own watermark.
    pub fn partition_watermark(&self, partition: u32) -> Option<i64> {
        let slot = *self.slots.get(&partition)?;
        Some(match &self.marks {
            Some(m) => m.of_slot(slot),
            None => self.watermarks.partition(slot),
        })
    }

    /// The watermark that decides for partition `slot`.
    fn deciding(&self, slot: usize) -> i64 {
        match &self.marks {
            Some(m) => m.of_slot(slot),
            None => self.watermarks.of_slot(slot),
        }
    }

    /// Windows waiting for the watermark.
    pub fn open_windows(&self) -> usize {
        self.timers.pending_fires()
    }

    /// Windows of `partition` waiting for the watermark.
    pub fn open_windows_in(&self, partition: u32) -> usize {
        self.slots
            .get(&partition)
            .map_or(0, |s| self.timers.pending_fires_in(*s))
    }

    /// Which out-of-orderness and allowed lateness would have kept 99% and
    /// 99.9% of the events of these engines (a processor's workers, which
    /// run the same job; see [`advice`]).
    pub fn advice<'a>(
        engines: impl IntoIterator<Item = &'a Engine> + Clone,
    ) -> Vec<advice::Advice> {
        const DAY: i64 = 86_400_000;
        let Some(first) = engines.clone().into_iter().next() else {
            return Vec::new();
        };
        let config = &first.config;
        let window_ms = match &config.windows {
            WindowKind::Fixed(Assigner::Tumbling { size } | Assigner::Sliding { size, .. }) => {
                *size
            }
            WindowKind::Fixed(Assigner::Calendar { unit, .. }) => match unit {
                CalendarUnit::Day => DAY,
                CalendarUnit::Week => 7 * DAY,
                CalendarUnit::Month => 30 * DAY,
            },
            WindowKind::Session { gap, .. } => *gap,
        };
        let setting = advice::Setting {
            out_of_orderness_ms: config.max_out_of_orderness_ms,
            allowed_lateness_ms: config.allowed_lateness_ms,
            window_ms,
            open_windows: engines
                .clone()
                .into_iter()
                .map(|e| e.open_windows() as u64)
                .sum(),
        };
        advice::advise(
            engines
                .into_iter()
                .flat_map(|e| e.stats.iter().map(|s| s.delays())),
            setting,
        )
    }

    pub fn stats(&self) -> &[PartitionStats] {
        &self.stats
    }

    pub fn counters(&self) -> &EngineCounters {
        &self.counters
    }

    pub fn store(&self) -> &StateStore {
        &self.store
    }

    /// Counts a record of `partition` that never reached a window.
    pub fn record_invalid(&mut self, partition: u32) {
        if let Some(slot) = self.slots.get(&partition) {
            self.stats[*slot].invalid += 1;
        }
    }

    /// Records skew between an event's time and its ingestion.
    pub fn record_skew(&mut self, partition: u32, time_ms: i64, ingest_ms: i64, clamped: bool) {
        if let Some(slot) = self.slots.get(&partition) {
            let s = &mut self.stats[*slot];
            s.record_skew(time_ms, ingest_ms);
            if clamped {
                s.skew.clamped += 1;
            }
        }
    }

    /// Counts an event rejected for clock skew.
    pub fn record_skew_rejected(&mut self, partition: u32, time_ms: i64, ingest_ms: i64) {
        if let Some(slot) = self.slots.get(&partition) {
            let s = &mut self.stats[*slot];
            s.record_skew(time_ms, ingest_ms);
            s.skew.rejected += 1;
            s.invalid += 1;
        }
    }

    /// The input of partition `partition` has ended.
    pub fn finish_partition(&mut self, partition: u32) {
        if let Some(slot) = self.slots.get(&partition) {
            self.watermarks.finish(*slot);
        }
    }

    /// After the store was restored from a checkpoint: takes the timers
    /// from it (or rebuilds them from its windows, for a checkpoint of
    /// engine version 1) and the watermarks from each partition's largest
    /// event time at the checkpoint. The engine's watermark starts at
    /// `watermark` (the lowest the partitions had); a partition that had
    /// another (`floors`: it ran elsewhere, or apart) goes on from its own
    /// until the two meet.
    pub fn restore(
        &mut self,
        max_event_times: &BTreeMap<u32, Option<i64>>,
        watermark: Option<i64>,
        floors: &BTreeMap<u32, Option<i64>>,
        origin_marks: &BTreeMap<u32, Vec<crate::partials::Mark>>,
    ) -> anyhow::Result<()> {
        for (slot, partition) in self.config.partitions.clone().into_iter().enumerate() {
            if !self.timers.restore(&self.store, slot)? {
                self.rebuild_timers(slot)?;
            }
            if let Some(Some(max)) = max_event_times.get(&partition) {
                self.watermarks.restore(slot, *max);
            }
        }
        // The watermark the checkpoint had, before the first record arrives,
        // and never below it: partition idleness is not in the checkpoint.
        if let Some(w) = watermark {
            self.watermarks.raise_to(w);
        }
        for (slot, partition) in self.config.partitions.iter().enumerate() {
            if let Some(Some(floor)) = floors.get(partition) {
                match &mut self.marks {
                    Some(m) => m.restore(slot, *floor),
                    None => self.watermarks.set_floor(slot, *floor),
                }
            }
            if let (Some(m), Some(marks)) = (&mut self.marks, origin_marks.get(partition)) {
                m.restore_marks(slot, marks);
            }
        }
        self.watermarks.advance(self.clock);
        // Downtime does not count against the state TTL.
        self.ttl_floor_pending = true;
        Ok(())
    }

    /// Timers for every window and key of a slot's store, which has none
    /// (it is new, or from engine version 1): written with the keys' TTL
    /// checks, a partition at a time.
    fn rebuild_timers(&mut self, slot: usize) -> anyhow::Result<()> {
        let partition = self.config.partitions[slot];
        let lateness = self.config.allowed_lateness_ms;
        let ttl = self.config.state_ttl_ms;
        let mut states = self.store.scan(partition)?;
        for (key, state) in &mut states {
            for entry in &state.windows {
                let w = entry.window;
                if entry.fired {
                    self.timers
                        .add_purge(w.end.saturating_add(lateness), slot, key, w);
                } else {
                    self.timers.add_fire(slot, key, w);
                }
            }
            let due = state.last_update_ms.saturating_add(ttl);
            state.ttl_check = Some(due);
            self.timers.add_ttl(slot, key, due);
        }
        let updates = states
            .iter()
            .map(|(key, state)| (partition, key.as_str(), Some(state)));
        let mut parts = self.store.encode(updates)?;
        self.timers.hand_over(&mut parts)?;
        for part in parts {
            part.write()?;
        }
        self.timers.landed();
        Ok(())
    }

    /// The watermark that decides for each partition (the engine's, or its
    /// own while apart), for a checkpoint.
    pub fn partition_floors(&self) -> BTreeMap<u32, Option<i64>> {
        self.config
            .partitions
            .iter()
            .enumerate()
            .map(|(slot, p)| (*p, Some(self.deciding(slot)).filter(|w| *w != i64::MIN)))
            .collect()
    }

    /// In the merge stage: each partition's marks of every origin, for a
    /// checkpoint (so a restore waits for no origin that already ended).
    pub fn origin_marks(&self) -> BTreeMap<u32, Vec<crate::partials::Mark>> {
        let Some(m) = &self.marks else {
            return BTreeMap::new();
        };
        self.config
            .partitions
            .iter()
            .enumerate()
            .map(|(slot, p)| (*p, m.snapshot(slot)))
            .collect()
    }

    /// The source clock (ms) as of the last event or move.
    pub fn clock(&self) -> i64 {
        self.clock
    }

    /// Each partition's largest event time, for a checkpoint.
    pub fn max_event_times(&self) -> BTreeMap<u32, Option<i64>> {
        self.config
            .partitions
            .iter()
            .enumerate()
            .map(|(slot, p)| (*p, self.watermarks.max_seen(slot)))
            .collect()
    }

    /// Writes every changed key and timer back to RocksDB.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        for part in self.take_changes()? {
            part.write()?;
        }
        self.timers.landed();
        Ok(())
    }

    /// Writes every changed key and timer back to RocksDB on a thread of
    /// its own, while events go on being processed: as a checkpoint does
    /// (see [`Engine::hand_over`]).
    fn write_back_behind(&mut self) -> anyhow::Result<()> {
        let (parts, landing) = self.hand_over()?;
        crate::state::write_behind(parts, landing, &self.writes_behind)
    }

    /// Hands every changed key over to a checkpoint (or a write-back),
    /// encoded, to be written off the processing thread. Until the returned [`Landing`]
    /// lands, the engine writes nothing to RocksDB: the keys handed over
    /// stay cached, and the cache may grow past its limit meanwhile.
    pub fn hand_over(&mut self) -> anyhow::Result<(Vec<PartWrite>, Landing)> {
        let parts = self.take_changes()?;
        let landing = Landing::default();
        self.held = Some(landing.clone());
        Ok((parts, landing))
    }

    /// The changed keys and timers, encoded per partition; they count as
    /// written.
    fn take_changes(&mut self) -> anyhow::Result<Vec<PartWrite>> {
        self.writable(true)?;
        let partitions = &self.config.partitions;
        let updates = self.cache.iter().enumerate().flat_map(|(slot, keys)| {
            keys.iter().filter(|(_, c)| c.dirty).map(move |(key, c)| {
                let state = (!c.state.windows.is_empty()).then_some(&c.state);
                (partitions[slot], key.as_str(), state)
            })
        });
        let mut parts = self.store.encode(updates)?;
        self.timers.hand_over(&mut parts)?;
        // Keys without windows stay cached too (until the cache is full):
        // they were just deleted from RocksDB, and most come back soon, which
        // would otherwise cost a lookup that finds nothing.
        for keys in &mut self.cache {
            keys.values_mut().for_each(|c| c.dirty = false);
        }
        self.events_since_flush = 0;
        self.counters.flushes += 1;
        Ok(parts)
    }

    /// Whether RocksDB may be written now (nothing handed over to a
    /// checkpoint or a write-back is being written); with `wait`, waits
    /// until it may. Changes handed over that could not be written are an
    /// error: that state is nowhere else.
    fn writable(&mut self, wait: bool) -> anyhow::Result<bool> {
        let Some(landing) = &self.held else {
            return Ok(true);
        };
        let outcome = if wait {
            Some(landing.wait())
        } else {
            landing.landed()
        };
        match outcome {
            None => Ok(false),
            Some(Ok(())) => {
                self.held = None;
                self.timers.landed();
                Ok(true)
            }
            Some(Err(e)) => anyhow::bail!("the state could not be written to RocksDB: {e}"),
        }
    }

    /// State size per partition in bytes, after writing the cache back.
    pub fn state_sizes(&mut self) -> anyhow::Result<Vec<(u32, u64)>> {
        self.flush()?;
        self.store.flush_memtables()?;
        self.config
            .partitions
            .iter()
            .map(|p| Ok((*p, self.store.size_bytes(*p)?)))
            .collect()
    }

    /// The key's state, loaded into the cache when needed (one lookup when
    /// it is cached); a full cache is written back and emptied first.
    fn state_mut(&mut self, slot: usize, key: &str) -> anyhow::Result<&mut Cached> {
        self.make_room(slot, key)?;
        let partition = self.config.partitions[slot];
        load(
            &mut self.cache[slot],
            &self.store,
            partition,
            key,
            &mut self.cached_keys,
        )
    }

    /// Before caching `key`: a full cache is written back and half of it
    /// evicted (unless a checkpoint or a write-back is writing: then it
    /// grows for a while). The write is done here, not behind: a cache
    /// that went on growing while it lands was larger, and so slower to
    /// hand to a checkpoint, and a checkpoint more often found one in
    /// flight (pauses up to 107 ms against 34 in a 4M-key run).
    fn make_room(&mut self, slot: usize, key: &str) -> anyhow::Result<()> {
        if self.cached_keys >= self.config.cache_keys
            && !self.cache[slot].contains_key(key)
            && self.writable(false)?
        {
            self.flush()?;
            self.evict();
        }
        Ok(())
    }

    /// Caches a key's state just read from the store, so that it is not
    /// read again.
    fn cache_read(&mut self, slot: usize, key: &str, state: KeyState) -> anyhow::Result<()> {
        self.make_room(slot, key)?;
        let cached = Cached {
            state,
            dirty: false,
            used: false,
        };
        self.cache[slot].insert(key.into(), cached);
        self.cached_keys += 1;
        Ok(())
    }

    /// Second chance, a cache at a time: keys looked up again since they
    /// were cached (or last kept) stay, up to half the cache, with their
    /// mark cleared; the others go. Every key is clean (just written).
    /// Each partition's table shrinks to what it keeps: the cache bounds
    /// the keys of all partitions together, and a table keeps its largest
    /// size otherwise, so that when partitions fill it in turn (windows
    /// firing partition by partition) every one of them would end up with
    /// room for the whole cache.
    fn evict(&mut self) {
        let keep = self.config.cache_keys / 2;
        let mut kept = 0;
        for keys in &mut self.cache {
            keys.retain(|_, c| {
                let stays = c.used && kept < keep;
                kept += usize::from(stays);
                c.used = false;
                stays
            });
            keys.shrink_to(0);
        }
        self.cached_keys = kept;
    }

    /// Steps between checks of how many timer changes memory holds: adding
    /// them up over every partition and kind on every step showed in
    /// profiles, and a few hundred steps add a few hundred changes at most.
    const BOUND_TIMERS_EVERY: u32 = 256;

    /// Writes back once the timers' changes held in memory reach four per
    /// key the cache may hold (unless a checkpoint is writing): a change
    /// takes well under a tenth of what a cached key is budgeted (1 KiB),
    /// and a new key makes two (its window's and its TTL check's).
    fn bound_timers(&mut self) -> anyhow::Result<()> {
        self.steps_since_bound += 1;
        if self.steps_since_bound < Self::BOUND_TIMERS_EVERY {
            return Ok(());
        }
        self.steps_since_bound = 0;
        if self.timers.changes() >= 4 * self.config.cache_keys && self.writable(false)? {
            self.write_back_behind()?;
        }
        Ok(())
    }
}

/// The key's cached state, read from the partition's store when it is not
/// cached (one hash lookup when it is).
fn load<'a>(
    cache: &'a mut FastMap<CompactString, Cached>,
    store: &StateStore,
    partition: u32,
    key: &str,
    cached_keys: &mut usize,
) -> anyhow::Result<&'a mut Cached> {
    match cache.entry_ref(key) {
        EntryRef::Occupied(cached) => {
            let cached = cached.into_mut();
            cached.used = true;
            Ok(cached)
        }
        EntryRef::Vacant(vacant) => {
            let state = store.get(partition, key)?.unwrap_or_default();
            *cached_keys += 1;
            Ok(vacant.insert(Cached {
                state,
                dirty: false,
                used: false,
            }))
        }
    }
}

impl Cached {
    /// An accepted event at `ingest_ms` touched the key: its TTL counts
    /// from here, and a key without a pending TTL check gets one.
    fn touch(&mut self, timers: &mut Timers, slot: usize, key: &str, ingest_ms: i64, ttl: i64) {
        self.state.last_update_ms = self.state.last_update_ms.max(ingest_ms);
        if self.state.ttl_check.is_none() {
            let due = ingest_ms.saturating_add(ttl);
            self.state.ttl_check = Some(due);
            timers.add_ttl(slot, key, due);
        }
    }
}

#[cfg(test)]
mod tests;
