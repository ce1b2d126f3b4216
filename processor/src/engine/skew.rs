//! Clock-skew guard: event times too far from ingestion time are rejected
//! or clamped, so a producer with a wrong clock cannot drag the watermark
//! into the future (closing every window early) or far into the past.

use eddy_api::spec::SkewPolicy;

use crate::event::{rfc3339, Invalid};

#[derive(Clone, Debug)]
pub struct SkewGuard {
    pub max_future_ms: i64,
    pub max_past_ms: Option<i64>,
    pub policy: SkewPolicy,
}

impl SkewGuard {
    /// The event time to use for an event stamped `time_ms` and ingested at
    /// `now_ms`, or why it is rejected.
    pub fn check(&self, time_ms: i64, now_ms: i64) -> Result<i64, Invalid> {
        let latest = now_ms.saturating_add(self.max_future_ms);
        if time_ms > latest {
            return match self.policy {
                SkewPolicy::Clamp => Ok(latest),
                SkewPolicy::Reject => Err(Invalid::TooFarInFuture {
                    time: rfc3339(time_ms),
                    by: human(time_ms - now_ms),
                    limit: human(self.max_future_ms),
                }),
            };
        }
        if let Some(max_past) = self.max_past_ms {
            let earliest = now_ms.saturating_sub(max_past);
            if time_ms < earliest {
                return match self.policy {
                    SkewPolicy::Clamp => Ok(earliest),
                    SkewPolicy::Reject => Err(Invalid::TooFarInPast {
                        time: rfc3339(time_ms),
                        by: human(now_ms - time_ms),
                        limit: human(max_past),
                    }),
                };
            }
        }
        Ok(time_ms)
    }
}

fn human(ms: i64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms.max(0) as u64)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn guard(policy: SkewPolicy) -> SkewGuard {
        SkewGuard {
            max_future_ms: 60_000,
            max_past_ms: Some(3_600_000),
            policy,
        }
    }

    #[test]
    fn within_bounds_passes_unchanged() {
        let g = guard(SkewPolicy::Reject);
        assert_eq!(g.check(NOW + 60_000, NOW), Ok(NOW + 60_000));
        assert_eq!(g.check(NOW - 3_600_000, NOW), Ok(NOW - 3_600_000));
    }

    #[test]
    fn reject_names_the_skew() {
        let g = guard(SkewPolicy::Reject);
        assert_eq!(
            g.check(NOW + 120_000, NOW).unwrap_err().to_string(),
            "event time 2026-01-01T00:02:00Z is 2m ahead of ingestion time, beyond maxFutureSkew 1m"
        );
        assert_eq!(
            g.check(NOW - 7_200_000, NOW).unwrap_err().to_string(),
            "event time 2025-12-31T22:00:00Z is 2h behind ingestion time, beyond maxPastSkew 1h"
        );
    }

    #[test]
    fn clamp_moves_to_the_nearest_allowed_time() {
        let g = guard(SkewPolicy::Clamp);
        assert_eq!(g.check(NOW + 999_999, NOW), Ok(NOW + 60_000));
        assert_eq!(g.check(0, NOW), Ok(NOW - 3_600_000));
    }
}
