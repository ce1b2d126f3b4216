//! Restart back-off for crashed containers (`CrashLoopBackOff`).
//!
//! Kubernetes waits 10 s, doubling to 5 minutes; this node waits 1 s,
//! doubling to 20 s, so tests that crash a pod on purpose stay quick. A
//! container that ran for twice the cap before exiting starts over at 1 s.

use std::time::Duration;

pub const INITIAL: Duration = Duration::from_secs(1);
pub const CAP: Duration = Duration::from_secs(20);

#[derive(Debug, Default, Clone)]
pub struct Backoff {
    last: Option<Duration>,
}

impl Backoff {
    /// The wait before restarting a container that ran for `ran_for`.
    pub fn next(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= CAP * 2 {
            self.last = None;
        }
        let delay = match self.last {
            None => INITIAL,
            Some(last) => (last * 2).min(CAP),
        };
        self.last = Some(delay);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_one_second_to_the_cap() {
        let mut backoff = Backoff::default();
        let delays: Vec<u64> = (0..7)
            .map(|_| backoff.next(Duration::from_millis(10)).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 20, 20]);
    }

    #[test]
    fn a_long_run_resets_it() {
        let mut backoff = Backoff::default();
        backoff.next(Duration::ZERO);
        backoff.next(Duration::ZERO);
        assert_eq!(backoff.next(Duration::from_secs(60)), INITIAL);
    }
}
