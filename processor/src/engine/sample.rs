//! Sampling for statistics that every event would otherwise update (the
//! hot-key counters, the delay sketch): the first [`EXACT`] occurrences
//! are recorded one by one, after that about one in [`STRIDE`], with
//! weight `STRIDE`, so totals stay unbiased and small inputs (tests, a
//! quiet partition) stay exact. Which occurrences are kept depends only on
//! their number (hashed, so an input with a period does not alias), so the
//! same events give the same statistics.

/// Occurrences recorded exactly before sampling starts.
pub const EXACT: u64 = 256;
/// One occurrence in this many is recorded after that, with this weight.
pub const STRIDE: u64 = 8;

#[derive(Clone, Debug, Default)]
pub struct Sampler {
    seen: u64,
}

impl Sampler {
    /// The weight to record the next occurrence with (0: skip it).
    #[inline]
    pub fn weight(&mut self) -> u64 {
        self.seen += 1;
        if self.seen <= EXACT {
            return 1;
        }
        // The splitmix64 finaliser: every bit of the count moves the low bits.
        let mut z = self.seen.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        if z.is_multiple_of(STRIDE) {
            STRIDE
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_at_first_then_unbiased() {
        let mut s = Sampler::default();
        let first: u64 = (0..EXACT).map(|_| s.weight()).sum();
        assert_eq!(first, EXACT);
        let n = 800_000;
        let rest: u64 = (0..n).map(|_| s.weight()).sum();
        assert!(
            (rest as f64 / n as f64 - 1.0).abs() < 0.02,
            "{rest} for {n}"
        );
        let mut again = Sampler::default();
        let mut s = Sampler::default();
        assert!((0..10_000).all(|_| s.weight() == again.weight()));
    }
}
