//! One look at a job from what its pods answer: `GET /partitions` (each
//! partition's rate, busy share and backlog) and `GET /stats` (its
//! heaviest keys), with the checkpoint lag and the alerts firing for it.

use crate::scheduler::{PodPartitions, PodStats};

use super::signals::{PartitionLoad, Sample};

/// The sample of one look; `None` unless every pod answered (a pod
/// missing from a look would read as its partitions' load falling to
/// nothing).
pub fn sample(
    at_ms: i64,
    partitions: &[Option<PodPartitions>],
    stats: &[PodStats],
    checkpoint_lag_s: f64,
    alerts: Vec<String>,
) -> Option<Sample> {
    let mut loads = Vec::new();
    for pod in partitions {
        let pod = pod.as_ref()?;
        for l in &pod.loads {
            // The heaviest key stats name for it; the share the partition
            // measured when stats has none over its threshold.
            let top_key = stats
                .iter()
                .flat_map(|s| &s.hot_keys)
                .filter(|k| k.partition == l.partition)
                .max_by(|a, b| a.share.total_cmp(&b.share))
                .map(|k| (k.key.clone(), k.share));
            loads.push(PartitionLoad {
                partition: l.partition,
                rate: l.events_per_second.max(0.0),
                busy: l.busy_ratio.clamp(0.0, 1.0),
                backlog: l.backlog.unwrap_or(0) as f64,
                top_key,
            });
        }
    }
    loads.sort_by_key(|l| l.partition);
    loads.dedup_by_key(|l| l.partition);
    Some(Sample {
        at_ms,
        partitions: loads,
        checkpoint_lag_s,
        alerts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::{client::PodHotKey, PodPartitionLoad};

    fn pod(loads: &[(u32, f64, f64, Option<u64>)]) -> Option<PodPartitions> {
        Some(PodPartitions {
            partitions: loads.iter().map(|l| l.0).collect(),
            loads: loads
                .iter()
                .map(|&(partition, rate, busy, backlog)| PodPartitionLoad {
                    partition,
                    events_per_second: rate,
                    busy_ratio: busy,
                    backlog,
                    ..PodPartitionLoad::default()
                })
                .collect(),
        })
    }

    #[test]
    fn every_pods_partitions_with_their_heaviest_key() {
        let stats = vec![PodStats {
            hot_keys: vec![
                PodHotKey {
                    partition: 2,
                    key: "a".into(),
                    share: 0.3,
                },
                PodHotKey {
                    partition: 2,
                    key: "b".into(),
                    share: 0.6,
                },
            ],
            ..PodStats::default()
        }];
        let s = sample(
            5_000,
            &[
                pod(&[(2, 100.0, 0.5, Some(7))]),
                pod(&[(0, 10.0, 1.5, None)]),
            ],
            &stats,
            12.0,
            vec!["EddyCheckpointLag".into()],
        )
        .unwrap();
        assert_eq!(s.at_ms, 5_000);
        assert_eq!(s.checkpoint_lag_s, 12.0);
        assert_eq!(s.alerts, ["EddyCheckpointLag"]);
        let got: Vec<_> = s
            .partitions
            .iter()
            .map(|p| (p.partition, p.rate, p.busy, p.backlog, p.top_key.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 10.0, 1.0, 0.0, None),
                (2, 100.0, 0.5, 7.0, Some(("b".into(), 0.6))),
            ]
        );
    }

    #[test]
    fn no_sample_unless_every_pod_answered() {
        assert!(sample(0, &[pod(&[(0, 1.0, 0.1, None)]), None], &[], 0.0, vec![]).is_none());
    }
}
