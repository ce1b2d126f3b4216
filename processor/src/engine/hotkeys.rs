//! Heavy hitters per partition: the Space-Saving algorithm over a sliding
//! time span, plus the partition's event rate.
//!
//! Space-Saving keeps `capacity` counters; an unseen key replaces the
//! smallest counter and inherits its count as the error bound. Any key with
//! more than total/capacity events is guaranteed to be tracked. The span
//! slides in two halves: counts of the current half plus the previous one,
//! so a key that stopped being hot drops out within one span.

use std::collections::HashMap;

use compact_str::CompactString;

use super::sample::Sampler;
use crate::FastMap;

/// A key's estimated share of its partition's events over the span.
#[derive(Clone, Debug, PartialEq)]
pub struct HotKey {
    pub key: String,
    /// Upper estimate of the key's events in the span.
    pub count: u64,
    /// The estimate exceeds the true count by at most this much.
    pub error: u64,
    /// `count` over all events in the span.
    pub share: f64,
}

/// A key's counter: events counted, the error inherited from the counter
/// it replaced, and when it was (re)placed (for deterministic ties).
#[derive(Clone, Debug)]
struct Counter {
    key: CompactString,
    count: u64,
    error: u64,
    placed: u64,
}

/// One half of the span: the counters in fixed slots, an index from key to
/// slot, and a binary min-heap of the slots by (count, placement), so that
/// the counter an unseen key replaces is found without a scan.
#[derive(Clone, Debug, Default)]
struct Half {
    counters: Vec<Counter>,
    index: FastMap<CompactString, usize>,
    /// Slots, heap-ordered by `rank`.
    heap: Vec<usize>,
    /// Each slot's place in `heap`.
    at: Vec<usize>,
    /// Events in this half, each counted.
    total: u64,
    placements: u64,
    /// Which events update the counters, and by how much.
    sampler: Sampler,
}

impl Half {
    /// Counts one event; the counters see a sample of them, weighted
    /// (see [`Sampler`]).
    fn add(&mut self, key: &str, capacity: usize) {
        self.total += 1;
        let weight = self.sampler.weight();
        if weight == 0 {
            return;
        }
        if let Some(&slot) = self.index.get(key) {
            self.counters[slot].count += weight;
            self.sift_down(self.at[slot]);
            return;
        }
        self.placements += 1;
        let placed = self.placements;
        if self.counters.len() < capacity {
            // In at the end of the heap, then up to its place.
            let slot = self.counters.len();
            self.index.insert(key.into(), slot);
            self.counters.push(Counter {
                key: key.into(),
                count: weight,
                error: 0,
                placed,
            });
            self.at.push(self.heap.len());
            self.heap.push(slot);
            self.sift_up(self.heap.len() - 1);
            return;
        }
        // Replace the smallest counter; ties go to the one placed first, so
        // the result does not depend on hash-map order.
        let Some(&slot) = self.heap.first() else {
            return;
        };
        let victim = &mut self.counters[slot];
        let min = victim.count;
        self.index.remove(victim.key.as_str());
        *victim = Counter {
            key: key.into(),
            count: min + weight,
            error: min,
            placed,
        };
        self.index.insert(key.into(), slot);
        self.sift_down(0);
    }

    /// The order of the heap: fewest events first, then placed first.
    fn rank(&self, slot: usize) -> (u64, u64) {
        let c = &self.counters[slot];
        (c.count, c.placed)
    }

    fn swap(&mut self, i: usize, j: usize) {
        self.heap.swap(i, j);
        self.at[self.heap[i]] = i;
        self.at[self.heap[j]] = j;
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let (left, right) = (2 * i + 1, 2 * i + 2);
            let mut least = i;
            if left < self.heap.len() && self.rank(self.heap[left]) < self.rank(self.heap[least]) {
                least = left;
            }
            if right < self.heap.len() && self.rank(self.heap[right]) < self.rank(self.heap[least])
            {
                least = right;
            }
            if least == i {
                return;
            }
            self.swap(i, least);
            i = least;
        }
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.rank(self.heap[parent]) <= self.rank(self.heap[i]) {
                return;
            }
            self.swap(i, parent);
            i = parent;
        }
    }
}

/// Heavy-hitter tracker for one partition.
#[derive(Clone, Debug)]
pub struct SpaceSaving {
    capacity: usize,
    half_span_ms: i64,
    current_start: Option<i64>,
    current: Half,
    previous: Half,
}

