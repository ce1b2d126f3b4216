//! Watermarks: per partition from bounded out-of-orderness; for the
//! processor, the minimum over its active partitions.

/// One partition's watermark.
#[derive(Clone, Debug)]
struct Partition {
    /// Largest event time seen.
    max_seen: Option<i64>,
    /// Source clock (ms) when the partition last had an event.
    last_active: Option<i64>,
    /// The partition's input has ended: it never holds the watermark back.
    finished: bool,
    /// It held the watermark back (active, not finished) at the last
    /// computation.
    counted: bool,
    /// The lowest its deciding watermark may be: what decided for it
    /// where it ran before (it joined a running processor, or was restored
    /// with partitions that had another). Its deciding watermark never
    /// goes back, so a window it closed there is never opened again here.
    floor: i64,
    /// It came behind the processor's watermark: until it catches up, its
    /// own decides for it (from `floor`) and it does not hold the
    /// processor's back, so its events are late here only if they would
    /// have been where it ran.
    behind: bool,
}

impl Default for Partition {
    fn default() -> Self {
        Self {
            max_seen: None,
            last_active: None,
            finished: false,
            counted: false,
            floor: i64::MIN,
            behind: false,
        }
    }
}

/// The last computed candidate watermark and until when it holds.
#[derive(Clone, Copy, Debug)]
struct Memo {
    candidate: i64,
    /// The minimum over counted partitions (`None`: none was counted).
    min: Option<i64>,
    /// The source clock at which a counted partition turns idle.
    valid_until: i64,
}

/// Watermarks of the partitions a processor owns.
///
/// A partition's watermark trails its largest event time by the
/// out-of-orderness bound. The processor's watermark is the minimum over
/// partitions that are active; a partition without events for the idle
/// timeout (on the source clock) stops holding it back and rejoins with its
/// next event. A partition that never had an event counts as active from
/// `started`, so it holds the watermark back for one idle timeout: data may
/// still come. The watermark never goes backwards.
///
/// Advancing is called after every record, so the minimum is remembered
/// and computed again only when it can have changed: a partition at the
/// minimum moved, an idle one rejoined, or one turned idle.
#[derive(Clone, Debug)]
pub struct Watermarks {
    delay_ms: i64,
    idle_timeout_ms: i64,
    started_ms: Option<i64>,
    partitions: Vec<Partition>,
    current: i64,
    memo: Option<Memo>,
    /// Partitions behind, catching up.
    behind: usize,
    /// The highest floor of any partition.
    max_floor: i64,
}

impl Watermarks {
    pub fn new(partitions: usize, delay_ms: i64, idle_timeout_ms: i64) -> Self {
        Self {
            delay_ms,
            idle_timeout_ms,
            started_ms: None,
            partitions: vec![Partition::default(); partitions],
            current: i64::MIN,
            memo: None,
            behind: 0,
            max_floor: i64::MIN,
        }
    }

    /// Records an event time in partition `slot` at source clock `now_ms`.
    pub fn observe(&mut self, slot: usize, time_ms: i64, now_ms: i64) {
        if self.started_ms.is_none() {
            self.started_ms = Some(now_ms);
            self.memo = None;
        }
        let before = self.partition(slot);
        let p = &mut self.partitions[slot];
        p.max_seen = Some(p.max_seen.map_or(time_ms, |m| m.max(time_ms)));
        p.last_active = Some(now_ms);
        if p.behind {
            // Not in the minimum: `advance` checks whether it caught up.
            return;
        }
        let counted = p.counted;
        if let Some(memo) = self.memo {
            let moved = self.partition(slot) > before;
            // Only a partition at the minimum moves it; an uncounted one
            // may rejoin; with none counted, the largest of all decides.
            if !counted || (moved && (memo.min.is_none() || memo.min == Some(before))) {
                self.memo = None;
            }
        }
    }

    /// Restores a partition's largest event time from a checkpoint.
    pub fn restore(&mut self, slot: usize, max_seen: i64) {
        self.memo = None;
        let p = &mut self.partitions[slot];
        p.max_seen = Some(p.max_seen.map_or(max_seen, |m| m.max(max_seen)));
    }

