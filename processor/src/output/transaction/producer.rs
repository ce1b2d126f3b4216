//! The transaction itself, through librdkafka (the `kafka` feature).

use std::time::Duration;

use anyhow::Context;
use rdkafka::{
    config::ClientConfig,
    consumer::{BaseConsumer, Consumer},
    producer::Producer as _,
    Offset, TopicPartitionList,
};

use super::{plan::TxnPlan, Committed};
use crate::output::sink::kafka::Producer;

/// How long a transaction call to the broker may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Transaction {
    producer: Producer,
    /// One idle consumer per owned partition: the group its checkpoint
    /// offset is committed for.
    groups: Vec<(u32, BaseConsumer)>,
    /// What more groups are made from (a partition joining).
    plan: TxnPlan,
    marker_topic: String,
    /// The checkpoint whose offsets are in the open transaction, and the
    /// partitions they were recorded for.
    precommitted: Option<(u64, Vec<u32>)>,
    /// (topic, key, payload) fired while a checkpoint uploads.
    held: Vec<(String, String, Vec<u8>)>,
    /// Messages written in the open transaction.
    written: u64,
}

impl Transaction {
    /// Takes over the transactional ids (fencing earlier holders, whose
    /// open transactions are aborted); with the last checkpoint each owned
    /// partition committed. Blocks on the broker.
    pub fn open(plan: &TxnPlan) -> anyhow::Result<(Self, Committed)> {
        tokio::task::block_in_place(|| Self::open_blocking(plan))
    }

    fn open_blocking(plan: &TxnPlan) -> anyhow::Result<(Self, Committed)> {
        for id in &plan.fenced_ids {
            Self::producer(plan, id)?;
        }
        let producer = Self::producer(plan, &plan.transactional_id)?;
        let mut groups = Vec::new();
        let mut committed_at_start = Vec::new();
        for (partition, group) in &plan.groups {
            let consumer = Self::group(plan, group)?;
            let id = Self::last_committed(plan, group, &consumer)?;
            committed_at_start.push((*partition, id));
            groups.push((*partition, consumer));
        }
        producer
            .inner
            .begin_transaction()
            .context("beginning a Kafka transaction")?;
        let transaction = Self {
            producer,
            groups,
            marker_topic: plan.marker_topic.clone(),
            plan: plan.clone(),
            precommitted: None,
            held: Vec::new(),
            written: 0,
        };
        Ok((transaction, committed_at_start))
    }

    /// The checkpoint whose results group `group`'s partition committed
    /// last: its committed offset (read stably, after any transaction that
    /// was committing it).
    fn last_committed(
        plan: &TxnPlan,
        group: &str,
        consumer: &BaseConsumer,
    ) -> anyhow::Result<Option<u64>> {
        let mut list = TopicPartitionList::new();
        list.add_partition(&plan.marker_topic, 0);
        let committed = consumer
            .committed_offsets(list, CALL_TIMEOUT)
            .with_context(|| format!("reading the offsets committed for group {group}"))?;
        Ok(committed
            .find_partition(&plan.marker_topic, 0)
            .and_then(|e| match e.offset() {
                Offset::Offset(n) if n > 0 => Some(n as u64),
                _ => None,
            }))
    }

