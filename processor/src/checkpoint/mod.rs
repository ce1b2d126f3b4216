//! Incremental checkpoints of partition state to a [`Store`], and restore
//! that never trusts a partial one.
//!
//! Taking a checkpoint has a short synchronous part and background parts:
//!
//! 1. (processing paused) results are written, sinks flushed, and the
//!    engine hands its changed keys over, encoded. Source positions,
//!    watermarks and sink lengths are captured with them: together a
//!    consistent cut.
//! 2. [`Snapshot::take`] (processing goes on, but writes nothing to
//!    RocksDB until it is done): the changes are written to each
//!    partition's RocksDB instance, which then makes a checkpoint of hard
//!    links in a local directory. ([`snapshot`] does this part at once,
//!    for a store nothing else writes.)
//! 3. [`upload`] (processing goes on): each file is hashed; files the store
//!    lacks are uploaded (content-addressed, so only new files go up); then
//!    the manifest is written, last. Then retention deletes old manifests and
//!    files no kept manifest references.
//!
//! [`restore`] picks, per partition, the newest manifest whose files are all
//! present with the right size and checksum, downloads them and hands the
//! manifest back; anything missing or corrupt is logged, counted, and the
//! previous checkpoint is tried.

pub mod manifest;
pub(crate) mod restore;
pub mod store;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Read,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context;

use self::manifest::{
    file_key, manifest_id, manifest_key, restorable, retention, FileEntry, ENGINE_VERSION,
};
pub use self::{
    manifest::{Manifest, SourcePosition},
    store::Store,
};
use crate::state::{LandOnDrop, Landing, PartWrite, StateStore};

/// What the rest of the processor captures with a checkpoint.
#[derive(Clone, Debug)]
pub struct Cut {
    pub id: u64,
    pub job: String,
    pub source: SourcePosition,
    pub max_event_times: BTreeMap<u32, Option<i64>>,
    /// The processor's watermark: the lowest of `floors`.
    pub watermark: Option<i64>,
    /// The watermark that decided for each partition: the processor's, or
    /// its own while apart (see `engine::watermark`).
    pub floors: BTreeMap<u32, Option<i64>>,
    /// The merge stage of a two-phase job: each partition's marks of the
    /// first stage's partitions.
    pub origin_marks: BTreeMap<u32, Vec<crate::partials::Mark>>,
    pub sink_lengths: BTreeMap<String, u64>,
    /// The state epoch (see [`Manifest::epoch`]).
    pub epoch: u64,
    /// The assignment version (see [`Manifest::assignment`]).
    pub assignment: u64,
}

/// A checkpoint whose local part is done.
pub struct Pending {
    cut: Cut,
    /// Local checkpoint directory per partition.
    dirs: BTreeMap<u32, PathBuf>,
    root: PathBuf,
    started: Instant,
    /// How long processing stopped for it.
    sync_duration: Duration,
}

/// A completed checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completed {
    pub id: u64,
    pub created_at: String,
    /// How long processing stopped for it (the rest ran alongside).
    pub sync_duration: Duration,
    pub total_duration: Duration,
    pub bytes_uploaded: u64,
    pub bytes_total: u64,
}

/// The local part of a checkpoint, all at once: hard-link checkpoints of
/// every partition under `local_root/<id>/p<n>`. The caller has written
/// the engine's cache back and flushed its sinks.
pub fn snapshot(state: &StateStore, cut: Cut, local_root: &Path) -> anyhow::Result<Pending> {
    let started = Instant::now();
    let mut pending =
        Snapshot::new(cut, state.encode([])?, Vec::new(), local_root, started).take()?;
    // Nothing ran meanwhile: all of it was a pause.
    pending.sync_duration = started.elapsed();
    Ok(pending)
}

