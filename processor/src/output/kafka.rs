//! The Kafka sink: each result as a JSON message keyed by its result id,
//! through the idempotent producer. A replay after a crash may write a
//! result again with the same id and revision; consumers that keep the
//! highest revision per id see every result exactly once. Delivery failures
//! are recorded and fail the next flush, never dropped silently.

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
    producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext},
    ClientContext,
};

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
            self.failed.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut last) = self.last_error.lock() {
                *last = Some(e.to_string());
            }
        }
    }
}

pub struct KafkaSink {
    topic: String,
    producer: BaseProducer<Deliveries>,
    deliveries: Deliveries,
}

impl KafkaSink {
    pub fn open(
        brokers: &str,
        topic: &str,
        properties: &BTreeMap<String, String>,
    ) -> anyhow::Result<Self> {
        let deliveries = Deliveries::default();
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("linger.ms", "20");
        for (k, v) in properties {
            config.set(k, v);
        }
        let producer = config
            .create_with_context(deliveries.clone())
            .with_context(|| format!("creating a Kafka producer for {topic}"))?;
        Ok(Self {
            topic: topic.to_string(),
            producer,
            deliveries,
        })
    }

    pub fn name(&self) -> String {
        format!("kafka topic {}", self.topic)
    }

    /// Queues a result; waits while the producer's queue is full
    /// (back-pressure from the broker).
    pub fn push(&mut self, id: &str, line: &[u8]) {
        let mut record = BaseRecord::to(&self.topic).key(id).payload(line);
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    self.producer.poll(Duration::from_millis(10));
                }
            }
        }
        self.producer.poll(Duration::ZERO);
    }

    /// Waits until every queued result is acknowledged; fails if any
    /// delivery failed since the last flush.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        tokio::task::block_in_place(|| self.producer.flush(FLUSH_TIMEOUT))
            .with_context(|| format!("flushing {}", self.name()))?;
        let failed = self.deliveries.failed.swap(0, Ordering::Relaxed);
        if failed > 0 {
            let last = self
                .deliveries
                .last_error
                .lock()
                .ok()
                .and_then(|l| l.clone());
            anyhow::bail!(
                "{}: {failed} results were not delivered (last error: {})",
                self.name(),
                last.unwrap_or_default()
            );
        }
        Ok(())
    }
}
