//! Writes of changed state that land in RocksDB later, off the thread that
//! processes events: a checkpoint's, and the engine's periodic write-backs.

use std::sync::{Arc, Condvar, Mutex};

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

/// Writes `parts` on a thread of their own, then lands `landing`.
pub fn write_behind(parts: Vec<PartWrite>, landing: Landing) -> anyhow::Result<()> {
    // Made here, so that it lands (as failed) if the thread does not start.
    let mut landing = LandOnDrop::new(vec![landing]);
    std::thread::Builder::new()
        .name("eddy-write-back".into())
        .spawn(move || {
            let written = parts.into_iter().try_for_each(|p| p.write().map(drop));
            landing.set(written.map_err(|e| format!("{e:#}")));
        })?;
    Ok(())
}
