//! The job's Kafka transaction: every transactional output of a processor
//! writes through one transactional producer, and its transaction commits
//! with each checkpoint.
//!
//! The order of events for checkpoint N:
//! 1. its synchronous part flushes the producer and commits, inside the
//!    open transaction, offset N for each owned partition's consumer group
//!    (`TxnPlan::groups`);
//! 2. results that fire while N uploads are held in memory, because a
//!    producer has one transaction at a time;
//! 3. once manifest N is in the store, the transaction commits: its results
//!    and the offsets become visible together. A new transaction begins and
//!    takes the held results.
//!
//! A checkpoint with no results since the last commit commits nothing (a
//! broker may not commit offsets alone); restores go back to the last one
//! that did, which gives the same output.
//!
//! At start, taking over the transactional id fences the previous holder
//! and aborts its open transaction; the committed offsets then say which
//! checkpoint's results were committed last, and the processor restores
//! that checkpoint, not a newer one, so results are never committed twice
//! and never lost. Garbage collection keeps that checkpoint of each
//! partition besides the newest ones. After a move they differ: a release
//! checkpoint whose transaction had no results records nothing, so the
//! partition's new owner keeps the checkpoint its former owner committed
//! last until its own transactions record a newer one.

pub mod plan;
#[cfg(feature = "kafka")]
mod producer;

pub use plan::{restore_bound, txn_plan, TxnPlan};
#[cfg(feature = "kafka")]
pub use producer::Transaction;

#[cfg(not(feature = "kafka"))]
pub use crate::without::kafka::Transaction;

/// Results held while a checkpoint uploads before the run loop waits for
/// the upload (back-pressure instead of unbounded memory).
pub const HELD_LIMIT: usize = 50_000;

/// The last checkpoint each owned partition committed, if any.
pub type Committed = Vec<(u32, Option<u64>)>;

/// The job's transaction, as its outputs hold it.
pub type Shared = std::sync::Arc<std::sync::Mutex<Transaction>>;

/// The transaction, even if a panic poisoned its lock (its state is
/// checked by the broker, not by the lock).
pub fn lock(t: &std::sync::Mutex<Transaction>) -> std::sync::MutexGuard<'_, Transaction> {
    t.lock().unwrap_or_else(|e| e.into_inner())
}
