//! Window assignment: pure functions from an event time to its window.

/// A half-open window `[start, end)` in epoch milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

/// Fixed-size, non-overlapping windows aligned to the Unix epoch.
#[derive(Clone, Copy, Debug)]
pub struct Tumbling {
    size_ms: i64,
}

impl Tumbling {
    /// `size_ms` must be positive (validation guarantees it).
    pub fn new(size_ms: i64) -> Self {
        assert!(size_ms > 0, "window size must be positive");
        Self { size_ms }
    }

    /// The one window `time_ms` falls in; correct for times before 1970 too.
    pub fn assign(&self, time_ms: i64) -> Window {
        let start = time_ms - time_ms.rem_euclid(self.size_ms);
        Window {
            start,
            end: start + self.size_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assigns_half_open_windows() {
        let w = Tumbling::new(60_000);
        assert_eq!(
            w.assign(0),
            Window {
                start: 0,
                end: 60_000
            }
        );
        assert_eq!(
            w.assign(59_999),
            Window {
                start: 0,
                end: 60_000
            }
        );
        assert_eq!(
            w.assign(60_000),
            Window {
                start: 60_000,
                end: 120_000
            }
        );
    }

    #[test]
    fn negative_times_floor_towards_the_past() {
        let w = Tumbling::new(1_000);
        assert_eq!(
            w.assign(-1),
            Window {
                start: -1_000,
                end: 0
            }
        );
        assert_eq!(
            w.assign(-1_000),
            Window {
                start: -1_000,
                end: 0
            }
        );
        assert_eq!(
            w.assign(-1_001),
            Window {
                start: -2_000,
                end: -1_000
            }
        );
    }
}
