//! The controller loop: watch StreamJobs (all namespaces or one) and the
//! children they own, reconcile each change, serve metrics and probes.

use std::{net::SocketAddr, sync::Arc};

use eddy_api::StreamJob;
use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{ConfigMap, Service},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    runtime::{controller::Controller, events::Recorder, watcher},
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
    /// Metrics and probes address.
    pub http_addr: SocketAddr,
    /// This operator's name in Events (its pod name in a cluster).
    pub instance: String,
}

/// Runs until the process is stopped.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let metrics = Arc::new(Metrics::default());
    let reporter = kube::runtime::events::Reporter {
        controller: build::names::MANAGER.into(),
        instance: Some(settings.instance.clone()),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let mut context = Context::new(client.clone(), recorder, metrics.clone());
    context.build.default_image = settings.default_image;
    let context = Arc::new(context);

    serve_http(settings.http_addr, metrics).await?;

    let (jobs, sts, cms, svcs, pdbs) = match &settings.namespace {
        Some(ns) => (
            Api::<StreamJob>::namespaced(client.clone(), ns),
            Api::<StatefulSet>::namespaced(client.clone(), ns),
            Api::<ConfigMap>::namespaced(client.clone(), ns),
            Api::<Service>::namespaced(client.clone(), ns),
            Api::<PodDisruptionBudget>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    // Children are watched only when they carry the job label.
    let owned = watcher::Config::default().labels(build::names::JOB_LABEL);
    Controller::new(jobs, watcher::Config::default().any_semantic())
        .owns(sts, owned.clone())
        .owns(cms, owned.clone())
        .owns(svcs, owned.clone())
        .owns(pdbs, owned)
        .shutdown_on_signal()
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((job, _)) => tracing::debug!(job = %job.name, "reconciled"),
                // A malformed object or a failed reconcile is logged and
                // counted; it never stops the loop for the other jobs.
                Err(e) => tracing::debug!("reconcile: {e}"),
            }
        })
        .await;
    Ok(())
}

/// `/metrics`, `/healthz`, `/readyz`. Ready as soon as it serves: the
/// controller's watches start right after.
async fn serve_http(addr: SocketAddr, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    use axum::{routing::get, Router};
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
        .route("/readyz", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!("metrics and probes on http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics server stopped: {e}");
        }
    });
    Ok(())
}