    /// An idle client of consumer group `group`, whose committed offset
    /// records a partition's checkpoint.
    fn group(plan: &TxnPlan, group: &str) -> anyhow::Result<BaseConsumer> {
        ClientConfig::new()
            .set("bootstrap.servers", &plan.brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()
            .with_context(|| format!("creating a Kafka client for group {group}"))
    }

    /// `partition` left this processor: its checkpoint is no longer
    /// recorded by this transaction (the one it was released with already
    /// is, being precommitted). Its new owner records it from then on.
    pub fn release(&mut self, partition: u32) {
        self.groups.retain(|(p, _)| *p != partition);
    }

    /// `partition` joined this processor: each commit with results records
    /// its checkpoint too, from the next one on. Returns the checkpoint its
    /// results were committed with last (by its former owner: a release
    /// checkpoint whose transaction had no results records nothing), which
    /// a restart restores until this processor commits a newer one. Blocks
    /// on the broker.
    pub fn acquire(&mut self, partition: u32) -> anyhow::Result<Option<u64>> {
        let group = self.plan.group(partition);
        if let Some((_, consumer)) = self.groups.iter().find(|(p, _)| *p == partition) {
            return tokio::task::block_in_place(|| {
                Self::last_committed(&self.plan, &group, consumer)
            });
        }
        let consumer = Self::group(&self.plan, &group)?;
        let id =
            tokio::task::block_in_place(|| Self::last_committed(&self.plan, &group, &consumer))?;
        self.groups.push((partition, consumer));
        Ok(id)
    }

    /// A producer that holds `id`, once the broker has fenced its former
    /// holders.
    fn producer(plan: &TxnPlan, id: &str) -> anyhow::Result<Producer> {
        let ours = [("transactional.id", id)];
        let producer = Producer::create(&plan.brokers, &ours, &plan.properties, id)?;
        producer
            .inner
            .init_transactions(CALL_TIMEOUT)
            .with_context(|| format!("taking over Kafka transactional id {id}"))?;
        Ok(producer)
    }

    /// Writes a message in the open transaction, or holds it while a
    /// checkpoint uploads.
    pub fn push(&mut self, topic: &str, key: &str, payload: &[u8]) {
        if self.precommitted.is_some() {
            self.held
                .push((topic.to_string(), key.to_string(), payload.to_vec()));
        } else {
            self.producer.send(topic, key, payload);
            self.written += 1;
        }
    }

    /// Whether committing checkpoint `id` commits results.
    pub fn commits_results(&self, id: u64) -> bool {
        self.precommitted.as_ref().is_some_and(|(p, _)| *p == id)
    }

    /// Messages held until the checkpoint in flight commits.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    pub fn flush(&self) -> anyhow::Result<()> {
        self.producer.flush("the Kafka transaction")
    }

    /// The synchronous part of checkpoint `id`: everything written so far
    /// acknowledged, and `id` committed for every owned partition's group,
    /// both inside the open transaction. A transaction with no results is
    /// left open for the next checkpoint: some brokers do not commit
    /// offsets alone, and restoring the last checkpoint that committed
    /// results gives the same output.
    pub fn precommit(&mut self, id: u64) -> anyhow::Result<()> {
        self.flush()?;
        if self.written == 0 {
            return Ok(());
        }
        tokio::task::block_in_place(|| {
            for (partition, consumer) in &self.groups {
                let metadata = consumer
                    .group_metadata()
                    .context("no consumer group metadata")?;
                let mut offsets = TopicPartitionList::new();
                offsets.add_partition_offset(&self.marker_topic, 0, Offset::Offset(id as i64))?;
                self.producer
                    .inner
                    .send_offsets_to_transaction(&offsets, &metadata, CALL_TIMEOUT)
                    .with_context(|| {
                        format!("recording checkpoint {id} of partition {partition} in the Kafka transaction")
                    })?;
            }
            anyhow::Ok(())
        })?;
        let recorded = self.groups.iter().map(|(p, _)| *p).collect();
        self.precommitted = Some((id, recorded));
        Ok(())
    }

    /// Commits the transaction of checkpoint `id`, now that it is in the
    /// store, begins the next one and writes what was held. Returns the
    /// partitions it recorded `id` for (some released since), or `None`
    /// when the checkpoint had no results to commit.
    pub fn commit(&mut self, id: u64) -> anyhow::Result<Option<Vec<u32>>> {
        let recorded = match &self.precommitted {
            None => return Ok(None),
            Some((p, _)) if *p != id => {
                anyhow::bail!("checkpoint {id} is not the one in the Kafka transaction ({p})")
            }
            Some((_, recorded)) => recorded.clone(),
        };
        tokio::task::block_in_place(|| {
            self.producer
                .inner
                .commit_transaction(CALL_TIMEOUT)
                .with_context(|| format!("committing the Kafka transaction of checkpoint {id}"))?;
            self.producer
                .inner
                .begin_transaction()
                .context("beginning a Kafka transaction")
        })?;
        self.precommitted = None;
        self.written = 0;
        for (topic, key, payload) in std::mem::take(&mut self.held) {
            self.push(&topic, &key, &payload);
        }
        Ok(Some(recorded))
    }
}
