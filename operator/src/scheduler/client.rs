//! HTTP calls to a processor's admin API (see the processor's `admin`
//! module): list checkpoints, trigger one, resume after a final one.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use serde::Deserialize;

/// How long one call may take: a processor that does not answer within it
/// counts as unreachable this round.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// A completed checkpoint as a processor lists it: like the status's
/// `CheckpointRecord`, but a processor that sends no figures (an older
/// version, during an upgrade) is still understood.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Completed {
    pub id: u64,
    pub time: String,
    #[serde(default)]
    pub duration_ms: u64,
    #[serde(default)]
    pub bytes_uploaded: u64,
    #[serde(default)]
    pub bytes_total: u64,
}

/// `GET /checkpoints` of one processor.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listing {
    #[serde(default)]
    pub checkpoints: Vec<Completed>,
    #[serde(default)]
    pub in_flight: Option<u64>,
    #[serde(default)]
    pub paused: bool,
    /// Its finite input ended and every window is out.
    #[serde(default)]
    pub finished: bool,
    #[serde(default)]
    pub next_id: u64,
}

/// `GET /stats` of one processor: load, lateness and watermark advice.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    #[serde(default)]
    pub events_read: u64,
    #[serde(default)]
    pub late: u64,
    #[serde(default)]
    pub hot_keys: Vec<PodHotKey>,
    #[serde(default)]
    pub advice: Vec<PodAdvice>,
    /// Its watermark (ms since the epoch), once it has one.
    #[serde(default)]
    pub watermark_ms: Option<i64>,
    /// A processor running both stages of a two-phase job: each stage's.
    #[serde(default)]
    pub stages: Vec<PodStage>,
}

/// One stage's figures in a processor running a two-phase job.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStage {
    pub stage: String,
    #[serde(default)]
    pub finished: bool,
    #[serde(default)]
    pub records_read: u64,
    #[serde(default)]
    pub late: u64,
    #[serde(default)]
    pub replayed: u64,
    #[serde(default)]
    pub watermark_ms: Option<i64>,
    #[serde(default)]
    pub backlog: Option<u64>,
    #[serde(default)]
    pub last_checkpoint: Option<u64>,
}

/// A heavy key a processor reports.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodHotKey {
    pub partition: u32,
    pub key: String,
    pub share: f64,
}

/// A processor's watermark advice for one share of events.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodAdvice {
    pub keep: f64,
    pub out_of_orderness_ms: i64,
    pub allowed_lateness_ms: i64,
    #[serde(default)]
    pub open_windows: f64,
}

/// `GET /partitions` of one processor: what it runs, and each one's load.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodPartitions {
    #[serde(default)]
    pub partitions: Vec<u32>,
    #[serde(default)]
    pub loads: Vec<PodPartitionLoad>,
}

/// One partition's load as a processor measures it (refreshed once a
/// second).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodPartitionLoad {
    pub partition: u32,
    #[serde(default)]
    pub events_per_second: f64,
    /// Its share of the pod's time, 0 to 1.
    #[serde(default)]
    pub busy_ratio: f64,
    /// Kafka records behind the end, when known.
    #[serde(default)]
    pub backlog: Option<u64>,
    #[serde(default)]
    pub state_bytes: u64,
    #[serde(default)]
    pub top_key_share: Option<f64>,
}

/// How long a partition move may take: the release waits for a
/// checkpoint in the store, the acquire for its download.
const MOVE_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{url}: no answer within {within:?}")]
    Timeout { url: String, within: Duration },
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url}: unexpected answer: {message}")]
    Decode { url: String, message: String },
}

/// A small HTTP/1.1 client for processor admin APIs.
#[derive(Clone)]
pub struct AdminClient {
    http: Client<HttpConnector, Full<Bytes>>,
}

