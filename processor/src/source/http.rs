//! HTTP ingest, for the sidecar case: an application in the same pod POSTs
//! events to `/events` as one JSON object, a JSON array, or newline-delimited
//! JSON.
//!
//! What an answer means:
//! - `200` (the default) comes only once the events are durable: covered by
//!   a completed checkpoint (or, when the input ends, by the results being
//!   written). A crash before that loses them and the client, having had no
//!   200, must send them again.
//! - `200` with `?ack=received` comes as soon as the events are in the
//!   processor's bounded buffer: faster, but a crash before the next
//!   checkpoint loses them.
//! - `429` with `Retry-After` when the buffer (`bufferEvents`) is full:
//!   memory stays bounded and nothing is buffered without limit.
//! - `503` with `Retry-After` while the processor is shutting down.
//! - `413` for a body above `maxBody`.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use axum::{
    extract::{DefaultBodyLimit, Query, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Router,
};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{watch, Semaphore};

use super::{
    json::{Parsed, Wanted},
    wall_clock_ms, Batch, Payload, Poll, SourceRecord,
};
use crate::event::Invalid;

/// Records handed out per poll.
const BATCH: usize = 1024;
/// Longest a request waits for its events to become durable.
const ACK_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Clone, Debug)]
pub struct HttpConfig {
    pub addr: SocketAddr,
    pub max_body: usize,
    pub buffer_events: usize,
    /// The fields the job reads from a record; the rest is only checked.
    pub fields: Wanted,
}

struct Shared {
    fields: Wanted,
    queue: Mutex<VecDeque<(u64, Payload)>>,
    permits: Semaphore,
    /// Sequence number of the last event accepted.
    accepted: AtomicU64,
    /// Every event up to this sequence number is durable.
    durable: watch::Sender<u64>,
    closing: AtomicBool,
}

pub struct HttpIngest {
    shared: Arc<Shared>,
    /// Events the buffer holds at most.
    capacity: usize,
    /// Sequence number of the last event handed to the pipeline.
    taken: u64,
    pub addr: SocketAddr,
}

impl HttpIngest {
    /// Binds the endpoint and serves it in the background.
    pub async fn open(config: HttpConfig) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            fields: config.fields,
            queue: Mutex::new(VecDeque::new()),
            permits: Semaphore::new(config.buffer_events),
            accepted: AtomicU64::new(0),
            durable: watch::channel(0).0,
            closing: AtomicBool::new(false),
        });
        let app = Router::new()
            .route("/events", post(ingest))
            .layer(DefaultBodyLimit::max(config.max_body))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(config.addr).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("HTTP ingest stopped: {e}");
            }
        });
        Ok(Self {
            shared,
            capacity: config.buffer_events,
            taken: 0,
            addr,
        })
    }

    /// Share of the event buffer in use (accepted, not yet durable).
    pub fn fill_ratio(&self) -> f64 {
        let free = self.shared.permits.available_permits();
        self.capacity.saturating_sub(free) as f64 / self.capacity.max(1) as f64
    }

    /// The sequence number reached, for a checkpoint.
    pub fn position(&self) -> u64 {
        self.taken
    }

    /// Resumes numbering after a restored checkpoint.
    pub fn resume(&mut self, taken: u64) {
        self.taken = taken;
        self.shared.accepted.store(taken, Ordering::SeqCst);
        self.shared.durable.send_replace(taken);
    }

    /// Events up to `seq` are durable: their requests may be answered.
    pub fn mark_durable(&self, seq: u64) {
        self.shared.durable.send_modify(|d| *d = (*d).max(seq));
    }

    /// Stops accepting (503); what is buffered is still processed, then the
    /// input ends.
    pub fn close(&self) {
        self.shared.closing.store(true, Ordering::SeqCst);
    }

    pub fn poll(&mut self) -> Poll {
        let mut batch = Batch::default();
        {
            let mut queue = self.shared.queue.lock().expect("ingest queue");
            while batch.records.len() < BATCH {
                let Some((seq, payload)) = queue.pop_front() else {
                    break;
                };
                self.taken = seq;
                batch.records.push(SourceRecord {
                    payload,
                    ingest_ms: wall_clock_ms(),
                    partition: None,
                    origin: super::Origin::Http(seq),
                });
            }
        }
        self.shared.permits.add_permits(batch.records.len());
        if !batch.records.is_empty() {
            return Poll::Ready(batch);
        }
        if self.shared.closing.load(Ordering::SeqCst) {
            return Poll::End;
        }
        Poll::Pending(Instant::now() + Duration::from_millis(10))
    }
}

