//! What a job's transactional Kafka outputs need, worked out from the spec
//! alone: one producer per processor for all of them, its transactional
//! id, and where each partition's last committed checkpoint is recorded.

use std::collections::BTreeMap;

use eddy_api::spec::StreamJobSpec;

use crate::output::record::JobId;

/// Transactions must outlive a checkpoint interval plus its upload.
const MIN_TIMEOUT_MS: u64 = 60_000;
/// Kafka brokers refuse longer ones (`transaction.max.timeout.ms`).
const MAX_TIMEOUT_MS: u64 = 900_000;

/// How the transactional outputs of one processor commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnPlan {
    pub brokers: String,
    /// Producer properties: the outputs' own, then ours where they set none.
    pub properties: BTreeMap<String, String>,
    /// `eddy.<namespace>.<job>.p<lowest owned partition>`, or with
    /// [`TxnPlan::named_for`] the processor's own name: a restarted
    /// processor takes it over and fences its former self.
    pub transactional_id: String,
    /// The ids of the owned partitions (but the one above), fenced at
    /// start: a processor that owned them before a re-partitioning and died
    /// with an open transaction must not hold back readers until it times
    /// out.
    pub fenced_ids: Vec<String>,
    /// Per owned partition, the consumer group whose committed offset is
    /// the id of the partition's last committed checkpoint. Committed in the
    /// transaction, so it moves exactly when the results do.
    pub groups: Vec<(u32, String)>,
    /// The topic (partition 0) under which those offsets are committed: the
    /// first transactional output's, which must exist anyway.
    pub marker_topic: String,
    /// `eddy.<namespace>.<job>`: what the ids and groups are named after.
    pub base: String,
}

impl TxnPlan {
    /// The consumer group recording `partition`'s last committed checkpoint
    /// (also the transactional id of a processor whose lowest partition it
    /// is).
    pub fn group(&self, partition: u32) -> String {
        format!("{}.p{partition}", self.base)
    }

    /// The transactional id of processor `instance` (a pod's name), which
    /// it keeps while partitions move in and out: after a move, a restarted
    /// processor's lowest partition may be one another processor's id is
    /// named after, and its own former id (whose open transaction holds
    /// back readers of its partitions' groups) would not be fenced. The
    /// partition ids are all fenced, as a processor named by partition may
    /// have used them.
    pub fn named_for(&mut self, instance: &str) {
        let id = format!("{}.{instance}", self.base);
        let former = std::mem::replace(&mut self.transactional_id, id);
        self.fenced_ids.insert(0, former);
    }
}

/// The transaction plan, if any output is transactional; an error when the
/// transactional outputs cannot share one producer.
pub fn txn_plan(
    id: &JobId,
    spec: &StreamJobSpec,
    owned: &[u32],
    interval_ms: u64,
) -> Result<Option<TxnPlan>, Vec<String>> {
    let outputs: Vec<_> = spec
        .outputs()
        .filter_map(|(path, s)| s.kafka.as_ref().map(|k| (path, k)))
        .filter(|(_, k)| k.transactional)
        .collect();
    let Some((first_path, first)) = outputs.first() else {
        return Ok(None);
    };
    let problems: Vec<String> = outputs[1..]
        .iter()
        .filter(|(_, k)| k.brokers != first.brokers || k.properties != first.properties)
        .map(|(path, _)| {
            format!(
                "{path}.kafka: transactional outputs share one producer, so they must name \
                 the same brokers and properties as {first_path}.kafka"
            )
        })
        .collect();
    if !problems.is_empty() {
        return Err(problems);
    }
    let Some(lowest) = owned.iter().min() else {
        return Ok(None);
    };
    let base = format!("eddy.{}.{}", id.namespace_or_default(), id.name);
    let per_partition = |p: &u32| format!("{base}.p{p}");
    let mut properties = first.properties.clone();
    let timeout = (interval_ms.saturating_mul(3)).clamp(MIN_TIMEOUT_MS, MAX_TIMEOUT_MS);
    properties
        .entry("transaction.timeout.ms".into())
        .or_insert_with(|| timeout.to_string());
    properties
        .entry("linger.ms".into())
        .or_insert_with(|| "20".into());
    Ok(Some(TxnPlan {
        brokers: first.brokers.clone(),
        properties,
        transactional_id: per_partition(lowest),
        fenced_ids: owned
            .iter()
            .filter(|p| *p != lowest)
            .map(per_partition)
            .collect(),
        groups: owned.iter().map(|p| (*p, per_partition(p))).collect(),
        marker_topic: first.topic.clone(),
        base,
    }))
}

