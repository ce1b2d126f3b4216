//! Smoke test: the PostgreSQL server started by `scripts/test-servers`,
//! through tokio-postgres, with an upsert keyed by result id that keeps the
//! highest revision (the sink's own rule, which also ranks final rows
//! first, is tested in `processor/tests/postgres_sink.rs`).

use tokio_postgres::NoTls;

#[tokio::test]
async fn upsert_keeps_the_highest_revision() {
    let (client, connection) = tokio_postgres::connect(&eddy_testkit::postgres_url(), NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    let schema = eddy_testkit::unique_name("smoke").replace('-', "_");
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema};
             CREATE TABLE {schema}.results (
                 id text PRIMARY KEY,
                 revision integer NOT NULL,
                 total double precision NOT NULL
             );"
        ))
        .await
        .unwrap();
    let upsert = client
        .prepare(&format!(
            "INSERT INTO {schema}.results AS r (id, revision, total) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET revision = EXCLUDED.revision, total = EXCLUDED.total
             WHERE r.revision < EXCLUDED.revision"
        ))
        .await
        .unwrap();
    // Revision 2 arrives, then a replayed revision 1 and a duplicate 2, then 3.
    let rows: [(&str, i32, f64); 6] = [
        ("a", 2, 20.0),
        ("a", 1, 10.0),
        ("a", 2, 20.0),
        ("b", 1, 5.0),
        ("a", 3, 30.0),
        ("b", 1, 5.0),
    ];
    for (id, revision, total) in rows {
        client
            .execute(&upsert, &[&id, &revision, &total])
            .await
            .unwrap();
    }
    let rows = client
        .query(
            &format!("SELECT id, revision, total FROM {schema}.results ORDER BY id"),
            &[],
        )
        .await
        .unwrap();
    let rows: Vec<(String, i32, f64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(rows, vec![("a".into(), 3, 30.0), ("b".into(), 1, 5.0)]);

    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
    drop(client);
    driver.await.unwrap().unwrap();
}
