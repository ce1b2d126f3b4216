//! Keyed state in RocksDB: one column family per partition (so a partition
//! can be checkpointed and moved on its own), all sharing one block cache
//! that also bounds the memtables, sized from the job's memory budget.
//!
//! Each row is one key's [`KeyState`]: its open and recently fired windows.
//! The write-ahead log is off: durability comes from checkpoints, and a
//! processor starts from an empty directory or a restored checkpoint.

mod keystate;

use std::path::{Path, PathBuf};

use anyhow::Context;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, IteratorMode, Options,
    WriteBatch, WriteBufferManager, WriteOptions, DB,
};

pub use keystate::{KeyState, WindowEntry};

/// Share of the memory budget RocksDB gets (block cache with memtables
/// charged to it); the rest is the in-memory pre-aggregation cache.
pub const ROCKSDB_SHARE: f64 = 0.5;

pub struct StateStore {
    db: DB,
    dir: PathBuf,
    partitions: Vec<u32>,
    write: WriteOptions,
    _cache: Cache,
    _buffers: WriteBufferManager,
}

fn cf_name(partition: u32) -> String {
    format!("p{partition}")
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
        let mut cf_opts = Options::default();
        cf_opts.set_block_based_table_factory(&table);
        cf_opts.set_compression_type(DBCompressionType::Lz4);
        cf_opts.set_write_buffer_size((rocks_bytes / 4 / partitions.len().max(1)).max(1 << 20));
        let mut db_opts = cf_opts.clone();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_write_buffer_manager(&buffers);
        db_opts.set_max_open_files(256);
        db_opts.increase_parallelism(2);
        let cfs = partitions
            .iter()
            .map(|p| ColumnFamilyDescriptor::new(cf_name(*p), cf_opts.clone()));
        let db = DB::open_cf_descriptors(&db_opts, dir, cfs)
            .with_context(|| format!("opening RocksDB in {}", dir.display()))?;
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        Ok(Self {
            db,
            dir: dir.to_path_buf(),
            partitions: partitions.to_vec(),
            write,
            _cache: cache,
            _buffers: buffers,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn partitions(&self) -> &[u32] {
        &self.partitions
    }

    fn cf(&self, partition: u32) -> anyhow::Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(&cf_name(partition))
            .with_context(|| format!("partition {partition} is not in this store"))
    }

    /// One key's state.
    pub fn get(&self, partition: u32, key: &str) -> anyhow::Result<Option<KeyState>> {
        let cf = self.cf(partition)?;
        match self.db.get_pinned_cf(cf, key.as_bytes())? {
            Some(bytes) => Ok(Some(KeyState::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Writes a batch of key states; `None` deletes the key.
    pub fn write<'a>(
        &self,
        updates: impl IntoIterator<Item = (u32, &'a str, Option<&'a KeyState>)>,
    ) -> anyhow::Result<()> {
        let mut batch = WriteBatch::default();
        for (partition, key, state) in updates {
            let cf = self.cf(partition)?;
            match state {
                Some(state) => batch.put_cf(cf, key.as_bytes(), state.encode()?),
                None => batch.delete_cf(cf, key.as_bytes()),
            }
        }
        self.db.write_opt(batch, &self.write)?;
        Ok(())
    }

    /// Every key and state of a partition, in key order.
    pub fn scan(&self, partition: u32) -> anyhow::Result<Vec<(String, KeyState)>> {
        let cf = self.cf(partition)?;
        let mut rows = Vec::new();
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
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
        let cf = self.cf(partition)?;
        let mut total = 0;
        for property in [
            "rocksdb.estimate-live-data-size",
            "rocksdb.cur-size-all-mem-tables",
        ] {
            total += self.db.property_int_value_cf(cf, property)?.unwrap_or(0);
        }
        Ok(total)
    }

    /// Flushes memtables to SST files (so sizes on disk are current).
    pub fn flush_memtables(&self) -> anyhow::Result<()> {
        for p in &self.partitions {
            self.db.flush_cf(self.cf(*p)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
