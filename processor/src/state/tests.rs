use super::*;
use crate::engine::{aggregate::Acc, window::Window};

fn state(windows: &[(i64, i64)]) -> KeyState {
    KeyState {
        windows: windows
            .iter()
            .map(|&(start, end)| WindowEntry {
                window: Window { start, end },
                accs: vec![Acc::Count(3)].into(),
                revision: 0,
                fired: false,
            })
            .collect(),
        last_update_ms: 42,
        ttl_check: Some(7),
        partials: Vec::new(),
    }
}

#[test]
fn partitions_are_separate_instances() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), &[0, 3], 64 << 20).unwrap();
    let a = state(&[(0, 10)]);
    let b = state(&[(0, 10), (10, 20)]);
    store
        .write([
            (0, "k1", Some(&a)),
            (3, "k1", Some(&b)),
            (3, "k2", Some(&a)),
        ])
        .unwrap();
    assert_eq!(store.get(0, "k1").unwrap().unwrap().windows.len(), 1);
    assert_eq!(store.get(3, "k1").unwrap().unwrap().windows.len(), 2);
    assert!(store.get(0, "k2").unwrap().is_none());
    assert!(store.get(1, "k1").is_err(), "partition 1 is not owned");
    let keys: Vec<String> = store.scan(3).unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, vec!["k1", "k2"]);
    store.write([(3, "k1", None)]).unwrap();
    assert!(store.get(3, "k1").unwrap().is_none());
    assert!(dir.path().join("p0/CURRENT").exists());
    assert!(dir.path().join("p3/CURRENT").exists());
}

#[test]
fn size_is_measured_per_partition() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), &[0, 1], 64 << 20).unwrap();
    let big = state(&(0..50).map(|i| (i * 10, i * 10 + 10)).collect::<Vec<_>>());
    let keys: Vec<String> = (0..2000).map(|i| format!("key-{i}")).collect();
    store
        .write(keys.iter().map(|k| (0, k.as_str(), Some(&big))))
        .unwrap();
    store.flush_memtables().unwrap();
    let p0 = store.size_bytes(0).unwrap();
    assert!(p0 > 100_000, "{p0}");
    let p1 = store.size_bytes(1).unwrap();
    assert!(p1 < p0 / 20, "empty partition: {p1} bytes");
}

#[test]
fn windows_stay_sorted() {
    let mut s = state(&[(10, 20)]);
    s.insert(WindowEntry {
        window: Window { start: 0, end: 10 },
        accs: Default::default(),
        revision: 0,
        fired: false,
    });
    assert_eq!(s.find(Window { start: 0, end: 10 }), Some(0));
    assert_eq!(s.find(Window { start: 10, end: 20 }), Some(1));
    let back = KeyState::decode(&s.encode().unwrap()).unwrap();
    assert_eq!(back.windows.len(), 2);
    assert_eq!(back.last_update_ms, 42);
}

#[test]
fn rows_of_engine_version_1_read_without_a_ttl_check() {
    /// The layout engine version 1 wrote.
    #[derive(serde::Serialize)]
    struct V1<'a> {
        windows: &'a [WindowEntry],
        last_update_ms: i64,
    }
    let s = state(&[(0, 10), (10, 20)]);
    let v1 = postcard::to_allocvec(&V1 {
        windows: &s.windows,
        last_update_ms: 42,
    })
    .unwrap();
    let back = KeyState::decode(&v1).unwrap();
    assert_eq!(back.windows.len(), 2);
    assert_eq!(back.windows[1].window, Window { start: 10, end: 20 });
    assert_eq!((back.last_update_ms, back.ttl_check), (42, None));
    let now = KeyState::decode(&s.encode().unwrap()).unwrap();
    assert_eq!(now.ttl_check, Some(7));
    assert!(KeyState::decode(&v1[..v1.len() - 1]).is_err());
}

