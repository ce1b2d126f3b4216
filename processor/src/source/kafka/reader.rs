//! Reading Kafka through librdkafka (the `kafka` feature).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context;
use eddy_api::spec::StartFrom;
use rdkafka::{
    config::ClientConfig,
    consumer::{BaseConsumer, Consumer},
    Message, Offset, TopicPartitionList,
};
use serde_json::Value;

use super::KafkaConfig;
use crate::event::Invalid;
use crate::source::{json::Parsed, wall_clock_ms, Batch, Payload, Poll, SourceRecord};

/// Messages handed out per poll.
const BATCH: usize = 1024;
/// Broker round trips at start (metadata, end offsets).
const TIMEOUT: Duration = Duration::from_secs(10);

pub struct KafkaReader {
    config: KafkaConfig,
    consumer: BaseConsumer,
    /// Next offset to read, per partition.
    next: BTreeMap<i32, i64>,
    /// End offsets found at start (stop-at-end mode).
    end: Option<BTreeMap<i32, i64>>,
    finished: BTreeSet<i32>,
    /// End offsets now, refreshed in the background (for the backlog).
    ends: Arc<Mutex<BTreeMap<i32, i64>>>,
}

/// The end offsets, even if a panic poisoned their lock.
fn lock(ends: &Mutex<BTreeMap<i32, i64>>) -> std::sync::MutexGuard<'_, BTreeMap<i32, i64>> {
    ends.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long the run loop waits after an empty poll: the job's source
/// looks again soon; a merge stage's partials come in bursts (at the first
/// stage's firings, and its marks every second of event time), and each
/// wake-up also drives every worker, which on a pod of a quarter core cost
/// about a tenth of its CPU at 10 ms.
const WAIT_SOURCE: Duration = Duration::from_millis(10);
const WAIT_PARTIALS: Duration = Duration::from_millis(50);

/// How often the end offsets are read again for the backlog.
const ENDS_EVERY: Duration = Duration::from_secs(5);

