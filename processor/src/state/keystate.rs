//! What is stored per key: its windows with their accumulators.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::engine::{aggregate::Acc, window::Window};

/// One key's state within a partition.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KeyState {
    /// Open windows and fired ones still within the allowed lateness,
    /// sorted by (start, end). One inline (a key of a tumbling window job
    /// has one most of the time): reaching it costs no second cache miss
    /// after the key's. Stored as a sequence, like a `Vec`.
    pub windows: Windows,
    /// Source clock (ms) of the key's last event, for the state TTL.
    pub last_update_ms: i64,
    /// When the key's pending TTL check is due: its timer row. Other rows
    /// for the key (left from before its state was deleted) are stale.
    pub ttl_check: Option<i64>,
    /// In the merge stage of a two-phase job: the latest partial of each
    /// origin, per window, sorted by (window, origin). Empty otherwise.
    pub partials: Vec<OriginSlot>,
}

/// The latest partial of one first-stage partition for one window.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OriginSlot {
    pub window: Window,
    pub origin: u32,
    pub revision: u32,
    pub is_final: bool,
    pub accs: SmallVec<[Acc; 2]>,
}

/// The layout of engine version 2, without `partials`.
#[derive(Deserialize)]
struct KeyStateV2 {
    windows: Windows,
    last_update_ms: i64,
    ttl_check: Option<i64>,
}

/// A key's windows.
pub type Windows = SmallVec<[WindowEntry; 1]>;

/// The layout of engine version 1, without `ttl_check`.
#[derive(Deserialize)]
struct KeyStateV1 {
    windows: Windows,
    last_update_ms: i64,
}

/// One window of a key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WindowEntry {
    pub window: Window,
    /// Inline for up to two aggregates (no allocation per window); stored
    /// as a sequence, like a `Vec`.
    pub accs: SmallVec<[Acc; 2]>,
    /// Revision of the last result emitted (0: none yet).
    pub revision: u32,
    /// The watermark has passed the window's end and a result was emitted.
    pub fired: bool,
}

impl KeyState {
    pub fn encode(&self) -> anyhow::Result<Vec<u8>> {
        Ok(postcard::to_allocvec(self)?)
    }

    /// Decodes this layout, or the one of engine version 2 or 1 (shorter
    /// rows: this layout's last fields are missing).
    pub fn decode(bytes: &[u8]) -> anyhow::Result<Self> {
        let short = |e: &postcard::Error| matches!(e, postcard::Error::DeserializeUnexpectedEnd);
        match postcard::from_bytes(bytes) {
            Ok(state) => return Ok(state),
            Err(e) if !short(&e) => return Err(e.into()),
            Err(_) => {}
        }
        match postcard::from_bytes::<KeyStateV2>(bytes) {
            Ok(v2) => {
                return Ok(Self {
                    windows: v2.windows,
                    last_update_ms: v2.last_update_ms,
                    ttl_check: v2.ttl_check,
                    partials: Vec::new(),
                })
            }
            Err(e) if !short(&e) => return Err(e.into()),
            Err(_) => {}
        }
        let v1: KeyStateV1 = postcard::from_bytes(bytes)?;
        Ok(Self {
            windows: v1.windows,
            last_update_ms: v1.last_update_ms,
            ttl_check: None,
            partials: Vec::new(),
        })
    }

    /// Index of the window with these bounds.
    pub fn find(&self, window: Window) -> Option<usize> {
        self.windows
            .binary_search_by(|e| e.window.cmp(&window))
            .ok()
    }

    /// Inserts a window in order, returning its index.
    pub fn insert(&mut self, entry: WindowEntry) -> usize {
        let at = self
            .windows
            .binary_search_by(|e| e.window.cmp(&entry.window))
            .unwrap_or_else(|at| at);
        self.windows.insert(at, entry);
        at
    }
}
