//! `POST /RPC2`: the XML-RPC transport of the HaaS API, our own axum handler around the dxr
//! codec (dxr_server's handler cannot see the peer address, and we need auth, rate limits and
//! the request id per call).
//!
//! The order of checks is the contract's: body size (HTTP 413), well-formed XML with bounded
//! nesting and no DTD (-32700), valid XML-RPC (-32600), known method (-32601), failed-auth
//! throttling and auth (710/100), scope (200), request rate (710), arguments (-32602), then
//! the method body. Faults travel in HTTP 200. `system.multicall` does not exist, so one HTTP
//! request is one call for the rate limiter.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body as HttpBody, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dxr::{FaultResponse, MethodCall, Value};
use quick_xml::events::Event;

use super::args::{Args, Struct, s};
use super::auth::{KeyCache, Signed};
use super::fault::{ApiError, ErrorType, fail};
use super::requests::{new_request_id, run_write};
use super::{Api, Body, Ctx, METHODS, encode, method};
use crate::util::unix_now;

const INTROSPECTION: [&str; 3] = [
    "system.listMethods",
    "system.methodHelp",
    "system.methodSignature",
];

/// Checks that `text` is well-formed XML with at most `max_depth` nested elements, no DTD and
/// no entity other than the five predefined ones and character references. This runs before
/// the (recursive) codec, so deep nesting cannot exhaust the stack and no entity expands.
pub fn prescan(text: &str, max_depth: usize) -> Result<(), ApiError> {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut depth = 0usize;
    let parse_error = |what: String| ApiError::new(ErrorType::ParseError, what);
    loop {
        match reader.read_event() {
            Ok(Event::Start(_)) => {
                depth += 1;
                if depth > max_depth {
                    return Err(parse_error(format!(
                        "elements nested deeper than {max_depth} levels; flatten the arguments"
                    )));
                }
            }
            Ok(Event::End(_)) => depth = depth.saturating_sub(1),
            Ok(Event::DocType(_)) => {
                return Err(parse_error(
                    "document type declarations (DTDs) are not accepted".into(),
                ));
            }
            Ok(Event::GeneralRef(r)) => {
                let predefined = matches!(&*r, "amp" | "lt" | "gt" | "quot" | "apos");
                if !predefined && !r.is_char_ref() {
                    return Err(parse_error(format!("undefined entity &{};", &*r)));
                }
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => {
                return Err(parse_error(format!(
                    "XML not well-formed at byte {}: {e}",
                    reader.error_position()
                )));
            }
        }
    }
    if depth != 0 {
        return fail(ErrorType::ParseError, "XML ends inside an element");
    }
    Ok(())
}

fn xml_response(body: String, request_id: Option<&str>) -> Response {
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        format!("<?xml version=\"1.0\"?>\n{body}"),
    )
        .into_response();
    if let Some(id) = request_id
        && let Ok(v) = HeaderValue::from_str(id)
    {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

fn fault_response(e: &ApiError, request_id: Option<&str>) -> Response {
    let body = FaultResponse { fault: e.fault() }
        .to_xml()
        .unwrap_or_default();
    let mut resp = xml_response(body, request_id);
    if e.kind == ErrorType::RateLimited
        && let Some(secs) = e.message.rsplit("retryAfter=").next()
        && let Some(secs) = secs.strip_suffix("s)")
        && let Ok(v) = HeaderValue::from_str(secs)
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

fn rate_limited(what: &str, retry_after: u64) -> ApiError {
    ApiError::new(
        ErrorType::RateLimited,
        format!("{what}; slow down (retryAfter={retry_after}s)"),
    )
}

/// The `/RPC2` handler.
pub async fn handle(State(api): State<Arc<Api>>, req: Request) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let limit = api.config.body_limit_bytes;
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {limit} bytes\n"),
        )
            .into_response()
    };
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if announced.is_some_and(|n| n > limit) {
        return too_large();
    }
    let signed = Signed::from_headers(req.headers());
    let path = req.uri().path().to_owned();
    let Ok(_slot) = api.calls.acquire().await else {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    };
    let Ok(body) = to_bytes(req.into_body(), limit).await else {
        return too_large();
    };
    let started = Instant::now();
    let request_id = new_request_id();
    let from = Origin {
        peer,
        signed,
        path,
        body: &body,
    };
    let (name, result) = call(&api, &from, &request_id).await;
    let label = name.unwrap_or("invalid");
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.kind.as_str(),
    };
    metrics::counter!("nhn_api_calls_total", "method" => label, "result" => outcome).increment(1);
    metrics::histogram!("nhn_api_call_seconds", "method" => label)
        .record(started.elapsed().as_secs_f64());
    match result {
        Ok(value) => xml_response(encode::response(&value), Some(&request_id)),
        Err(e) => fault_response(&e, Some(&request_id)),
    }
}

