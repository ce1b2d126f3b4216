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
    sync::{Arc, Condvar, Mutex},
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

    /// Opens (creating) one partition's instance in its directory, which may
    /// hold a restored checkpoint.
    pub fn open_partition(&mut self, partition: u32) -> anyhow::Result<()> {
        let path = partition_dir(&self.dir, partition);
        let db = DB::open(&self.options, &path)
            .with_context(|| format!("opening RocksDB in {}", path.display()))?;
        self.dbs.insert(partition, Arc::new(db));
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

/// Tells the engine that a checkpoint's writes have landed in RocksDB (or
/// failed): until then the engine writes nothing there, so the checkpoint
/// links exactly the state of its cut.
#[derive(Clone, Debug, Default)]
pub struct Landing(Arc<(Mutex<Outcome>, Condvar)>);

/// A checkpoint's writes: not landed yet, written, or failed (why).
type Outcome = Option<Result<(), String>>;

impl Landing {
    pub fn land(&self, outcome: Result<(), String>) {
        let (done, ready) = &*self.0;
        *done.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
        ready.notify_all();
    }

    /// The outcome, if it has landed.
    pub fn landed(&self) -> Option<Result<(), String>> {
        self.0 .0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits for the outcome.
    pub fn wait(&self) -> Result<(), String> {
        let (done, ready) = &*self.0;
        let mut done = done.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(outcome) = &*done {
                return outcome.clone();
            }
            done = ready.wait(done).unwrap_or_else(|e| e.into_inner());
        }
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

#[cfg(test)]
mod tests;
