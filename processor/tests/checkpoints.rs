//! Checkpoints against both stores: a local directory, and the real
//! S3-compatible server started by `scripts/test-servers`. Each behaviour is
//! written once and run on both.

use std::{collections::BTreeSet, path::Path};

use eddy_processor::{
    checkpoint::{self, store::S3Settings, Cut, Select, SourcePosition, Store},
    engine::{aggregate::Acc, window::Window},
    state::{KeyState, StateStore, WindowEntry},
};

fn file_store(dir: &Path) -> Store {
    Store::open(&format!("file://{}", dir.display()), "ns/job", None).unwrap()
}

fn s3_store() -> Store {
    let server = eddy_testkit::s3();
    let bucket = eddy_testkit::unique_name("ckpt");
    let settings = S3Settings {
        endpoint: Some(server.endpoint),
        region: "us-east-1".into(),
        path_style: true,
        access_key: server.access_key,
        secret_key: server.secret_key,
    };
    let store = Store::open(
        &format!("s3://{bucket}/checkpoints"),
        "ns/job",
        Some(settings),
    )
    .unwrap();
    if let Store::S3(s3) = &store {
        let client = s3.client().0.clone();
        let bucket = bucket.clone();
        futures_block(async move { client.create_bucket().bucket(bucket).send().await.unwrap() });
    }
    store
}

fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

fn key_state(i: u64, payload: usize) -> KeyState {
    KeyState {
        windows: vec![WindowEntry {
            window: Window {
                start: 0,
                end: 60_000,
            },
            accs: vec![Acc::Count(i)].into(),
            revision: 0,
            fired: false,
        }]
        .into(),
        last_update_ms: i as i64 + payload as i64,
        ttl_check: None,
        partials: Vec::new(),
    }
}

/// Writes `keys` keys (each with `pad` bytes of key text) to a partition.
fn fill(state: &StateStore, partition: u32, from: u64, keys: u64, pad: usize) {
    let names: Vec<String> = (from..from + keys).map(|i| format!("{i:0>pad$}")).collect();
    let states: Vec<KeyState> = (from..from + keys).map(|i| key_state(i, pad)).collect();
    state
        .write(
            names
                .iter()
                .zip(&states)
                .map(|(k, s)| (partition, k.as_str(), Some(s))),
        )
        .unwrap();
}

async fn checkpoint(
    state: &StateStore,
    store: &Store,
    local: &Path,
    id: u64,
    retain: usize,
) -> checkpoint::Completed {
    checkpoint_in_epoch(state, store, local, id, retain, 0).await
}

async fn checkpoint_in_epoch(
    state: &StateStore,
    store: &Store,
    local: &Path,
    id: u64,
    retain: usize,
    epoch: u64,
) -> checkpoint::Completed {
    let cut = Cut {
        id,
        job: "ns/job".into(),
        source: SourcePosition::Generator { produced: id * 100 },
        max_event_times: state
            .partitions()
            .iter()
            .map(|p| (*p, Some(id as i64)))
            .collect(),
        watermark: None,
        floors: Default::default(),
        origin_marks: Default::default(),
        sink_lengths: Default::default(),
        epoch,
        assignment: 0,
    };
    let pending = checkpoint::snapshot(state, cut, local).unwrap();
    checkpoint::upload(pending, store, retain, &Default::default())
        .await
        .unwrap()
}

fn count_keys(dir: &Path) -> usize {
    let db = rocksdb::DB::open_for_read_only(&rocksdb::Options::default(), dir, false).unwrap();
    db.iterator(rocksdb::IteratorMode::Start).count()
}

async fn incremental(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let state = StateStore::open(&dir.path().join("state"), &[0], 64 << 20).unwrap();
    fill(&state, 0, 0, 50_000, 40);
    let local = dir.path().join("local");
    let first = checkpoint(&state, &store, &local, 1, 3).await;
    assert!(first.bytes_total > 500_000, "{first:?}");
    assert_eq!(
        first.bytes_uploaded, first.bytes_total,
        "first checkpoint uploads everything"
    );
    fill(&state, 0, 1_000_000, 10, 40);
    let second = checkpoint(&state, &store, &local, 2, 3).await;
    assert!(
        second.bytes_uploaded * 20 < second.bytes_total,
        "a small change uploads far less than the state: {second:?}"
    );
    assert!(
        !local.join("2").exists(),
        "local hard links are removed after upload"
    );
    let target = dir.path().join("restored");
    let restored = checkpoint::restore(&store, 0, &target, Select::default())
        .await
        .unwrap();
    assert_eq!(restored.manifest.unwrap().id, 2);
    assert_eq!(count_keys(&target), 50_010);
}

