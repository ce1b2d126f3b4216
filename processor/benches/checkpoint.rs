//! Checkpoint benchmark: prints a table. Run with `cargo bench
//! --bench checkpoint`. `EDDY_BENCH_STATE_MIB` sets the state
//! size (default 1024). With `EDDY_TEST_S3_ENDPOINT` (and `_ACCESS_KEY`,
//! `_SECRET_KEY`) set, as `scripts/test-servers env` does, the S3 store is
//! measured too.
//!
//! For each store: the synchronous pause of a first checkpoint (flush and
//! hard links), its upload, a second checkpoint after a 1% change (bytes
//! uploaded against the state size), and a restore of the latest checkpoint.

use std::time::{Duration, Instant};

use eddy_processor::{
    checkpoint::{self, store::S3Settings, Cut, SourcePosition, Store},
    engine::{aggregate::Acc, window::Window},
    state::{KeyState, StateStore, WindowEntry},
};

const PARTITIONS: [u32; 4] = [0, 1, 2, 3];

fn main() -> anyhow::Result<()> {
    let mib: u64 = std::env::var("EDDY_BENCH_STATE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let runtime = tokio::runtime::Runtime::new()?;
    let dir = tempfile::tempdir()?;
    let state = StateStore::open(&dir.path().join("state"), &PARTITIONS, 256 << 20)?;
    let keys = mib * 1024 * 1024 / 1100;
    eprintln!("writing {keys} keys (~{mib} MiB of state)");
    fill(&state, 0, keys);
    state.flush_memtables()?;

    let mut stores = vec![(
        "file://",
        Store::open(
            &format!("file://{}", dir.path().join("store").display()),
            "bench",
            None,
        )?,
    )];
    if let Ok(endpoint) = std::env::var("EDDY_TEST_S3_ENDPOINT") {
        let settings = S3Settings {
            endpoint: Some(endpoint),
            region: "us-east-1".into(),
            path_style: true,
            access_key: std::env::var("EDDY_TEST_S3_ACCESS_KEY")?,
            secret_key: std::env::var("EDDY_TEST_S3_SECRET_KEY")?,
        };
        let bucket = format!("bench-{}", std::process::id());
        let store = Store::open(&format!("s3://{bucket}"), "bench", Some(settings))?;
        if let Store::S3(s3) = &store {
            let (client, _) = s3.client();
            runtime.block_on(client.create_bucket().bucket(&bucket).send())?;
        }
        stores.push(("s3:// (s3s-fs)", store));
    }

    println!();
    println!(
        "{:<16} {:>10} {:>10} {:>10} {:>12} {:>12} {:>12} {:>10}",
        "store", "state", "pause 1", "upload 1", "pause 2", "upload 2", "uploaded 2", "restore"
    );
    for (name, store) in &stores {
        let local = dir.path().join("local");
        let first = runtime.block_on(take(&state, store, &local, 1))?;
        fill(&state, keys * 10, keys / 100);
        let second = runtime.block_on(take(&state, store, &local, 2))?;
        let target = dir.path().join(format!("restored-{}", name.len()));
        let started = Instant::now();
        for p in PARTITIONS {
            let restored = runtime.block_on(checkpoint::restore(
                store,
                p,
                &target.join(format!("p{p}")),
                checkpoint::Select::default(),
            ))?;
            assert_eq!(restored.manifest.map(|m| m.id), Some(2));
        }
        let restore = started.elapsed();
        println!(
            "{:<16} {:>10} {:>10} {:>10} {:>12} {:>12} {:>12} {:>10}",
            name,
            mib_text(second.bytes_total),
            ms(first.sync_duration),
            ms(first.total_duration - first.sync_duration),
            ms(second.sync_duration),
            ms(second.total_duration - second.sync_duration),
            mib_text(second.bytes_uploaded),
            ms(restore),
        );
    }
    println!();
    println!(
        "pause: the synchronous part (memtable flush, hard links); upload: the background part"
    );
    println!("(hashing, uploading new files, manifest, retention); the second checkpoint follows a 1% change.");
    Ok(())
}

fn fill(state: &StateStore, from: u64, keys: u64) {
    let mut batch = Vec::new();
    for i in from..from + keys {
        batch.push((
            format!("key-{i:012}-{}", noise(i)),
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
                last_update_ms: i as i64,
                ttl_check: None,
                partials: Vec::new(),
            },
        ));
        if batch.len() == 10_000 {
            write(state, &mut batch);
        }
    }
    write(state, &mut batch);
}

/// 1,024 characters of hex noise from `seed` (incompressible for LZ4).
fn noise(seed: u64) -> String {
    (0..32u64)
        .map(|j| {
            format!(
                "{:032x}",
                xxhash_rust::xxh3::xxh3_128(&(seed * 64 + j).to_le_bytes())
            )
        })
        .collect()
}

fn write(state: &StateStore, batch: &mut Vec<(String, KeyState)>) {
    state
        .write(
            batch
                .iter()
                .enumerate()
                .map(|(i, (k, s))| (PARTITIONS[i % 4], k.as_str(), Some(s))),
        )
        .expect("write");
    batch.clear();
}

async fn take(
    state: &StateStore,
    store: &Store,
    local: &std::path::Path,
    id: u64,
) -> anyhow::Result<checkpoint::Completed> {
    let cut = Cut {
        id,
        job: "bench".into(),
        source: SourcePosition::Generator { produced: 0 },
        max_event_times: Default::default(),
        watermark: None,
        floors: Default::default(),
        origin_marks: Default::default(),
        sink_lengths: Default::default(),
        epoch: 0,
        assignment: 0,
    };
    let pending = checkpoint::snapshot(state, cut, local)?;
    checkpoint::upload(pending, store, 3, &Default::default()).await
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

fn mib_text(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}
