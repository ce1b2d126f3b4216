//! Watermark advice: from how far behind the largest event time seen
//! events arrive, which out-of-orderness and allowed lateness would have
//! kept a share of them, and what it would cost in open windows.
//!
//! An event `d` ms behind the largest event time of its partition is on
//! time with an out-of-orderness of at least `d`, and still counted (as a
//! revision) with out-of-orderness plus allowed lateness of at least `d`
//! (a little more near window ends; the advice errs on the safe side).

use serde::{Deserialize, Serialize};
use sketches_ddsketch::{Config, DDSketch};

/// Shares of events the advice is worked out for.
pub const KEEP: [f64; 2] = [0.99, 0.999];

/// The advice for one share, as `GET /stats` shows it and `/metrics`
/// exports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Advice {
    pub keep: f64,
    /// Out-of-orderness that keeps `keep` of events on time (ms).
    pub out_of_orderness_ms: i64,
    /// Allowed lateness that, with the job's out-of-orderness, keeps
    /// `keep` of events (ms; 0 when the job's already does).
    pub allowed_lateness_ms: i64,
    /// Windows open with that allowed lateness, scaled from those open now
    /// by how much longer each would stay open.
    pub open_windows: f64,
}

/// What the job is set to and how it is doing.
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    pub out_of_orderness_ms: i64,
    pub allowed_lateness_ms: i64,
    /// How long a window spans in event time (a session's gap).
    pub window_ms: i64,
    pub open_windows: u64,
}

/// The delay (ms) that `keep` of all events were at or under; `None`
/// before any event.
pub fn delay_kept(delays: &DDSketch, in_order: u64, keep: f64) -> Option<f64> {
    let total = in_order + delays.count() as u64;
    if total == 0 {
        return None;
    }
    let rank = keep * total as f64;
    if rank <= in_order as f64 {
        return Some(0.0);
    }
    let within = (rank - in_order as f64) / delays.count() as f64;
    delays.quantile(within.clamp(0.0, 1.0)).ok().flatten()
}

/// The advice for every share in [`KEEP`] from the partitions' delays.
pub fn advise<'a>(
    partitions: impl IntoIterator<Item = (&'a DDSketch, u64)>,
    setting: Setting,
) -> Vec<Advice> {
    let mut all = DDSketch::new(Config::defaults());
    let mut in_order = 0;
    for (delays, n) in partitions {
        // Sketches made with the same configuration always merge.
        let _ = all.merge(delays);
        in_order += n;
    }
    let span = |lateness: i64| (setting.window_ms + setting.out_of_orderness_ms + lateness).max(1);
    KEEP.iter()
        .filter_map(|&keep| {
            let delay = delay_kept(&all, in_order, keep)?.ceil() as i64;
            let lateness = delay.saturating_sub(setting.out_of_orderness_ms).max(0);
            let growth = span(lateness) as f64 / span(setting.allowed_lateness_ms) as f64;
            Some(Advice {
                keep,
                out_of_orderness_ms: delay,
                allowed_lateness_ms: lateness,
                open_windows: setting.open_windows as f64 * growth,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sketch(values: impl IntoIterator<Item = f64>) -> DDSketch {
        let mut s = DDSketch::new(Config::defaults());
        for v in values {
            s.add(v);
        }
        s
    }

    #[test]
    fn two_percent_seven_minutes_late_needs_seven_minutes() {
        let minute = 60_000.0;
        // 98 in order, 2 seven minutes behind, per hundred.
        let delays = sketch((0..200).map(|_| 7.0 * minute));
        let setting = Setting {
            out_of_orderness_ms: 5_000,
            allowed_lateness_ms: 180_000,
            window_ms: 60_000,
            open_windows: 100,
        };
        let advice = advise([(&delays, 9_800)], setting);
        assert_eq!(advice.len(), 2);
        for a in &advice {
            let minutes = a.out_of_orderness_ms as f64 / minute;
            assert!((6.9..7.2).contains(&minutes), "{a:?}");
            assert_eq!(a.allowed_lateness_ms, a.out_of_orderness_ms - 5_000);
            assert!(
                a.open_windows > 100.0,
                "longer lateness, more windows open: {a:?}"
            );
        }
    }

    #[test]
    fn in_order_events_need_nothing_and_no_events_give_no_advice() {
        let none = sketch([]);
        let setting = Setting {
            out_of_orderness_ms: 5_000,
            allowed_lateness_ms: 0,
            window_ms: 60_000,
            open_windows: 10,
        };
        let advice = advise([(&none, 1_000)], setting);
        assert!(advice
            .iter()
            .all(|a| a.out_of_orderness_ms == 0 && a.allowed_lateness_ms == 0));
        assert!(advice.iter().all(|a| a.open_windows <= 10.0));
        assert!(advise([(&none, 0)], setting).is_empty());
        // A few out of order, all within the 99th percentile: still nothing.
        let few = sketch((0..5).map(|_| 2_000.0));
        let a = &advise([(&few, 995)], setting)[0];
        assert_eq!(a.out_of_orderness_ms, 0, "{a:?}");
    }
}