impl Default for AdminClient {
    fn default() -> Self {
        Self {
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

impl AdminClient {
    /// `GET {base}/checkpoints`.
    pub async fn list(&self, base: &str) -> Result<Listing, CallError> {
        let url = format!("{base}/checkpoints");
        let body = self.call("GET", &url, String::new()).await?;
        decode(url, &body)
    }

    /// `POST {base}/checkpoints` with the operator's id; answers the id.
    #[tracing::instrument(name = "checkpoint.trigger", skip(self), err)]
    pub async fn trigger(&self, base: &str, id: u64, is_final: bool) -> Result<u64, CallError> {
        let url = format!("{base}/checkpoints");
        let body = serde_json::json!({"id": id, "final": is_final}).to_string();
        let answer = self.call("POST", &url, body).await?;
        let value: serde_json::Value =
            serde_json::from_str(&answer).map_err(|e| CallError::Decode {
                url: url.clone(),
                message: e.to_string(),
            })?;
        value["id"].as_u64().ok_or(CallError::Decode {
            url,
            message: format!("no id in {answer}"),
        })
    }

    /// `GET {base}/stats`.
    pub async fn stats(&self, base: &str) -> Result<PodStats, CallError> {
        let url = format!("{base}/stats");
        let body = self.call("GET", &url, String::new()).await?;
        decode(url, &body)
    }

    /// `GET {base}/partitions`.
    pub async fn partitions(&self, base: &str) -> Result<PodPartitions, CallError> {
        let url = format!("{base}/partitions");
        let body = self.call("GET", &url, String::new()).await?;
        decode(url, &body)
    }

    /// `POST {base}/partitions/{p}/release` under checkpoint `id`: answers
    /// the checkpoint the partition was released at (the same again for
    /// one released already).
    #[tracing::instrument(name = "partition.release", skip(self), err)]
    pub async fn release(
        &self,
        base: &str,
        partition: u32,
        id: u64,
        assignment: u64,
    ) -> Result<u64, CallError> {
        let url = format!("{base}/partitions/{partition}/release");
        let body = serde_json::json!({ "id": id, "assignment": assignment }).to_string();
        let answer = self.call_within("POST", &url, body, MOVE_TIMEOUT).await?;
        checkpoint_of(url, &answer)
    }

    /// `POST {base}/partitions/{p}/acquire` from checkpoint `at_least` or a
    /// newer one: answers the checkpoint it runs from.
    #[tracing::instrument(name = "partition.acquire", skip(self), err)]
    pub async fn acquire(
        &self,
        base: &str,
        partition: u32,
        at_least: u64,
        assignment: u64,
    ) -> Result<u64, CallError> {
        let url = format!("{base}/partitions/{partition}/acquire");
        let body =
            serde_json::json!({ "checkpoint": at_least, "assignment": assignment }).to_string();
        let answer = self.call_within("POST", &url, body, MOVE_TIMEOUT).await?;
        checkpoint_of(url, &answer)
    }

    /// `POST {base}/resume`: consume again after a final checkpoint.
    pub async fn resume(&self, base: &str) -> Result<(), CallError> {
        let url = format!("{base}/resume");
        self.call("POST", &url, String::new()).await.map(drop)
    }

    async fn call(&self, method: &str, url: &str, body: String) -> Result<String, CallError> {
        self.call_within(method, url, body, CALL_TIMEOUT).await
    }

    async fn call_within(
        &self,
        method: &str,
        url: &str,
        body: String,
        within: Duration,
    ) -> Result<String, CallError> {
        let transport = |e: &dyn std::fmt::Display| CallError::Transport {
            url: url.to_string(),
            message: e.to_string(),
        };
        let request = http::Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| transport(&e))?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| transport(&e))?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| transport(&e))?
                .to_bytes();
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if status.is_success() {
                Ok(text)
            } else {
                Err(CallError::Status {
                    url: url.to_string(),
                    status: status.as_u16(),
                    body: text,
                })
            }
        };
        tokio::time::timeout(within, exchange)
            .await
            .map_err(|_| CallError::Timeout {
                url: url.to_string(),
                within,
            })?
    }
}

fn decode<T: serde::de::DeserializeOwned>(url: String, body: &str) -> Result<T, CallError> {
    serde_json::from_str(body).map_err(|e| CallError::Decode {
        url,
        message: e.to_string(),
    })
}

/// The `checkpoint` of a move's answer.
fn checkpoint_of(url: String, answer: &str) -> Result<u64, CallError> {
    let value: serde_json::Value = decode(url.clone(), answer)?;
    value["checkpoint"].as_u64().ok_or(CallError::Decode {
        url,
        message: format!("no checkpoint in {answer}"),
    })
}
