//! The manifest of a partition's checkpoint, and the pure decisions made
//! from manifests: which files to upload, which checkpoint to restore, what
//! retention deletes.
//!
//! Store layout under the job's prefix, per partition:
//!
//! ```text
//! p<n>/files/<local name>.<xxh3-128 of content>   content-addressed state files
//! p<n>/checkpoints/<id, 20 digits>.json           manifests, written last
//! ```
//!
//! Files are content-addressed, so a file already in the store (from an
//! earlier checkpoint of the partition) is never uploaded again, and two
//! checkpoints can never disagree about a key's content. A checkpoint exists
//! only once its manifest is written; writes never overwrite a manifest.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Version of the state format in checkpoints this processor writes: 2 has
/// the engine's timers in the state (a `timers` column family) and a TTL
/// check in each key's row.
pub const ENGINE_VERSION: u32 = 2;

/// Versions this processor restores: version 1 has no timers (they are
/// rebuilt from the windows on restore) and shorter key rows.
pub fn restorable(engine_version: u32) -> bool {
    (1..=ENGINE_VERSION).contains(&engine_version)
}

/// One file of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Name in the RocksDB directory (`000012.sst`, `CURRENT`, ...).
    pub name: String,
    /// Key in the store, relative to the partition's prefix.
    pub key: String,
    pub size: u64,
    /// xxh3-128 of the content, hex.
    pub checksum: String,
}

/// Where a source was in a partition at the checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum SourcePosition {
    /// Events the generator had produced.
    Generator { produced: u64 },
    /// Byte offset and line reached in each source file, and the file read
    /// next (files are read in turns).
    File {
        offsets: Vec<(u64, u64)>,
        #[serde(default)]
        turn: usize,
    },
    /// The next offset to read in each Kafka partition.
    Kafka { offsets: Vec<(i32, i64)> },
    /// Events taken from HTTP ingest (by sequence number).
    Http { taken: u64 },
}

/// A partition's checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub id: u64,
    pub job: String,
    pub partition: u32,
    /// When the checkpoint was taken (RFC 3339).
    pub created_at: String,
    pub engine_version: u32,
    pub files: Vec<FileEntry>,
    pub source: SourcePosition,
    /// The partition's largest event time seen (its watermark's basis).
    pub max_event_time: Option<i64>,
    /// The processor's watermark at the checkpoint: a restore never goes
    /// below it (an event late before a crash stays late after it).
    #[serde(default)]
    pub watermark: Option<i64>,
    /// In the merge stage of a two-phase job: the last mark of each first
    /// stage partition (an ended one sends none again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origin_marks: Vec<crate::partials::Mark>,
    /// Byte length of each file sink at the checkpoint, by path: a restore
    /// truncates them there, so results are written exactly once.
    pub sink_lengths: BTreeMap<String, u64>,
    /// Bytes of new files uploaded for this checkpoint.
    pub bytes_uploaded: u64,
    /// The state epoch it belongs to: a job started over (`upgradeMode:
    /// stateless`) gets a new epoch and restores only checkpoints of it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: u64,
    /// The version of the partition assignment its processor ran under (0
    /// outside a cluster): a processor started on an older one must not
    /// run the partition (see `placement`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub assignment: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Manifest {
    pub fn bytes_total(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// The store key of a manifest, relative to the partition's prefix.
pub fn manifest_key(id: u64) -> String {
    format!("checkpoints/{id:020}.json")
}

/// The id in a manifest key, if it is one.
pub fn manifest_id(key: &str) -> Option<u64> {
    key.strip_prefix("checkpoints/")?
        .strip_suffix(".json")?
        .parse()
        .ok()
}

/// The content-addressed store key of a file.
pub fn file_key(name: &str, checksum: &str) -> String {
    format!("files/{name}.{checksum}")
}

/// Files a checkpoint must upload: those whose key is not in the store.
pub fn to_upload<'a>(files: &'a [FileEntry], in_store: &BTreeSet<String>) -> Vec<&'a FileEntry> {
    files
        .iter()
        .filter(|f| !in_store.contains(&f.key))
        .collect()
}

/// What retention removes: manifests beyond the newest `retain` other than
/// `also_keep` (the checkpoint a Kafka transaction committed last), and files
/// no kept manifest (nor an in-flight checkpoint) references.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Retention {
    pub manifests: Vec<String>,
    pub files: Vec<String>,
}