impl SpaceSaving {
    /// Tracks up to `capacity` keys over a span of `span_ms`.
    pub fn new(capacity: usize, span_ms: i64) -> Self {
        Self {
            capacity: capacity.max(1),
            half_span_ms: (span_ms / 2).max(1),
            current_start: None,
            current: Half::default(),
            previous: Half::default(),
        }
    }

    /// Counts one event of `key` at source clock `now_ms`.
    pub fn add(&mut self, key: &str, now_ms: i64) {
        self.rotate(now_ms);
        self.current.add(key, self.capacity);
    }

    fn rotate(&mut self, now_ms: i64) {
        let start = *self.current_start.get_or_insert(now_ms);
        if now_ms - start >= 2 * self.half_span_ms {
            self.previous = Half::default();
            self.current = Half::default();
            self.current_start = Some(now_ms);
        } else if now_ms - start >= self.half_span_ms {
            self.previous = std::mem::take(&mut self.current);
            self.current_start = Some(start + self.half_span_ms);
        }
    }

    /// Events counted over the span.
    pub fn total(&self) -> u64 {
        self.current.total + self.previous.total
    }

    /// The `n` heaviest keys, heaviest first (ties by key).
    pub fn top(&self, n: usize) -> Vec<HotKey> {
        let mut counts: HashMap<&str, (u64, u64)> = HashMap::new();
        for half in [&self.current, &self.previous] {
            for c in &half.counters {
                let entry = counts.entry(c.key.as_str()).or_default();
                entry.0 += c.count;
                entry.1 += c.error;
            }
        }
        let total = self.total().max(1) as f64;
        let mut top: Vec<HotKey> = counts
            .into_iter()
            .map(|(key, (count, error))| HotKey {
                key: key.to_string(),
                count,
                error,
                share: count as f64 / total,
            })
            .collect();
        top.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        top.truncate(n);
        top
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_hot_key_among_many() {
        let mut s = SpaceSaving::new(16, 60_000);
        for i in 0..10_000u64 {
            let key = if i % 2 == 0 {
                "hot".to_string()
            } else {
                format!("k{}", i % 997)
            };
            s.add(&key, 0);
        }
        let top = s.top(3);
        assert_eq!(top[0].key, "hot");
        assert!((0.49..=0.56).contains(&top[0].share), "{:?}", top[0]);
        assert!(top[1].share < 0.1);
    }

    #[test]
    fn a_key_that_cools_down_drops_out_within_a_span() {
        let mut s = SpaceSaving::new(8, 10_000);
        for _ in 0..1000 {
            s.add("was-hot", 0);
        }
        for t in 0..1000 {
            s.add(&format!("k{}", t % 4), 10_000 + t);
        }
        // Four equally hot keys (sampled, so their estimates differ).
        let top: Vec<String> = s.top(8).into_iter().map(|h| h.key).collect();
        assert_eq!(top.len(), 4, "{top:?}");
        assert!(top
            .iter()
            .all(|k| ["k0", "k1", "k2", "k3"].contains(&k.as_str())));
    }

    /// The counter replaced is the one a scan for the smallest (count,
    /// placement) finds, whatever the order of keys.
    #[test]
    fn replaces_the_counter_a_scan_would() {
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut half = Half::default();
        for _ in 0..20_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            // Mostly a few keys, sometimes one of many.
            let key = if rng.is_multiple_of(3) {
                format!("k{}", rng % 5)
            } else {
                format!("c{}", rng % 1000)
            };
            let scan = (half.counters.len() == 12).then(|| {
                (0..half.counters.len())
                    .min_by_key(|i| (half.counters[*i].count, half.counters[*i].placed))
                    .unwrap()
            });
            let known = half.index.get(key.as_str()).copied();
            let counted = |h: &Half| h.counters.iter().map(|c| c.count).sum::<u64>();
            let before = counted(&half);
            half.add(&key, 12);
            // Past the first events only a sample reaches the counters.
            let sampled = counted(&half) > before;
            if let (Some(slot), None, true) = (scan, known, sampled) {
                assert_eq!(half.counters[slot].key, key);
            }
            for (place, slot) in half.heap.iter().enumerate() {
                assert_eq!(half.at[*slot], place);
                if place > 0 {
                    assert!(half.rank(half.heap[(place - 1) / 2]) <= half.rank(*slot));
                }
            }
        }
        assert_eq!(half.total, 20_000);
    }

    #[test]
    fn results_do_not_depend_on_hash_order() {
        let run = || {
            let mut s = SpaceSaving::new(4, 60_000);
            for i in 0..500u32 {
                s.add(&format!("k{}", i % 9), 0);
            }
            s.top(4)
        };
        assert_eq!(run(), run());
    }
}