/// Decodes, authenticates, limits and runs one call. Returns the method's static name (for
/// metrics) once known.
async fn call(
    api: &Arc<Api>,
    from: &Origin<'_>,
    request_id: &str,
) -> (Option<&'static str>, Result<Value, ApiError>) {
    let text = match std::str::from_utf8(from.body) {
        Ok(t) => t,
        Err(e) => {
            return (
                None,
                fail(ErrorType::ParseError, format!("the body is not UTF-8: {e}")),
            );
        }
    };
    if let Err(e) = prescan(text, api.config.max_xml_depth) {
        return (None, Err(e));
    }
    let call = match MethodCall::from_xml(text) {
        Ok(c) => c,
        // dxr's error repeats the whole input; do not send it back.
        Err(_) => {
            return (
                None,
                fail(
                    ErrorType::InvalidRequest,
                    "not a valid XML-RPC methodCall (check the element names and value types)",
                ),
            );
        }
    };
    if let Some(&name) = INTROSPECTION.iter().find(|n| **n == call.name) {
        return (Some(name), introspect(name, call.params));
    }
    let Some(m) = method(&call.name) else {
        let hint = if call.name == "system.multicall" {
            "system.multicall is not supported: send one call per request".to_owned()
        } else {
            format!(
                "unknown method {:?}; system.listMethods lists them",
                truncate(&call.name, 64)
            )
        };
        return (None, fail(ErrorType::MethodNotFound, hint));
    };
    let span = tracing::info_span!("api", request_id, method = m.name);
    let _entered = span.enter();
    (
        Some(m.name),
        run(api, from, m, call.params, request_id).await,
    )
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Where a call came from: the peer, mode B headers, the path and the raw body.
struct Origin<'a> {
    peer: Option<IpAddr>,
    signed: Option<Signed>,
    path: String,
    body: &'a [u8],
}

async fn run(
    api: &Arc<Api>,
    from: &Origin<'_>,
    m: &'static super::Method,
    params: Vec<Value>,
    request_id: &str,
) -> Result<Value, ApiError> {
    if params.len() > 2 {
        return fail(
            ErrorType::InvalidParams,
            format!(
                "{} takes (auth, args): got {} parameters",
                m.name,
                params.len()
            ),
        );
    }
    let mut params = params.into_iter();
    let auth = match params.next() {
        Some(Value::String(a)) => a,
        Some(_) => {
            return fail(
                ErrorType::InvalidParams,
                "the first parameter must be the credential string \"<accessKeyId>:<secret>\"",
            );
        }
        None => {
            return fail(
                ErrorType::AuthFailure,
                "no credential: pass \"<accessKeyId>:<secret>\" as the first parameter",
            );
        }
    };
    let peer = from.peer;
    let signed = from.signed.as_ref().filter(|_| auth.is_empty());
    let ip_key = format!("ip:{}", peer.map(|p| p.to_string()).unwrap_or_default());
    let key_key = format!(
        "key:{}",
        match signed {
            Some(s) => s.key_id.as_str(),
            None => KeyCache::key_id(&auth).unwrap_or_default(),
        }
    );
    for k in [&ip_key, &key_key] {
        if let Err(secs) = api.failed_auth.check(k) {
            return Err(rate_limited("too many failed authentications", secs));
        }
    }
    let verified = match signed {
        Some(s) => {
            api.keys
                .verify_signed(&api.inventory, s, &from.path, from.body, unix_now())
                .await
        }
        None => api.keys.verify(&api.inventory, &auth).await,
    };
    let caller = match verified {
        Ok(c) => {
            api.call_log.touch(&c.key_id);
            c
        }
        Err(e) => {
            let _ = api.failed_auth.take(&ip_key);
            let _ = api.failed_auth.take(&key_key);
            tracing::info!(peer = ?peer, key = %key_key, "authentication failed");
            return Err(e);
        }
    };
    let bucket = match m.body {
        Body::Read(_) => &api.read_rate,
        Body::Write(_) => &api.write_rate,
    };
    if let Err(secs) = bucket.take(&caller.customer_id) {
        return Err(rate_limited(
            match m.body {
                Body::Read(_) => "read-call rate limit reached",
                Body::Write(_) => "mutating-call rate limit reached",
            },
            secs,
        ));
    }
    let ctx = Ctx {
        caller,
        request_id: request_id.to_owned(),
        config: api.config.clone(),
        call_log: api.call_log.clone(),
        infra_vlans: api.infra_vlans.clone(),
        secret: api.secret,
    };
    let checked = if ctx.caller.scope < m.scope {
        fail(
            ErrorType::PermissionDenied,
            format!(
                "key {} has scope {}; {} needs scope {} (create a key with `nhn key create --scope {}`)",
                ctx.caller.key_id,
                ctx.caller.scope.as_str(),
                m.name,
                m.scope.as_str(),
                m.scope.as_str()
            ),
        )
    } else {
        Args::parse(m.name, params.next(), m.members).and_then(|mut args| {
            if let Some(prepare) = m.prepare {
                prepare(&mut args, &ctx)?;
            }
            Ok(args)
        })
    };
    let result: Result<Struct, ApiError> = match (checked, m.body) {
        (Err(e), _) => {
            record(&ctx, m.name, Some(e.clone()));
            Err(e)
        }
        (Ok(args), Body::Read(f)) => {
            // On this worker thread, not spawn_blocking: WAL readers never wait for the writer,
            // and a get* call is a few indexed lookups, cheaper than two thread handoffs. One
            // read transaction gives the body a consistent snapshot (and one lock, not one
            // per statement).
            let out = api
                .inventory
                .read_blocking(|tx| tx.snapshot(|tx| f(tx, &ctx, &args)))
                .map_err(ApiError::from)?;
            let out = out.map(|mut r| {
                r.insert("requestId".into(), s(&ctx.request_id));
                r
            });
            record(&ctx, m.name, out.as_ref().err().cloned());
            out
        }
        (Ok(args), Body::Write(f)) => {
            let queued = api
                .inventory
                .write(move |conn| run_write(conn, m, &ctx, &args, f))
                .await
                .map_err(ApiError::from)?;
            if queued.is_ok() {
                api.jobs.notify_one();
            }
            queued
        }
    };
    result.map(Value::Struct)
}

