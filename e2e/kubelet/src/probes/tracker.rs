//! Probe timing and result bookkeeping (pure), with Kubernetes' defaults.

use std::time::Duration;

use k8s_openapi::api::core::v1::Probe;

/// Which probe: they differ in their initial result and what failing does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

/// A probe's timing and thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    /// Kubernetes' defaults: no delay, every 10 s, 1 s timeout, 1 success,
    /// 3 failures.
    pub fn of(probe: &Probe) -> Self {
        let seconds = |value: Option<i32>, default: u64, min: u64| {
            Duration::from_secs(value.map_or(default, |v| (v.max(0) as u64).max(min)))
        };
        let count = |value: Option<i32>, default: u32| value.map_or(default, |v| v.max(1) as u32);
        Self {
            initial_delay: seconds(probe.initial_delay_seconds, 0, 0),
            period: seconds(probe.period_seconds, 10, 1),
            timeout: seconds(probe.timeout_seconds, 1, 1),
            success_threshold: count(probe.success_threshold, 1),
            failure_threshold: count(probe.failure_threshold, 3),
        }
    }
}

/// Consecutive results turned into the probe's verdict.
#[derive(Debug, Clone)]
pub struct Tracker {
    kind: Kind,
    timing: Timing,
    passing: bool,
    successes: u32,
    failures: u32,
}

impl Tracker {
    /// Readiness and startup start failing, liveness starts passing.
    pub fn new(kind: Kind, timing: Timing) -> Self {
        Self {
            kind,
            timing,
            passing: kind == Kind::Liveness,
            successes: 0,
            failures: 0,
        }
    }

    pub fn passing(&self) -> bool {
        self.passing
    }

    /// Records one result; returns the new verdict when it changed.
    pub fn record(&mut self, success: bool) -> Option<bool> {
        if success {
            self.failures = 0;
            self.successes += 1;
            // Liveness and startup probes need one success only.
            let needed = match self.kind {
                Kind::Readiness => self.timing.success_threshold,
                Kind::Liveness | Kind::Startup => 1,
            };
            if !self.passing && self.successes >= needed {
                self.passing = true;
                return Some(true);
            }
        } else {
            self.successes = 0;
            self.failures += 1;
            if self.failures >= self.timing.failure_threshold {
                // A startup probe that never passed fails too: that is what
                // gets the container killed.
                let changed = self.passing || self.kind == Kind::Startup;
                self.passing = false;
                if changed {
                    self.failures = 0;
                    return Some(false);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(success: u32, failure: u32) -> Timing {
        Timing {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    #[test]
    fn defaults_as_kubernetes() {
        let timing = Timing::of(&Probe::default());
        assert_eq!(timing.period, Duration::from_secs(10));
        assert_eq!(timing.timeout, Duration::from_secs(1));
        assert_eq!((timing.success_threshold, timing.failure_threshold), (1, 3));
        let zero = Timing::of(&Probe {
            period_seconds: Some(0),
            ..Probe::default()
        });
        assert_eq!(zero.period, Duration::from_secs(1));
    }

    #[test]
    fn readiness_needs_its_success_threshold_and_fails_after_the_failure_threshold() {
        let mut ready = Tracker::new(Kind::Readiness, timing(2, 2));
        assert!(!ready.passing());
        assert_eq!(ready.record(true), None);
        assert_eq!(ready.record(true), Some(true));
        assert_eq!(ready.record(false), None);
        assert_eq!(ready.record(true), None, "a success resets the failures");
        assert_eq!(ready.record(false), None);
        assert_eq!(ready.record(false), Some(false));
        assert_eq!(ready.record(false), None, "no repeated verdicts");
    }

    #[test]
    fn liveness_starts_passing_and_startup_failing() {
        let mut live = Tracker::new(Kind::Liveness, timing(1, 3));
        assert!(live.passing());
        assert_eq!(live.record(false), None);
        assert_eq!(live.record(false), None);
        assert_eq!(live.record(false), Some(false));

        let mut startup = Tracker::new(Kind::Startup, timing(1, 2));
        assert_eq!(startup.record(false), None);
        assert_eq!(startup.record(false), Some(false), "never started: kill it");
        let mut startup = Tracker::new(Kind::Startup, timing(1, 2));
        assert_eq!(startup.record(true), Some(true));
    }
}
