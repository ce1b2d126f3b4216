//! Keyed state in RocksDB: one instance per partition, in `<dir>/p<n>`, so a
//! partition can be checkpointed, moved and restored on its own; all share
//! one block cache that also bounds their memtables, sized from the job's
//! memory budget.
//!
//! Each row of the default column family is one key's [`KeyState`]: its
//! open and recently fired windows. The `timers` column family holds the
//! engine's timers (when windows fire and are purged, when keys are checked
//! against the TTL), so that they, like the state, are bounded by the
//! memory budget rather than the key count, and are in every checkpoint.
//! The write-ahead log is off: durability comes from checkpoints, and a
//! processor starts from an empty directory or a restored checkpoint.

mod keystate;
mod landing;

use std::{
    collections::BTreeMap,
    ops::Bound,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context;
use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType,
    Direction, IteratorMode, Options, WriteBatch, WriteBufferManager, WriteOptions, DB,
};

pub use keystate::{KeyState, OriginSlot, WindowEntry, Windows};
pub use landing::{write_behind, LandOnDrop, Landing, WritesBehind};

/// Share of the memory budget RocksDB gets (block cache with memtables
/// charged to it); the rest is the in-memory pre-aggregation cache.
pub const ROCKSDB_SHARE: f64 = 0.5;

/// The column family of the engine's timers.
const TIMERS: &str = "timers";

pub struct StateStore {
    /// Shared with a checkpoint that writes and links them off the run loop.
    dbs: BTreeMap<u32, Arc<DB>>,
    dir: PathBuf,
    options: Options,
    _cache: Cache,
    _buffers: WriteBufferManager,
}

/// The directory of one partition's RocksDB instance.
pub fn partition_dir(dir: &Path, partition: u32) -> PathBuf {
    dir.join(format!("p{partition}"))
}

