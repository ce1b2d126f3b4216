//! A mocked API server for reconcile tests: a `tower_test` handle behind a
//! kube `Client`, answered by a verifier that checks each expected request
//! (method, path, query, body) in order and fails on any unexpected one,
//! plus a fake processor admin API. Both write to one log, so tests can
//! check the order of API calls and checkpoint requests.

#![allow(dead_code)] // each test binary uses part of this

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use eddy_api::StreamJob;
use eddy_operator::{
    build,
    controller::{Context, PodUrl},
    metrics::Metrics,
};
use http::{Request, Response};
use http_body_util::BodyExt;
use kube::{
    client::Body,
    runtime::events::{Recorder, Reporter},
    Client,
};
use serde_json::{json, Value};

/// Everything that happened, in order: `"<METHOD> <path>"` lines.
pub type Log = Arc<Mutex<Vec<String>>>;

/// A check of a request body.
pub type Check = Box<dyn Fn(&Value) + Send>;

/// One expected API request and its answer.
pub struct Expect {
    pub method: &'static str,
    pub path: String,
    /// Substrings the query must contain.
    pub query: Vec<&'static str>,
    pub check: Option<Check>,
    pub reply: Reply,
}

pub enum Reply {
    /// This status and body.
    Json(u16, Value),
    /// 200 with the request's own body (what an apply answers).
    Echo,
    /// 200 with a body made from the request's.
    With(Box<dyn Fn(&Value) -> Value + Send>),
}

/// The answer to a status patch or a finalizer patch of `job`: the job,
/// with the patched status.
pub fn job_answer(job: &StreamJob) -> Reply {
    let job = serde_json::to_value(job).unwrap();
    Reply::With(Box::new(move |body| {
        let mut answer = job.clone();
        if let Some(status) = body.get("status") {
            answer["status"] = status.clone();
        }
        answer
    }))
}

/// A status patch, answered as the API server would.
pub fn status_patch(job: &StreamJob) -> Expect {
    Expect::new("PATCH", format!("{}/status", job_path()), job_answer(job))
}

impl Expect {
    pub fn new(method: &'static str, path: impl Into<String>, reply: Reply) -> Self {
        Self {
            method,
            path: path.into(),
            query: Vec::new(),
            check: None,
            reply,
        }
    }

    pub fn query(mut self, part: &'static str) -> Self {
        self.query.push(part);
        self
    }

    pub fn check(mut self, f: impl Fn(&Value) + Send + 'static) -> Self {
        self.check = Some(Box::new(f));
        self
    }
}

pub fn not_found() -> Reply {
    Reply::Json(
        404,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "not found", "reason": "NotFound", "code": 404}),
    )
}

pub fn empty_list(kind: &str) -> Reply {
    Reply::Json(
        200,
        json!({"kind": format!("{kind}List"), "apiVersion": "v1", "metadata": {}, "items": []}),
    )
}

pub const NS: &str = "shop";
pub const JOB: &str = "orders";

pub fn job_path() -> String {
    format!("/apis/eddy.dev/v1alpha1/namespaces/{NS}/streamjobs/{JOB}")
}
pub fn cm_path() -> String {
    format!("/api/v1/namespaces/{NS}/configmaps/{JOB}-config")
}
pub fn svc_path(name: &str) -> String {
    format!("/api/v1/namespaces/{NS}/services/{name}")
}
pub fn sts_path() -> String {
    format!("/apis/apps/v1/namespaces/{NS}/statefulsets/{JOB}")
}
pub fn pdb_path() -> String {
    format!("/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/{JOB}")
}
pub fn events_path() -> String {
    format!("/apis/events.k8s.io/v1/namespaces/{NS}/events")
}

/// The five GETs of the fetch step, answered with `observed` (`None`:
/// missing), in the order the controller reads.
pub fn fetches(observed: [Option<Value>; 5]) -> Vec<Expect> {
    let paths = [
        cm_path(),
        svc_path(JOB),
        svc_path(&format!("{JOB}-metrics")),
        sts_path(),
        pdb_path(),
    ];
    paths
        .into_iter()
        .zip(observed)
        .map(|(path, found)| {
            let reply = found.map_or_else(not_found, |v| Reply::Json(200, v));
            Expect::new("GET", path, reply)
        })
        .collect()
}

/// A server-side apply by the operator's field manager.
pub fn apply(path: String) -> Expect {
    Expect::new("PATCH", path, Reply::Echo)
        .query("fieldManager=eddy-operator")
        .query("force=true")
}

/// The four orphan listings by job label.
pub fn orphan_lists() -> Vec<Expect> {
    [
        (format!("/api/v1/namespaces/{NS}/configmaps"), "ConfigMap"),
        (format!("/api/v1/namespaces/{NS}/services"), "Service"),
        (
            format!("/apis/apps/v1/namespaces/{NS}/statefulsets"),
            "StatefulSet",
        ),
        (
            format!("/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets"),
            "PodDisruptionBudget",
        ),
    ]
    .into_iter()
    .map(|(path, kind)| {
        Expect::new("GET", path, empty_list(kind)).query("labelSelector=eddy.dev%2Fjob%3Dorders")
    })
    .collect()
}

/// An Event with this reason.
pub fn event(reason: &'static str) -> Expect {
    Expect::new("POST", events_path(), Reply::Echo).check(move |body| {
        assert_eq!(body["reason"], reason, "event {body}");
    })
}

