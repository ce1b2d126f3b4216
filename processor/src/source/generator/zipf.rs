//! Zipf-distributed key ranks by Walker's alias method: after an O(n)
//! table build, each sample is one random draw and one table read, instead
//! of rejection sampling with two `powf` calls (the generator's largest
//! cost). Tables are built for up to [`MAX_TABLE_KEYS`] keys (8 bytes a
//! key); beyond that the caller samples by rejection.

use rand::Rng;

/// The most keys an alias table is built for (8 MiB).
pub const MAX_TABLE_KEYS: u64 = 1 << 20;

/// Ranks 0..n, rank r drawn with probability proportional to 1/(r+1)^s.
pub struct ZipfTable {
    /// Per column: the chance (out of 2^32) of keeping the column's own
    /// rank rather than its alias.
    keep: Vec<u32>,
    alias: Vec<u32>,
}

impl ZipfTable {
    /// The table for `n` ranks (1 ≤ n ≤ [`MAX_TABLE_KEYS`]) and skew `s`.
    pub fn new(n: u64, s: f64) -> Self {
        assert!(
            (1..=MAX_TABLE_KEYS).contains(&n),
            "{n} keys for an alias table"
        );
        let n = n as usize;
        let weights: Vec<f64> = (1..=n).map(|k| (k as f64).powf(-s)).collect();
        let total: f64 = weights.iter().sum();
        // Each column holds mass 1 (scaled): a light rank tops its column
        // up from a heavy one, which then takes the remainder.
        let mut scaled: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let mut keep = vec![u32::MAX; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let (mut light, mut heavy): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < 1.0);
        while let (Some(l), Some(&h)) = (light.pop(), heavy.last()) {
            keep[l] = (scaled[l] * 4_294_967_296.0) as u32;
            alias[l] = h as u32;
            scaled[h] -= 1.0 - scaled[l];
            if scaled[h] < 1.0 {
                heavy.pop();
                light.push(h);
            }
        }
        // What is left holds (up to rounding) exactly its own mass.
        Self { keep, alias }
    }

    /// A rank: one 64-bit draw picks the column (high half) and whether
    /// to keep it (low half).
    pub fn sample(&self, rng: &mut impl Rng) -> u64 {
        let draw: u64 = rng.random();
        let column = ((draw >> 32) * self.keep.len() as u64) >> 32;
        let column = column as usize;
        if (draw as u32) < self.keep[column] {
            column as u64
        } else {
            u64::from(self.alias[column])
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// Sampled frequencies match 1/k^s to within sampling noise, for a
    /// skewed and a flat distribution.
    #[test]
    fn frequencies_follow_the_distribution() {
        for (n, s) in [(1000u64, 1.1), (50, 0.5), (1, 1.0)] {
            let table = ZipfTable::new(n, s);
            let mut rng = ChaCha8Rng::seed_from_u64(3);
            let draws = 2_000_000;
            let mut counts = vec![0u64; n as usize];
            for _ in 0..draws {
                counts[table.sample(&mut rng) as usize] += 1;
            }
            let total: f64 = (1..=n).map(|k| (k as f64).powf(-s)).sum();
            for (rank, count) in counts.iter().enumerate().take(20) {
                let p = ((rank + 1) as f64).powf(-s) / total;
                let expected = p * draws as f64;
                let sd = (expected * (1.0 - p)).sqrt();
                assert!(
                    (*count as f64 - expected).abs() < 5.0 * sd + 1.0,
                    "n {n}, s {s}, rank {rank}: {count} drawn, {expected:.0} expected"
                );
            }
        }
    }
}
