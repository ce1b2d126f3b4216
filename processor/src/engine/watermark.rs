//! Watermarks from bounded out-of-orderness.

/// The watermark trails the largest event time seen by a fixed delay. It
/// never goes backwards. Before any event it is `i64::MIN` (nothing closes).
#[derive(Clone, Debug)]
pub struct BoundedOutOfOrderness {
    delay_ms: i64,
    max_seen: Option<i64>,
}

impl BoundedOutOfOrderness {
    pub fn new(delay_ms: i64) -> Self {
        Self {
            delay_ms,
            max_seen: None,
        }
    }

    /// Records an event time.
    pub fn observe(&mut self, time_ms: i64) {
        self.max_seen = Some(self.max_seen.map_or(time_ms, |m| m.max(time_ms)));
    }

    /// The current watermark: every window ending at or before it is
    /// complete, assuming no event is more than the delay out of order.
    pub fn current(&self) -> i64 {
        self.max_seen
            .map_or(i64::MIN, |m| m.saturating_sub(self.delay_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trails_the_maximum_and_never_regresses() {
        let mut wm = BoundedOutOfOrderness::new(5_000);
        assert_eq!(wm.current(), i64::MIN);
        wm.observe(10_000);
        assert_eq!(wm.current(), 5_000);
        wm.observe(7_000); // out of order: no effect
        assert_eq!(wm.current(), 5_000);
        wm.observe(12_000);
        assert_eq!(wm.current(), 7_000);
    }
}