#[test]
fn rows_of_engine_version_2_read_without_partials() {
    /// The layout engine version 2 wrote.
    #[derive(serde::Serialize)]
    struct V2<'a> {
        windows: &'a [WindowEntry],
        last_update_ms: i64,
        ttl_check: Option<i64>,
    }
    let mut s = state(&[(0, 10)]);
    let v2 = postcard::to_allocvec(&V2 {
        windows: &s.windows,
        last_update_ms: 42,
        ttl_check: Some(7),
    })
    .unwrap();
    let back = KeyState::decode(&v2).unwrap();
    assert_eq!((back.windows.len(), back.ttl_check), (1, Some(7)));
    assert!(back.partials.is_empty());
    s.partials.push(OriginSlot {
        window: Window { start: 0, end: 10 },
        origin: 5,
        revision: 2,
        is_final: false,
        accs: vec![Acc::Count(9)].into(),
    });
    let now = KeyState::decode(&s.encode().unwrap()).unwrap();
    assert_eq!(now.partials.len(), 1);
    assert_eq!((now.partials[0].origin, now.partials[0].revision), (5, 2));
}

/// A key's windows are written as the `Vec` they were before (one held
/// inline now): rows and checkpoints of either layout read as the other.
#[test]
fn windows_are_encoded_as_a_sequence_as_before() {
    #[derive(serde::Serialize)]
    struct Before {
        windows: Vec<WindowEntry>,
        last_update_ms: i64,
        ttl_check: Option<i64>,
    }
    for windows in [&[][..], &[(0, 10)], &[(0, 10), (10, 20), (20, 30)]] {
        let s = state(windows);
        let before = postcard::to_allocvec(&Before {
            windows: s.windows.to_vec(),
            last_update_ms: s.last_update_ms,
            ttl_check: s.ttl_check,
        })
        .unwrap();
        // Then the (empty) partials of a merge stage: one byte more.
        assert_eq!(s.encode().unwrap(), [before.clone(), vec![0]].concat());
        assert_eq!(
            KeyState::decode(&before).unwrap().windows.len(),
            windows.len()
        );
    }
}

/// Every column family of every partition reads through the one block
/// cache sized from the budget: none has a cache of its own outside it.
#[test]
fn every_column_family_shares_the_budgeted_block_cache() {
    let dir = tempfile::tempdir().unwrap();
    let budget = 96 << 20;
    let store = StateStore::open(dir.path(), &[0, 1], budget).unwrap();
    let expected = (budget as f64 * ROCKSDB_SHARE) as u64;
    for p in [0, 1] {
        let db = store.db(p).unwrap();
        let capacity = |cf: Option<&rocksdb::ColumnFamily>| {
            let property = "rocksdb.block-cache-capacity";
            match cf {
                None => db.property_int_value(property),
                Some(cf) => db.property_int_value_cf(cf, property),
            }
            .unwrap()
        };
        assert_eq!(capacity(None), Some(expected), "partition {p}: keyed state");
        assert_eq!(
            capacity(Some(timers(db).unwrap())),
            Some(expected),
            "partition {p}: timers"
        );
    }
}

#[test]
fn writes_behind_land_once_written_and_a_lost_writer_lands_as_failed() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), &[0, 1], 64 << 20).unwrap();
    let a = state(&[(0, 10)]);
    let parts = store
        .encode([(0, "k1", Some(&a)), (1, "k2", Some(&a))])
        .unwrap();
    let landing = Landing::default();
    write_behind(parts, landing.clone(), &WritesBehind::default()).unwrap();
    assert_eq!(landing.wait(), Ok(()));
    assert_eq!(store.get(0, "k1").unwrap().unwrap().windows.len(), 1);
    assert_eq!(store.get(1, "k2").unwrap().unwrap().windows.len(), 1);

    // A writer that stops before it sets an outcome (it panicked) lands
    // what it held as failed: the engine then fails instead of waiting.
    let lost = Landing::default();
    drop(LandOnDrop::new(vec![lost.clone()]));
    let failed = lost.landed().expect("landed on drop");
    assert!(failed.unwrap_err().contains("stopped before it was done"));
}
