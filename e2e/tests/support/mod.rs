//! What the end-to-end suite needs around a cluster: the command-line
//! tools users run (helm, kubectl), the addresses of Kafka, PostgreSQL and
//! S3 as the pods see them, and the events a job reads with the results
//! they must give, computed independently of Eddy.
//!
//! On the local control plane (`scripts/test-servers`) the pods run on the
//! host, so they use the same addresses as the test. Against another
//! cluster (`e2e/kind/up.sh`) the `EDDY_E2E_CLUSTER_*` variables give the
//! addresses inside the cluster.

#![allow(dead_code)]

pub mod alerting;

use std::{
    collections::BTreeMap,
    process::{Command, Output},
};

use serde_json::json;

pub fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The value of `var`, or of `fallback` (a test server variable).
fn cluster_side(var: &str, fallback: impl FnOnce() -> String) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(fallback)
}

/// Kafka brokers as the pods reach them.
pub fn cluster_kafka() -> String {
    cluster_side("EDDY_E2E_CLUSTER_KAFKA", eddy_testkit::kafka_brokers)
}

/// The S3 endpoint as the pods reach it.
pub fn cluster_s3() -> String {
    cluster_side("EDDY_E2E_CLUSTER_S3", || eddy_testkit::s3().endpoint)
}

/// The PostgreSQL URL as the pods reach it.
pub fn cluster_postgres() -> String {
    cluster_side("EDDY_E2E_CLUSTER_POSTGRES", eddy_testkit::postgres_url)
}

/// Tag of the operator and processor images (the test node runs the
/// workspace's binaries for any tag).
pub fn image_tag() -> String {
    cluster_side("EDDY_E2E_IMAGE_TAG", || "test".into())
}

/// Runs a tool; panics with its output when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = output(program, args);
    assert!(
        out.status.success(),
        "{program} {}: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn output(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("KUBECONFIG", eddy_testkit::kube::kubeconfig())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

pub fn kubectl(args: &[&str]) -> String {
    run(&eddy_testkit::kube::kubectl(), args)
}

pub fn helm(args: &[&str]) -> String {
    run(&eddy_testkit::helm(), args)
}

pub use eddy_testkit::eventually;

/// `helm install` of the chart as release `eddy` into `operator_ns`
/// (created), its operator watching `watch` only (so other tests'
/// namespaces are not its business), the images at [`image_tag`].
pub fn install_chart(operator_ns: &str, watch: &str) {
    let chart = repo().join("charts/eddy");
    let tag = image_tag();
    helm(&[
        "install",
        "eddy",
        chart.to_str().unwrap(),
        "--namespace",
        operator_ns,
        "--create-namespace",
        "--set",
        &format!("watchNamespace={watch}"),
        "--set",
        &format!("image.tag={tag}"),
        "--set",
        &format!("processorImage.tag={tag}"),
        "--wait",
        "--timeout",
        "3m",
    ]);
}

/// The Secrets a job in `ns` names: `s3` (the store's credentials) and
/// `db` (`url`: the PostgreSQL URL as the pods reach it).
pub fn create_secrets(ns: &str) {
    let s3 = eddy_testkit::s3();
    kubectl(&[
        "create",
        "secret",
        "generic",
        "s3",
        "-n",
        ns,
        &format!("--from-literal=AWS_ACCESS_KEY_ID={}", s3.access_key),
        &format!("--from-literal=AWS_SECRET_ACCESS_KEY={}", s3.secret_key),
    ]);
    kubectl(&[
        "create",
        "secret",
        "generic",
        "db",
        "-n",
        ns,
        &format!("--from-literal=url={}", cluster_postgres()),
    ]);
}

/// Partitions of the source topic.
pub const PARTITIONS: i32 = 4;
/// Event time of the first event (epoch milliseconds).
pub const START: i64 = 1_767_225_600_000;
/// Events per partition in each batch.
pub const BATCH: i64 = 4_000;

/// (partition, payload) of batch `b`: events 20 ms of event time apart
/// per partition, out of order by up to 1.5 s, every 97th 6 s late (within
/// the job's 10 s of allowed lateness, so each late one revises a result),
/// over 300 users.
pub fn batch(b: i64) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for p in 0..PARTITIONS {
        for j in 0..BATCH {
            let i = b * BATCH + j;
            let n = i * i64::from(PARTITIONS) + i64::from(p);
            let jitter = n * 7919 % 1500;
            let late = if n % 97 == 0 { 6_000 } else { 0 };
            let ts = START + i * 20 - jitter - late;
            let user = format!("u{}", (n * 7) % 300);
            let amount = (n % 100) as f64 / 4.0;
            out.push((
                p,
                json!({"user": user, "ts": ts, "amount": amount}).to_string(),
            ));
        }
    }
    out
}