    /// A partition joins (see `Engine::acquire`): it holds the watermark
    /// back from its first event, or for one idle timeout from now.
    pub fn push(&mut self, now_ms: i64) {
        self.memo = None;
        self.partitions.push(Partition {
            last_active: (now_ms != i64::MIN).then_some(now_ms),
            ..Partition::default()
        });
    }

    /// Partition `slot` leaves; the last slot takes its place.
    pub fn swap_remove(&mut self, slot: usize) {
        self.memo = None;
        if self.partitions.swap_remove(slot).behind {
            self.behind -= 1;
        }
        self.max_floor = self
            .partitions
            .iter()
            .map(|p| p.floor)
            .max()
            .unwrap_or(i64::MIN);
    }

    /// Partition `slot` came with deciding watermark `floor` (from its
    /// checkpoint); behind the processor's, it catches up on its own.
    pub fn set_floor(&mut self, slot: usize, floor: i64) {
        self.memo = None;
        let current = self.current;
        let p = &mut self.partitions[slot];
        p.floor = floor;
        let behind = floor < current;
        if behind != p.behind {
            p.behind = behind;
            if behind {
                self.behind += 1;
            } else {
                self.behind -= 1;
            }
        }
        self.max_floor = self.max_floor.max(floor);
    }

    /// The watermark that decides for partition `slot`: the processor's,
    /// never below the partition's floor; while it catches up, its own.
    pub fn of_slot(&self, slot: usize) -> i64 {
        let p = &self.partitions[slot];
        if p.behind {
            p.floor.max(self.partition(slot))
        } else {
            p.floor.max(self.current)
        }
    }

    /// Each slot's deciding watermark, when one is not the processor's
    /// (a partition joined or was restored apart from the others; else
    /// `None`: the processor's decides for all).
    pub fn each_slot(&self) -> Option<Vec<i64>> {
        (self.behind > 0 || self.max_floor > self.current).then(|| {
            (0..self.partitions.len())
                .map(|s| self.of_slot(s))
                .collect()
        })
    }

    /// Partitions behind that caught up with the processor's watermark (or
    /// fell idle) hold it like any other from now; their deciding
    /// watermark so far becomes their floor.
    fn catch_up(&mut self, now_ms: i64) {
        for slot in 0..self.partitions.len() {
            if !self.partitions[slot].behind {
                continue;
            }
            let own = self.of_slot(slot);
            if own >= self.current || self.is_idle(slot, now_ms) {
                let p = &mut self.partitions[slot];
                p.behind = false;
                p.floor = own;
                self.max_floor = self.max_floor.max(own);
                self.behind -= 1;
                self.memo = None;
            }
        }
    }

    /// Never lets the processor's watermark be below `watermark` (restoring a
    /// checkpoint).
    pub fn raise_to(&mut self, watermark: i64) {
        self.current = self.current.max(watermark);
    }

    /// A partition's largest event time seen.
    pub fn max_seen(&self, slot: usize) -> Option<i64> {
        self.partitions[slot].max_seen
    }

    /// Marks partition `slot`'s input as ended.
    pub fn finish(&mut self, slot: usize) {
        self.memo = None;
        self.partitions[slot].finished = true;
    }

    /// Partition `slot`'s own watermark.
    pub fn partition(&self, slot: usize) -> i64 {
        self.partitions[slot]
            .max_seen
            .map_or(i64::MIN, |m| m.saturating_sub(self.delay_ms))
    }

    /// Whether partition `slot` is idle at `now_ms`.
    pub fn is_idle(&self, slot: usize, now_ms: i64) -> bool {
        let p = &self.partitions[slot];
        let since = p.last_active.or(self.started_ms);
        since.is_some_and(|t| now_ms.saturating_sub(t) >= self.idle_timeout_ms)
    }

    /// The processor's watermark at source clock `now_ms` (which never goes
    /// backwards).
    pub fn advance(&mut self, now_ms: i64) -> i64 {
        let candidate = match self.memo {
            // With none counted, the largest of all decides, and partitions
            // behind move without clearing the memo.
            Some(memo) if now_ms < memo.valid_until && (self.behind == 0 || memo.min.is_some()) => {
                memo.candidate
            }
            _ => self.compute(now_ms),
        };
        self.current = self.current.max(candidate);
        if self.behind > 0 {
            self.catch_up(now_ms);
        }
        self.current
    }

