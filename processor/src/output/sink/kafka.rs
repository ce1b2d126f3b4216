//! The Kafka sink: each result as a JSON message keyed by its result id.
//!
//! Without `transactional`, through the idempotent producer: a replay after
//! a crash may write a result again with the same id and revision, and
//! consumers that keep the highest-ranked revision per id (a final one over
//! any other, else the highest: [`crate::output::record::outranks`]) see every result
//! exactly once. With it, through the job's one transaction (`output::transaction`),
//! which commits with each checkpoint: consumers reading committed messages
//! see every result once. Delivery failures (and messages the producer
//! refuses outright) are recorded and fail the next push or flush, never
//! dropped silently; the run loop's push every second waits for no
//! acknowledgment (the producer sends within its `linger.ms`).

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use anyhow::Context;
use rdkafka::{
    config::ClientConfig,
    error::{KafkaError, RDKafkaErrorCode},
    producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext},
    ClientContext,
};

use super::{done, Flushing, Item, Pushed, Sink};
use crate::output::transaction::{lock, Shared};

/// How long a flush waits for every message to be acknowledged.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Counts failed deliveries and keeps the last error.
#[derive(Clone, Default)]
pub struct Deliveries {
    failed: Arc<AtomicU64>,
    last_error: Arc<Mutex<Option<String>>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed(e.to_string());
        }
    }
}

impl Deliveries {
    fn failed(&self, error: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error);
        }
    }
}

/// A producer that records its failed deliveries.
pub struct Producer {
    pub(crate) inner: BaseProducer<Deliveries>,
    deliveries: Deliveries,
}

impl Producer {
    /// A producer for `brokers` with the spec's properties over ours.
    pub fn create(
        brokers: &str,
        ours: &[(&str, &str)],
        properties: &BTreeMap<String, String>,
        what: &str,
    ) -> anyhow::Result<Self> {
        let deliveries = Deliveries::default();
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", brokers);
        for (k, v) in ours {
            config.set(*k, *v);
        }
        for (k, v) in properties {
            config.set(k, v);
        }
        let inner = config
            .create_with_context(deliveries.clone())
            .with_context(|| format!("creating a Kafka producer for {what}"))?;
        Ok(Self { inner, deliveries })
    }

    /// Queues a message; waits while the producer's queue is full
    /// (back-pressure from the broker).
    pub fn send(&self, topic: &str, key: &str, payload: &[u8]) {
        self.queue(BaseRecord::to(topic).key(key).payload(payload));
    }

    /// Queues a message without a key into partition `partition`.
    pub fn send_to(&self, topic: &str, partition: i32, payload: &[u8]) {
        self.queue(
            BaseRecord::<(), [u8]>::to(topic)
                .partition(partition)
                .payload(payload),
        );
    }

    /// A message the producer refuses outright (too large, an unknown
    /// partition) counts as a failed delivery.
    fn queue<K: rdkafka::message::ToBytes + ?Sized>(&self, mut record: BaseRecord<'_, K, [u8]>) {
        loop {
            match self.inner.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    self.inner.poll(Duration::from_millis(10));
                }
                Err((e, _)) => {
                    self.deliveries.failed(e.to_string());
                    break;
                }
            }
        }
        self.inner.poll(Duration::ZERO);
    }

    /// Waits until every queued message is acknowledged; fails if any
    /// delivery failed since the last flush.
    pub fn flush(&self, name: &str) -> anyhow::Result<()> {
        tokio::task::block_in_place(|| self.inner.flush(FLUSH_TIMEOUT))
            .with_context(|| format!("flushing {name}"))?;
        self.failures(name)
    }

    /// Serves the delivery reports in, without waiting for the messages
    /// queued (they go within `linger.ms`); fails if any delivery failed
    /// since the last look.
    pub fn delivered(&self, name: &str) -> anyhow::Result<()> {
        self.inner.poll(Duration::ZERO);
        self.failures(name)
    }

    fn failures(&self, name: &str) -> anyhow::Result<()> {
        let failed = self.deliveries.failed.swap(0, Ordering::Relaxed);
        if failed > 0 {
            let last = self
                .deliveries
                .last_error
                .lock()
                .ok()
                .and_then(|l| l.clone());
            anyhow::bail!(
                "{name}: {failed} messages were not delivered (last error: {})",
                last.unwrap_or_default()
            );
        }
        Ok(())
    }
}

/// Where a Kafka sink's messages go.
enum Writer {
    /// Its own idempotent producer.
    Own(Producer),
    /// The job's transaction, shared with its other transactional outputs.
    Transaction(Shared),
}

pub struct KafkaSink {
    topic: String,
    writer: Writer,
}

impl KafkaSink {
    /// A sink with its own idempotent producer.
    pub fn open(
        brokers: &str,
        topic: &str,
        properties: &BTreeMap<String, String>,
    ) -> anyhow::Result<Self> {
        let ours = [("enable.idempotence", "true"), ("linger.ms", "20")];
        Ok(Self {
            topic: topic.to_string(),
            writer: Writer::Own(Producer::create(brokers, &ours, properties, topic)?),
        })
    }

    /// The sink a spec names: in the job's transaction when it is
    /// transactional (the plan made sure there is one).
    pub fn open_spec(
        spec: &eddy_api::spec::KafkaSink,
        transaction: Option<&Shared>,
    ) -> anyhow::Result<Self> {
        match (spec.transactional, transaction) {
            (false, _) => Self::open(&spec.brokers, &spec.topic, &spec.properties),
            (true, Some(t)) => Ok(Self {
                topic: spec.topic.clone(),
                writer: Writer::Transaction(t.clone()),
            }),
            (true, None) => anyhow::bail!(
                "kafka topic {}: transactional, but the job has no transaction",
                spec.topic
            ),
        }
    }
}

impl Sink for KafkaSink {
    fn name(&self) -> String {
        format!("kafka topic {}", self.topic)
    }

    /// Queues a message keyed by the record's id.
    fn write(&mut self, item: &Item<'_>) -> anyhow::Result<()> {
        match &self.writer {
            Writer::Own(p) => p.send(&self.topic, item.id, item.line),
            Writer::Transaction(t) => lock(t).push(&self.topic, item.id, item.line),
        }
        Ok(())
    }

    fn remote(&self) -> bool {
        true
    }

    /// Waits until every queued message is acknowledged; fails if any
    /// delivery failed since the last flush. In the transaction, a
    /// checkpoint's messages commit with it (the transaction's part).
    fn flush(&mut self) -> Flushing<'_> {
        let flushed = match &self.writer {
            Writer::Own(p) => p.flush(&self.name()),
            Writer::Transaction(t) => lock(t).flush(),
        };
        done(flushed)
    }

    /// The producer sends on its own: nothing to wait for but failures
    /// to report (in the transaction, the checkpoint finds them).
    fn push(&mut self) -> Pushed<'_> {
        match &self.writer {
            Writer::Own(p) => Pushed::Looked(p.delivered(&self.name())),
            Writer::Transaction(_) => Pushed::Looked(Ok(())),
        }
    }
}
