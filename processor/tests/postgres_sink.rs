//! The PostgreSQL sink against the real server started by
//! `scripts/test-servers`: the table holds the highest revision of every
//! result, and replays change nothing.

mod common;

use std::collections::BTreeMap;

use common::{ev, Job};
use serde_json::Value;
use tokio_postgres::NoTls;

fn input() -> Vec<Value> {
    let mut events: Vec<Value> = (0..3000)
        .map(|i| ev(&format!("u{}", i % 7), i as f64 * 0.05, (i % 10) as f64))
        .collect();
    // Late events within the allowed lateness: they revise fired windows.
    for i in 0..50 {
        events.insert(
            600 + i * 40,
            ev(&format!("u{}", i % 7), (i * 2) as f64, 100.0),
        );
    }
    events
}

fn spec(table: &str, url: &str) -> String {
    format!(
        "  partitions: 2
  keyField: user
  eventTime: {{field: ts, maxOutOfOrderness: 1s}}
  window: {{tumbling: {{size: 5s}}}}
  allowedLateness: 1h
  aggregations: [{{op: count, name: n}}, {{op: sum, field: amount, name: total}}]
  sinks:
    - {{postgres: {{url: '{url}', table: {table}, createTable: true}}}}"
    )
}

async fn table(url: &str, table: &str) -> BTreeMap<String, (i32, bool, Value)> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .query(
            &format!("SELECT id, revision, final, aggregates::text FROM {table}"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let aggregates: String = r.get(3);
            (
                r.get(0),
                (
                    r.get(1),
                    r.get(2),
                    serde_json::from_str(&aggregates).unwrap(),
                ),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn table_holds_the_highest_revision_of_every_result_and_replays_change_nothing() {
    let url = eddy_testkit::postgres_url();
    let name = eddy_testkit::unique_name("results").replace('-', "_");
    // The same job into a file, to know every revision it emits.
    let file_spec = spec(&name, &url);
    let file_spec = file_spec.split("\n  sinks:").next().unwrap();
    let with_file = Job::new(file_spec, &input());
    with_file.run();
    let mut expected: BTreeMap<String, (i32, bool, Value)> = BTreeMap::new();
    for r in with_file.lines("results.jsonl") {
        let revision = r["revision"].as_i64().unwrap() as i32;
        let entry = (
            revision,
            r["final"].as_bool().unwrap(),
            r["aggregates"].clone(),
        );
        let id = r["id"].as_str().unwrap().to_string();
        if expected.get(&id).is_none_or(|e| e.0 < revision) {
            expected.insert(id, entry);
        }
    }
    assert!(
        expected.values().any(|e| e.0 > 1),
        "the input revises results"
    );

    let job = Job::new(&spec(&name, &url), &input());
    job.run();
    assert_eq!(table(&url, &name).await, expected);
    // A replay of everything writes the same rows again: nothing changes.
    job.run();
    assert_eq!(table(&url, &name).await, expected);
}
