//! The PostgreSQL sink against the real server started by
//! `scripts/test-servers`: the table holds the highest-ranked revision of
//! every result, and replays change nothing.

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

/// A replay after a crash need not revise a window as often as the run it
/// repeats (how late records interleave with the other partitions' differs):
/// the run may have written revision 3, not final, and the replay close the
/// window at revision 2. The final revision wins, within a batch and across
/// them, and nothing but another final revision replaces it.
#[tokio::test(flavor = "multi_thread")]
async fn a_final_revision_outranks_higher_revisions_that_are_not() {
    use eddy_processor::{
        engine::{window::Window, WindowResult},
        output::{
            record::{result_id, JobId},
            sink::{postgres::PostgresSink, Item, Sink},
        },
    };
    let url = eddy_testkit::postgres_url();
    let name = eddy_testkit::unique_name("ranks").replace('-', "_");
    let job = JobId {
        namespace: "default".into(),
        name: name.clone(),
    };
    let result = |key: &str, n: u64, revision: u32, is_final: bool| WindowResult {
        partition: 0,
        key: key.into(),
        window: Window {
            start: 0,
            end: 5_000,
        },
        aggregates: [serde_json::json!(n)].into_iter().collect(),
        revision,
        is_final,
        partial: None,
    };
    let mut sink = PostgresSink::new(url.clone(), name.clone(), true, &job.name);
    let mut write = async |rows: &[WindowResult]| {
        for r in rows {
            let id = result_id(&job, &r.key, r.window.start, r.window.end);
            let item = Item {
                id: &id,
                line: b"",
                result: Some(r),
                names: &["n".into()],
            };
            sink.write(&item).unwrap();
        }
        sink.flush().await.unwrap();
    };
    // The crashed run: revisions 1 to 3 of "a", none final; "b" closed.
    write(&[result("a", 1, 1, false), result("a", 2, 2, false)]).await;
    write(&[result("a", 4, 3, false), result("b", 7, 2, true)]).await;
    // The replay closes "a" at revision 2, replays "b", and a later replay
    // writes a stale, not final, revision of "b" above its final one.
    write(&[result("a", 5, 1, false), result("a", 5, 2, true)]).await;
    write(&[result("b", 6, 3, false), result("b", 7, 2, true)]).await;
    // Within one batch, too: the final revision 1 beats revision 4.
    write(&[result("c", 9, 4, false), result("c", 9, 1, true)]).await;

    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(connection);
    let by_key: BTreeMap<String, (i32, bool, i64)> = client
        .query(
            &format!("SELECT key, revision, final, (aggregates->>'n')::bigint FROM {name}"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect();
    assert_eq!(
        by_key,
        BTreeMap::from([
            ("a".into(), (2, true, 5)),
            ("b".into(), (2, true, 7)),
            ("c".into(), (1, true, 9)),
        ])
    );
}

/// The pods of a job start together, each creating the table: `CREATE
/// TABLE IF NOT EXISTS` at once in several sessions fails in some of them
/// unless they take turns.
#[tokio::test(flavor = "multi_thread")]
async fn sinks_starting_together_all_create_the_table() {
    use eddy_processor::{
        engine::{window::Window, WindowResult},
        output::sink::{postgres::PostgresSink, Item, Sink},
    };
    let url = eddy_testkit::postgres_url();
    let name = eddy_testkit::unique_name("together").replace('-', "_");
    const SINKS: u32 = 16;
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(SINKS as usize));
    let writers = (0..SINKS).map(|i| {
        let (url, name, start) = (url.clone(), name.clone(), start.clone());
        tokio::spawn(async move {
            let mut sink = PostgresSink::new(url, name.clone(), true, &name);
            start.wait().await;
            let result = WindowResult {
                partition: i,
                key: format!("k{i}").into(),
                window: Window {
                    start: 0,
                    end: 5_000,
                },
                aggregates: [serde_json::json!(1)].into_iter().collect(),
                revision: 1,
                is_final: true,
                partial: None,
            };
            let id = format!("r{i}");
            let item = Item {
                id: &id,
                line: b"",
                result: Some(&result),
                names: &["n".into()],
            };
            sink.write(&item)?;
            sink.flush().await
        })
    });
    // Every sink spawned before any is awaited.
    let writers: Vec<_> = writers.collect();
    for (i, written) in writers.into_iter().enumerate() {
        written
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("sink {i}: {e:#}"));
    }
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(connection);
    let rows = client
        .query(&format!("SELECT count(*) FROM {name}"), &[])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), i64::from(SINKS));
}