    /// The minimum over active partitions at `now_ms`, remembered.
    fn compute(&mut self, now_ms: i64) -> i64 {
        let mut min: Option<i64> = None;
        let mut max_finished = i64::MIN;
        let mut valid_until = i64::MAX;
        for slot in 0..self.partitions.len() {
            let wm = self.partition(slot);
            let idle = self.is_idle(slot, now_ms);
            let p = &mut self.partitions[slot];
            p.counted = !p.finished && !idle && !p.behind;
            if p.behind {
                continue;
            }
            if p.finished {
                max_finished = max_finished.max(wm);
                continue;
            }
            if idle {
                continue;
            }
            if let Some(since) = p.last_active.or(self.started_ms) {
                valid_until = valid_until.min(since.saturating_add(self.idle_timeout_ms));
            }
            min = Some(min.map_or(wm, |m: i64| m.min(wm)));
        }
        let candidate = match min {
            Some(m) => m,
            // Every partition idle or done: nothing holds the watermark back
            // but the data seen so far.
            None => (0..self.partitions.len())
                .map(|slot| self.partition(slot))
                .max()
                .unwrap_or(i64::MIN)
                .max(max_finished),
        };
        self.memo = Some(Memo {
            candidate,
            min,
            valid_until,
        });
        candidate
    }

