//! The controller loop: watch StreamJobs (all namespaces or one) and the
//! children they own, reconcile each change, serve metrics and probes.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use eddy_api::StreamJob;
use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{ConfigMap, Service},
    networking::v1::NetworkPolicy,
    policy::v1::PodDisruptionBudget,
};
use kube::{
    runtime::{
        controller::Controller, events::Recorder, predicates, reflector, watcher, Predicate,
        WatchStreamExt,
    },
    Api, Client,
};

use super::{error_policy, reconcile, Context};
use crate::{build, metrics::Metrics};

/// Settings of `eddy-operator run`.
pub struct Settings {
    /// Watch only this namespace (all when `None`).
    pub namespace: Option<String>,
    /// Processor image for jobs without `spec.image`.
    pub default_image: String,
    /// Where metrics and probes are served.
    pub http: Http,
    /// This operator's name in Events and in the Lease (its pod name in a
    /// cluster).
    pub instance: String,
    /// The operator's own namespace (for the Lease, and the NetworkPolicy
    /// peer of the jobs' pods).
    pub own_namespace: String,
    /// Run only while holding the Lease `lease_name` (more than one
    /// replica).
    pub leader_election: bool,
    pub lease_name: String,
    /// Give each job a NetworkPolicy letting only the operator reach its
    /// pods' admin port.
    pub network_policy: bool,
}

/// Where the operator serves `/metrics`, `/healthz` and `/readyz`.
pub enum Http {
    /// Bind this address when starting.
    Bind(SocketAddr),
    /// Serve on a socket bound already (kept by whoever passes it, so the
    /// port stays this operator's across restarts in one process).
    Listener(std::net::TcpListener),
}

impl From<SocketAddr> for Http {
    fn from(addr: SocketAddr) -> Self {
        Http::Bind(addr)
    }
}

/// Runs until the process is stopped.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    run_with(Client::try_default().await?, settings).await
}

/// [`run`] with a client of one's own (tests run the operator in-process
/// against a real API server this way).
pub async fn run_with(client: Client, settings: Settings) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let reporter = kube::runtime::events::Reporter {
        controller: build::names::MANAGER.into(),
        instance: Some(settings.instance.clone()),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let mut context = Context::new(client.clone(), recorder, metrics.clone());
    context.build.default_image = settings.default_image;
    context.build.network_policy_from = settings
        .network_policy
        .then(|| settings.own_namespace.clone());
    let alerts = context.alerts.clone();
    let context = Arc::new(context);

    // Not ready while leading without a synced cache of the jobs; a
    // standby replica (waiting for the Lease) is ready to take over.
    let ready = Arc::new(AtomicBool::new(settings.leader_election));
    // Served while this future lives (an operator stopped in-process
    // frees its port).
    let _http = AbortOnDrop(serve_http(settings.http, metrics, ready.clone(), alerts).await?);

    let elector = settings.leader_election.then(|| {
        crate::leader::Elector::new(
            client.clone(),
            &settings.own_namespace,
            &settings.lease_name,
            &settings.instance,
            std::time::Duration::from_secs(15),
        )
    });
    if let Some(elector) = &elector {
        elector.acquire().await;
        ready.store(false, Ordering::Relaxed);
    }

    let (jobs, sts, cms, svcs, pdbs, nps) = match &settings.namespace {
        Some(ns) => (
            Api::<StreamJob>::namespaced(client.clone(), ns),
            Api::<StatefulSet>::namespaced(client.clone(), ns),
            Api::<ConfigMap>::namespaced(client.clone(), ns),
            Api::<Service>::namespaced(client.clone(), ns),
            Api::<PodDisruptionBudget>::namespaced(client.clone(), ns),
            Api::<NetworkPolicy>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    // Children are watched only when they carry the job label.
    let owned = watcher::Config::default().labels(build::names::JOB_LABEL);
    // A job is reconciled when its spec (generation), annotations (the
    // pause) or finalizers change, not on its own status writes; periodic
    // requeues and its children's changes cover the rest.
    let (reader, writer) = reflector::store();
    let synced = reader.clone();
    tokio::spawn(async move {
        // Asked again every second: the store wakes only one of the
        // futures waiting on it, and the controller waits too.
        let wait = std::time::Duration::from_secs(1);
        loop {
            match tokio::time::timeout(wait, synced.wait_until_ready()).await {
                Ok(Ok(())) => break ready.store(true, Ordering::Relaxed),
                Ok(Err(_)) => break,
                Err(_) => {}
            }
        }
    });
    let triggers = watcher(jobs, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation
                .combine(predicates::annotations)
                .combine(predicates::finalizers),
            Default::default(),
        );
    let controller = Controller::for_stream(triggers, reader)
        .owns(sts, owned.clone())
        .owns(cms, owned.clone())
        .owns(svcs, owned.clone())
        .owns(pdbs, owned.clone())
        .owns(nps, owned)
        .shutdown_on_signal()
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((job, _)) => tracing::debug!(job = %job.name, "reconciled"),
                // A malformed object or a failed reconcile is logged and
                // counted; it never stops the loop for the other jobs.
                Err(e) => tracing::debug!("reconcile: {e}"),
            }
        });
    match &elector {
        None => controller.await,
        Some(elector) => {
            tokio::select! {
                () = controller => {}
                () = elector.keep() => {
                    anyhow::bail!("lost the leader lease {}: stopping", settings.lease_name);
                }
            }
        }
    }
    Ok(())
}

/// `/metrics`, `/healthz` (the process answers), `/readyz` (503 while
/// leading without a synced cache of the StreamJobs) and
/// `POST /webhooks/alertmanager`, where Alertmanager delivers alerts (its
/// webhook payload, version 4) that the autoscaler weighs for the job
/// their `namespace` and `job` labels name.
async fn serve_http(
    http: Http,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    alerts: Arc<std::sync::Mutex<crate::autoscale::alerts::Alerts>>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use axum::{
        routing::{get, post},
        Router,
    };
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            "content-type",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/webhooks/alertmanager",
            post(move |body: axum::body::Bytes| {
                let alerts = alerts.clone();
                async move { receive_alerts(&alerts, &body) }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let ready = ready.load(Ordering::Relaxed);
                async move {
                    if ready {
                        (axum::http::StatusCode::OK, "ok")
                    } else {
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "syncing")
                    }
                }
            }),
        );
    let listener = match http {
        Http::Bind(addr) => tokio::net::TcpListener::bind(addr).await?,
        Http::Listener(listener) => {
            listener.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(listener)?
        }
    };
    tracing::info!("metrics and probes on http://{}", listener.local_addr()?);
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics server stopped: {e}");
        }
    }))
}

/// Takes one Alertmanager webhook: 200 with what it counted, 400 for a
/// body that is not a version 4 payload.
fn receive_alerts(
    alerts: &std::sync::Mutex<crate::autoscale::alerts::Alerts>,
    body: &[u8],
) -> (axum::http::StatusCode, String) {
    use axum::http::StatusCode;
    let now = jiff::Timestamp::now().as_millisecond();
    let Ok(mut alerts) = alerts.lock() else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "alerts unavailable".into(),
        );
    };
    match alerts.receive(body, now) {
        Ok(got) => {
            tracing::info!(
                firing = got.firing,
                resolved = got.resolved,
                ignored = got.ignored,
                "alertmanager webhook"
            );
            let answer = serde_json::json!({
                "firing": got.firing,
                "resolved": got.resolved,
                "ignored": got.ignored,
            });
            (StatusCode::OK, answer.to_string())
        }
        Err(why) => (StatusCode::BAD_REQUEST, why),
    }
}

/// Aborts the task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
