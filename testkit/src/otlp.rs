//! A minimal OTLP trace collector for tests: accepts spans over gRPC,
//! HTTP/protobuf or HTTP/JSON on loopback and keeps them for inspection.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        trace_service_server::{TraceService, TraceServiceServer},
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    },
    common::v1::any_value::Value,
};
use prost::Message;

/// One received span, flattened.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    pub service: String,
    pub name: String,
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    pub parent_span_id: Vec<u8>,
    /// Attributes as text (numbers and booleans printed).
    pub attributes: BTreeMap<String, String>,
    /// Names of the span's events (log lines inside the span).
    pub events: Vec<String>,
}

/// What the collector has received.
#[derive(Clone, Default)]
pub struct Received {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    /// `content-type` of every HTTP request (or `grpc`).
    requests: Arc<Mutex<Vec<String>>>,
}

impl Received {
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    fn take(&self, kind: &str, request: ExportTraceServiceRequest) {
        self.requests.lock().unwrap().push(kind.to_string());
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .map(|v| text(v.value.as_ref()))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(ReceivedSpan {
                        service: service.clone(),
                        name: span.name,
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        parent_span_id: span.parent_span_id,
                        attributes: span
                            .attributes
                            .iter()
                            .map(|kv| {
                                let value = kv.value.as_ref().and_then(|v| v.value.as_ref());
                                (kv.key.clone(), text(value))
                            })
                            .collect(),
                        events: span.events.into_iter().map(|e| e.name).collect(),
                    });
                }
            }
        }
    }
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// A running collector; it stops when the test's runtime ends.
pub struct Collector {
    /// What to put in `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
    pub received: Received,
}

impl Collector {
    /// OTLP/HTTP (`POST /v1/traces`, protobuf or JSON bodies).
    pub async fn http() -> Collector {
        let received = Received::default();
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(http_export))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Collector {
            endpoint: format!("http://{addr}"),
            received,
        }
    }

    /// OTLP/gRPC.
    pub async fn grpc() -> Collector {
        let received = Received::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(Grpc(received.clone()));
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
        });
        Collector {
            endpoint: format!("http://{addr}"),
            received,
        }
    }
}

async fn http_export(
    axum::extract::State(received): axum::extract::State<Received>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, &'static str) {
    let kind = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let request = if kind.starts_with("application/json") {
        serde_json::from_slice::<ExportTraceServiceRequest>(&body).map_err(|e| e.to_string())
    } else {
        ExportTraceServiceRequest::decode(body).map_err(|e| e.to_string())
    };
    match request {
        Ok(request) => {
            received.take(&kind, request);
            (axum::http::StatusCode::OK, "")
        }
        Err(e) => {
            eprintln!("collector: undecodable {kind} body: {e}");
            (axum::http::StatusCode::BAD_REQUEST, "undecodable body")
        }
    }
}

struct Grpc(Received);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.take("grpc", request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}