#[derive(Debug, Default, Deserialize)]
struct Params {
    #[serde(default)]
    ack: Option<String>,
}

fn retry_later(status: StatusCode, message: &str) -> Response {
    (status, [(header::RETRY_AFTER, "1")], message.to_string()).into_response()
}

async fn ingest(
    State(s): State<Arc<Shared>>,
    Query(q): Query<Params>,
    body: axum::body::Bytes,
) -> Response {
    if s.closing.load(Ordering::SeqCst) {
        return retry_later(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    let payloads = parse(&body, &s.fields);
    let n = payloads.len();
    if n == 0 {
        return (StatusCode::OK, "{\"accepted\":0}").into_response();
    }
    let Ok(permits) = s.permits.try_acquire_many(n as u32) else {
        return retry_later(StatusCode::TOO_MANY_REQUESTS, "buffer full");
    };
    permits.forget();
    let last = {
        let mut queue = s.queue.lock().expect("ingest queue");
        let first = s.accepted.fetch_add(n as u64, Ordering::SeqCst) + 1;
        for (i, payload) in payloads.into_iter().enumerate() {
            queue.push_back((first + i as u64, payload));
        }
        first + n as u64 - 1
    };
    if q.ack.as_deref() != Some("received") {
        let mut durable = s.durable.subscribe();
        let waited = tokio::time::timeout(ACK_TIMEOUT, durable.wait_for(|d| *d >= last)).await;
        if !matches!(waited, Ok(Ok(_))) {
            return (StatusCode::GATEWAY_TIMEOUT, "not yet durable; send again").into_response();
        }
    }
    (StatusCode::OK, format!("{{\"accepted\":{n}}}")).into_response()
}

/// One object, an array of them, or newline-delimited JSON; a line that is
/// not JSON becomes an unreadable record (to the invalid output). Objects
/// are read only as far as the job needs; the elements of an array whole.
fn parse(body: &[u8], fields: &Wanted) -> Vec<Payload> {
    let one = |parsed| match parsed {
        Parsed::Object(record) => Payload::Sparse(record),
        Parsed::Other(value) => Payload::Json(value),
    };
    match fields.parse(body) {
        Ok(Parsed::Other(Value::Array(items))) => items.into_iter().map(Payload::Json).collect(),
        Ok(parsed) => vec![one(parsed)],
        Err(_) => body
            .split(|b| *b == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .map(|line| match fields.parse(line) {
                Ok(parsed) => one(parsed),
                Err(e) => Payload::Unreadable {
                    raw: String::from_utf8_lossy(&line[..line.len().min(512)]).into_owned(),
                    reason: Invalid::NotJson(e.to_string()),
                },
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_in_every_shape() {
        let fields = Wanted::new(["a".to_string()]);
        let whole = |p: &Payload| p.record().expect("a readable record").into_owned();
        let one = parse(b"{\n  \"a\": 1,\n  \"b\": [2]\n}", &fields);
        assert_eq!(
            one.iter().map(whole).collect::<Vec<_>>(),
            [serde_json::json!({"a": 1, "b": [2]})]
        );
        assert_eq!(parse(br#"[{"a":1},{"a":2}]"#, &fields).len(), 2);
        let ndjson = parse(b"{\"a\":1}\nnope\n\n{\"a\":2}\n", &fields);
        assert_eq!(ndjson.len(), 3);
        assert!(matches!(ndjson[1], Payload::Unreadable { .. }));
        assert_eq!(whole(&ndjson[2]), serde_json::json!({"a": 2}));
    }
}
