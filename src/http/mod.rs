//! The HTTP listener: `/RPC2` (the HaaS XML-RPC API, see `api::rpc`), `/healthz`, `/metrics`
//! (Prometheus text), `/`, a small status page, `/boot/*`: per-machine iPXE scripts
//! (`/boot/<mac>.ipxe`) and the boot directory's files (kernels, initrds) with Range support,
//! and `/images/<id>/<file>`: an imported image's kernel, initrd and archive (for hypervisors).

mod status;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;

use tower::ServiceExt;

use crate::api::{Api, rpc};
use crate::boot::files::{BootRoot, FileError};
use crate::boot::{script, secrets};
use crate::config;
use crate::inventory::{Inventory, queries};
use crate::util::unix_now;

#[derive(Clone)]
pub struct AppState {
    pub inventory: Inventory,
    pub metrics: PrometheusHandle,
    pub boot_root: Arc<BootRoot>,
    pub boot: Arc<config::Boot>,
    pub api: Arc<Api>,
    /// The appliance secret when `[storage] chap` is on (CHAP accounts derive from it).
    pub chap: Option<[u8; 32]>,
    /// `[inventory] data_dir`: imported images live under it.
    pub data_dir: Arc<std::path::PathBuf>,
}

pub fn router(state: AppState) -> Router {
    let rpc = Router::new()
        .route("/RPC2", post(rpc::handle).fallback(rpc::not_post))
        .with_state(state.api.clone());
    Router::new()
        .route("/", get(status_page))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/boot/{*path}", get(boot_file))
        .route("/images/{id}/{file}", get(image_file))
        .with_state(state)
        .merge(rpc)
}

/// Serves until `shutdown` turns true, then finishes in-flight requests and returns.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?addr, "HTTP listening");
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
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
    match state.inventory.read(|c| c.ping()).await {
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
    match state.inventory.read(crate::jobs::hosts::state_counts).await {
        Ok((vms, hosts)) => {
            for (s, n) in vms {
                metrics::gauge!("nhn_vms", "state" => s).set(n as f64);
            }
            for (s, n) in hosts {
                metrics::gauge!("nhn_hypervisor_agents", "state" => s).set(n as f64);
            }
        }
        Err(e) => return internal_error(e),
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

/// `/boot/secrets/<token>`: the boot secrets of the machine the token was issued to, once,
/// to the address it was issued to. Neither the token nor the secrets are logged.
async fn boot_secrets(state: &AppState, token: String, peer: String) -> Response {
    let Some(key) = state.chap else {
        return (
            StatusCode::NOT_FOUND,
            "no boot secrets: [storage] chap is off\n",
        )
            .into_response();
    };
    let from = peer.clone();
    let spent = state
        .inventory
        .write(move |c| {
            let mac = match secrets::redeem(c, &token, &from, unix_now())? {
                Ok(mac) => mac,
                Err(r) => return Ok(Err(r)),
            };
            Ok(Ok(script::lookup(c, &mac)?))
        })
        .await;
    let refused = |status: StatusCode, why: &str| {
        metrics::counter!("nhn_http_boot_secrets_total", "result" => "refused").increment(1);
        tracing::warn!(%peer, why, "boot secrets refused");
        (status, format!("{why}\n")).into_response()
    };
    match spent {
        Err(e) => internal_error(e),
        Ok(Err(secrets::Refusal::Unknown)) => refused(StatusCode::NOT_FOUND, "unknown token"),
        Ok(Err(secrets::Refusal::Spent)) => refused(
            StatusCode::GONE,
            "token already used or expired; reboot the machine for a new one",
        ),
        Ok(Err(secrets::Refusal::WrongAddress)) => refused(
            StatusCode::FORBIDDEN,
            "token presented from another address than it was issued to",
        ),
        Ok(Ok(target)) => {
            // RFC 4173: iscsi:<server>:<proto>:<port>:<lun>:<target>, the target holding colons.
            let Some(iqn) = target
                .as_ref()
                .and_then(|t| t.iscsi.as_ref())
                .and_then(|(root, _)| root.splitn(6, ':').nth(5).map(str::to_owned))
            else {
                return refused(
                    StatusCode::NOT_FOUND,
                    "the machine has no boot volume any more",
                );
            };
            metrics::counter!("nhn_http_boot_secrets_total", "result" => "ok").increment(1);
            tracing::info!(%peer, "boot secrets handed out");
            (
                [
                    (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                secrets::bundle(&crate::storage::chap_for(&key, &iqn)),
            )
                .into_response()
        }
    }
}

/// The base URL iPXE should use: configured, else the Host the request came to.
fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(base) = &state.boot.http_base {
        return base.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".:-[]".contains(c))
        });
    format!("http://{}", host.unwrap_or("localhost"))
}

/// `/boot/<mac>.ipxe` scripts, `/boot/secrets/<token>` and files of the boot directory.
async fn boot_file(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(path): Path<String>,
    req: Request,
) -> Response {
    let peer = peer.ip().to_canonical().to_string();
    if let Some(token) = path.strip_prefix("secrets/") {
        return boot_secrets(&state, token.to_owned(), peer).await;
    }
    if let Some(mac) = script::mac_of_script(&path) {
        // Without CHAP a script is a plain read; with it, issuing the token is a write.
        let looked_up = if state.chap.is_some() {
            state
                .inventory
                .write(move |c| {
                    let target = script::lookup(c, &mac)?;
                    let token = match &target {
                        Some(t) if t.iscsi.is_some() => {
                            Some(secrets::issue(c, &mac, &peer, unix_now())?)
                        }
                        _ => None,
                    };
                    Ok((target, token))
                })
                .await
        } else {
            state
                .inventory
                .read(move |c| Ok((script::lookup(c, &mac)?, None)))
                .await
        };
        let (target, token) = match looked_up {
            Ok(t) => t,
            Err(e) => return internal_error(e),
        };
        let base = base_url(&state, req.headers());
        let settings = script::Settings {
            secrets: token.map(|t| t.map(|t| format!("{base}/boot/secrets/{t}"))),
            base_url: base,
            kernel: state.boot.kernel.clone(),
            initrd: state.boot.initrd.clone(),
            cmdline: state.boot.cmdline.clone(),
        };
        metrics::counter!("nhn_http_boot_scripts_total", "known" => if target.is_some() { "yes" } else { "no" }).increment(1);
        return (
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            script::render(&mac, target.as_ref(), &settings),
        )
            .into_response();
    }
    match state.boot_root.resolve(&path) {
        Ok(file) => match tower_http::services::ServeFile::new(file)
            .oneshot(req)
            .await
        {
            Ok(r) => r.into_response(),
            Err(e) => internal_error(e),
        },
        Err(FileError::NotFound) => (StatusCode::NOT_FOUND, "not found\n").into_response(),
        Err(FileError::Denied(why)) => {
            (StatusCode::FORBIDDEN, format!("forbidden: {why}\n")).into_response()
        }
        Err(e) => internal_error(e),
    }
}

/// `/images/<id>/<file>`: an imported image's kernel, initrd or archive (hypervisors verify
/// what they fetch by the SHA-256 the appliance sent with the command).
async fn image_file(
    State(state): State<AppState>,
    Path((id, file)): Path<(String, String)>,
    req: Request,
) -> Response {
    let Some(path) = crate::images::served_file(&state.data_dir, &id, &file) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    if !path.is_file() {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    match tower_http::services::ServeFile::new(path)
        .oneshot(req)
        .await
    {
        Ok(r) => r.into_response(),
        Err(e) => internal_error(e),
    }
}