/// Corrupts checkpoint 3 of partition 0 with `damage` and checks that restore
/// rejects it with `reason` and falls back to checkpoint 2.
async fn falls_back(store: Store, damage: &str) {
    let dir = tempfile::tempdir().unwrap();
    let state = StateStore::open(&dir.path().join("state"), &[0], 64 << 20).unwrap();
    let local = dir.path().join("local");
    for id in 1..=3 {
        fill(&state, 0, id * 1000, 1000, 20);
        checkpoint(&state, &store, &local, id, 5).await;
    }
    let part = store.child("p0");
    let manifests = checkpoint::read_manifests(&part).await.unwrap();
    let newest = &manifests[0];
    assert_eq!(newest.id, 3);
    let older: BTreeSet<&str> = manifests[1].files.iter().map(|f| f.key.as_str()).collect();
    // A file only the newest checkpoint has.
    let victim = newest
        .files
        .iter()
        .find(|f| !older.contains(f.key.as_str()) && f.size > 100)
        .unwrap();
    let expect_rejected = match damage {
        "manifest missing" => {
            part.delete(&["checkpoints/00000000000000000003.json".to_string()])
                .await
                .unwrap();
            None
        }
        "file missing" => {
            part.delete(std::slice::from_ref(&victim.key))
                .await
                .unwrap();
            Some("missing from the store")
        }
        "file truncated" => {
            let bytes = part.get(&victim.key).await.unwrap();
            part.delete(std::slice::from_ref(&victim.key))
                .await
                .unwrap();
            put(&part, &victim.key, bytes[..bytes.len() / 2].to_vec()).await;
            Some("bytes in the store")
        }
        "bytes flipped" => {
            let mut bytes = part.get(&victim.key).await.unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0xff;
            part.delete(std::slice::from_ref(&victim.key))
                .await
                .unwrap();
            put(&part, &victim.key, bytes).await;
            Some("does not match its checksum")
        }
        other => panic!("{other}"),
    };
    let target = dir.path().join("restored");
    let restored = checkpoint::restore(&store, 0, &target, Select::default())
        .await
        .unwrap();
    assert_eq!(
        restored.manifest.as_ref().unwrap().id,
        2,
        "{damage}: falls back to 2"
    );
    match expect_rejected {
        Some(reason) => {
            assert_eq!(restored.rejected.len(), 1, "{damage}: counted once");
            assert_eq!(restored.rejected[0].0, 3);
            assert!(
                restored.rejected[0].1.contains(reason),
                "{damage}: {:?}",
                restored.rejected
            );
        }
        None => assert!(
            restored.rejected.is_empty(),
            "without a manifest there is no checkpoint 3"
        ),
    }
    assert_eq!(
        count_keys(&target),
        2000,
        "{damage}: the state of checkpoint 2"
    );
}

async fn put(part: &Store, key: &str, bytes: Vec<u8>) {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), bytes).unwrap();
    part.put_file(key, tmp.path()).await.unwrap();
}

async fn retention(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let state = StateStore::open(&dir.path().join("state"), &[0], 64 << 20).unwrap();
    let local = dir.path().join("local");
    for id in 1..=5 {
        fill(&state, 0, id * 1000, 2000, 20);
        checkpoint(&state, &store, &local, id, 2).await;
    }
    let part = store.child("p0");
    let manifests = checkpoint::read_manifests(&part).await.unwrap();
    let ids: Vec<u64> = manifests.iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![5, 4]);
    let referenced: BTreeSet<String> = manifests
        .iter()
        .flat_map(|m| m.files.iter().map(|f| f.key.clone()))
        .collect();
    let stored: BTreeSet<String> = part
        .list("files")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        stored, referenced,
        "exactly the files the kept manifests reference"
    );
    assert_eq!(checkpoint::next_id(&store, &[0]).await.unwrap(), 6);
}

async fn another_processor_restores_a_partition(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    // Processor A owns partitions 0 and 1.
    let a = StateStore::open(&dir.path().join("a"), &[0, 1], 64 << 20).unwrap();
    fill(&a, 0, 0, 100, 10);
    fill(&a, 1, 500, 300, 10);
    checkpoint(&a, &store, &dir.path().join("la"), 7, 3).await;
    // Processor B is given partition 1 only.
    let b_dir = dir.path().join("b");
    let restored = checkpoint::restore(&store, 1, &b_dir.join("p1"), Select::default())
        .await
        .unwrap();
    let manifest = restored.manifest.unwrap();
    assert_eq!((manifest.id, manifest.partition), (7, 1));
    assert_eq!(manifest.source, SourcePosition::Generator { produced: 700 });
    let b = StateStore::open(&b_dir, &[1], 64 << 20).unwrap();
    assert_eq!(b.scan(1).unwrap().len(), 300);
    assert!(b.get(1, &format!("{:0>10}", 500)).unwrap().is_some());
}

async fn unreadable_manifest_stops_garbage_collection(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let state = StateStore::open(&dir.path().join("state"), &[0], 64 << 20).unwrap();
    let local = dir.path().join("local");
    for id in 1..=3 {
        fill(&state, 0, id * 1000, 500, 20);
        checkpoint(&state, &store, &local, id, 5).await;
    }
    let part = store.child("p0");
    put(
        &part,
        "checkpoints/00000000000000000004.json",
        b"{not a manifest".to_vec(),
    )
    .await;
    let files_before = part.list("files").await.unwrap();
    checkpoint::collect_garbage(&part, 1, None).await.unwrap();
    // Manifest 4 might own files nobody else references: keep everything.
    assert_eq!(part.list("files").await.unwrap(), files_before);
    assert_eq!(checkpoint::read_manifests(&part).await.unwrap().len(), 3);
}

