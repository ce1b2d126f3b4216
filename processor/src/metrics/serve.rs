//! `GET /metrics` on its own address, from the newest published snapshot
//! of each stage.

use std::{net::SocketAddr, sync::Arc};

use axum::{extract::State, http::header, response::IntoResponse, routing::get, Router};
use tokio::sync::watch;

use super::Snapshot;

/// The newest snapshot of each publisher, by slot.
type Slots = Vec<Option<Arc<Snapshot>>>;

/// A run loop's end: publishes snapshots for the next scrape, in its own
/// slot (a processor running both stages has one for each).
#[derive(Clone)]
pub struct Publisher {
    slots: watch::Sender<Slots>,
    slot: usize,
}

impl Publisher {
    pub fn publish(&self, snapshot: Snapshot) {
        let slot = self.slot;
        self.slots.send_modify(|slots| {
            if slots.len() <= slot {
                slots.resize(slot + 1, None);
            }
            slots[slot] = Some(Arc::new(snapshot));
        });
    }

    /// A publisher to the same endpoint, for another stage.
    pub fn another(&self) -> Self {
        Self {
            slots: self.slots.clone(),
            slot: self.slot + 1,
        }
    }
}

/// Binds `addr` and serves `/metrics` in the background; answers the
/// bound address and the publisher.
pub async fn serve(addr: SocketAddr) -> anyhow::Result<(SocketAddr, Publisher)> {
    let (tx, rx) = watch::channel(Slots::new());
    let app = Router::new().route("/metrics", get(metrics)).with_state(rx);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics endpoint stopped: {e}");
        }
    });
    Ok((bound, Publisher { slots: tx, slot: 0 }))
}

async fn metrics(State(rx): State<watch::Receiver<Slots>>) -> impl IntoResponse {
    let snapshots: Vec<_> = rx.borrow().iter().flatten().cloned().collect();
    let body = if snapshots.is_empty() {
        "# EOF\n".to_string()
    } else {
        super::render(snapshots)
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}