/// One event per partition a minute after batch `batches - 1`, so every
/// window of the real events closes (its key is left out of comparisons).
pub fn flush(batches: i64) -> Vec<(i32, String)> {
    let ts = START + batches * BATCH * 20 + 60_000;
    (0..PARTITIONS)
        .map(|p| {
            (
                p,
                json!({"user": "flush", "ts": ts, "amount": 0}).to_string(),
            )
        })
        .collect()
}

/// (user, window start) → (count, sum) of `batches` batches: a plain
/// group-by over 5-second windows.
pub fn expected(batches: i64) -> BTreeMap<(String, i64), (u64, f64)> {
    let mut groups = BTreeMap::new();
    for b in 0..batches {
        for (_, payload) in batch(b) {
            let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
            let ts = v["ts"].as_i64().unwrap();
            let entry = groups
                .entry((
                    v["user"].as_str().unwrap().to_string(),
                    ts - ts.rem_euclid(5_000),
                ))
                .or_insert((0, 0.0));
            entry.0 += 1;
            entry.1 += v["amount"].as_f64().unwrap();
        }
    }
    groups
}

#[allow(unused_imports)] // not every test produces
pub use eddy_testkit::produce::produce;

/// Creates `topic` with [`PARTITIONS`] partitions.
pub async fn create_topic(brokers: &str, topic: &str) {
    eddy_testkit::produce::create_topics(brokers, &[(topic, PARTITIONS)]).await;
}

/// Waits (five minutes at most) until the results table `table_name`
/// holds exactly `expected`, every row final; panics saying how it differs.
pub async fn wait_exact(table_name: &str, expected: &BTreeMap<(String, i64), (u64, f64)>) {
    let url = eddy_testkit::postgres_url();
    let wait = std::time::Duration::from_secs(300);
    eventually("the table to hold every result", wait, || async {
        let (rows, all_final) = table(&url, table_name).await?;
        if &rows == expected && all_final {
            return Ok(());
        }
        let missing = expected.keys().filter(|k| !rows.contains_key(k)).count();
        let wrong = expected
            .iter()
            .filter(|(k, v)| rows.get(*k).is_some_and(|r| r != *v))
            .count();
        Err(format!(
            "{} rows, {} expected: {missing} missing, {wrong} different, {} extra; all final: \
             {all_final}",
            rows.len(),
            expected.len(),
            rows.keys().filter(|k| !expected.contains_key(k)).count()
        ))
    })
    .await;
}

/// The results table: (user, window start) → (count, sum), and whether
/// every row is final.
pub async fn table(
    url: &str,
    table: &str,
) -> Result<(BTreeMap<(String, i64), (u64, f64)>, bool), String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let sql = format!(
        "SELECT key, (extract(epoch from window_start) * 1000)::bigint, \
         (aggregates->>'orders')::bigint, (aggregates->>'total')::float8, final FROM {table} \
         WHERE key <> 'flush'"
    );
    let rows = client.query(&sql, &[]).await.map_err(|e| e.to_string())?;
    let all_final = rows.iter().all(|r| r.get::<_, bool>(4));
    Ok((
        rows.iter()
            .map(|r| ((r.get(0), r.get(1)), (r.get::<_, i64>(2) as u64, r.get(3))))
            .collect(),
        all_final,
    ))
}
