//! Smoke tests: the Apache Kafka broker started by `scripts/test-servers`,
//! through rdkafka used the way the processor uses it (explicitly assigned
//! partitions, not a consumer group; transactions for exactly-once output).

use std::{collections::BTreeMap, time::Duration};

use eddy_testkit::kafka::{self, Isolation};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    config::ClientConfig,
    consumer::{BaseConsumer, Consumer},
    producer::{
        BaseRecord, DefaultProducerContext, FutureProducer, FutureRecord, Producer,
        ThreadedProducer,
    },
    Message, Offset, TopicPartitionList,
};

const PARTITIONS: i32 = 4;
const PER_PARTITION: i32 = 250;

#[tokio::test]
async fn produce_and_consume_on_four_partitions() {
    let brokers = eddy_testkit::kafka_brokers();
    let topic = eddy_testkit::unique_name("smoke");

    let admin = create_topic(&brokers, &topic, PARTITIONS).await;

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap();
    for partition in 0..PARTITIONS {
        for i in 0..PER_PARTITION {
            let key = format!("key-{partition}-{i}");
            let payload = format!(r#"{{"partition":{partition},"seq":{i}}}"#);
            producer
                .send(
                    FutureRecord::to(&topic)
                        .partition(partition)
                        .key(&key)
                        .payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
    }

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", &topic)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(&topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();

    let mut seen: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let total = (PARTITIONS * PER_PARTITION) as usize;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen.values().map(Vec::len).sum::<usize>() < total {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out: {:?}",
            seen.iter().map(|(p, v)| (p, v.len())).collect::<Vec<_>>()
        );
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message.unwrap();
        let payload: serde_json::Value =
            serde_json::from_slice(message.payload().unwrap()).unwrap();
        assert_eq!(payload["partition"], message.partition());
        let key = std::str::from_utf8(message.key().unwrap()).unwrap();
        assert_eq!(
            key,
            format!("key-{}-{}", message.partition(), payload["seq"])
        );
        seen.entry(message.partition())
            .or_default()
            .push(payload["seq"].as_i64().unwrap());
    }
    // Every partition holds its messages, in order, each once.
    for partition in 0..PARTITIONS {
        let expected: Vec<i64> = (0..i64::from(PER_PARTITION)).collect();
        assert_eq!(seen[&partition], expected, "partition {partition}");
    }

    // Seeking back to an offset mid-partition resumes exactly there.
    let mut resume = TopicPartitionList::new();
    resume
        .add_partition_offset(&topic, 2, Offset::Offset(100))
        .unwrap();
    consumer.assign(&resume).unwrap();
    let message = loop {
        if let Some(m) = consumer.poll(Duration::from_millis(500)) {
            break m.unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no message after seek"
        );
    };
    assert_eq!((message.partition(), message.offset()), (2, 100));

    admin
        .delete_topics(&[&topic], &AdminOptions::new())
        .await
        .unwrap();
}

async fn create_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
) -> AdminClient<DefaultClientContext> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let created = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap();
    for result in created {
        result.unwrap();
    }
    admin
}

/// One transaction committed, one aborted, one left open: a
/// `read_committed` consumer sees only the committed records and stops at
/// the open one; a `read_uncommitted` consumer sees all three.
#[tokio::test]
async fn read_committed_sees_only_committed_transactions() {
    let brokers = eddy_testkit::kafka_brokers();
    let topic = eddy_testkit::unique_name("txn-smoke");
    let admin = create_topic(&brokers, &topic, 1).await;
    let producer = |id: &str| -> ThreadedProducer<DefaultProducerContext> {
        let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("transactional.id", format!("{topic}-{id}"))
            .create()
            .unwrap();
        p.init_transactions(Duration::from_secs(30)).unwrap();
        p
    };
    let send = |p: &ThreadedProducer<DefaultProducerContext>, values: &[&str]| {
        p.begin_transaction().unwrap();
        for value in values {
            p.send(
                BaseRecord::<(), str>::to(&topic)
                    .partition(0)
                    .payload(*value),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        }
        p.flush(Duration::from_secs(30)).unwrap();
    };

    let first = producer("a");
    send(&first, &["committed-1", "committed-2"]);
    first.commit_transaction(Duration::from_secs(30)).unwrap();
    send(&first, &["aborted-1", "aborted-2"]);
    first.abort_transaction(Duration::from_secs(30)).unwrap();
    send(&first, &["committed-3"]);
    first.commit_transaction(Duration::from_secs(30)).unwrap();
    let open = producer("b");
    send(&open, &["open-1"]);

    let values = |p: &kafka::Partition| -> Vec<String> {
        p.messages
            .iter()
            .map(|m| String::from_utf8(m.value.clone().unwrap()).unwrap())
            .collect()
    };
    let committed = kafka::read(&brokers, &topic, 0, Isolation::Committed);
    assert_eq!(
        values(&committed),
        ["committed-1", "committed-2", "committed-3"]
    );
    assert!(committed.has_open_transaction(), "{committed:?}");
    let everything = kafka::read(&brokers, &topic, 0, Isolation::Uncommitted);
    assert_eq!(
        values(&everything),
        [
            "committed-1",
            "committed-2",
            "aborted-1",
            "aborted-2",
            "committed-3",
            "open-1"
        ]
    );
    assert!(!everything.has_open_transaction());

    // Once the open transaction commits, read_committed reaches the end.
    open.commit_transaction(Duration::from_secs(30)).unwrap();
    let committed = kafka::read(&brokers, &topic, 0, Isolation::Committed);
    assert_eq!(
        values(&committed),
        ["committed-1", "committed-2", "committed-3", "open-1"]
    );
    assert!(!committed.has_open_transaction(), "{committed:?}");

    admin
        .delete_topics(&[&topic], &AdminOptions::new())
        .await
        .unwrap();
}
