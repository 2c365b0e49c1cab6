//! The HTTP listener: `/healthz`, `/metrics` (Prometheus text) and `/`, a small status page.
//! Later slices mount `/RPC2` (the HaaS API) and `/boot/*` (iPXE scripts, kernels, initrds) on
//! the same router.

mod status;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::inventory::{Inventory, queries};

#[derive(Clone)]
pub struct AppState {
    pub inventory: Inventory,
    pub metrics: PrometheusHandle,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serves until `shutdown` turns true, then finishes in-flight requests and returns.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?addr, "HTTP listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

fn internal_error(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "request failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("internal error: {e}\n"),
    )
        .into_response()
}

/// Liveness and readiness: the inventory answers a query.
async fn healthz(State(state): State<AppState>) -> Response {
    match state
        .inventory
        .read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
        .await
    {
        Ok(_) => "ok\n".into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("inventory unavailable: {e}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let counts = match state.inventory.read(queries::counts).await {
        Ok(c) => c,
        Err(e) => return internal_error(e),
    };
    for (kind, n) in [
        ("switches", counts.switches),
        ("links", counts.links),
        ("machines", counts.machines),
        ("hypervisors", counts.hypervisors),
        ("discovered_machines", counts.discovered),
        ("nics", counts.nics),
        ("vms", counts.vms),
        ("networks", counts.networks),
        ("volumes", counts.volumes),
        ("images", counts.images),
        ("customers", counts.customers),
        ("leases", counts.leases),
    ] {
        metrics::gauge!("nhn_inventory_objects", "kind" => kind).set(n as f64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn status_page(State(state): State<AppState>) -> Response {
    match state.inventory.read(status::gather).await {
        Ok(page) => Html(status::render(&page)).into_response(),
        Err(e) => internal_error(e),
    }
}
