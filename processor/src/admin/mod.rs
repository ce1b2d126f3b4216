//! The processor's admin HTTP API, for the operator (and curious humans):
//!
//! - `POST /checkpoints` takes a checkpoint now; with `{"final": true}` it
//!   also stops consumption once the checkpoint is taken, until `POST
//!   /resume` or the process exits (before a rescale or an upgrade). Answers
//!   `202 {"id": N}` once the synchronous part is done, `409` while another
//!   checkpoint is in flight. With `{"id": N}` the checkpoint gets that id
//!   (it must not be below `nextId`), which is how the operator gives every
//!   pod of a job the same id, so partitions checkpointed by different pods
//!   can be restored together after a rescale. Asking again for an id that
//!   is in flight or completed answers `202` again: retries are safe.
//! - `GET /checkpoints` lists completed checkpoints (id, time, durations,
//!   bytes uploaded and total), the one in flight, failures, the age of
//!   the newest, and `nextId`, the lowest id a new checkpoint may take.
//!   `finished` is true once a finite input ended and every window is out
//!   (`--hold-when-finished`): the processor then only answers this API.
//! - `POST /resume` resumes consumption after a final checkpoint.
//! - `GET /stats`: the heaviest keys per partition with their shares (key
//!   names stay out of metric labels, so they are here), events read and
//!   dropped as late, and the watermark advice (see `engine::advice`),
//!   refreshed once a second.
//! - `GET /healthz` (alive) and `GET /readyz` (restored and consuming).
//! - `GET /partitions` lists the partitions this processor runs, and each
//!   one's load, refreshed once a second: events accepted, events/s, its
//!   share of the busy time, Kafka backlog, state bytes and the heaviest
//!   key's share (what the operator's autoscaler measures).
//!   `POST /partitions/{p}/release` moves one out: a checkpoint is taken
//!   (with `{"id": N}`, under that id), the partition stops at its cut, and
//!   the answer `200 {"partition": p, "checkpoint": N}` comes once that
//!   checkpoint is complete in the store, so another processor can take the
//!   partition over from it. If the checkpoint fails, the partition goes on
//!   here (`500`, `"kept": true`). Asking again for a released partition
//!   answers the same. `POST /partitions/{p}/acquire` takes one over: its
//!   newest complete checkpoint (with `{"checkpoint": N}`, one at least that
//!   new, else `409`) is downloaded while the other partitions go on, then
//!   it joins the worker with the fewest partitions and its source resumes
//!   at the checkpoint's offset; `200 {"partition": p, "checkpoint": N}`
//!   once it runs. Both take `"assignment": V`, the version of the
//!   assignment the move belongs to: this processor's checkpoints record
//!   it from then on (see `placement`). Only Kafka partitions move, and only from a processor
//!   with no file output (`409` says why otherwise). With a Kafka
//!   transaction, the release checkpoint's transaction commits the
//!   partition's results up to its cut and records that checkpoint for it;
//!   its new owner's transactions record it from then on, and a restart
//!   restores each partition from the checkpoint its results were last
//!   committed with.
//!
//! Handlers never touch state: they send a [`Command`] to the run loop and
//! read the [`Status`] it publishes.

use std::net::SocketAddr;

use axum::{
    extract::State,
    http::StatusCode,
    routing::{get, post},
    Json, Router,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

/// A request to the run loop.
#[derive(Debug)]
pub enum Command {
    Checkpoint {
        is_final: bool,
        /// The id to use; the next free one when `None`.
        id: Option<u64>,
        reply: oneshot::Sender<Result<u64, String>>,
    },
    Resume,
    /// Move a partition out (see the module docs).
    Release {
        partition: u32,
        id: Option<u64>,
        /// The assignment version the move belongs to.
        assignment: Option<u64>,
        reply: oneshot::Sender<Result<u64, Refusal>>,
    },
    /// Take a partition over.
    Acquire {
        partition: u32,
        at_least: Option<u64>,
        assignment: Option<u64>,
        reply: oneshot::Sender<Result<Option<u64>, Refusal>>,
    },
}

/// Why a partition move did not happen.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    /// Not now or not here (409), or asked wrongly (400).
    Conflict(String),
    BadRequest(String),
    /// The release checkpoint failed; the partition runs here still (500).
    Kept(String),
}

/// A completed checkpoint as the API shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointInfo {
    pub id: u64,
    pub time: String,
    pub duration_ms: u64,
    pub sync_duration_ms: u64,
    pub bytes_uploaded: u64,
    pub bytes_total: u64,
}

/// What the run loop publishes.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub ready: bool,
    pub paused: bool,
    /// The input ended and every window is out (with
    /// `--hold-when-finished`); the processor waits to be stopped.
    pub finished: bool,
    pub in_flight: Option<u64>,
    pub failed: u64,
    /// Checkpoints rejected at restore as incomplete or corrupt.
    pub restore_fallbacks: u64,
    /// The lowest id a new checkpoint may take.
    pub next_id: u64,
    pub completed: Vec<CheckpointInfo>,
    /// The partitions run here.
    pub partitions: Vec<u32>,
    /// Their load, as of the last figures.
    pub loads: Vec<PartitionLoad>,
    /// What `GET /stats` answers.
    pub stats: Stats,
}

