//! Links RocksDB as `.cargo/config.toml` sets it up: a shared library that
//! `scripts/rocksdb-lib` puts in `ROCKSDB_LIB_DIR` (librocksdb-sys adds the
//! `-l`), found at run time through the run path set here. Nothing to do
//! when RocksDB is compiled from source (`ROCKSDB_COMPILE=1`) or linked
//! statically (`ROCKSDB_STATIC`).
use std::{env, path::Path, process::Command};

fn main() {
    println!("cargo::rerun-if-env-changed=ROCKSDB_COMPILE");
    println!("cargo::rerun-if-env-changed=ROCKSDB_LIB_DIR");
    println!("cargo::rerun-if-env-changed=ROCKSDB_STATIC");
    let compile =
        env::var("ROCKSDB_COMPILE").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    let Some(dir) = env::var_os("ROCKSDB_LIB_DIR") else {
        return;
    };
    if compile || env::var_os("ROCKSDB_STATIC").is_some() {
        return;
    }
    let dir = Path::new(&dir);
    let lib = dir.join("librocksdb.so");
    if !lib.exists() {
        // A fresh checkout, or `cargo clean`: fetch it (cached) rather than
        // fail at the link with "unable to find library -lrocksdb".
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/rocksdb-lib");
        let ok = Command::new(&script).status().is_ok_and(|s| s.success());
        if !ok || !lib.exists() {
            panic!(
                "RocksDB's library is not in {} and {} could not put it there; \
                 run that script to see why, or set ROCKSDB_COMPILE=1 to compile RocksDB from source",
                dir.display(),
                script.display()
            );
        }
    }
    println!("cargo::rerun-if-changed={}", lib.display());
    println!("cargo::rustc-link-arg=-Wl,-rpath,{}", dir.display());
}
