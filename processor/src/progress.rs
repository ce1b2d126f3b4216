//! Counters and the once-a-second progress line.

use std::time::Duration;

use crate::event::rfc3339;

/// What the job has done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Records read from the source.
    pub events: u64,
    /// Records that updated a window.
    pub accepted: u64,
    /// Events whose window had already fired.
    pub late: u64,
    /// Records that could not be processed.
    pub invalid: u64,
    /// Results written.
    pub windows_emitted: u64,
    /// Records of partitions other processors own.
    pub not_owned: u64,
}

/// The progress line, e.g.
/// `progress: 51234 events/s, watermark 2026-01-01T00:01:40Z, windows 120, late 3, invalid 0`.
pub fn line(rate_per_s: f64, watermark_ms: i64, c: &Counters) -> String {
    let watermark = if watermark_ms == i64::MIN {
        "none yet".to_string()
    } else {
        rfc3339(watermark_ms)
    };
    format!(
        "progress: {rate_per_s:.0} events/s, watermark {watermark}, windows {}, late {}, invalid {}",
        c.windows_emitted, c.late, c.invalid
    )
}

/// The closing summary.
pub fn summary(outcome: &str, elapsed: Duration, c: &Counters, open_windows: usize) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    format!(
        "{outcome}: {} events in {:.2}s ({:.0} events/s), {} windows emitted, {} late, {} invalid, {} windows left open",
        c.events,
        elapsed.as_secs_f64(),
        c.events as f64 / secs,
        c.windows_emitted,
        c.late,
        c.invalid,
        open_windows
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_line_names_every_number() {
        let c = Counters {
            events: 10,
            accepted: 8,
            late: 1,
            invalid: 1,
            windows_emitted: 4,
            not_owned: 0,
        };
        assert_eq!(
            line(1234.4, 1_767_225_660_000, &c),
            "progress: 1234 events/s, watermark 2026-01-01T00:01:00Z, windows 4, late 1, invalid 1"
        );
        assert!(line(0.0, i64::MIN, &c).contains("watermark none yet"));
    }
}
