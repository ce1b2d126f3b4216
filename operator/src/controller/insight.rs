//! What the pods' `GET /stats` says, for the job's status: the hot keys
//! above `spec.autoscaling.hotKeyShare`, the watermark advice and a
//! two-phase job's stages. Pure: the controller fetches, this decides.

use std::time::Duration;

use eddy_api::spec::{HotKey, StageStatus, WatermarkAdvice, WatermarkSetting};

use crate::scheduler::{client::PodStage, PodStats};

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
    pub stages: Vec<StageStatus>,
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
        stages: stages(pods),
    }
}

/// Each stage over the pods that report it, in the order the pods list
/// them (first stage first): counts summed, the watermark and the last
/// checkpoint the lowest of its pods' (what every pod has reached).
fn stages(pods: &[PodStats]) -> Vec<StageStatus> {
    let mut names: Vec<&str> = Vec::new();
    for s in pods.iter().flat_map(|p| &p.stages) {
        if !names.contains(&s.stage.as_str()) {
            names.push(&s.stage);
        }
    }
    names
        .into_iter()
        .map(|name| {
            let of: Vec<&PodStage> = pods
                .iter()
                .flat_map(|p| &p.stages)
                .filter(|s| s.stage == name)
                .collect();
            // A pod whose stage finished has no watermark (its input
            // ended): the others decide.
            let watermark = of
                .iter()
                .filter(|s| !s.finished)
                .map(|s| s.watermark_ms)
                .collect::<Option<Vec<i64>>>()
                .and_then(|w| w.into_iter().min());
            let last_checkpoint = of
                .iter()
                .map(|s| s.last_checkpoint)
                .collect::<Option<Vec<u64>>>()
                .and_then(|c| c.into_iter().min());
            StageStatus {
                name: name.to_string(),
                pods: of.len() as u32,
                finished_pods: of.iter().filter(|s| s.finished).count() as u32,
                records_read: of.iter().map(|s| s.records_read).sum(),
                late: of.iter().map(|s| s.late).sum(),
                replayed: of.iter().map(|s| s.replayed).sum(),
                backlog: of.iter().filter_map(|s| s.backlog).reduce(|a, b| a + b),
                watermark: watermark
                    .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
                    .map(|t| t.to_string()),
                last_checkpoint,
            }
        })
        .collect()
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
            ..PodStats::default()
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

    #[test]
    fn a_two_phase_jobs_stages_sum_over_pods_and_take_the_lowest_marks() {
        let stage = |name: &str, read, finished, watermark_ms, backlog, last_checkpoint| PodStage {
            stage: name.to_string(),
            finished,
            records_read: read,
            late: 1,
            replayed: read / 100,
            watermark_ms,
            backlog,
            last_checkpoint,
        };
        let pods = [
            PodStats {
                stages: vec![
                    stage("partial", 700, true, None, Some(0), Some(9)),
                    stage("merge", 40, false, Some(60_000), None, Some(9)),
                ],
                ..pod(700, 0, &[], 0)
            },
            PodStats {
                stages: vec![
                    stage("partial", 300, false, Some(90_000), Some(25), Some(8)),
                    stage("merge", 30, false, Some(50_000), None, Some(9)),
                ],
                ..pod(300, 0, &[], 0)
            },
        ];
        let stages = insight(&pods, 0.3).stages;
        let view: Vec<_> = stages
            .iter()
            .map(|s| {
                (
                    s.name.as_str(),
                    (s.pods, s.finished_pods, s.records_read, s.late, s.replayed),
                    s.backlog,
                    s.watermark.as_deref(),
                    s.last_checkpoint,
                )
            })
            .collect();
        assert_eq!(
            view,
            [
                // The finished pod has no watermark: the other decides.
                (
                    "partial",
                    (2, 1, 1000, 2, 10),
                    Some(25),
                    Some("1970-01-01T00:01:30Z"),
                    Some(8)
                ),
                (
                    "merge",
                    (2, 0, 70, 2, 0),
                    None,
                    Some("1970-01-01T00:00:50Z"),
                    Some(9)
                ),
            ]
        );
        // A one-stage job's pods report no stages.
        assert!(insight(&[pod(5, 0, &[], 0)], 0.3).stages.is_empty());
    }
}