/// Load, lateness and advice, for `GET /stats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub events_read: u64,
    /// Events beyond the allowed lateness.
    pub late: u64,
    /// `late` over `eventsRead`.
    pub late_dropped_ratio: f64,
    /// Heaviest keys first, per partition.
    pub hot_keys: Vec<HotKeyInfo>,
    pub advice: Vec<crate::engine::advice::Advice>,
    /// The merge stage of a two-phase job: partials replayed for windows
    /// already closed (merged when they first came) and records of the job
    /// before it started over, dropped.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replayed: u64,
    /// The processor's watermark (ms since the epoch), once it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark_ms: Option<i64>,
    /// A processor running both stages of a two-phase job: each stage's
    /// own figures, the first stage first (the figures above are the
    /// first stage's: its events are the job's input).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageStats>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One stage's figures in a processor running both stages of a two-phase
/// job, for `GET /stats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageStats {
    /// `partial` or `merge`.
    pub stage: String,
    pub ready: bool,
    pub finished: bool,
    /// What the stage read: events (the first stage) or partials and
    /// marks (the merge stage).
    pub records_read: u64,
    /// Records beyond the allowed lateness.
    pub late: u64,
    /// Partials replayed for windows already closed, or sent before the
    /// job started over (the merge stage).
    pub replayed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark_ms: Option<i64>,
    /// Kafka records behind the end over its partitions, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<u64>,
    /// Its newest completed checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint: Option<u64>,
}

impl StageStats {
    /// Stage `stage`'s figures from its status.
    pub fn of(stage: &str, status: &Status) -> Self {
        Self {
            stage: stage.to_string(),
            ready: status.ready,
            finished: status.finished,
            records_read: status.stats.events_read,
            late: status.stats.late,
            replayed: status.stats.replayed,
            watermark_ms: status.stats.watermark_ms,
            backlog: status
                .loads
                .iter()
                .filter_map(|l| l.backlog)
                .reduce(|a, b| a + b),
            last_checkpoint: status.completed.iter().map(|c| c.id).max(),
        }
    }
}

/// One partition's load, for `GET /partitions`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionLoad {
    pub partition: u32,
    pub accepted: u64,
    pub events_per_second: f64,
    /// Its share of the processor's busy time, 0 to 1.
    pub busy_ratio: f64,
    /// Kafka records behind the end, when known.
    pub backlog: Option<u64>,
    pub state_bytes: u64,
    /// The heaviest key's share of its recent events.
    pub top_key_share: Option<f64>,
}

impl PartitionLoad {
    pub fn of(f: &crate::metrics::PartitionFigures) -> Self {
        Self {
            partition: f.partition,
            accepted: f.accepted,
            events_per_second: f.events_per_second,
            busy_ratio: f.busy_ratio,
            backlog: f.backlog,
            state_bytes: f.state_bytes,
            top_key_share: f.hot_key_shares.first().copied(),
        }
    }
}

/// A heavy key of a partition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HotKeyInfo {
    pub partition: u32,
    pub key: String,
    /// Share of the partition's recent events.
    pub share: f64,
}

/// The run loop's end of the API.
pub struct Admin {
    pub commands: mpsc::Receiver<Command>,
    pub status: watch::Sender<Status>,
}

#[derive(Clone)]
struct Shared {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<Status>,
}

/// The API's end of an [`Admin`]: what the HTTP handlers (or a stage
/// forwarder, `run::stages`) send commands to and read the status from.
#[derive(Clone)]
pub struct Handle {
    pub commands: mpsc::Sender<Command>,
    pub status: watch::Receiver<Status>,
}

impl Admin {
    /// A run loop's end and the API's end, without HTTP.
    pub fn channel() -> (Self, Handle) {
        let (commands_tx, commands) = mpsc::channel(16);
        let (status, status_rx) = watch::channel(Status::default());
        (
            Self { commands, status },
            Handle {
                commands: commands_tx,
                status: status_rx,
            },
        )
    }
}

/// Binds the API on `addr` and serves it in the background. Returns the
/// bound address and the run loop's end.
pub async fn serve(addr: SocketAddr) -> anyhow::Result<(SocketAddr, Admin)> {
    let (admin, handle) = Admin::channel();
    let shared = Shared {
        commands: handle.commands,
        status: handle.status,
    };
    let app = Router::new()
        .route("/checkpoints", post(trigger).get(list))
        .route("/resume", post(resume))
        .route("/partitions", get(partitions))
        .route("/partitions/{partition}/release", post(release))
        .route("/partitions/{partition}/acquire", post(acquire))
        .route("/stats", get(stats))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("admin API stopped: {e}");
        }
    });
    Ok((bound, admin))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerBody {
    #[serde(default, rename = "final")]
    is_final: bool,
    #[serde(default)]
    id: Option<u64>,
}