/// `clear_job` deletes every checkpoint of one job, in every partition it
/// ever had, and nothing of a job whose name it prefixes or of any other.
async fn clear_deletes_one_jobs_checkpoints_only(root: Store) {
    let dir = tempfile::tempdir().unwrap();
    let state = StateStore::open(&dir.path().join("state"), &[0, 3], 64 << 20).unwrap();
    fill(&state, 0, 0, 1_000, 10);
    fill(&state, 3, 0, 1_000, 10);
    let local = dir.path().join("local");
    let (job, longer, other) = (root.child("a"), root.child("a-2"), root.child("b"));
    for store in [&job, &longer, &other] {
        checkpoint(&state, store, &local, 1, 3).await;
        checkpoint(&state, store, &local, 2, 3).await;
    }
    assert_eq!(checkpoint::stored_partitions(&job).await.unwrap(), [0, 3]);
    let listing = |s: &Store| {
        let s = s.clone();
        async move {
            let mut all = Vec::new();
            for p in ["p0", "p3"] {
                for folder in ["checkpoints", "files"] {
                    all.extend(s.child(p).list(folder).await.unwrap());
                }
            }
            all
        }
    };
    let (longer_before, other_before) = (listing(&longer).await, listing(&other).await);
    assert!(!listing(&job).await.is_empty());

    assert_eq!(checkpoint::clear_job(&job).await.unwrap(), [0, 3]);
    assert_eq!(listing(&job).await, []);
    for p in [0, 3] {
        let restored = checkpoint::restore(
            &job,
            p,
            &dir.path().join(format!("r{p}")),
            Select::default(),
        )
        .await
        .unwrap();
        assert!(
            restored.manifest.is_none(),
            "partition {p} has nothing left"
        );
    }
    assert_eq!(checkpoint::next_id(&job, &[0, 3]).await.unwrap(), 1);
    assert_eq!(listing(&longer).await, longer_before);
    assert_eq!(listing(&other).await, other_before);
    // Clearing again (a retried clean-up) is not an error.
    checkpoint::clear_job(&job).await.unwrap();
}

macro_rules! on_both_stores {
    ($($name:ident: $body:expr;)*) => {
        mod file {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    let root = tempfile::tempdir().unwrap();
                    let run = $body;
                    run(file_store(root.path())).await;
                }
            )*
        }
        mod s3 {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    let run = $body;
                    run(s3_store()).await;
                }
            )*
        }
    };
}

/// A job started over in a new state epoch restores only that epoch's
/// checkpoints, and none at all before its first one; ids go on rising.
async fn epochs(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let state = StateStore::open(&dir.path().join("state"), &[0], 64 << 20).unwrap();
    let local = dir.path().join("local");
    fill(&state, 0, 0, 100, 8);
    checkpoint(&state, &store, &local, 1, 5).await;
    checkpoint(&state, &store, &local, 2, 5).await;
    let target = dir.path().join("restored");
    let in_epoch = |epoch| Select {
        max_id: None,
        epoch: Some(epoch),
    };
    let none = checkpoint::restore(&store, 0, &target, in_epoch(1))
        .await
        .unwrap();
    assert!(none.manifest.is_none(), "epoch 1 has no checkpoint yet");
    assert!(none.rejected.is_empty(), "{:?}", none.rejected);
    assert_eq!(
        checkpoint::next_id(&store, &[0]).await.unwrap(),
        3,
        "ids do not start over with the epoch"
    );
    checkpoint_in_epoch(&state, &store, &local, 3, 5, 1).await;
    let ids = |r: checkpoint::Restored| r.manifest.map(|m| (m.id, m.epoch));
    let restore = |select| checkpoint::restore(&store, 0, &target, select);
    assert_eq!(ids(restore(in_epoch(1)).await.unwrap()), Some((3, 1)));
    assert_eq!(ids(restore(in_epoch(0)).await.unwrap()), Some((2, 0)));
    assert_eq!(
        ids(restore(Select::at_most(Some(2))).await.unwrap()),
        Some((2, 0))
    );
    assert_eq!(ids(restore(Select::default()).await.unwrap()), Some((3, 1)));
}

on_both_stores! {
    checkpoints_are_incremental: incremental;
    a_new_state_epoch_restores_only_its_own_checkpoints: epochs;
    missing_manifest_falls_back: |s| falls_back(s, "manifest missing");
    missing_file_falls_back: |s| falls_back(s, "file missing");
    truncated_file_falls_back: |s| falls_back(s, "file truncated");
    flipped_bytes_fall_back: |s| falls_back(s, "bytes flipped");
    retention_keeps_exactly_what_kept_manifests_reference: retention;
    a_partition_checkpointed_by_one_processor_restores_on_another: another_processor_restores_a_partition;
    an_unreadable_manifest_stops_garbage_collection: unreadable_manifest_stops_garbage_collection;
    clearing_a_job_deletes_its_checkpoints_only: clear_deletes_one_jobs_checkpoints_only;
}