/// Records a read call or a refused call; the id is queryable at once (see `calllog`).
fn record(ctx: &Ctx, method: &'static str, error: Option<ApiError>) {
    ctx.call_log.push(
        &ctx.request_id,
        ctx.caller.customer_id,
        &ctx.caller.key_id,
        method,
        error,
    );
}

fn introspect(name: &str, params: Vec<Value>) -> Result<Value, ApiError> {
    if name == "system.listMethods" {
        let mut names: Vec<Value> = METHODS.iter().map(|m| s(m.name)).collect();
        names.extend(INTROSPECTION.iter().map(|n| s(*n)));
        return Ok(Value::Array(names));
    }
    let target = match params.as_slice() {
        [Value::String(t)] => t.as_str(),
        _ => {
            return fail(
                ErrorType::InvalidParams,
                format!("{name} takes one string, the method name"),
            );
        }
    };
    let sig = |types: &[&str]| Value::Array(types.iter().map(|t| s(*t)).collect());
    if let Some(m) = method(target) {
        return Ok(if name == "system.methodHelp" {
            s(format!(
                "{}. Call as {}(auth, args); auth is \"<accessKeyId>:<secret>\"; needs scope {}; args members: {}.",
                m.help,
                m.name,
                m.scope.as_str(),
                if m.members.is_empty() {
                    "none".to_owned()
                } else {
                    m.members.join(", ")
                }
            ))
        } else {
            Value::Array(vec![
                sig(&["struct", "string", "struct"]),
                sig(&["struct", "string"]),
            ])
        });
    }
    match target {
        "system.listMethods" if name == "system.methodHelp" => Ok(s("The names of all methods")),
        "system.methodHelp" if name == "system.methodHelp" => Ok(s("Help text of a method")),
        "system.methodSignature" if name == "system.methodHelp" => Ok(s(
            "Signatures of a method: [[return type, parameter types...]]",
        )),
        "system.listMethods" => Ok(Value::Array(vec![sig(&["array"])])),
        "system.methodHelp" => Ok(Value::Array(vec![sig(&["string", "string"])])),
        "system.methodSignature" => Ok(Value::Array(vec![sig(&["array", "string"])])),
        _ => fail(
            ErrorType::MethodNotFound,
            format!("unknown method {:?}", truncate(target, 64)),
        ),
    }
}

/// A body-less answer for non-POST requests to /RPC2.
pub async fn not_post() -> Response {
    (
        StatusCode::BAD_REQUEST,
        HttpBody::from("XML-RPC: POST a methodCall to /RPC2\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prescan_accepts_a_python_call() {
        let call = "<?xml version='1.0'?>\n<methodCall>\n<methodName>getVmInfo</methodName>\n<params>\n<param>\n<value><string>AK:x&amp;y&#65;</string></value>\n</param>\n</params>\n</methodCall>\n";
        assert_eq!(prescan(call, 8), Ok(()));
    }

    #[test]
    fn prescan_refuses_dtds_entities_depth_and_broken_xml() {
        let bomb = "<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;\">]><methodCall><methodName>&b;</methodName></methodCall>";
        assert_eq!(prescan(bomb, 8).unwrap_err().kind, ErrorType::ParseError);
        let undefined = "<methodCall><methodName>&b;</methodName></methodCall>";
        assert!(
            prescan(undefined, 8)
                .unwrap_err()
                .message
                .contains("undefined entity")
        );
        let deep = format!("{}{}", "<a>".repeat(9), "</a>".repeat(9));
        assert!(
            prescan(&deep, 8)
                .unwrap_err()
                .message
                .contains("deeper than 8")
        );
        assert!(prescan("<a><b></a>", 8).is_err());
        assert!(prescan("<a>", 8).is_err());
    }
}
