//! The merge stage's watermarks: per partition, the lowest mark of all
//! origins (the first stage's partitions), as each partition of the
//! partials topic carries them. A partition fires by its own, so whether a
//! partial comes before or after a window fires depends only on the order
//! of that partition's messages, never on how partitions interleave.

use crate::partials::Mark;

#[derive(Clone, Debug)]
struct Slot {
    /// Per origin: its highest mark so far (`None`: none yet).
    marks: Vec<Option<i64>>,
    idle: Vec<bool>,
    /// Never goes backwards.
    current: i64,
}

impl Slot {
    fn new(origins: usize) -> Self {
        Self {
            marks: vec![None; origins],
            idle: vec![false; origins],
            current: i64::MIN,
        }
    }

    /// The lowest mark of the origins that are not idle (one without a
    /// mark yet holds everything back: data may still come); with all of
    /// them idle, the highest mark seen.
    fn settle(&mut self) {
        let mut lowest: Option<i64> = None;
        for (mark, idle) in self.marks.iter().zip(&self.idle) {
            if !idle {
                let m = mark.unwrap_or(i64::MIN);
                lowest = Some(lowest.map_or(m, |l| l.min(m)));
            }
        }
        let candidate = lowest.unwrap_or_else(|| {
            self.marks
                .iter()
                .flatten()
                .copied()
                .max()
                .unwrap_or(i64::MIN)
        });
        self.current = self.current.max(candidate);
    }
}

/// Watermarks of the partitions a merge-stage engine runs.
#[derive(Clone, Debug)]
pub struct OriginMarks {
    origins: usize,
    slots: Vec<Slot>,
}

impl OriginMarks {
    pub fn new(partitions: usize, origins: u32) -> Self {
        Self {
            origins: origins as usize,
            slots: vec![Slot::new(origins as usize); partitions],
        }
    }

    /// How many origins there are.
    pub fn origins(&self) -> usize {
        self.origins
    }

    /// Takes an origin's mark; false if the job has no such origin.
    pub fn observe(&mut self, slot: usize, mark: &Mark) -> bool {
        let s = &mut self.slots[slot];
        let Some(at) = s.marks.get_mut(mark.origin as usize) else {
            return false;
        };
        *at = Some(at.map_or(mark.watermark, |m| m.max(mark.watermark)));
        s.idle[mark.origin as usize] = mark.idle;
        s.settle();
        true
    }

    /// Origin `origin`'s mark in partition `slot`, once it sent one.
    pub fn of_origin(&self, slot: usize, origin: u32) -> Option<i64> {
        *self.slots[slot].marks.get(origin as usize)?
    }

    /// The watermark partition `slot` fires by.
    pub fn of_slot(&self, slot: usize) -> i64 {
        self.slots[slot].current
    }

    /// Every partition's watermark, when they differ (else `None`: the
    /// lowest, [`OriginMarks::current`], decides for all).
    pub fn each(&self) -> Option<Vec<i64>> {
        let first = self.slots.first()?.current;
        self.slots
            .iter()
            .any(|s| s.current != first)
            .then(|| self.slots.iter().map(|s| s.current).collect())
    }

    /// The lowest watermark of all partitions.
    pub fn current(&self) -> i64 {
        self.slots
            .iter()
            .map(|s| s.current)
            .min()
            .unwrap_or(i64::MIN)
    }

    /// Every origin of partition `slot` sent the end of its input.
    pub fn finished(&self, slot: usize) -> bool {
        self.slots[slot].current == i64::MAX
    }

    /// A checkpoint's watermark for partition `slot`: every origin starts
    /// there (the lowest of them was), and each moves on with its next mark.
    pub fn restore(&mut self, slot: usize, watermark: i64) {
        let s = &mut self.slots[slot];
        for m in &mut s.marks {
            *m = Some(m.map_or(watermark, |m| m.max(watermark)));
        }
        s.current = s.current.max(watermark);
    }

