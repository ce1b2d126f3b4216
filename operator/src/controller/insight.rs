//! What the pods' `GET /stats` says, for the job's status: the hot keys
//! above `spec.autoscaling.hotKeyShare` and the watermark advice. Pure:
//! the controller fetches, this decides.

use std::time::Duration;

use eddy_api::spec::{HotKey, WatermarkAdvice, WatermarkSetting};

use crate::scheduler::PodStats;

/// Hot keys kept in status at most.
const HOT_KEYS: usize = 10;
/// Dropped share above which the operator warns (1%).
pub const DROPPED_WARNING: f64 = 0.01;

/// What the status shows of the pods' figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Insight {
    pub hot_keys: Vec<HotKey>,
    pub hot_key_summary: Option<String>,
    pub advice: Option<WatermarkAdvice>,
}

/// The insight from every pod's stats; `hot_share` is the share above
/// which a key is hot.
pub fn insight(pods: &[PodStats], hot_share: f64) -> Insight {
    let mut hot: Vec<HotKey> = pods
        .iter()
        .flat_map(|p| &p.hot_keys)
        .filter(|k| k.share >= hot_share)
        .map(|k| HotKey {
            partition: k.partition,
            key: k.key.clone(),
            // Two decimals: the status changes when the picture does.
            share: (k.share * 100.0).round() / 100.0,
        })
        .collect();
    hot.sort_by(|a, b| b.share.total_cmp(&a.share).then(a.key.cmp(&b.key)));
    hot.truncate(HOT_KEYS);
    let summary = (!hot.is_empty()).then(|| {
        hot.iter()
            .take(3)
            .map(|k| format!("{} (p{}) {:.0}%", k.key, k.partition, k.share * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    });
    let read: u64 = pods.iter().map(|p| p.events_read).sum();
    let late: u64 = pods.iter().map(|p| p.late).sum();
    let advice = (read > 0).then(|| {
        let mut keeps: Vec<f64> = pods
            .iter()
            .flat_map(|p| p.advice.iter().map(|a| a.keep))
            .collect();
        keeps.sort_by(f64::total_cmp);
        keeps.dedup();
        WatermarkAdvice {
            dropped_share: (late as f64 / read as f64 * 10_000.0).round() / 10_000.0,
            settings: keeps
                .iter()
                .map(|&keep| {
                    let of_keep = || {
                        pods.iter()
                            .flat_map(|p| &p.advice)
                            .filter(move |a| a.keep == keep)
                    };
                    // The pod that needs the most decides.
                    let ooo = of_keep().map(|a| a.out_of_orderness_ms).max().unwrap_or(0);
                    let lateness = of_keep().map(|a| a.allowed_lateness_ms).max().unwrap_or(0);
                    WatermarkSetting {
                        keep: format!("{}%", keep * 100.0),
                        max_out_of_orderness: duration(ooo),
                        allowed_lateness: duration(lateness),
                        open_windows: of_keep().map(|a| a.open_windows).sum::<f64>().round() as u64,
                    }
                })
                .collect(),
        }
    });
    Insight {
        hot_keys: hot,
        hot_key_summary: summary,
        advice,
    }
}

/// `ms` rounded up to whole seconds, as a duration the spec takes.
fn duration(ms: i64) -> String {
    let secs = (ms.max(0) as u64).div_ceil(1000);
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::client::{PodAdvice, PodHotKey};

    fn pod(read: u64, late: u64, keys: &[(u32, &str, f64)], ooo_ms: i64) -> PodStats {
        PodStats {
            events_read: read,
            late,
            hot_keys: keys
                .iter()
                .map(|(partition, key, share)| PodHotKey {
                    partition: *partition,
                    key: key.to_string(),
                    share: *share,
                })
                .collect(),
            advice: [0.99, 0.999]
                .map(|keep| PodAdvice {
                    keep,
                    out_of_orderness_ms: ooo_ms,
                    allowed_lateness_ms: (ooo_ms - 5_000).max(0),
                    open_windows: 10.0,
                })
                .to_vec(),
        }
    }

    #[test]
    fn the_heaviest_keys_above_the_share_and_the_strictest_advice() {
        let pods = [
            pod(10_000, 200, &[(0, "bot", 0.514), (0, "u1", 0.1)], 420_000),
            pod(10_000, 0, &[(3, "m7", 0.31)], 2_000),
        ];
        let i = insight(&pods, 0.3);
        let keys: Vec<(&str, f64)> = i
            .hot_keys
            .iter()
            .map(|k| (k.key.as_str(), k.share))
            .collect();
        assert_eq!(keys, [("bot", 0.51), ("m7", 0.31)]);
        assert_eq!(
            i.hot_key_summary.as_deref(),
            Some("bot (p0) 51%, m7 (p3) 31%")
        );
        let advice = i.advice.unwrap();
        assert_eq!(advice.dropped_share, 0.01);
        assert_eq!(advice.settings.len(), 2);
        let s = &advice.settings[0];
        assert_eq!(
            (
                s.keep.as_str(),
                s.max_out_of_orderness.as_str(),
                s.allowed_lateness.as_str()
            ),
            ("99%", "7m", "6m 55s")
        );
        assert_eq!(s.open_windows, 20);
    }

    #[test]
    fn no_events_no_advice_and_no_hot_keys_no_summary() {
        let i = insight(&[pod(0, 0, &[(0, "a", 0.2)], 0)], 0.3);
        assert_eq!(i, Insight::default());
    }
}
