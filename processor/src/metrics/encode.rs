//! A [`Snapshot`] in the OpenMetrics text format, through a
//! `prometheus-client` collector.

use std::{fmt, sync::Arc};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, NoLabelSet},
    metrics::MetricType,
    registry::Registry,
};

use super::{Buckets, Snapshot};

type Labels = Vec<(&'static str, String)>;

enum Value<'a> {
    Counter(u64),
    /// A counter of seconds.
    Seconds(f64),
    Gauge(f64),
    Histogram(&'a Buckets),
}

/// The exposition of `snapshots`: one a stage (a processor running both
/// stages of a two-phase job publishes two, told apart by their `stage`
/// label), each family once with the samples of all.
pub fn render(snapshots: Vec<Arc<Snapshot>>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector(snapshots)));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("writing to a String cannot fail");
    text
}

#[derive(Debug)]
struct SnapshotCollector(Vec<Arc<Snapshot>>);

/// One family as described: its samples so far.
struct Family<'a> {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    series: Vec<(Labels, Value<'a>)>,
}

/// The families of every snapshot, in the order first described: the
/// exposition format has each family once.
#[derive(Default)]
struct Families<'a>(Vec<Family<'a>>);

/// Adds one family's samples (none: nothing).
fn family<'a>(
    out: &mut Families<'a>,
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    series: Vec<(Labels, Value<'a>)>,
) {
    if series.is_empty() {
        return;
    }
    match out.0.iter_mut().find(|f| f.name == name) {
        Some(known) => known.series.extend(series),
        None => out.0.push(Family {
            name,
            help,
            kind,
            series,
        }),
    }
}

impl Families<'_> {
    fn encode(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        for f in &self.0 {
            let mut metric = encoder.encode_descriptor(f.name, f.help, None, f.kind)?;
            for (labels, value) in &f.series {
                let mut sample = metric.encode_family(labels)?;
                match value {
                    Value::Counter(n) => sample.encode_counter::<NoLabelSet, _, u64>(n, None)?,
                    Value::Seconds(n) => sample.encode_counter::<NoLabelSet, _, f64>(n, None)?,
                    Value::Gauge(g) => sample.encode_gauge(g)?,
                    Value::Histogram(b) => sample.encode_histogram::<NoLabelSet>(
                        b.sum(),
                        b.count(),
                        &b.pairs(),
                        None,
                    )?,
                }
            }
        }
        Ok(())
    }
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let mut families = Families::default();
        for snapshot in &self.0 {
            describe(snapshot, &mut families);
        }
        families.encode(&mut encoder)
    }
}