/// Reads the end offsets of `partitions` every [`ENDS_EVERY`] on a thread
/// of its own, with a client of its own, until the reader is dropped: the
/// run loop never waits on the broker for a metric.
/// The partitions watched are the keys of the map: partitions that join or
/// leave the reader are added to it or removed.
fn watch_ends(
    client: ClientConfig,
    topic: String,
    initial: BTreeMap<i32, i64>,
) -> Arc<Mutex<BTreeMap<i32, i64>>> {
    let ends = Arc::new(Mutex::new(initial));
    let weak = Arc::downgrade(&ends);
    let spawned = std::thread::Builder::new()
        .name("kafka-ends".into())
        .spawn(move || {
            let consumer: BaseConsumer = match client.create() {
                Ok(c) => c,
                Err(e) => return tracing::warn!("no Kafka backlog figures: {e}"),
            };
            loop {
                std::thread::sleep(ENDS_EVERY);
                let Some(ends) = weak.upgrade() else { return };
                let partitions: Vec<i32> = lock(&ends).keys().copied().collect();
                for p in partitions {
                    if let Ok((_, high)) = consumer.fetch_watermarks(&topic, p, ENDS_EVERY) {
                        // Unless it left meanwhile.
                        if let Some(end) = lock(&ends).get_mut(&p) {
                            *end = high;
                        }
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("no Kafka backlog figures: {e}");
    }
    ends
}

impl KafkaReader {
    pub fn open(config: KafkaConfig) -> anyhow::Result<Self> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", format!("eddy-{}", config.topic))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            // A checkpointed offset that retention deleted restarts at the
            // oldest message still there, never silently at the newest.
            .set("auto.offset.reset", "earliest")
            .set(
                "queued.max.messages.kbytes",
                config.prefetch_kbytes.to_string(),
            );
        for (k, v) in &config.properties {
            client.set(k, v);
        }
        let consumer: BaseConsumer = client.create().context("creating the Kafka consumer")?;
        let mut next = BTreeMap::new();
        let mut end = BTreeMap::new();
        for &p in &config.partitions {
            let (low, high) = consumer
                .fetch_watermarks(&config.topic, p, TIMEOUT)
                .with_context(|| format!("reading offsets of {}/{p}", config.topic))?;
            next.insert(
                p,
                match config.start_from {
                    StartFrom::Earliest => low,
                    StartFrom::Latest => high,
                },
            );
            end.insert(p, high);
        }
        let ends = watch_ends(client, config.topic.clone(), end.clone());
        let mut reader = Self {
            ends,
            end: config.stop_at_end.then_some(end),
            config,
            consumer,
            next,
            finished: BTreeSet::new(),
        };
        reader.assign()?;
        Ok(reader)
    }

    fn assign(&mut self) -> anyhow::Result<()> {
        let mut list = TopicPartitionList::new();
        for (&p, &offset) in &self.next {
            list.add_partition_offset(&self.config.topic, p, Offset::Offset(offset))?;
        }
        self.consumer.assign(&list)?;
        Ok(())
    }

    /// Stops reading `partition` (it moves to another processor): its
    /// messages already fetched are dropped, and read again there from the
    /// checkpointed offset.
    pub fn release(&mut self, partition: i32) -> anyhow::Result<()> {
        if self.next.remove(&partition).is_none() {
            anyhow::bail!("kafka partition {partition} is not read here");
        }
        if let Some(end) = &mut self.end {
            end.remove(&partition);
        }
        self.finished.remove(&partition);
        lock(&self.ends).remove(&partition);
        self.assign()
    }

    /// Starts reading `partition` at `offset` (from its checkpoint), or
    /// where the spec says to start when it has none.
    pub fn acquire(&mut self, partition: i32, offset: Option<i64>) -> anyhow::Result<()> {
        if self.next.contains_key(&partition) {
            anyhow::bail!("kafka partition {partition} is read here already");
        }
        let topic = &self.config.topic;
        let (low, high) = tokio::task::block_in_place(|| {
            self.consumer.fetch_watermarks(topic, partition, TIMEOUT)
        })
        .with_context(|| format!("reading offsets of {topic}/{partition}"))?;
        let start = offset.unwrap_or(match self.config.start_from {
            StartFrom::Earliest => low,
            StartFrom::Latest => high,
        });
        self.next.insert(partition, start);
        if let Some(end) = &mut self.end {
            end.insert(partition, high);
        }
        lock(&self.ends).insert(partition, high);
        self.assign()
    }

    /// Records between the position in `partition` and its end, as of the
    /// last look at the end.
    pub fn backlog(&self, partition: i32) -> Option<u64> {
        let next = *self.next.get(&partition)?;
        let end = *lock(&self.ends).get(&partition)?;
        Some(end.saturating_sub(next).max(0) as u64)
    }

    /// The next offset per partition, for a checkpoint.
    pub fn position(&self) -> Vec<(i32, i64)> {
        self.next.iter().map(|(p, o)| (*p, *o)).collect()
    }

    /// Resumes at checkpointed offsets.
    pub fn seek(&mut self, offsets: &[(i32, i64)]) -> anyhow::Result<()> {
        for &(p, offset) in offsets {
            if self.next.contains_key(&p) {
                self.next.insert(p, offset);
            }
        }
        self.assign()
    }

    pub fn poll(&mut self) -> anyhow::Result<Poll> {
        let mut batch = Batch::default();
        while batch.records.len() < BATCH {
            match self.consumer.poll(Duration::ZERO) {
                None => break,
                Some(Err(e)) => {
                    tracing::warn!("kafka: {e}");
                    break;
                }
                Some(Ok(message)) => {
                    let p = message.partition();
                    // Not read here, or read already: fetched before the
                    // partitions were assigned again (one joined or left).
                    if self
                        .next
                        .get(&p)
                        .is_none_or(|next| message.offset() < *next)
                    {
                        continue;
                    }
                    self.next.insert(p, message.offset() + 1);
                    if self.is_past_end(p, message.offset()) {
                        continue;
                    }
                    batch.records.push(self.record(&message));
                }
            }
        }
        if let Some(end) = &self.end {
            for (&p, &last) in end {
                if self.next.get(&p).is_some_and(|n| *n >= last) && self.finished.insert(p) {
                    batch.finished.push(p as u32);
                }
            }
            if batch.records.is_empty()
                && batch.finished.is_empty()
                && self.finished.len() == end.len()
            {
                return Ok(Poll::End);
            }
        }
        if batch.records.is_empty() && batch.finished.is_empty() {
            let wait = if self.config.partials {
                WAIT_PARTIALS
            } else {
                WAIT_SOURCE
            };
            return Ok(Poll::Pending(Instant::now() + wait));
        }
        Ok(Poll::Ready(batch))
    }

    fn is_past_end(&self, partition: i32, offset: i64) -> bool {
        self.end
            .as_ref()
            .and_then(|e| e.get(&partition))
            .is_some_and(|end| offset >= *end)
    }

    fn record<M: Message>(&self, message: &M) -> SourceRecord {
        let partition = Some(message.partition() as u32);
        let ingest_ms = wall_clock_ms();
        let bytes = message.payload().unwrap_or_default();
        let payload = if self.config.partials {
            Payload::Partial(bytes.to_vec())
        } else {
            self.payload(message, bytes)
        };
        SourceRecord {
            payload,
            ingest_ms,
            partition,
            origin: crate::source::Origin::Kafka {
                partition: message.partition(),
                offset: message.offset(),
            },
        }
    }

    /// A message's JSON record, with the key and time the spec takes from
    /// the message put in.
    fn payload<M: Message>(&self, message: &M, bytes: &[u8]) -> Payload {
        match self.config.fields.parse(bytes) {
            Err(e) => Payload::Unreadable {
                raw: String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned(),
                reason: Invalid::NotJson(e.to_string()),
            },
            Ok(Parsed::Other(value)) => Payload::Json(value),
            Ok(Parsed::Object(mut record)) => {
                if let (Some(field), Some(key)) = (&self.config.key_into, message.key()) {
                    record.insert(
                        field.clone(),
                        Value::from(String::from_utf8_lossy(key).into_owned()),
                    );
                }
                if let (Some(field), Some(ms)) =
                    (&self.config.timestamp_into, message.timestamp().to_millis())
                {
                    record.insert(field.clone(), Value::from(ms));
                }
                Payload::Sparse(record)
            }
        }
    }
}