/// The local part of a checkpoint, ready to run off the run loop: write
/// the state changed since the last write-back into each partition, then
/// hard-link checkpoints of every partition under `local_root/<id>/p<n>`.
/// Until it is done the engine writes nothing to RocksDB, so the
/// checkpoint holds exactly the state at the cut.
pub struct Snapshot {
    cut: Cut,
    parts: Vec<PartWrite>,
    /// Where the engines (one per worker) learn that RocksDB is theirs
    /// again.
    landings: Vec<Landing>,
    root: PathBuf,
    started: Instant,
    /// How long processing stopped for this checkpoint.
    paused: Duration,
}

impl Snapshot {
    /// A snapshot of the cut whose processing pause began at `started`
    /// and ends now.
    pub fn new(
        cut: Cut,
        parts: Vec<PartWrite>,
        landings: Vec<Landing>,
        local_root: &Path,
        started: Instant,
    ) -> Self {
        Self {
            root: local_root.join(cut.id.to_string()),
            cut,
            parts,
            landings,
            started,
            paused: started.elapsed(),
        }
    }

    /// Writes and links every partition (blocking), then lands.
    pub fn take(mut self) -> anyhow::Result<Pending> {
        // Lands when this returns, even if a thread below panics.
        let mut landing = LandOnDrop::new(std::mem::take(&mut self.landings));
        let taken = self.link();
        landing.set(taken.as_ref().map(|_| ()).map_err(|e| format!("{e:#}")));
        taken
    }

    fn link(self) -> anyhow::Result<Pending> {
        let Self {
            cut,
            parts,
            root,
            started,
            paused,
            ..
        } = self;
        if root.exists() {
            std::fs::remove_dir_all(&root)?;
        }
        std::fs::create_dir_all(&root)?;
        // With the write-ahead log off, a checkpoint flushes the memtables
        // and syncs the new files: the partitions do that side by side, so
        // it takes the slowest partition's time, not the sum.
        let dirs = std::thread::scope(|scope| {
            let running: Vec<_> = parts
                .into_iter()
                .map(|part| {
                    let partition = part.partition;
                    let dir = root.join(format!("p{partition}"));
                    scope.spawn(move || -> anyhow::Result<(u32, PathBuf)> {
                        let db = part.write()?;
                        rocksdb::checkpoint::Checkpoint::new(&db)?
                            .create_checkpoint(&dir)
                            .with_context(|| format!("checkpointing partition {partition}"))?;
                        Ok((partition, dir))
                    })
                })
                .collect();
            running
                .into_iter()
                .map(|t| t.join().expect("a checkpoint thread panicked"))
                .collect::<anyhow::Result<BTreeMap<u32, PathBuf>>>()
        })?;
        Ok(Pending {
            cut,
            dirs,
            root,
            started,
            sync_duration: paused,
        })
    }
}

/// Per partition, a checkpoint retention keeps besides the newest ones: the
/// one a restart would restore it from (with a Kafka transaction, the one
/// its results were last committed with).
pub type AlsoKeep = BTreeMap<u32, u64>;

/// The background part: upload new files and the manifests, then apply
/// retention, which also keeps each partition's checkpoint in `also_keep`.
/// Removes the local checkpoint directory in any case.
pub async fn upload(
    pending: Pending,
    store: &Store,
    retain: usize,
    also_keep: &AlsoKeep,
) -> anyhow::Result<Completed> {
    let result = upload_inner(&pending, store, retain, also_keep).await;
    let _ = tokio::fs::remove_dir_all(&pending.root).await;
    result
}