/// Every family of `s`, into `e`.
fn describe<'a>(s: &'a Snapshot, e: &mut Families<'a>) {
    let mut base: Labels = vec![("job", s.job.clone()), ("namespace", s.namespace.clone())];
    base.extend(s.stage.map(|stage| ("stage", stage.to_string())));
    let with = |extra: &[(&'static str, String)]| -> Labels {
        base.iter().cloned().chain(extra.iter().cloned()).collect()
    };
    let pod = |value: Value<'static>| vec![(base.clone(), value)];
    let part = |p: u32| with(&[("partition", p.to_string())]);
    let per_partition = |f: &dyn Fn(&super::PartitionFigures) -> Option<Value>| {
        s.partitions
            .iter()
            .filter_map(|p| f(p).map(|v| (part(p.partition), v)))
            .collect::<Vec<_>>()
    };
    let seconds = |ms: i64| ms as f64 / 1000.0;
    use MetricType::{Counter as C, Gauge as G, Histogram as H};
    use Value::{Counter, Gauge, Histogram};

    // Events.
    family(
        e,
        "eddy_events_read",
        "Records taken from the source by this pod",
        C,
        pod(Counter(s.events_read)),
    );
    family(
        e,
        "eddy_events_accepted",
        "Events that updated a window",
        C,
        per_partition(&|p| Some(Counter(p.accepted))),
    );
    family(
        e,
        "eddy_events_late",
        "Events beyond the allowed lateness (handling: dropped or output)",
        C,
        s.partitions
            .iter()
            .map(|p| {
                let labels = with(&[
                    ("partition", p.partition.to_string()),
                    ("handling", s.late_handling.into()),
                ]);
                (labels, Counter(p.late))
            })
            .collect(),
    );
    family(
        e,
        "eddy_late_updates",
        "Late events within the allowed lateness, each revising a result",
        C,
        per_partition(&|p| Some(Counter(p.late_updates))),
    );
    family(
        e,
        "eddy_events_invalid",
        "Records sent to the invalid output, by reason kind",
        C,
        s.invalid_by_reason
            .iter()
            .map(|(reason, n)| (with(&[("reason", reason.to_string())]), Counter(*n)))
            .collect(),
    );
    family(
        e,
        "eddy_events_skew",
        "Events beyond the allowed clock skew (action: rejected or clamped)",
        C,
        s.partitions
            .iter()
            .flat_map(|p| {
                [("rejected", p.skew_rejected), ("clamped", p.skew_clamped)].map(|(action, n)| {
                    (
                        with(&[
                            ("partition", p.partition.to_string()),
                            ("action", action.into()),
                        ]),
                        Counter(n),
                    )
                })
            })
            .collect(),
    );
    family(
        e,
        "eddy_windows_fired",
        "Results emitted (every revision)",
        C,
        pod(Counter(s.windows_fired)),
    );
    family(
        e,
        "eddy_revisions_emitted",
        "Results revising an earlier one",
        C,
        pod(Counter(s.revisions)),
    );
    family(
        e,
        "eddy_results_written",
        "Results handed to each result sink",
        C,
        s.results_by_sink
            .iter()
            .map(|(sink, n)| (with(&[("sink", sink.clone())]), Counter(*n)))
            .collect(),
    );

    // Event time.
    let lag = |ms: i64| seconds(s.now_ms.saturating_sub(ms));
    if let Some(w) = s.watermark_ms {
        family(
            e,
            "eddy_watermark_timestamp_seconds",
            "This pod's watermark (Unix seconds)",
            G,
            pod(Gauge(seconds(w))),
        );
        family(
            e,
            "eddy_watermark_lag_seconds",
            "Wall clock minus this pod's watermark",
            G,
            pod(Gauge(lag(w))),
        );
    }
    family(
        e,
        "eddy_partition_watermark_timestamp_seconds",
        "The partition's own watermark (Unix seconds)",
        G,
        per_partition(&|p| p.watermark_ms.map(|w| Gauge(seconds(w)))),
    );
    family(
        e,
        "eddy_partition_watermark_lag_seconds",
        "Wall clock minus the partition's watermark",
        G,
        per_partition(&|p| p.watermark_ms.map(|w| Gauge(lag(w)))),
    );
    family(
        e,
        "eddy_lateness_seconds",
        "How far behind the watermark late events were",
        H,
        per_partition(&|p| Some(Histogram(&p.lateness_seconds))),
    );

    // Load and source.
    family(
        e,
        "eddy_busy_ratio",
        "Share of wall time spent processing over the last second",
        G,
        pod(Gauge(s.busy_ratio)),
    );
    family(
        e,
        "eddy_partition_busy_ratio",
        "The pod's busy share apportioned by the partition's events",
        G,
        per_partition(&|p| Some(Gauge(p.busy_ratio))),
    );
    family(
        e,
        "eddy_partition_events_per_second",
        "Events per second of source clock over the last second",
        G,
        per_partition(&|p| Some(Gauge(p.events_per_second))),
    );
    family(
        e,
        "eddy_source_backlog_records",
        "Kafka records between the position and the end of the partition",
        G,
        per_partition(&|p| p.backlog.map(|b| Gauge(b as f64))),
    );
    if let Some(fill) = s.http_buffer_fill {
        family(
            e,
            "eddy_http_buffer_fill_ratio",
            "HTTP ingest: share of the event buffer in use",
            G,
            pod(Gauge(fill)),
        );
    }
    family(
        e,
        "eddy_hot_key_share",
        "Share of the partition's recent events carried by its rank-th heaviest key",
        G,
        s.partitions
            .iter()
            .flat_map(|p| {
                p.hot_key_shares.iter().enumerate().map(|(i, share)| {
                    (
                        with(&[
                            ("partition", p.partition.to_string()),
                            ("rank", (i + 1).to_string()),
                        ]),
                        Gauge(*share),
                    )
                })
            })
            .collect(),
    );

    // State.
    family(
        e,
        "eddy_state_bytes",
        "Estimated live bytes of the partition's state",
        G,
        per_partition(&|p| Some(Gauge(p.state_bytes as f64))),
    );
    family(
        e,
        "eddy_state_keys",
        "Estimated keys in the partition's state",
        G,
        per_partition(&|p| Some(Gauge(p.state_keys as f64))),
    );
    family(
        e,
        "eddy_open_windows",
        "Windows not yet closed",
        G,
        per_partition(&|p| Some(Gauge(p.open_windows as f64))),
    );
    family(
        e,
        "eddy_state_ttl_expired",
        "Windows deleted by state.ttl before they fired",
        C,
        pod(Counter(s.ttl_expired)),
    );

    // Checkpoints.
    let c = &s.checkpoints;
    family(
        e,
        "eddy_checkpoints_completed",
        "Checkpoints completed",
        C,
        pod(Counter(c.completed)),
    );
    family(
        e,
        "eddy_checkpoints_failed",
        "Checkpoints that failed",
        C,
        pod(Counter(c.failed)),
    );
    if let Some(at) = c.last_completed_ms {
        family(
            e,
            "eddy_checkpoint_last_completed_timestamp_seconds",
            "When the newest checkpoint completed (Unix seconds)",
            G,
            pod(Gauge(seconds(at))),
        );
    }
    family(
            e,
            "eddy_checkpoint_sync_duration_seconds",
            "Synchronous part of checkpoints (processing paused; the state is written and linked beside the processing)",
            H,
            vec![(base.clone(), Histogram(&c.sync_seconds))],
        );
    family(
        e,
        "eddy_checkpoint_duration_seconds",
        "Whole checkpoints, upload included",
        H,
        vec![(base.clone(), Histogram(&c.total_seconds))],
    );
    family(
        e,
        "eddy_checkpoint_uploaded_bytes",
        "Bytes uploaded by checkpoints (new files only)",
        C,
        pod(Counter(c.uploaded_bytes)),
    );
    family(
        e,
        "eddy_checkpoint_size_bytes",
        "State bytes the newest checkpoint covers",
        G,
        pod(Gauge(c.size_bytes as f64)),
    );
    family(
        e,
        "eddy_restore_duration_seconds",
        "How long the restore at start took",
        G,
        pod(Gauge(c.restore_seconds)),
    );
    family(
        e,
        "eddy_restore_fallbacks",
        "Checkpoints rejected at restore as incomplete or corrupt",
        C,
        pod(Counter(c.restore_fallbacks)),
    );

    // Sinks.
    let sink = |name: &str| with(&[("sink", name.to_string())]);
    family(
        e,
        "eddy_sink_flushes",
        "Flushes of buffered results to the sink",
        C,
        s.sinks
            .iter()
            .map(|k| (sink(&k.name), Counter(k.flushes)))
            .collect(),
    );
    family(
        e,
        "eddy_sink_errors",
        "Flushes that failed",
        C,
        s.sinks
            .iter()
            .map(|k| (sink(&k.name), Counter(k.errors)))
            .collect(),
    );
    family(
        e,
        "eddy_sink_flush_duration_seconds",
        "How long a flush took",
        H,
        s.sinks
            .iter()
            .map(|k| (sink(&k.name), Histogram(&k.flush_seconds)))
            .collect(),
    );
    family(
        e,
        "eddy_backpressure_seconds",
        "Time the run loop waited on sinks instead of reading",
        C,
        pod(Value::Seconds(s.backpressure_seconds)),
    );

    // Watermark advice.
    family(
        e,
        "eddy_late_dropped_ratio",
        "Events dropped as too late over events read",
        G,
        pod(Gauge(s.late_dropped_ratio)),
    );
    let keep = |a: &crate::engine::advice::Advice| with(&[("keep", a.keep.to_string())]);
    family(
        e,
        "eddy_advice_out_of_orderness_seconds",
        "Out-of-orderness that would have kept this share of events on time",
        G,
        s.advice
            .iter()
            .map(|a| (keep(a), Gauge(seconds(a.out_of_orderness_ms))))
            .collect(),
    );
    family(
        e,
        "eddy_advice_allowed_lateness_seconds",
        "Allowed lateness that, with the job's out-of-orderness, would have kept this share",
        G,
        s.advice
            .iter()
            .map(|a| (keep(a), Gauge(seconds(a.allowed_lateness_ms))))
            .collect(),
    );
    family(
        e,
        "eddy_advice_open_windows",
        "Estimated open windows with that allowed lateness",
        G,
        s.advice
            .iter()
            .map(|a| (keep(a), Gauge(a.open_windows)))
            .collect(),
    );
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::{
        engine::advice::Advice,
        metrics::{CheckpointFigures, PartitionFigures, SinkFigures},
    };

    /// A snapshot with every family present.
    fn full() -> Snapshot {
        let mut lateness = Buckets::new(crate::metrics::buckets::LATENESS);
        lateness.observe(12.0);
        Snapshot {
            job: "clicks".into(),
            namespace: "shop".into(),
            stage: None,
            now_ms: 10_000,
            events_read: 100,
            late_handling: "dropped",
            invalid_by_reason: [("missing_field", 2)].into(),
            windows_fired: 7,
            revisions: 1,
            results_by_sink: vec![("postgres-0".into(), 7)],
            watermark_ms: Some(4_000),
            busy_ratio: 0.25,
            http_buffer_fill: Some(0.5),
            ttl_expired: 0,
            partitions: vec![PartitionFigures {
                partition: 3,
                accepted: 90,
                late: 8,
                late_updates: 1,
                skew_rejected: 1,
                skew_clamped: 0,
                watermark_ms: Some(4_500),
                lateness_seconds: lateness,
                events_per_second: 30.0,
                busy_ratio: 0.25,
                backlog: Some(12),
                state_bytes: 4096,
                state_keys: 10,
                open_windows: 4,
                hot_key_shares: vec![0.5, 0.1],
            }],
            checkpoints: CheckpointFigures {
                last_completed_ms: Some(9_000),
                ..CheckpointFigures::default()
            },
            sinks: vec![SinkFigures::new("postgres-0".into())],
            backpressure_seconds: 0.5,
            advice: vec![Advice {
                keep: 0.99,
                out_of_orderness_ms: 1_000,
                allowed_lateness_ms: 0,
                open_windows: 4.0,
            }],
            late_dropped_ratio: 0.08,
        }
    }

    /// Family names of an exposition (`# TYPE` lines) with their types.
    fn families(text: &str) -> BTreeSet<(String, String)> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| {
                let (name, kind) = l.split_once(' ').unwrap();
                (name.to_string(), kind.to_string())
            })
            .collect()
    }

    /// The processor families `docs/metrics.md` lists, with their types,
    /// named as in `# TYPE` lines (counters without `_total`).
    fn documented() -> BTreeSet<(String, String)> {
        let doc = include_str!("../../../docs/metrics.md");
        let processor = doc.split("## Operator").next().unwrap();
        processor
            .lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                let kind = *cells.get(2)?;
                let name = match kind {
                    "counter" => name.strip_suffix("_total")?,
                    _ => name,
                };
                Some((name.to_string(), kind.to_string()))
            })
            .collect()
    }

    #[test]
    fn every_documented_family_is_exported_and_nothing_else() {
        let text = render(vec![Arc::new(full())]);
        let exported = families(&text);
        let documented = documented();
        assert!(documented.len() > 40, "{documented:?}");
        let missing: Vec<_> = documented.difference(&exported).collect();
        let extra: Vec<_> = exported.difference(&documented).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "documented, not exported: {missing:?}\nexported, not documented: {extra:?}"
        );
    }

    #[test]
    fn samples_carry_the_job_and_bounded_labels() {
        let text = render(vec![Arc::new(full())]);
        assert!(text.ends_with("# EOF\n"), "{text}");
        for line in [
            r#"eddy_events_read_total{job="clicks",namespace="shop"} 100"#,
            r#"eddy_events_late_total{job="clicks",namespace="shop",partition="3",handling="dropped"} 8"#,
            r#"eddy_hot_key_share{job="clicks",namespace="shop",partition="3",rank="1"} 0.5"#,
            r#"eddy_watermark_lag_seconds{job="clicks",namespace="shop"} 6.0"#,
            r#"eddy_lateness_seconds_bucket{le="30.0",job="clicks",namespace="shop",partition="3"} 1"#,
            r#"eddy_advice_out_of_orderness_seconds{job="clicks",namespace="shop",keep="0.99"} 1.0"#,
        ] {
            assert!(text.contains(line), "no {line} in\n{text}");
        }
    }

    /// Both stages of a two-phase job: each family once (the format
    /// allows no repeat), with each stage's samples labelled.
    #[test]
    fn two_stages_share_each_family() {
        let stage = |name| {
            let mut s = full();
            s.stage = Some(name);
            Arc::new(s)
        };
        let text = render(vec![stage("partial"), stage("merge")]);
        assert_eq!(text.matches("# TYPE eddy_events_read counter").count(), 1);
        for line in [
            r#"eddy_events_read_total{job="clicks",namespace="shop",stage="partial"} 100"#,
            r#"eddy_events_read_total{job="clicks",namespace="shop",stage="merge"} 100"#,
            r#"eddy_hot_key_share{job="clicks",namespace="shop",stage="merge",partition="3",rank="1"} 0.5"#,
        ] {
            assert!(text.contains(line), "no {line} in\n{text}");
        }
        assert_eq!(families(&text), families(&render(vec![Arc::new(full())])));
    }

    #[test]
    fn figures_not_known_yet_are_left_out() {
        let mut s = full();
        s.watermark_ms = None;
        s.checkpoints.last_completed_ms = None;
        s.http_buffer_fill = None;
        let text = render(vec![Arc::new(s)]);
        for absent in [
            "eddy_watermark_timestamp_seconds",
            "eddy_checkpoint_last_completed_timestamp_seconds",
            "eddy_http_buffer_fill_ratio",
        ] {
            assert!(!text.contains(absent), "{absent} in\n{text}");
        }
    }
}