/// Answers `expected` in order, logging each; returns the request bodies
/// and the handle.
/// Panics (failing the test) on a request that was not expected, or when
/// an expected one does not come within a few seconds.
pub async fn verify(
    mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
    expected: Vec<Expect>,
    log: Log,
) -> (
    Vec<Value>,
    tower_test::mock::Handle<Request<Body>, Response<Body>>,
) {
    let mut bodies = Vec::new();
    for (i, e) in expected.into_iter().enumerate() {
        let next = tokio::time::timeout(Duration::from_secs(10), handle.next_request()).await;
        let (request, send) = next
            .unwrap_or_else(|_| panic!("request {i} ({} {}) never came", e.method, e.path))
            .unwrap_or_else(|| panic!("client gone before request {i} ({} {})", e.method, e.path));
        let (method, path, query) = (
            request.method().to_string(),
            request.uri().path().to_string(),
            request.uri().query().unwrap_or("").to_string(),
        );
        log.lock().unwrap().push(format!("{method} {path}"));
        assert_eq!(
            (method.as_str(), path.as_str()),
            (e.method, e.path.as_str()),
            "request {i}"
        );
        for part in &e.query {
            assert!(
                query.contains(part),
                "request {i} {path}?{query} lacks {part}"
            );
        }
        let bytes = request.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if let Some(check) = &e.check {
            check(&body);
        }
        let (status, answer) = match e.reply {
            Reply::Json(status, v) => (status, v),
            Reply::Echo => (200, body.clone()),
            Reply::With(f) => (200, f(&body)),
        };
        bodies.push(body);
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap(),
        );
    }
    (bodies, handle)
}

/// Answers every further request with a 500 for a short while, and
/// returns them as `"<METHOD> <path> <body>"`: they were not expected.
pub async fn extras(
    handle: &mut tower_test::mock::Handle<Request<Body>, Response<Body>>,
) -> Vec<String> {
    let mut unexpected = Vec::new();
    while let Ok(Some((request, send))) =
        tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await
    {
        let line = format!("{} {}", request.method(), request.uri());
        let bytes = request.into_body().collect().await.unwrap().to_bytes();
        unexpected.push(format!("{line} {}", String::from_utf8_lossy(&bytes)));
        send.send_response(
            Response::builder()
                .status(500)
                .body(Body::from(b"{}".to_vec()))
                .unwrap(),
        );
    }
    unexpected
}

/// A controller context on a mocked API server, with a fixed clock and
/// pods at `pod_url`.
pub fn context(
    pod_url: PodUrl,
) -> (
    Arc<Context>,
    tower_test::mock::Handle<Request<Body>, Response<Body>>,
) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, NS);
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "eddy-operator".into(),
            instance: Some("test".into()),
        },
    );
    let mut ctx = Context::new(client, recorder, Arc::new(Metrics::default()));
    ctx.build = build::Context {
        default_image: "registry.test/eddy-processor:test".into(),
    };
    ctx.pod_url = pod_url;
    ctx.clock = Arc::new(|| "2026-11-21T10:00:00Z".parse().unwrap());
    (Arc::new(ctx), handle)
}

/// The test job: `parallelism` pods over 4 partitions, the finalizer on.
pub fn job(parallelism: u32) -> StreamJob {
    serde_yaml_ng::from_str(&format!(
        "apiVersion: eddy.dev/v1alpha1
kind: StreamJob
metadata:
  name: {JOB}
  namespace: {NS}
  uid: 2f0c1c9e-0000-4000-8000-000000000001
  generation: 1
  creationTimestamp: '2026-11-21T09:59:00Z'
  finalizers: [eddy.dev/checkpoints]
spec:
  source: {{kafka: {{brokers: 'kafka:9092', topic: orders}}}}
  keyField: merchant
  eventTime: {{field: ts}}
  window: {{tumbling: {{size: 1m}}}}
  partitions: 4
  parallelism: {parallelism}
  checkpoints: {{store: 's3://ckpt/jobs', interval: 1m}}
"
    ))
    .unwrap()
}

/// A fake processor admin API for pods `/pod<i>`: checkpoints complete as
/// soon as they are asked for. Requests go to `log`.
pub async fn fake_processors(log: Log) -> String {
    use axum::{extract::Path, routing::get, Json, Router};
    let completed: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let (list_log, post_log) = (log.clone(), log);
    let (list_done, post_done) = (completed.clone(), completed);
    let app = Router::new().route(
        "/{pod}/checkpoints",
        get(move |Path(pod): Path<String>| {
            list_log.lock().unwrap().push(format!("ADMIN GET {pod}"));
            let ids: Vec<u64> = list_done
                .lock()
                .unwrap()
                .iter()
                .filter(|(p, _)| *p == pod)
                .map(|(_, id)| *id)
                .collect();
            let next = ids.iter().max().map_or(5, |m| m + 1);
            let checkpoints: Vec<Value> = ids
                .iter()
                .map(|id| json!({"id": id, "time": "2026-11-21T10:00:00Z", "durationMs": 40, "bytesUploaded": 10, "bytesTotal": 100}))
                .collect();
            async move { Json(json!({"checkpoints": checkpoints, "nextId": next})) }
        })
        .post(move |Path(pod): Path<String>, Json(body): Json<Value>| {
            post_log
                .lock()
                .unwrap()
                .push(format!("ADMIN POST {pod} {body}"));
            let id = body["id"].as_u64().unwrap();
            post_done.lock().unwrap().push((pod, id));
            async move { (http::StatusCode::ACCEPTED, Json(json!({"id": id}))) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}
