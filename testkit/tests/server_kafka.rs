//! Smoke test: the Kafka-protocol broker started by `scripts/test-servers`,
//! through rdkafka used the way the source will use it (explicitly assigned
//! partitions, not a consumer group).

use std::{collections::BTreeMap, time::Duration};

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    config::ClientConfig,
    consumer::{BaseConsumer, Consumer},
    producer::{FutureProducer, FutureRecord},
    Message, Offset, TopicPartitionList,
};

const PARTITIONS: i32 = 4;
const PER_PARTITION: i32 = 250;

#[tokio::test]
async fn produce_and_consume_on_four_partitions() {
    let brokers = eddy_testkit::kafka_brokers();
    let topic = eddy_testkit::unique_name("smoke");

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let created = admin
        .create_topics(
            &[NewTopic::new(
                &topic,
                PARTITIONS,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap();
    for result in created {
        result.unwrap();
    }

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
