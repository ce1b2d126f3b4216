//! Secret values reach the connectors the way the operator delivers them:
//! files under `$EDDY_SECRETS_DIR/<secret>/<key>`. The spec's own broker
//! address is wrong on purpose, so the job only works if the Secret's
//! `bootstrap.servers` overrides it; the table's URL exists only in a
//! Secret.

mod common;

use std::{process::Command, time::Duration};

use common::{create_topics, query, BIN};
use rdkafka::{
    config::ClientConfig,
    consumer::{BaseConsumer, Consumer},
    producer::{BaseProducer, BaseRecord, Producer},
};

const MESSAGES: i64 = 600;

fn topic_with_messages(brokers: &str, topic: &str, output: &str) {
    create_topics(brokers, &[(topic, 2), (output, 1)]);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    for i in 0..MESSAGES {
        let payload = format!(
            r#"{{"user": "u{}", "ts": {}}}"#,
            i % 6,
            1_767_225_600_000 + i * 100
        );
        producer
            .send(
                BaseRecord::<(), str>::to(topic)
                    .partition((i % 2) as i32)
                    .payload(&payload),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

fn write_secret(dir: &std::path::Path, name: &str, key: &str, value: &str) {
    std::fs::create_dir_all(dir.join(name)).unwrap();
    // With the trailing newline `kubectl create secret --from-file` keeps.
    std::fs::write(dir.join(name).join(key), format!("{value}\n")).unwrap();
}

#[test]
fn kafka_properties_and_table_url_come_from_mounted_secrets() {
    let brokers = eddy_testkit::kafka_brokers();
    let url = eddy_testkit::postgres_url();
    let topic = eddy_testkit::unique_name("secret-in");
    let output = eddy_testkit::unique_name("secret-out");
    let table = eddy_testkit::unique_name("secret").replace('-', "_");
    topic_with_messages(&brokers, &topic, &output);

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let secrets = dir.path().join("secrets");
    write_secret(&secrets, "kafka-auth", "bootstrap.servers", &brokers);
    write_secret(&secrets, "kafka-auth", "client.id", "eddy-secret-test");
    write_secret(&secrets, "analytics-db", "url", &url);
    let yaml = format!(
        "apiVersion: eddy.dev/v1alpha1
kind: StreamJob
metadata: {{name: {table}}}
spec:
  source:
    kafka: {{brokers: '127.0.0.1:9', topic: {topic}, stopAtEnd: true, propertiesSecret: kafka-auth}}
  partitions: 2
  keyField: user
  eventTime: {{field: ts, format: epochMillis, idleTimeout: 1h}}
  window: {{tumbling: {{size: 10s}}}}
  sinks:
    - postgres: {{urlSecret: {{name: analytics-db, key: url}}, table: {table}, createTable: true}}
    - kafka: {{brokers: '127.0.0.1:9', topic: {output}, propertiesSecret: kafka-auth}}
  checkpoints: {{store: 'file://{d}/ckpt'}}
"
    );
    std::fs::write(dir.path().join("job.yaml"), &yaml).unwrap();

    // Without the Secrets mounted, the job is refused up front, by field.
    let out = Command::new(BIN)
        .arg("run")
        .arg(dir.path().join("job.yaml"))
        .env("EDDY_SECRETS_DIR", dir.path().join("nowhere"))
        .env_remove("EDDY_POSTGRES_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spec.source.kafka.propertiesSecret: Secret \"kafka-auth\" is not mounted")
            && stderr.contains("spec.sinks[1].kafka.propertiesSecret"),
        "{stderr}"
    );

    let out = Command::new(BIN)
        .arg("run")
        .arg(dir.path().join("job.yaml"))
        .env("EDDY_SECRETS_DIR", &secrets)
        .env_remove("EDDY_POSTGRES_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");

    // 600 events, 6 users, one event per 100 ms: 6 windows of 10 s, each
    // with 100 events spread evenly over the users.
    let rows = query(&format!(
        "SELECT count(*), sum((aggregates->>'count')::bigint)::bigint FROM {table}"
    ));
    let (windows, events): (i64, Option<i64>) = (rows[0].get(0), rows[0].get(1));
    assert_eq!((windows, events), (36, Some(MESSAGES)), "{stderr}");

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "secret-test")
        .create()
        .unwrap();
    let (_, high) = consumer
        .fetch_watermarks(&output, 0, Duration::from_secs(10))
        .unwrap();
    assert!(high >= 36, "{high} results on the output topic");
}
