//! The internal listener (HAAS-API.md §3.3): where the facility reports. It listens on its own
//! address (`[api] internal_listen`), never on the customer port, and serves two methods:
//!
//! - `reportRequestResult(credential, requestId, status, result)`: an async request's outcome;
//! - `reportHostState(credential, report)`: an agent's periodic report (its VMs, free capacity).
//!
//! The credential is either a hypervisor agent's (`nhn agent enroll`; the `agents` table holds
//! its SHA-256) or the legacy facility's (`[api] facility_credential_sha256`). An agent may
//! report only on requests that were dispatched to its own host: anything else is refused and
//! logged. An unknown request id is refused too.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use dxr::{FaultResponse, MethodCall, MethodResponse, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::args::{Struct, s, st};
use super::fault::{ApiError, ErrorType, fail};
use super::rpc::prescan;
use crate::codec::{text, to_json};
use crate::inventory::Inventory;
use crate::inventory::hosts::Hosts;
use crate::inventory::requests::Requests;
use crate::jobs::Engine;
use crate::jobs::complete::Outcome;
use crate::jobs::hosts::HostReport;
use crate::sign::{constant_time_eq, credential_key, hex};

/// Largest callback body (results are small).
const BODY_LIMIT: usize = 256 * 1024;

#[derive(Clone)]
pub struct Internal {
    pub engine: Arc<Engine>,
    pub inventory: Inventory,
    /// SHA-256 of the facility credential; `None` refuses every call.
    pub credential_sha256: Option<Vec<u8>>,
    pub max_depth: usize,
}

/// Who is calling.
enum Caller {
    /// The legacy facility (`[api] facility_credential_sha256`).
    Facility,
    /// The agent of hypervisor `name`.
    Host { id: i64, name: String },
}

impl Internal {
    pub fn new(
        engine: Arc<Engine>,
        inventory: Inventory,
        credential_sha256: &str,
        max_depth: usize,
    ) -> Result<Self, String> {
        let credential_sha256 = if credential_sha256.is_empty() {
            None
        } else {
            Some(crate::sign::parse_hex32(credential_sha256).map(|k| k.to_vec()).ok_or_else(|| {
                "[api] facility_credential_sha256 must be 64 hex digits (printf %s \"$SECRET\" | sha256sum)"
                    .to_owned()
            })?)
        };
        Ok(Internal {
            engine,
            inventory,
            credential_sha256,
            max_depth,
        })
    }

    async fn identify(&self, credential: &str) -> Result<Caller, ApiError> {
        let presented = Sha256::digest(credential.as_bytes());
        if self
            .credential_sha256
            .as_ref()
            .is_some_and(|h| constant_time_eq(h, &presented))
        {
            return Ok(Caller::Facility);
        }
        let hash = hex(&credential_key(credential));
        let host = self
            .inventory
            .read(move |tx| tx.host_of_credential(&hash))
            .await?;
        match host {
            Some((id, name)) => Ok(Caller::Host { id, name }),
            None => {
                tracing::warn!("internal listener: a call with an unknown credential was refused");
                fail(
                    ErrorType::AuthFailure,
                    "unknown credential: use the one `nhn agent enroll HOST` printed (or the facility's, whose SHA-256 is [api] facility_credential_sha256)",
                )
            }
        }
    }
}

pub fn router(internal: Internal) -> Router {
    Router::new()
        .route("/RPC2", post(handle))
        .with_state(internal)
}

/// Serves the internal listener until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    internal: Internal,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?addr, "internal listener (facility callbacks) listening");
    axum::serve(listener, router(internal))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

async fn handle(State(internal): State<Internal>, req: Request) -> Response {
    let Ok(body) = to_bytes(req.into_body(), BODY_LIMIT).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "body too large\n").into_response();
    };
    let xml = match call(&internal, &body).await {
        Ok(v) => MethodResponse {
            value: Value::Struct(v),
        }
        .to_xml(),
        Err(e) => FaultResponse { fault: e.fault() }.to_xml(),
    };
    (
        [(axum::http::header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        format!("<?xml version=\"1.0\"?>\n{}", xml.unwrap_or_default()),
    )
        .into_response()
}

async fn call(internal: &Internal, body: &[u8]) -> Result<Struct, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::new(ErrorType::ParseError, "the body is not UTF-8"))?;
    prescan(text, internal.max_depth)?;
    let call = MethodCall::from_xml(text)
        .map_err(|_| ApiError::new(ErrorType::InvalidRequest, "not a valid XML-RPC methodCall"))?;
    match call.name.as_ref() {
        "reportRequestResult" => report_result(internal, call.params).await,
        "reportHostState" => report_host(internal, call.params).await,
        _ => fail(
            ErrorType::MethodNotFound,
            "the internal listener serves reportRequestResult and reportHostState only",
        ),
    }
}

async fn report_host(internal: &Internal, params: Vec<Value>) -> Result<Struct, ApiError> {
    let mut params = params.into_iter();
    let (Some(Value::String(credential)), Some(report @ Value::Struct(_))) =
        (params.next(), params.next())
    else {
        return fail(
            ErrorType::InvalidParams,
            "reportHostState(credential: string, report: struct)",
        );
    };
    let Caller::Host { id, name } = internal.identify(&credential).await? else {
        return fail(
            ErrorType::PermissionDenied,
            "reportHostState is for hypervisor agents (their own credential)",
        );
    };
    let report: HostReport = serde_json::from_value(to_json(&report)).map_err(|e| {
        ApiError::new(
            ErrorType::InvalidParams,
            format!("the report of {name} is malformed: {e}"),
        )
    })?;
    internal.engine.host_report(id, report).await?;
    Ok(st([("host", s(name))]))
}

async fn report_result(internal: &Internal, params: Vec<Value>) -> Result<Struct, ApiError> {
    let mut params = params.into_iter();
    let (Some(Value::String(credential)), Some(Value::String(id)), Some(Value::String(status))) =
        (params.next(), params.next(), params.next())
    else {
        return fail(
            ErrorType::InvalidParams,
            "reportRequestResult(facilityCredential: string, requestId: string, status: string, result?: struct)",
        );
    };
    let caller = internal.identify(&credential).await?;
    let lookup = id.clone();
    let Some(host) = internal
        .inventory
        .read(move |tx| tx.dispatched_to(&lookup))
        .await?
    else {
        return fail(ErrorType::NotFound, format!("unknown request id {id}"));
    };
    if let Caller::Host {
        id: caller_id,
        name,
    } = &caller
        && host != Some(*caller_id)
    {
        tracing::warn!(request_id = %id, host = %name,
            "refused a result for a request that was not dispatched to this host");
        return fail(
            ErrorType::PermissionDenied,
            format!("request {id} was not dispatched to {name}"),
        );
    }
    let result = match params.next() {
        None => Struct::new(),
        Some(Value::Struct(r)) => r,
        Some(_) => return fail(ErrorType::InvalidParams, "result must be a struct"),
    };
    let outcome = match status.as_str() {
        "succeeded" => Outcome::Succeeded(result.clone()),
        "failed" => Outcome::Failed {
            error_type: match text(&result, "errorType") {
                t if t.is_empty() => "BackendError".into(),
                t => t,
            },
            message: text(&result, "errorMessage"),
        },
        other => {
            return fail(
                ErrorType::ParameterError,
                format!("status {other:?}: use \"succeeded\" or \"failed\""),
            );
        }
    };
    let applied = internal.engine.report(id.clone(), outcome).await?;
    Ok(st([
        ("requestId", s(id)),
        ("applied", Value::Boolean(applied)),
    ]))
}
