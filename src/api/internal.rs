//! The internal listener (HAAS-API.md §3.3): where the facility reports async results with
//! `reportRequestResult(facilityCredential, requestId, status, result)`. It listens on its own
//! address (`[api] internal_listen`, loopback by default), never on the customer port, and
//! takes only the facility's credential, whose SHA-256 the configuration holds.

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
use crate::jobs::Engine;
use crate::jobs::complete::Outcome;

/// Largest callback body (results are small).
const BODY_LIMIT: usize = 256 * 1024;

#[derive(Clone)]
pub struct Internal {
    pub engine: Arc<Engine>,
    /// SHA-256 of the facility credential; `None` refuses every call.
    pub credential_sha256: Option<Vec<u8>>,
    pub max_depth: usize,
}

/// 64 hex digits as 32 bytes (`None` for anything else).
pub fn parse_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 {
        return None;
    }
    (0..32)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

impl Internal {
    pub fn new(
        engine: Arc<Engine>,
        credential_sha256: &str,
        max_depth: usize,
    ) -> Result<Self, String> {
        let credential_sha256 = if credential_sha256.is_empty() {
            None
        } else {
            Some(parse_hex(credential_sha256).ok_or_else(|| {
                "[api] facility_credential_sha256 must be 64 hex digits (printf %s \"$SECRET\" | sha256sum)"
                    .to_owned()
            })?)
        };
        Ok(Internal {
            engine,
            credential_sha256,
            max_depth,
        })
    }

    fn check(&self, credential: &str) -> Result<(), ApiError> {
        let presented = Sha256::digest(credential.as_bytes());
        let ok = self.credential_sha256.as_ref().is_some_and(|h| {
            h.len() == presented.len()
                && h.iter()
                    .zip(presented.iter())
                    .fold(0u8, |a, (x, y)| a | (x ^ y))
                    == 0
        });
        if ok {
            Ok(())
        } else {
            fail(
                ErrorType::AuthFailure,
                "wrong facility credential (or none configured: set [api] facility_credential_sha256)",
            )
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
    if call.name != "reportRequestResult" {
        return fail(
            ErrorType::MethodNotFound,
            "the internal listener serves reportRequestResult only",
        );
    }
    let mut params = call.params.into_iter();
    let (Some(Value::String(credential)), Some(Value::String(id)), Some(Value::String(status))) =
        (params.next(), params.next(), params.next())
    else {
        return fail(
            ErrorType::InvalidParams,
            "reportRequestResult(facilityCredential: string, requestId: string, status: string, result?: struct)",
        );
    };
    internal.check(&credential)?;
    let result = match params.next() {
        None => Struct::new(),
        Some(Value::Struct(r)) => r,
        Some(_) => return fail(ErrorType::InvalidParams, "result must be a struct"),
    };
    let text = |k: &str| match result.get(k) {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    let outcome = match status.as_str() {
        "succeeded" => Outcome::Succeeded(result.clone()),
        "failed" => Outcome::Failed {
            error_type: match text("errorType") {
                t if t.is_empty() => "BackendError".into(),
                t => t,
            },
            message: text("errorMessage"),
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
