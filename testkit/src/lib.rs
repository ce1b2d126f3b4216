//! Helpers for Eddy's tests.
//!
//! Tests that need a real server (object store, Kafka broker, PostgreSQL,
//! helm, the Kubernetes API server) find it through environment variables that `scripts/test-servers
//! start` writes. A test that needs one and does not find it fails with a
//! message saying what to run: it never passes silently.

pub mod kafka;
pub mod kube;
pub mod otlp;
pub mod produce;
pub mod s3;

use std::env;

/// The command that provides the servers.
pub const HOW_TO_START: &str = "run the whole suite with `scripts/test`, or start the servers \
     with `scripts/test-servers install && scripts/test-servers start` and then \
     `eval \"$(scripts/test-servers env)\"` before `cargo test`";

/// The value of a server variable, or a panic that says how to get it.
pub fn require(var: &str) -> String {
    match env::var(var) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!("{var} is not set: this test needs a real server; {HOW_TO_START}"),
    }
}

/// Waits up to `timeout` for `check` to give `Ok`, asking every half
/// second; panics with `what` and the last `Err` otherwise.
pub async fn eventually<T, F, Fut>(what: &str, timeout: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let start = std::time::Instant::now();
    let mut last = String::new();
    while start.elapsed() < timeout {
        match check().await {
            Ok(value) => return value,
            Err(why) => last = why,
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    panic!("waited {timeout:?} for {what}: {last}");
}

/// The S3-compatible object store.
#[derive(Clone, Debug)]
pub struct S3Server {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
}

pub fn s3() -> S3Server {
    S3Server {
        endpoint: require("EDDY_TEST_S3_ENDPOINT"),
        access_key: require("EDDY_TEST_S3_ACCESS_KEY"),
        secret_key: require("EDDY_TEST_S3_SECRET_KEY"),
    }
}

/// A local port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Bootstrap servers of the Kafka broker (Apache Kafka, with transactions).
pub fn kafka_brokers() -> String {
    require("EDDY_TEST_KAFKA_BROKERS")
}

/// Connection URL of the PostgreSQL server.
pub fn postgres_url() -> String {
    require("EDDY_TEST_POSTGRES_URL")
}

/// Path of the helm binary.
pub fn helm() -> String {
    require("EDDY_TEST_HELM")
}

/// Path of promtool (Debian's `prometheus` package): checks and unit-tests
/// Prometheus rule files.
pub fn promtool() -> String {
    require("EDDY_TEST_PROMTOOL")
}

/// Path of the Prometheus server binary (Debian's `prometheus` package);
/// tests start it themselves, on loopback, with a config of their own.
pub fn prometheus() -> String {
    require("EDDY_TEST_PROMETHEUS")
}

/// Path of the Alertmanager binary (Debian's `prometheus-alertmanager`
/// package); tests start it themselves, on loopback.
pub fn alertmanager() -> String {
    require("EDDY_TEST_ALERTMANAGER")
}

/// A name unique to this test process and call, for buckets, topics and
/// schemas, so tests can share one server and run in parallel.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        nanos % 100_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(
        expected = "EDDY_TEST_NOT_A_REAL_VAR is not set: this test needs a real server; run the whole suite with `scripts/test`"
    )]
    fn missing_server_fails_with_instructions() {
        require("EDDY_TEST_NOT_A_REAL_VAR");
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name("t"), unique_name("t"));
    }
}
