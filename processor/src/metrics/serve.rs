//! `GET /metrics` on its own address, from the newest published snapshot.

use std::{net::SocketAddr, sync::Arc};

use axum::{extract::State, http::header, response::IntoResponse, routing::get, Router};
use tokio::sync::watch;

use super::Snapshot;

/// The run loop's end: publishes snapshots for the next scrape.
#[derive(Clone)]
pub struct Publisher(watch::Sender<Option<Arc<Snapshot>>>);

impl Publisher {
    pub fn publish(&self, snapshot: Snapshot) {
        self.0.send_replace(Some(Arc::new(snapshot)));
    }
}

/// Binds `addr` and serves `/metrics` in the background; answers the
/// bound address and the publisher.
pub async fn serve(addr: SocketAddr) -> anyhow::Result<(SocketAddr, Publisher)> {
    let (tx, rx) = watch::channel(None);
    let app = Router::new().route("/metrics", get(metrics)).with_state(rx);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics endpoint stopped: {e}");
        }
    });
    Ok((bound, Publisher(tx)))
}

async fn metrics(State(rx): State<watch::Receiver<Option<Arc<Snapshot>>>>) -> impl IntoResponse {
    let snapshot = rx.borrow().clone();
    let body = snapshot.map_or_else(|| "# EOF\n".to_string(), super::render);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}