/// The newest checkpoint to restore when the sinks last committed
/// `committed` (per owned partition): the lowest of them, 0 (start from the
/// beginning) when a partition never committed, and a warning when they
/// differ.
pub fn restore_bound(committed: &[(u32, Option<u64>)]) -> (u64, Option<String>) {
    let Some(ids) = committed
        .iter()
        .map(|(_, c)| *c)
        .collect::<Option<Vec<u64>>>()
    else {
        return (0, None);
    };
    let low = ids.iter().min().copied().unwrap_or(0);
    let high = ids.iter().max().copied().unwrap_or(0);
    let warning = (low != high).then(|| {
        format!(
            "partitions committed different checkpoints ({low} to {high}): restoring {low}, so \
             results of the partitions ahead may be committed twice"
        )
    });
    (low, warning)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(sinks: &str, late: &str) -> StreamJobSpec {
        serde_yaml_ng::from_str(&format!(
            "source: {{generator: {{}}}}\npartitions: 4\nkeyField: k\neventTime: {{field: ts}}\n\
             window: {{tumbling: {{size: 1s}}}}\n\
             sinks: {sinks}\nlateOutput: {late}"
        ))
        .unwrap()
    }

    fn id() -> JobId {
        JobId {
            namespace: "shop".into(),
            name: "revenue".into(),
        }
    }

    #[test]
    fn no_transactional_output_needs_no_plan() {
        let s = spec("[{kafka: {brokers: b, topic: out}}]", "{stderr: {}}");
        assert_eq!(txn_plan(&id(), &s, &[0, 1], 10_000), Ok(None));
    }

    #[test]
    fn names_follow_the_job_and_the_owned_partitions() {
        let s = spec(
            "[{stdout: {}}, {kafka: {brokers: b, topic: out, transactional: true}}]",
            "{kafka: {brokers: b, topic: late, transactional: true}}",
        );
        let plan = txn_plan(&id(), &s, &[2, 3], 10_000).unwrap().unwrap();
        assert_eq!(plan.transactional_id, "eddy.shop.revenue.p2");
        assert_eq!(plan.fenced_ids, ["eddy.shop.revenue.p3"]);
        assert_eq!(
            plan.groups,
            [
                (2, "eddy.shop.revenue.p2".to_string()),
                (3, "eddy.shop.revenue.p3".to_string())
            ]
        );
        assert_eq!(plan.marker_topic, "out");
        assert_eq!(plan.properties["transaction.timeout.ms"], "60000");
        let mut named = plan.clone();
        named.named_for("revenue-1");
        assert_eq!(named.transactional_id, "eddy.shop.revenue.revenue-1");
        assert_eq!(
            named.fenced_ids,
            ["eddy.shop.revenue.p2", "eddy.shop.revenue.p3"]
        );
    }

    #[test]
    fn the_timeout_covers_three_intervals_within_the_broker_limit_unless_set() {
        let s = spec(
            "[{kafka: {brokers: b, topic: out, transactional: true}}]",
            "{stderr: {}}",
        );
        let timeout = |interval| {
            txn_plan(&id(), &s, &[0], interval)
                .unwrap()
                .unwrap()
                .properties["transaction.timeout.ms"]
                .clone()
        };
        assert_eq!(timeout(100_000), "300000");
        assert_eq!(timeout(3_600_000), "900000");
        let own = spec(
            "[{kafka: {brokers: b, topic: out, transactional: true, properties: {transaction.timeout.ms: '5000'}}}]",
            "{stderr: {}}",
        );
        let plan = txn_plan(&id(), &own, &[0], 100_000).unwrap().unwrap();
        assert_eq!(plan.properties["transaction.timeout.ms"], "5000");
    }

    #[test]
    fn transactional_outputs_on_different_clusters_are_refused() {
        let s = spec(
            "[{kafka: {brokers: a, topic: out, transactional: true}}]",
            "{kafka: {brokers: b, topic: late, transactional: true}}",
        );
        let problems = txn_plan(&id(), &s, &[0], 10_000).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("spec.lateOutput.kafka:"),
            "{problems:?}"
        );
        assert!(problems[0].contains("spec.sinks[0].kafka"), "{problems:?}");
    }

    #[test]
    fn the_restore_bound_is_the_lowest_committed_checkpoint() {
        assert_eq!(restore_bound(&[(0, Some(7)), (1, Some(7))]), (7, None));
        let (bound, warning) = restore_bound(&[(0, Some(7)), (1, Some(6))]);
        assert_eq!(bound, 6);
        assert!(warning.unwrap().contains("6 to 7"));
        assert_eq!(restore_bound(&[(0, Some(7)), (1, None)]), (0, None));
    }
}