pub fn retention(
    manifests: &[Manifest],
    files_in_store: &BTreeSet<String>,
    retain: usize,
    also_keep: Option<u64>,
    in_flight: &BTreeSet<String>,
) -> Retention {
    let mut ids: Vec<u64> = manifests.iter().map(|m| m.id).collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    let mut kept: BTreeSet<u64> = ids.iter().take(retain.max(1)).copied().collect();
    kept.extend(also_keep.filter(|k| ids.contains(k)));
    let referenced: BTreeSet<&str> = manifests
        .iter()
        .filter(|m| kept.contains(&m.id))
        .flat_map(|m| m.files.iter().map(|f| f.key.as_str()))
        .collect();
    Retention {
        manifests: ids
            .iter()
            .filter(|id| !kept.contains(id))
            .map(|id| manifest_key(*id))
            .collect(),
        files: files_in_store
            .iter()
            .filter(|k| !referenced.contains(k.as_str()) && !in_flight.contains(*k))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, sum: &str) -> FileEntry {
        FileEntry {
            name: name.into(),
            key: file_key(name, sum),
            size: 10,
            checksum: sum.into(),
        }
    }

    fn manifest(id: u64, files: Vec<FileEntry>) -> Manifest {
        Manifest {
            id,
            job: "j".into(),
            partition: 0,
            created_at: "2026-01-01T00:00:00Z".into(),
            engine_version: ENGINE_VERSION,
            files,
            source: SourcePosition::Generator { produced: 0 },
            max_event_time: None,
            watermark: None,
            origin_marks: Vec::new(),
            sink_lengths: BTreeMap::new(),
            bytes_uploaded: 0,
            epoch: 0,
            assignment: 0,
        }
    }

    #[test]
    fn manifest_keys_sort_by_id_and_parse_back() {
        assert_eq!(manifest_key(42), "checkpoints/00000000000000000042.json");
        assert_eq!(manifest_id(&manifest_key(42)), Some(42));
        assert_eq!(manifest_id("files/CURRENT.ab"), None);
        assert!(manifest_key(9) < manifest_key(10));
    }

    #[test]
    fn only_files_missing_from_the_store_are_uploaded() {
        let files = vec![
            file("1.sst", "aa"),
            file("2.sst", "bb"),
            file("CURRENT", "cc"),
        ];
        let in_store: BTreeSet<String> = [file_key("1.sst", "aa")].into_iter().collect();
        let names: Vec<&str> = to_upload(&files, &in_store)
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(names, vec!["2.sst", "CURRENT"]);
    }

    #[test]
    fn retention_keeps_the_newest_and_every_file_they_reference() {
        let m1 = manifest(1, vec![file("1.sst", "a"), file("M", "m1")]);
        let m2 = manifest(
            2,
            vec![file("1.sst", "a"), file("2.sst", "b"), file("M", "m2")],
        );
        let m3 = manifest(
            3,
            vec![file("2.sst", "b"), file("3.sst", "c"), file("M", "m3")],
        );
        let store: BTreeSet<String> = [
            file_key("1.sst", "a"),
            file_key("2.sst", "b"),
            file_key("3.sst", "c"),
            file_key("M", "m1"),
            file_key("M", "m2"),
            file_key("M", "m3"),
            file_key("4.sst", "d"), // uploaded by a checkpoint still in flight
            file_key("9.sst", "z"), // left by an abandoned checkpoint
        ]
        .into_iter()
        .collect();
        let in_flight: BTreeSet<String> = [file_key("4.sst", "d")].into_iter().collect();
        let r = retention(&[m1, m2, m3], &store, 2, None, &in_flight);
        assert_eq!(r.manifests, vec![manifest_key(1)]);
        assert_eq!(r.files, vec![file_key("9.sst", "z"), file_key("M", "m1")]);
    }

    #[test]
    fn retention_also_keeps_the_committed_checkpoint() {
        let ms: Vec<Manifest> = (1..=5)
            .map(|id| manifest(id, vec![file("M", &format!("m{id}"))]))
            .collect();
        let store: BTreeSet<String> = (1..=5).map(|id| file_key("M", &format!("m{id}"))).collect();
        let r = retention(&ms, &store, 1, Some(2), &BTreeSet::new());
        assert_eq!(
            r.manifests,
            vec![manifest_key(4), manifest_key(3), manifest_key(1)]
        );
        assert_eq!(
            r.files,
            vec![
                file_key("M", "m1"),
                file_key("M", "m3"),
                file_key("M", "m4")
            ]
        );
        let r = retention(&ms, &store, 2, Some(5), &BTreeSet::new());
        assert_eq!(r.manifests.len(), 3, "the newest two are kept either way");
    }
}