async fn upload_inner(
    pending: &Pending,
    store: &Store,
    retain: usize,
    also_keep: &AlsoKeep,
) -> anyhow::Result<Completed> {
    let created_at = jiff::Timestamp::now().to_string();
    let (mut uploaded, mut total) = (0, 0);
    for (&partition, dir) in &pending.dirs {
        let part = partition_store(store, partition);
        let files = describe(dir).await?;
        let in_store: BTreeSet<String> = part
            .list("files")
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let missing: Vec<(String, PathBuf, u64)> = manifest::to_upload(&files, &in_store)
            .into_iter()
            .map(|f| (f.key.clone(), dir.join(&f.name), f.size))
            .collect();
        let bytes_uploaded = missing.iter().map(|(_, _, size)| size).sum();
        in_parallel(missing, |(key, path, _)| {
            let part = part.clone();
            async move { part.put_file(&key, &path).await }
        })
        .await?;
        let manifest = Manifest {
            id: pending.cut.id,
            job: pending.cut.job.clone(),
            partition,
            created_at: created_at.clone(),
            engine_version: ENGINE_VERSION,
            files,
            source: pending.cut.source.clone(),
            max_event_time: pending
                .cut
                .max_event_times
                .get(&partition)
                .copied()
                .flatten(),
            watermark: pending
                .cut
                .floors
                .get(&partition)
                .copied()
                .unwrap_or(pending.cut.watermark),
            origin_marks: pending
                .cut
                .origin_marks
                .get(&partition)
                .cloned()
                .unwrap_or_default(),
            sink_lengths: pending.cut.sink_lengths.clone(),
            bytes_uploaded,
            epoch: pending.cut.epoch,
            assignment: pending.cut.assignment,
        };
        part.put_new(
            &manifest_key(manifest.id),
            serde_json::to_vec_pretty(&manifest)?,
        )
        .await?;
        uploaded += bytes_uploaded;
        total += manifest.bytes_total();
    }
    // Retention only once every partition's manifest is written: a
    // checkpoint that failed half-way must not prune the older ones.
    for &partition in pending.dirs.keys() {
        let keep = also_keep.get(&partition).copied();
        collect_garbage(&partition_store(store, partition), retain, keep).await?;
    }
    Ok(Completed {
        id: pending.cut.id,
        created_at,
        sync_duration: pending.sync_duration,
        total_duration: pending.started.elapsed(),
        bytes_uploaded: uploaded,
        bytes_total: total,
    })
}

/// Names, sizes and checksums of the files in a local checkpoint directory.
async fn describe(dir: &Path) -> anyhow::Result<Vec<FileEntry>> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let (size, checksum) = checksum_file(&entry.path())?;
            files.push(FileEntry {
                key: file_key(&name, &checksum),
                name,
                size,
                checksum,
            });
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(files)
    })
    .await?
}

/// Size and xxh3-128 (hex) of a file.
pub fn checksum_file(path: &Path) -> anyhow::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0; 1 << 20];
    let mut size = 0;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, format!("{:032x}", hasher.digest128())))
}

/// The part of a job's store that holds one partition's checkpoints.
pub fn partition_store(store: &Store, partition: u32) -> Store {
    store.child(&format!("p{partition}"))
}

/// Keeps the newest `retain` manifests of a partition, manifest
/// `also_keep`, and the files they reference; deletes the rest.
pub async fn collect_garbage(
    part: &Store,
    retain: usize,
    also_keep: Option<u64>,
) -> anyhow::Result<()> {
    let (manifests, listed) = read_listed_manifests(part).await?;
    if manifests.len() != listed {
        // An unreadable manifest may reference files only it uses: keep
        // everything until it can be read (or is deleted by hand).
        tracing::warn!(
            "not collecting garbage: {} of {listed} manifests readable",
            manifests.len()
        );
        return Ok(());
    }
    let files: BTreeSet<String> = part
        .list("files")
        .await?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let plan = retention(&manifests, &files, retain, also_keep, &BTreeSet::new());
    part.delete(&plan.manifests).await?;
    part.delete(&plan.files).await?;
    Ok(())
}

/// Every readable manifest of a partition, newest first. Unreadable ones are
/// skipped with a warning (restore treats them as missing).
pub async fn read_manifests(part: &Store) -> anyhow::Result<Vec<Manifest>> {
    Ok(read_listed_manifests(part).await?.0)
}

