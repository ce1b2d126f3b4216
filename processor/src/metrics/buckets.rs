//! A fixed-bucket histogram kept as plain numbers, so whoever records into
//! it needs no atomics and a snapshot is a cheap copy.

/// Seconds: from a millisecond to an hour.
pub const LATENCY: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Seconds behind the watermark: from a second to a day.
pub const LATENESS: &[f64] = &[
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 21600.0, 86400.0,
];

#[derive(Clone, Debug, PartialEq)]
pub struct Buckets {
    bounds: &'static [f64],
    /// Per bucket (not cumulative), the last one for everything above the
    /// highest bound.
    counts: Vec<u64>,
    sum: f64,
}

impl Buckets {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        let at = self.bounds.partition_point(|b| *b < value);
        self.counts[at] += 1;
        self.sum += value;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// `(upper bound, count in that bucket)`, the last bound +Inf, as
    /// `prometheus-client` encodes them.
    pub fn pairs(&self) -> Vec<(f64, u64)> {
        self.bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.counts.iter().copied())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_that_holds_them() {
        let mut b = Buckets::new(&[1.0, 5.0]);
        for v in [0.5, 1.0, 3.0, 5.0, 9.0] {
            b.observe(v);
        }
        assert_eq!(
            b.pairs(),
            vec![(1.0, 2), (5.0, 2), (f64::INFINITY, 1)],
            "upper bounds are inclusive"
        );
        assert_eq!((b.count(), b.sum()), (5, 18.5));
    }
}
