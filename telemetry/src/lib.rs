//! Logging and traces for Eddy's binaries.
//!
//! Logs go to stderr, filtered by `RUST_LOG`, as text lines or, with
//! `EDDY_LOG_FORMAT=json`, one JSON object per line (see
//! [`config::log_format`]). When the standard
//! OpenTelemetry variables ask for it (see [`config::from_env`]), spans are
//! also exported over OTLP (gRPC, HTTP/protobuf or HTTP/JSON), filtered by
//! `EDDY_TRACES_FILTER` (default `info`) independently of the log filter, so
//! that a quiet log does not mean empty traces.

pub mod config;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::{trace::SdkTracerProvider, Resource};
use tracing_subscriber::{
    layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer, Registry,
};

pub use config::{ConfigError, Export, LogFormat, Protocol};

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot build the OTLP span exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("cannot start the runtime of the gRPC exporter: {0}")]
    Runtime(#[from] std::io::Error),
    #[error("EDDY_TRACES_FILTER: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    #[error("a global subscriber is already set: {0}")]
    Global(#[from] tracing_subscriber::util::TryInitError),
}

/// Keeps the exporter alive; dropping it flushes the spans not yet sent.
/// Hold it in `main` until the program ends.
#[must_use = "dropping the guard stops trace export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    /// The gRPC exporter's connection lives on its own small runtime, so
    /// that it works whatever runtime (or none) the program uses.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Telemetry {
    /// Whether spans are being exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("warning: traces not all exported at shutdown: {e}");
            }
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Installs the global subscriber: stderr logs (`RUST_LOG`, else
/// `default_log_filter`; text, or JSON with `EDDY_LOG_FORMAT=json`) and,
/// when configured, OTLP trace export naming the service `service_name`
/// unless the environment names it.
pub fn init(default_log_filter: &str, service_name: &str) -> Result<Telemetry, InitError> {
    let export = config::from_env(|name| std::env::var(name).ok(), service_name)?;
    let format = config::log_format(|name| std::env::var(name).ok())?;
    let logs = log_layer(format).with_filter(
        EnvFilter::try_from_default_env().unwrap_or_else(|_| default_log_filter.into()),
    );
    let Some(export) = export else {
        tracing_subscriber::registry().with(logs).try_init()?;
        return Ok(Telemetry {
            provider: None,
            runtime: None,
        });
    };
    let traces_filter = match std::env::var("EDDY_TRACES_FILTER") {
        Ok(filter) if !filter.trim().is_empty() => EnvFilter::try_new(filter)?,
        _ => EnvFilter::new("info"),
    };
    let (provider, runtime) = provider(&export)?;
    let spans = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("eddy"))
        .with_filter(traces_filter);
    tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init()?;
    Ok(Telemetry {
        provider: Some(provider),
        runtime,
    })
}

/// The stderr log layer in `format`, unfiltered.
///
/// JSON lines come from tracing-subscriber's own formatter: `timestamp`,
/// `level`, `target`, the event's fields (`message` among them) at the top
/// level, `span` for the innermost span and `spans` for all of them, root
/// first, each with its name and fields (including those recorded after
/// the span started).
fn log_layer(format: LogFormat) -> Box<dyn Layer<Registry> + Send + Sync> {
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Text => layer.boxed(),
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .with_ansi(false)
            .boxed(),
    }
}

/// A tracer provider that batches spans to the exporter `export` describes.
pub fn provider(
    export: &Export,
) -> Result<(SdkTracerProvider, Option<tokio::runtime::Runtime>), InitError> {
    let (exporter, runtime) = match export.protocol {
        Protocol::Grpc => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("otlp-grpc")
                .enable_all()
                .build()?;
            let exporter = {
                let _entered = runtime.enter();
                SpanExporter::builder().with_tonic().build()?
            };
            (exporter, Some(runtime))
        }
        Protocol::HttpProtobuf | Protocol::HttpJson => {
            let protocol = if export.protocol == Protocol::HttpJson {
                opentelemetry_otlp::Protocol::HttpJson
            } else {
                opentelemetry_otlp::Protocol::HttpBinary
            };
            let exporter = SpanExporter::builder()
                .with_http()
                .with_protocol(protocol)
                .build()?;
            (exporter, None)
        }
    };
    let mut resource = Resource::builder();
    if let Some(name) = &export.service_name {
        resource = resource.with_service_name(name.clone());
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    Ok((provider, runtime))
}