/// The readable manifests, newest first, and how many are listed.
async fn read_listed_manifests(part: &Store) -> anyhow::Result<(Vec<Manifest>, usize)> {
    let ids = manifest_ids(part).await?;
    let listed = ids.len();
    let mut manifests = Vec::new();
    for id in ids {
        match part
            .get(&manifest_key(id))
            .await
            .map(|b| serde_json::from_slice::<Manifest>(&b))
        {
            Ok(Ok(m)) => manifests.push(m),
            Ok(Err(e)) => tracing::warn!("manifest {id} is unreadable: {e}"),
            Err(e) => tracing::warn!("manifest {id} could not be read: {e:#}"),
        }
    }
    Ok((manifests, listed))
}

/// The ids of a partition's listed manifests, newest first.
async fn manifest_ids(part: &Store) -> anyhow::Result<Vec<u64>> {
    let mut ids: Vec<u64> = part
        .list("checkpoints")
        .await?
        .iter()
        .filter_map(|(k, _)| manifest_id(k))
        .collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    Ok(ids)
}

/// What a restore of one partition did.
#[derive(Debug)]
pub struct Restored {
    pub manifest: Option<Manifest>,
    /// Checkpoints skipped because they were incomplete or corrupt, with why.
    pub rejected: Vec<(u64, String)>,
}

/// Which checkpoints a restore may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Select {
    /// None newer than this id.
    pub max_id: Option<u64>,
    /// Only of this state epoch; of any when `None`.
    pub epoch: Option<u64>,
}

impl Select {
    /// The newest of any epoch, at most `max_id`.
    pub fn at_most(max_id: Option<u64>) -> Self {
        Self {
            max_id,
            epoch: None,
        }
    }

    fn admits(&self, m: &Manifest) -> bool {
        self.max_id.is_none_or(|max| m.id <= max) && self.epoch.is_none_or(|e| m.epoch == e)
    }
}

/// Restores one partition into `target` (emptied first) from its newest
/// complete, verified checkpoint that `select` admits.
pub async fn restore(
    store: &Store,
    partition: u32,
    target: &Path,
    select: Select,
) -> anyhow::Result<Restored> {
    let part = partition_store(store, partition);
    let in_store: BTreeMap<String, u64> = part.list("files").await?.into_iter().collect();
    let mut rejected = Vec::new();
    for manifest in read_manifests(&part).await? {
        if !select.admits(&manifest) {
            continue;
        }
        if !restorable(manifest.engine_version) {
            rejected.push((
                manifest.id,
                format!(
                    "engine version {} is not one this processor reads (1 to {ENGINE_VERSION})",
                    manifest.engine_version
                ),
            ));
            continue;
        }
        match fetch(&part, &manifest, &in_store, target).await {
            Ok(()) => {
                return Ok(Restored {
                    manifest: Some(manifest),
                    rejected,
                })
            }
            Err(why) => {
                tracing::warn!("partition {partition}: checkpoint {} is unusable: {why:#}; trying an older one", manifest.id);
                rejected.push((manifest.id, format!("{why:#}")));
            }
        }
    }
    if target.exists() {
        std::fs::remove_dir_all(target)?;
    }
    Ok(Restored {
        manifest: None,
        rejected,
    })
}

/// Downloads and verifies every file of a manifest into `target`.
async fn fetch(
    part: &Store,
    manifest: &Manifest,
    in_store: &BTreeMap<String, u64>,
    target: &Path,
) -> anyhow::Result<()> {
    for f in &manifest.files {
        match in_store.get(&f.key) {
            None => anyhow::bail!("file {} ({}) is missing from the store", f.name, f.key),
            Some(size) if *size != f.size => {
                anyhow::bail!(
                    "file {} is {size} bytes in the store, {} in the manifest",
                    f.name,
                    f.size
                )
            }
            Some(_) => {}
        }
    }
    if target.exists() {
        std::fs::remove_dir_all(target)?;
    }
    std::fs::create_dir_all(target)?;
    in_parallel(manifest.files.clone(), |f| {
        let part = part.clone();
        let path = target.join(&f.name);
        async move {
            part.get_to_file(&f.key, &path).await?;
            let (size, checksum) =
                tokio::task::spawn_blocking(move || checksum_file(&path)).await??;
            if size != f.size || checksum != f.checksum {
                anyhow::bail!("file {} does not match its checksum (corrupt)", f.name);
            }
            Ok(())
        }
    })
    .await
}

