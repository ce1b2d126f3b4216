//! Writes of changed state that land in RocksDB later, off the thread that
//! processes events: a checkpoint's, and the engine's periodic write-backs.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc, Condvar, Mutex,
};

use super::PartWrite;

/// Tells the engine that writes handed over (to a checkpoint, or to a
/// write-back thread) have landed in RocksDB, or failed: until then the
/// engine writes nothing there, so a checkpoint links exactly the state of
/// its cut, and no later write overtakes an earlier one.
#[derive(Clone, Debug, Default)]
pub struct Landing(Arc<(Mutex<Outcome>, Condvar)>);

/// Writes handed over: not landed yet, written, or failed (why).
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

/// Lands its landings when dropped: with the outcome set, else as failed
/// (the thread writing panicked, or never started).
pub struct LandOnDrop(Vec<Landing>, Outcome);

impl LandOnDrop {
    pub fn new(landings: Vec<Landing>) -> Self {
        Self(landings, None)
    }

    pub fn set(&mut self, outcome: Result<(), String>) {
        self.1 = Some(outcome);
    }
}

impl Drop for LandOnDrop {
    fn drop(&mut self) {
        let outcome = self.1.take().unwrap_or_else(|| {
            Err("the thread writing the state stopped before it was done".into())
        });
        for landing in self.0.drain(..) {
            landing.land(outcome.clone());
        }
    }
}

/// How many write-backs are being written, shared by the engines of a
/// processor and read by its run loop: a periodic checkpoint waits for a
/// moment without one rather than for one to land (see
/// `run::Checkpoints::due`).
#[derive(Clone, Debug, Default)]
pub struct WritesBehind(Arc<AtomicUsize>);

impl WritesBehind {
    /// Write-backs started and not landed yet.
    pub fn in_flight(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// One write-back counted in [`WritesBehind`] until it is dropped.
struct Counted(WritesBehind);

impl Counted {
    fn new(writes: &WritesBehind) -> Self {
        writes.0.fetch_add(1, Ordering::AcqRel);
        Self(writes.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A write-back on its way: dropped, it lands, then stops being counted
/// (fields drop in this order).
struct WriteBack {
    landing: LandOnDrop,
    _counted: Counted,
}

/// Writes `parts` on a thread of their own, then lands `landing`; counted
/// in `writes` meanwhile.
pub fn write_behind(
    parts: Vec<PartWrite>,
    landing: Landing,
    writes: &WritesBehind,
) -> anyhow::Result<()> {
    // Made here, so that it lands (as failed) if the thread does not start.
    let mut back = WriteBack {
        landing: LandOnDrop::new(vec![landing]),
        _counted: Counted::new(writes),
    };
    std::thread::Builder::new()
        .name("eddy-write-back".into())
        .spawn(move || {
            let written = parts.into_iter().try_for_each(|p| p.write().map(drop));
            back.landing.set(written.map_err(|e| format!("{e:#}")));
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_backs_are_counted_until_they_land() {
        let writes = WritesBehind::default();
        let one = Counted::new(&writes);
        let two = Counted::new(&writes.clone());
        assert_eq!(writes.in_flight(), 2);
        drop(one);
        assert_eq!(writes.in_flight(), 1);
        drop(two);
        assert_eq!(writes.in_flight(), 0);

        // A write-back that lands is no longer counted (right after it
        // lands: the count drops once the writing thread lets go).
        let landing = Landing::default();
        write_behind(Vec::new(), landing.clone(), &writes).unwrap();
        assert_eq!(landing.wait(), Ok(()));
        let start = std::time::Instant::now();
        while writes.in_flight() != 0 {
            assert!(start.elapsed().as_secs() < 10, "still counted");
            std::thread::yield_now();
        }
    }
}