    /// The watermark as of the last `advance`.
    pub fn current(&self) -> i64 {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_partition_trails_its_maximum() {
        let mut w = Watermarks::new(1, 5_000, 60_000);
        assert_eq!(w.advance(0), i64::MIN);
        w.observe(0, 10_000, 0);
        assert_eq!(w.advance(0), 5_000);
        w.observe(0, 7_000, 1);
        assert_eq!(w.advance(1), 5_000, "out of order: no effect");
        w.observe(0, 12_000, 2);
        assert_eq!(w.advance(2), 7_000);
    }

    #[test]
    fn slowest_active_partition_holds_the_watermark() {
        let mut w = Watermarks::new(2, 0, 60_000);
        w.observe(0, 50_000, 0);
        w.observe(1, 20_000, 0);
        assert_eq!(w.advance(0), 20_000);
        w.observe(1, 30_000, 1_000);
        assert_eq!(w.advance(1_000), 30_000);
    }

    #[test]
    fn partition_without_data_holds_back_until_idle() {
        let mut w = Watermarks::new(2, 0, 10_000);
        w.observe(0, 50_000, 0);
        assert_eq!(w.advance(5_000), i64::MIN, "partition 1 may still get data");
        w.observe(0, 60_000, 10_000);
        assert_eq!(w.advance(10_000), 60_000, "partition 1 idle after 10 s");
    }

    #[test]
    fn idle_partition_stops_holding_back_and_rejoins() {
        let mut w = Watermarks::new(2, 0, 10_000);
        w.observe(0, 1_000, 0);
        w.observe(1, 1_000, 0);
        assert_eq!(w.advance(0), 1_000);
        // Partition 1 goes quiet; partition 0 moves on.
        w.observe(0, 40_000, 5_000);
        assert_eq!(w.advance(5_000), 1_000);
        assert!(!w.is_idle(1, 9_999));
        w.observe(0, 45_000, 10_000);
        assert!(w.is_idle(1, 10_000));
        assert_eq!(w.advance(10_000), 45_000);
        // Partition 1 rejoins behind: the watermark does not go back, but it
        // holds further progress until partition 1 catches up.
        w.observe(1, 20_000, 11_000);
        w.observe(0, 90_000, 11_000);
        assert_eq!(w.advance(11_000), 45_000);
        w.observe(1, 60_000, 12_000);
        assert_eq!(w.advance(12_000), 60_000);
    }

    #[test]
    fn a_partition_joining_behind_catches_up_on_its_own_watermark() {
        let mut w = Watermarks::new(2, 0, 60_000);
        w.observe(0, 50_000, 0);
        w.observe(1, 50_000, 0);
        assert_eq!(w.advance(0), 50_000);
        // Partition 2 joins at 20 s, where it was elsewhere.
        w.push(0);
        w.restore(2, 20_000);
        w.set_floor(2, 20_000);
        assert_eq!(w.advance(0), 50_000, "the others go on");
        assert_eq!(w.of_slot(2), 20_000, "its own decides for it");
        w.observe(0, 70_000, 1_000);
        w.observe(1, 70_000, 1_000);
        w.observe(2, 40_000, 1_000);
        assert_eq!(w.advance(1_000), 70_000, "not held back by it");
        assert_eq!(w.each_slot(), Some(vec![70_000, 70_000, 40_000]));
        // Caught up: it holds the processor's like any partition, and what
        // decided for it never goes back.
        w.observe(2, 75_000, 2_000);
        assert_eq!(w.advance(2_000), 70_000);
        assert_eq!(w.each_slot(), Some(vec![70_000, 70_000, 75_000]));
        w.observe(0, 90_000, 3_000);
        w.observe(1, 90_000, 3_000);
        assert_eq!(w.advance(3_000), 75_000, "held by partition 2 now");
        assert_eq!(w.each_slot(), None, "one watermark for all again");
    }

    #[test]
    fn a_partition_joining_ahead_keeps_its_floor_and_holds_the_others() {
        let mut w = Watermarks::new(1, 0, 60_000);
        w.observe(0, 10_000, 0);
        assert_eq!(w.advance(0), 10_000);
        w.push(0);
        w.set_floor(1, 30_000);
        w.observe(1, 32_000, 0);
        assert_eq!(w.advance(0), 10_000);
        assert_eq!(w.of_slot(1), 30_000, "never below what it came with");
        w.observe(0, 35_000, 1_000);
        w.observe(1, 40_000, 1_000);
        assert_eq!(w.advance(1_000), 35_000);
        assert_eq!(w.of_slot(1), 35_000, "the processor's, past its floor");
        // Partition 0 races ahead: partition 1 holds the processor's, so it
        // never passes partition 1's own (no event of it turns late).
        w.observe(0, 90_000, 2_000);
        assert_eq!(w.advance(2_000), 40_000);
        assert_eq!(w.each_slot(), None);
    }

    #[test]
    fn a_processor_with_only_a_joined_partition_moves_with_it() {
        let mut w = Watermarks::new(0, 0, 60_000);
        assert_eq!(w.advance(0), i64::MIN);
        w.push(0);
        w.restore(0, 20_000);
        w.set_floor(0, 20_000);
        w.observe(0, 30_000, 1_000);
        assert_eq!(w.advance(1_000), 30_000);
        assert_eq!(
            w.each_slot(),
            None,
            "the only one: its watermark is the processor's"
        );
    }

    /// The remembered minimum always equals the one computed from scratch.
    #[test]
    fn remembered_minimum_matches_a_full_computation() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for round in 0..200 {
            let n = rng.random_range(1..6);
            let mut fast = Watermarks::new(n, 1_000, 5_000);
            let mut now = 0;
            for _ in 0..400 {
                now += rng.random_range(0..800);
                let slot = rng.random_range(0..n);
                match rng.random_range(0..100) {
                    0 => fast.finish(slot),
                    1 => fast.restore(slot, now + rng.random_range(-9_000..9_000)),
                    2 => fast.set_floor(slot, now + rng.random_range(-9_000..9_000)),
                    3..=30 => {}
                    _ => fast.observe(slot, now + rng.random_range(-4_000..2_000), now),
                }
                let mut slow = fast.clone();
                slow.memo = None;
                assert_eq!(fast.advance(now), slow.advance(now), "round {round}");
                assert_eq!(fast.each_slot(), slow.each_slot(), "round {round}");
            }
        }
    }

    #[test]
    fn finished_partitions_never_hold_back() {
        let mut w = Watermarks::new(2, 0, 60_000);
        w.observe(0, 10_000, 0);
        w.observe(1, 90_000, 0);
        w.finish(0);
        assert_eq!(w.advance(0), 90_000);
    }
}