/// Transfers at once, at most: enough to fill a link, few enough to be kind
/// to a shared object store.
const TRANSFERS: usize = 4;

/// Runs `f` on every item, at most [`TRANSFERS`] at a time, and returns the
/// first error. After an error no new item starts, but every running one is
/// waited for: a transfer must never outlive the call (its file operations
/// run on blocking threads that cancellation cannot stop, and a fallback
/// reuses the directory).
async fn in_parallel<T, F, Fut>(items: Vec<T>, f: F) -> anyhow::Result<()>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    fn record(
        first_error: &mut Option<anyhow::Error>,
        done: Result<anyhow::Result<()>, tokio::task::JoinError>,
    ) {
        if let Err(e) = done.map_err(anyhow::Error::from).and_then(|r| r) {
            first_error.get_or_insert(e);
        }
    }
    let mut running = tokio::task::JoinSet::new();
    let mut first_error = None;
    for item in items {
        while running.len() >= TRANSFERS {
            if let Some(done) = running.join_next().await {
                record(&mut first_error, done);
            }
        }
        if first_error.is_some() {
            break;
        }
        running.spawn(f(item));
    }
    while let Some(done) = running.join_next().await {
        record(&mut first_error, done);
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Deletes every checkpoint of these partitions of a job (its input ended,
/// or the job was deleted with `deleteOnJobDeletion`).
pub async fn clear(store: &Store, partitions: &[u32]) -> anyhow::Result<()> {
    for p in partitions {
        let part = partition_store(store, *p);
        let mut keys: Vec<String> = part
            .list("checkpoints")
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        keys.extend(part.list("files").await?.into_iter().map(|(k, _)| k));
        part.delete(&keys).await?;
    }
    Ok(())
}

/// Partitions with anything in the job's store (`p<N>` folders),
/// whatever the partition count is now.
pub async fn stored_partitions(store: &Store) -> anyhow::Result<Vec<u32>> {
    Ok(store
        .folders()
        .await?
        .iter()
        .filter_map(|name| name.strip_prefix('p')?.parse().ok())
        .collect())
}

/// Deletes every checkpoint of the job in any partition; answers the
/// partitions that had some.
pub async fn clear_job(store: &Store) -> anyhow::Result<Vec<u32>> {
    let partitions = stored_partitions(store).await?;
    clear(store, &partitions).await?;
    Ok(partitions)
}

/// The highest assignment version among the newest readable checkpoints of
/// `partitions`, with its partition (see [`Manifest::assignment`]).
pub async fn newest_assignment(
    store: &Store,
    partitions: &[u32],
) -> anyhow::Result<Option<(u32, u64)>> {
    let mut highest: Option<(u32, u64)> = None;
    for &p in partitions {
        let part = partition_store(store, p);
        for id in manifest_ids(&part).await? {
            let bytes = part.get(&manifest_key(id)).await?;
            if let Ok(m) = serde_json::from_slice::<Manifest>(&bytes) {
                if highest.is_none_or(|(_, v)| m.assignment > v) {
                    highest = Some((p, m.assignment));
                }
                break;
            }
        }
    }
    Ok(highest)
}

/// The next checkpoint id: one above the newest any partition of the job
/// has, so ids increase across restarts and processors.
pub async fn next_id(store: &Store, partitions: &[u32]) -> anyhow::Result<u64> {
    let mut newest = 0;
    for p in partitions {
        let part = partition_store(store, *p);
        for (key, _) in part.list("checkpoints").await? {
            newest = newest.max(manifest_id(&key).unwrap_or(0));
        }
    }
    Ok(newest + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_detect_any_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello world").unwrap();
        let (size, a) = checksum_file(&path).unwrap();
        assert_eq!(size, 11);
        std::fs::write(&path, b"hello worle").unwrap();
        let (_, b) = checksum_file(&path).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
    }
}
