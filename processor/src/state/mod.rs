//! Keyed state in RocksDB: one instance per partition, in `<dir>/p<n>`, so a
//! partition can be checkpointed, moved and restored on its own; all share
//! one block cache that also bounds their memtables, sized from the job's
//! memory budget.
//!
//! Each row is one key's [`KeyState`]: its open and recently fired windows.
//! The write-ahead log is off: durability comes from checkpoints, and a
//! processor starts from an empty directory or a restored checkpoint.

mod keystate;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::Context;
use rocksdb::{
    BlockBasedOptions, Cache, DBCompressionType, IteratorMode, Options, WriteBatch,
    WriteBufferManager, WriteOptions, DB,
};

pub use keystate::{KeyState, WindowEntry};

/// Share of the memory budget RocksDB gets (block cache with memtables
/// charged to it); the rest is the in-memory pre-aggregation cache.
pub const ROCKSDB_SHARE: f64 = 0.5;

pub struct StateStore {
    dbs: BTreeMap<u32, DB>,
    dir: PathBuf,
    options: Options,
    write: WriteOptions,
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
        let mut options = Options::default();
        options.set_block_based_table_factory(&table);
        options.set_compression_type(DBCompressionType::Lz4);
        options.set_write_buffer_size((rocks_bytes / 4 / partitions.len().max(1)).max(1 << 20));
        options.create_if_missing(true);
        options.set_write_buffer_manager(&buffers);
        options.set_max_open_files(64);
        options.increase_parallelism(2);
        // Checkpoints flush every partition's memtable at once: one flush
        // thread per partition (up to 8) lets them run side by side.
        let mut env = rocksdb::Env::new()?;
        env.set_high_priority_background_threads(partitions.len().clamp(1, 8) as i32);
        options.set_env(&env);
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        let mut store = Self {
            dbs: BTreeMap::new(),
            dir: dir.to_path_buf(),
            options,
            write,
            _cache: cache,
            _buffers: buffers,
        };
        for p in partitions {
            store.open_partition(*p)?;
        }
        Ok(store)
    }

    /// Opens (creating) one partition's instance in its directory, which may
    /// hold a restored checkpoint.
    pub fn open_partition(&mut self, partition: u32) -> anyhow::Result<()> {
        let path = partition_dir(&self.dir, partition);
        let db = DB::open(&self.options, &path)
            .with_context(|| format!("opening RocksDB in {}", path.display()))?;
        self.dbs.insert(partition, db);
        Ok(())
    }

    /// Closes one partition's instance (before replacing its files).
    pub fn close_partition(&mut self, partition: u32) {
        self.dbs.remove(&partition);
    }

    /// One partition's RocksDB instance.
    pub fn db(&self, partition: u32) -> anyhow::Result<&DB> {
        self.dbs
            .get(&partition)
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
        let mut batches: BTreeMap<u32, WriteBatch> = BTreeMap::new();
        for (partition, key, state) in updates {
            let batch = batches.entry(partition).or_default();
            match state {
                Some(state) => batch.put(key.as_bytes(), state.encode()?),
                None => batch.delete(key.as_bytes()),
            }
        }
        for (partition, batch) in batches {
            self.db(partition)?.write_opt(batch, &self.write)?;
        }
        Ok(())
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
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
