//! Reading a Kafka partition the way a downstream consumer does, with
//! either isolation level, to check what transactions made visible.
//!
//! With `read_committed` the broker serves a partition only up to its last
//! stable offset (LSO): the first offset of a transaction still open.
//! Aborted records are filtered by the client, from the aborted
//! transactions the broker lists in each fetch. Reading stops at the end
//! the consumer reports (the LSO, or the high watermark for
//! `read_uncommitted`), so comparing that end with the high watermark tells
//! whether a transaction is still open.

use std::time::{Duration, Instant};

use rdkafka::{
    config::ClientConfig,
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    Message as _, Offset, TopicPartitionList,
};

/// What a consumer is allowed to see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// Committed transactional and non-transactional records only.
    Committed,
    /// Everything in the log, aborted and open transactions included.
    Uncommitted,
}

impl Isolation {
    fn level(self) -> &'static str {
        match self {
            Isolation::Committed => "read_committed",
            Isolation::Uncommitted => "read_uncommitted",
        }
    }
}

/// A record as a consumer receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// The records of one partition a consumer could read, and where it stopped.
#[derive(Clone, Debug, Default)]
pub struct Partition {
    pub messages: Vec<Message>,
    /// The offset reading stopped at: the last stable offset for
    /// [`Isolation::Committed`], the high watermark otherwise.
    pub end: i64,
    /// The partition's high watermark (one past its last record or marker).
    pub high_watermark: i64,
}

impl Partition {
    /// Whether a transaction on the partition is still open: only a
    /// `read_committed` read stops before the high watermark, and only at
    /// the first record of an open transaction.
    pub fn has_open_transaction(&self) -> bool {
        self.end < self.high_watermark
    }
}

/// Reads `topic`/`partition` from the beginning to the end its isolation
/// level allows. Panics (failing the test) when the broker does not answer
/// within a minute.
pub fn read(brokers: &str, topic: &str, partition: i32, isolation: Isolation) -> Partition {
    let reader = consumer(brokers, isolation);
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Beginning)
        .expect("a partition to assign");
    reader.assign(&assignment).expect("assign the partition");

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut messages = Vec::new();
    let end = loop {
        assert!(
            Instant::now() < deadline,
            "reading {topic}/{partition} ({}) did not reach its end in 60 s; {} read",
            isolation.level(),
            messages.len()
        );
        match reader.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Ok(m)) => messages.push(Message {
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
            }),
            Some(Err(KafkaError::PartitionEOF(_))) => {
                break position(&reader, topic, partition);
            }
            Some(Err(e)) => panic!("reading {topic}/{partition}: {e}"),
        }
    };
    // Asked with read_committed, the broker answers with the last stable
    // offset instead: the high watermark needs a read_uncommitted query.
    let (_, high_watermark) = consumer(brokers, Isolation::Uncommitted)
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .expect("the partition's watermarks");
    Partition {
        messages,
        end,
        high_watermark,
    }
}

fn consumer(brokers: &str, isolation: Isolation) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", crate::unique_name("eddy-test-reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", isolation.level())
        .create()
        .expect("a Kafka consumer")
}

/// The consumer's next offset in the partition (0 when it read nothing).
fn position(consumer: &BaseConsumer, topic: &str, partition: i32) -> i64 {
    let positions = consumer.position().expect("the consumer's position");
    match positions
        .find_partition(topic, partition)
        .map(|p| p.offset())
    {
        Some(Offset::Offset(offset)) => offset,
        _ => 0,
    }
}