async fn trigger(State(s): State<Shared>, body: axum::body::Bytes) -> Result<Answer, Answer> {
    // An empty body is a plain checkpoint (`curl -X POST .../checkpoints`).
    let body: TriggerBody = body_of(&body, "{\"final\": true|false, \"id\": N}")?;
    let is_final = body.is_final;
    let (reply, answer) = oneshot::channel();
    if s.commands
        .send(Command::Checkpoint {
            is_final,
            id: body.id,
            reply,
        })
        .await
        .is_err()
    {
        return Ok(stopping());
    }
    Ok(match answer.await {
        Ok(Ok(id)) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"id": id, "final": is_final})),
        ),
        Ok(Err(why)) => (
            StatusCode::CONFLICT,
            Json(serde_json::json!({"error": why})),
        ),
        Err(_) => stopping(),
    })
}

async fn list(State(s): State<Shared>) -> Json<serde_json::Value> {
    let status = s.status.borrow().clone();
    let age = status.completed.last().and_then(|c| {
        let t: jiff::Timestamp = c.time.parse().ok()?;
        Some(jiff::Timestamp::now().duration_since(t).as_secs())
    });
    Json(serde_json::json!({
        "checkpoints": status.completed,
        "inFlight": status.in_flight,
        "failed": status.failed,
        "restoreFallbacks": status.restore_fallbacks,
        "lastCompletedAgeSeconds": age,
        "paused": status.paused,
        "finished": status.finished,
        "nextId": status.next_id,
    }))
}

async fn stats(State(s): State<Shared>) -> Json<Stats> {
    Json(s.status.borrow().stats.clone())
}

async fn partitions(State(s): State<Shared>) -> Json<serde_json::Value> {
    let status = s.status.borrow();
    Json(serde_json::json!({"partitions": status.partitions, "loads": status.loads}))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseBody {
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    assignment: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AcquireBody {
    #[serde(default)]
    checkpoint: Option<u64>,
    #[serde(default)]
    assignment: Option<u64>,
}

type Answer = (StatusCode, Json<serde_json::Value>);

/// An optional JSON body: empty is the default.
fn body_of<T: Default + serde::de::DeserializeOwned>(
    body: &[u8],
    shape: &str,
) -> Result<T, Answer> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        let error = format!("body must be {shape} (optional): {e}");
        (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "error": error })),
        )
    })
}

/// The answer while the run loop is going away.
fn stopping() -> Answer {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({"error": "stopping"})),
    )
}

/// Sends a partition move's command and turns its reply into an answer.
async fn ask<T: Serialize>(
    s: &Shared,
    partition: u32,
    command: impl FnOnce(oneshot::Sender<Result<T, Refusal>>) -> Command,
) -> Answer {
    let (reply, answer) = oneshot::channel();
    if s.commands.send(command(reply)).await.is_err() {
        return stopping();
    }
    let error = |code, why: String, kept: bool| {
        let body = serde_json::json!({"partition": partition, "error": why, "kept": kept});
        (code, Json(body))
    };
    match answer.await {
        Ok(Ok(id)) => (
            StatusCode::OK,
            Json(serde_json::json!({"partition": partition, "checkpoint": id})),
        ),
        Ok(Err(Refusal::Conflict(why))) => error(StatusCode::CONFLICT, why, false),
        Ok(Err(Refusal::BadRequest(why))) => error(StatusCode::BAD_REQUEST, why, false),
        Ok(Err(Refusal::Kept(why))) => error(StatusCode::INTERNAL_SERVER_ERROR, why, true),
        Err(_) => stopping(),
    }
}

async fn release(
    State(s): State<Shared>,
    axum::extract::Path(partition): axum::extract::Path<u32>,
    body: axum::body::Bytes,
) -> Result<Answer, Answer> {
    let body: ReleaseBody = body_of(&body, "{\"id\": N, \"assignment\": V}")?;
    Ok(ask(&s, partition, |reply| Command::Release {
        partition,
        id: body.id,
        assignment: body.assignment,
        reply,
    })
    .await)
}

async fn acquire(
    State(s): State<Shared>,
    axum::extract::Path(partition): axum::extract::Path<u32>,
    body: axum::body::Bytes,
) -> Result<Answer, Answer> {
    let body: AcquireBody = body_of(&body, "{\"checkpoint\": N, \"assignment\": V}")?;
    Ok(ask(&s, partition, |reply| Command::Acquire {
        partition,
        at_least: body.checkpoint,
        assignment: body.assignment,
        reply,
    })
    .await)
}

async fn resume(State(s): State<Shared>) -> StatusCode {
    match s.commands.send(Command::Resume).await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

async fn ready(State(s): State<Shared>) -> StatusCode {
    let status = s.status.borrow();
    if status.ready && !status.paused {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}