impl StateStore {
    /// Opens (creating) a store for `partitions` in `dir`, holding RocksDB's
    /// memory to its share of `memory_budget` bytes.
    pub fn open(dir: &Path, partitions: &[u32], memory_budget: u64) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating state directory {}", dir.display()))?;
        let rocks_bytes = ((memory_budget as f64 * ROCKSDB_SHARE) as usize).max(16 << 20);
        let cache = Cache::new_lru_cache(rocks_bytes);
        // Memtables of every partition count against the same cache.
        let buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
            rocks_bytes / 2,
            false,
            cache.clone(),
        );
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        // Index and filter blocks grow with the state (a bloom filter is
        // 10 bits a key): charged to the block cache, they stay within the
        // budget; level 0's are pinned there, as they are read most.
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        // Filters and indexes in partitions of a few KiB, with a small top
        // level pinned: once they outgrow the cache, a lookup reads the
        // partition it needs, not a whole file's filter (megabytes with
        // millions of keys; re-reading them was most of the time).
        table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
        table.set_partition_filters(true);
        table.set_metadata_block_size(4096);
        table.set_pin_top_level_index_and_filter(true);
        table.set_cache_index_and_filter_blocks_with_high_priority(true);
        let mut options = Options::default();
        options.set_block_based_table_factory(&table);
        options.set_compression_type(DBCompressionType::Lz4);
        options.set_write_buffer_size((rocks_bytes / 4 / partitions.len().max(1)).max(1 << 20));
        // A bloom filter over each memtable's keys (a tenth of its size,
        // inside it): a key that is not there, as most looked up are once
        // state outgrows the cache, costs a few hashes instead of a walk
        // down the skip list.
        options.set_memtable_prefix_bloom_ratio(0.1);
        options.set_memtable_whole_key_filtering(true);
        options.create_if_missing(true);
        // Checkpoints of earlier versions have no timers column family.
        options.create_missing_column_families(true);
        options.set_write_buffer_manager(&buffers);
        options.set_max_open_files(64);
        options.increase_parallelism(2);
        // Checkpoints flush every partition's memtable at once: one flush
        // thread per partition (up to 8) lets them run side by side.
        let mut env = rocksdb::Env::new()?;
        env.set_high_priority_background_threads(partitions.len().clamp(1, 8) as i32);
        options.set_env(&env);
        let mut store = Self {
            dbs: BTreeMap::new(),
            dir: dir.to_path_buf(),
            options,
            _cache: cache,
            _buffers: buffers,
        };
        for p in partitions {
            store.open_partition(*p)?;
        }
        Ok(store)
    }

    /// Splits the store into one per group of partitions (each partition in
    /// one group), all sharing its memory budget: the block cache and the
    /// memtable limit stay one for the whole processor.
    pub fn split(self, groups: &[Vec<u32>]) -> Vec<Self> {
        let Self {
            mut dbs,
            dir,
            options,
            _cache,
            _buffers,
        } = self;
        groups
            .iter()
            .map(|group| Self {
                dbs: group
                    .iter()
                    .filter_map(|p| dbs.remove(p).map(|db| (*p, db)))
                    .collect(),
                dir: dir.clone(),
                options: options.clone(),
                _cache: _cache.clone(),
                _buffers: _buffers.clone(),
            })
            .collect()
    }

    /// Opens (creating) one partition's instance in its directory, which may
    /// hold a restored checkpoint.
    pub fn open_partition(&mut self, partition: u32) -> anyhow::Result<()> {
        let path = partition_dir(&self.dir, partition);
        // Both column families named, each with the store's options: a
        // family left out is opened with RocksDB's defaults, which for the
        // keyed state meant a block cache of its own per partition (32 MiB
        // each, outside the budget) and no bloom filter.
        let families = [rocksdb::DEFAULT_COLUMN_FAMILY_NAME, TIMERS]
            .map(|name| ColumnFamilyDescriptor::new(name, self.options.clone()));
        let db = DB::open_cf_descriptors(&self.options, &path, families)
            .with_context(|| format!("opening RocksDB in {}", path.display()))?;
        self.dbs.insert(partition, Arc::new(db));
        Ok(())
    }

    /// Closes one partition's instance: it is closed once a checkpoint
    /// that still writes or links it lets it go too.
    pub fn close_partition(&mut self, partition: u32) -> Option<Arc<DB>> {
        self.dbs.remove(&partition)
    }

    /// One partition's RocksDB instance.
    pub fn db(&self, partition: u32) -> anyhow::Result<&DB> {
        self.dbs
            .get(&partition)
            .map(|db| &**db)
            .with_context(|| format!("partition {partition} is not in this store"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn partitions(&self) -> Vec<u32> {
        self.dbs.keys().copied().collect()
    }

    /// One key's state.
    pub fn get(&self, partition: u32, key: &str) -> anyhow::Result<Option<KeyState>> {
        match self.db(partition)?.get_pinned(key.as_bytes())? {
            Some(bytes) => Ok(Some(KeyState::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Writes a batch of key states; `None` deletes the key.
    pub fn write<'a>(
        &self,
        updates: impl IntoIterator<Item = (u32, &'a str, Option<&'a KeyState>)>,
    ) -> anyhow::Result<()> {
        for part in self.encode(updates)? {
            part.write()?;
        }
        Ok(())
    }

    /// Key states encoded into a write batch per partition (every
    /// partition of the store, changed or not), to be written later,
    /// possibly on another thread.
    pub fn encode<'a>(
        &self,
        updates: impl IntoIterator<Item = (u32, &'a str, Option<&'a KeyState>)>,
    ) -> anyhow::Result<Vec<PartWrite>> {
        let mut batches: BTreeMap<u32, WriteBatch> = BTreeMap::new();
        for (partition, key, state) in updates {
            let batch = batches.entry(partition).or_default();
            match state {
                Some(state) => batch.put(key.as_bytes(), state.encode()?),
                None => batch.delete(key.as_bytes()),
            }
        }
        Ok(self
            .dbs
            .iter()
            .map(|(partition, db)| PartWrite {
                partition: *partition,
                db: db.clone(),
                batch: batches.remove(partition).unwrap_or_default(),
            })
            .collect())
    }

    /// Up to `limit` timer rows of a partition in order, from `from`
    /// (inclusive or not) while they start with `kind`.
    pub fn timer_rows(
        &self,
        partition: u32,
        kind: u8,
        from: Bound<&[u8]>,
        limit: usize,
    ) -> anyhow::Result<Vec<Box<[u8]>>> {
        let db = self.db(partition)?;
        let start: &[u8] = match from {
            Bound::Included(row) | Bound::Excluded(row) => row,
            Bound::Unbounded => std::slice::from_ref(&kind),
        };
        let mut rows = Vec::new();
        let iter = db.iterator_cf(timers(db)?, IteratorMode::From(start, Direction::Forward));
        for item in iter {
            let (row, _) = item?;
            if row.first() != Some(&kind) || rows.len() >= limit {
                break;
            }
            if matches!(from, Bound::Excluded(after) if *row == *after) {
                continue;
            }
            rows.push(row);
        }
        Ok(rows)
    }

    /// Whether a partition holds a timer row.
    pub fn has_timer(&self, partition: u32, row: &[u8]) -> anyhow::Result<bool> {
        let db = self.db(partition)?;
        Ok(db.get_pinned_cf(timers(db)?, row)?.is_some())
    }

    /// A timer row's value.
    pub fn timer_value(&self, partition: u32, row: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        let db = self.db(partition)?;
        Ok(db.get_cf(timers(db)?, row)?)
    }

    /// Every key and state of a partition, in key order.
    pub fn scan(&self, partition: u32) -> anyhow::Result<Vec<(String, KeyState)>> {
        let mut rows = Vec::new();
        for item in self.db(partition)?.iterator(IteratorMode::Start) {
            let (key, value) = item?;
            rows.push((
                String::from_utf8_lossy(&key).into_owned(),
                KeyState::decode(&value)?,
            ));
        }
        Ok(rows)
    }

    /// Estimated bytes of state held for a partition (on disk and in
    /// memtables).
    pub fn size_bytes(&self, partition: u32) -> anyhow::Result<u64> {
        let db = self.db(partition)?;
        let mut total = 0;
        for property in [
            "rocksdb.estimate-live-data-size",
            "rocksdb.cur-size-all-mem-tables",
        ] {
            total += db.property_int_value(property)?.unwrap_or(0);
            total += db
                .property_int_value_cf(timers(db)?, property)?
                .unwrap_or(0);
        }
        Ok(total)
    }

    /// Estimated keys of a partition (RocksDB's estimate).
    pub fn estimated_keys(&self, partition: u32) -> anyhow::Result<u64> {
        Ok(self
            .db(partition)?
            .property_int_value("rocksdb.estimate-num-keys")?
            .unwrap_or(0))
    }

    /// Flushes memtables to SST files (so sizes on disk are current).
    pub fn flush_memtables(&self) -> anyhow::Result<()> {
        for db in self.dbs.values() {
            db.flush()?;
            db.flush_cf(timers(db)?)?;
        }
        Ok(())
    }
}

/// Changed key states of one partition, with its database, ready to be
/// written there from any thread.
pub struct PartWrite {
    pub partition: u32,
    pub db: Arc<DB>,
    batch: WriteBatch,
}

impl PartWrite {
    /// Adds a timer row (with its value) to the batch.
    pub fn put_timer(&mut self, row: &[u8], value: &[u8]) -> anyhow::Result<()> {
        self.batch.put_cf(timers(&self.db)?, row, value);
        Ok(())
    }

    /// Adds the deletion of a timer row to the batch.
    pub fn delete_timer(&mut self, row: &[u8]) -> anyhow::Result<()> {
        self.batch.delete_cf(timers(&self.db)?, row);
        Ok(())
    }

    /// Writes the batch (without the write-ahead log, like every write).
    pub fn write(self) -> anyhow::Result<Arc<DB>> {
        if !self.batch.is_empty() {
            let mut options = WriteOptions::default();
            options.disable_wal(true);
            self.db
                .write_opt(self.batch, &options)
                .with_context(|| format!("writing partition {}", self.partition))?;
        }
        Ok(self.db)
    }
}

/// A partition's timers column family.
fn timers(db: &DB) -> anyhow::Result<&rocksdb::ColumnFamily> {
    db.cf_handle(TIMERS)
        .context("the state has no timers column family")
}

#[cfg(test)]
mod tests;