    /// Each origin's mark and idleness in partition `slot`, for a
    /// checkpoint.
    pub fn snapshot(&self, slot: usize) -> Vec<Mark> {
        let s = &self.slots[slot];
        s.marks
            .iter()
            .zip(&s.idle)
            .enumerate()
            .filter_map(|(origin, (mark, idle))| {
                Some(Mark {
                    origin: origin as u32,
                    watermark: (*mark)?,
                    idle: *idle,
                })
            })
            .collect()
    }

    /// Takes the origins' marks a checkpoint recorded (after
    /// [`OriginMarks::restore`] set its watermark).
    pub fn restore_marks(&mut self, slot: usize, marks: &[Mark]) {
        for mark in marks {
            self.observe(slot, mark);
        }
    }

    /// A partition joins.
    pub fn push(&mut self) {
        self.slots.push(Slot::new(self.origins));
    }

    /// Partition `slot` leaves; the last takes its place.
    pub fn swap_remove(&mut self, slot: usize) {
        self.slots.swap_remove(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(origin: u32, watermark: i64) -> Mark {
        Mark {
            origin,
            watermark,
            idle: false,
        }
    }

    #[test]
    fn the_slowest_origin_decides_and_nothing_goes_back() {
        let mut m = OriginMarks::new(2, 3);
        assert!(m.observe(0, &mark(0, 100)));
        assert!(m.observe(0, &mark(1, 50)));
        assert_eq!(m.of_slot(0), i64::MIN, "origin 2 has said nothing yet");
        m.observe(0, &mark(2, 70));
        assert_eq!(m.of_slot(0), 50);
        m.observe(0, &mark(1, 40));
        assert_eq!(m.of_slot(0), 50, "a mark never lowers its origin's");
        assert_eq!(m.current(), i64::MIN, "slot 1 heard nothing");
        assert_eq!(m.each(), Some(vec![50, i64::MIN]));
        assert!(!m.observe(0, &mark(3, 10)), "the job has no origin 3");
    }

    #[test]
    fn idle_origins_hold_nothing_back() {
        let mut m = OriginMarks::new(1, 2);
        m.observe(0, &mark(0, 100));
        m.observe(
            0,
            &Mark {
                origin: 1,
                watermark: 20,
                idle: true,
            },
        );
        assert_eq!(m.of_slot(0), 100);
        m.observe(0, &mark(1, 30));
        assert_eq!(m.of_slot(0), 100, "back from idle, it cannot lower it");
        m.observe(0, &mark(0, 200));
        assert_eq!(
            m.of_slot(0),
            100,
            "origin 1 holds it at 30 now, so it stays"
        );
        m.observe(0, &mark(1, 150));
        assert_eq!(m.of_slot(0), 150);
    }

    #[test]
    fn a_restored_partition_starts_every_origin_at_its_watermark() {
        let mut m = OriginMarks::new(1, 2);
        m.restore(0, 500);
        assert_eq!(m.of_slot(0), 500);
        m.observe(0, &mark(0, 900));
        assert_eq!(m.of_slot(0), 500);
        m.observe(0, &mark(1, 700));
        assert_eq!(m.of_slot(0), 700);
        m.observe(0, &mark(0, i64::MAX));
        m.observe(0, &mark(1, i64::MAX));
        assert!(m.finished(0));
    }

    #[test]
    fn a_checkpoint_keeps_every_origins_mark() {
        let mut m = OriginMarks::new(1, 3);
        m.observe(0, &mark(0, i64::MAX));
        m.observe(0, &mark(1, 400));
        let saved = m.snapshot(0);
        assert_eq!(saved.len(), 2, "origin 2 has none");
        let mut restored = OriginMarks::new(1, 3);
        restored.restore(0, m.of_slot(0));
        restored.restore_marks(0, &saved);
        restored.observe(0, &mark(1, i64::MAX));
        restored.observe(0, &mark(2, i64::MAX));
        assert!(restored.finished(0), "origin 0's end was kept");
    }
}
