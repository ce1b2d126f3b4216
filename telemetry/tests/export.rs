//! Spans reach a real OTLP endpoint over each protocol, with their
//! parents, attributes, events and the service name.
//!
//! Each test sets the process environment the exporter reads: under
//! nextest every test has its own process, under `cargo test` they take
//! turns through [`ENV`].

use eddy_telemetry::config;
use eddy_testkit::otlp::Collector;
use tracing_subscriber::layer::SubscriberExt;

/// Held while a test's variables are set and read.
static ENV: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn spans_arrive(collector: Collector, protocol: &str, service: Option<&str>) {
    let _env = ENV.lock().await;
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint);
    std::env::set_var("OTEL_EXPORTER_OTLP_PROTOCOL", protocol);
    match service {
        Some(name) => std::env::set_var("OTEL_SERVICE_NAME", name),
        None => std::env::remove_var("OTEL_SERVICE_NAME"),
    }
    let export = config::from_env(|name| std::env::var(name).ok(), "eddy-test")
        .unwrap()
        .expect("an endpoint turns export on");
    // The exporter blocks on its own thread at shutdown: keep it off the
    // collector's runtime thread.
    let spans = tokio::task::spawn_blocking(move || {
        let (provider, runtime) = eddy_telemetry::provider(&export).unwrap();
        use opentelemetry::trace::TracerProvider as _;
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("eddy")));
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!("checkpoint", id = 7_u64, partition = "p3");
            let _outer = outer.enter();
            tracing::info!("state flushed");
            tracing::info_span!("upload", bytes = 4096_u64).in_scope(|| {});
        });
        provider.shutdown().unwrap();
        drop(runtime);
    });
    spans.await.unwrap();
    let spans = collector.received.spans();
    let outer = spans
        .iter()
        .find(|s| s.name == "checkpoint")
        .unwrap_or_else(|| panic!("no checkpoint span in {spans:?}"));
    let inner = spans
        .iter()
        .find(|s| s.name == "upload")
        .unwrap_or_else(|| panic!("no upload span in {spans:?}"));
    assert_eq!(outer.service, service.unwrap_or("eddy-test"));
    assert_eq!(outer.attributes.get("id").map(String::as_str), Some("7"));
    assert_eq!(
        outer.attributes.get("partition").map(String::as_str),
        Some("p3")
    );
    assert_eq!(outer.events, ["state flushed"]);
    assert_eq!(
        inner.attributes.get("bytes").map(String::as_str),
        Some("4096")
    );
    assert_eq!(inner.trace_id, outer.trace_id, "one trace");
    assert_eq!(
        inner.parent_span_id, outer.span_id,
        "upload is inside checkpoint"
    );
    assert_eq!(outer.trace_id.len(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf() {
    let collector = Collector::http().await;
    let received = collector.received.clone();
    spans_arrive(collector, "http/protobuf", None).await;
    assert!(received
        .requests()
        .iter()
        .all(|k| k == "application/x-protobuf"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_json() {
    let collector = Collector::http().await;
    let received = collector.received.clone();
    spans_arrive(collector, "http/json", Some("payments")).await;
    assert!(received.requests().iter().all(|k| k == "application/json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc() {
    let collector = Collector::grpc().await;
    let received = collector.received.clone();
    spans_arrive(collector, "grpc", None).await;
    assert!(received.requests().iter().all(|k| k == "grpc"));
}
