//! Request ids and the `requests` table (HAAS-API.md §3.3). Every call gets a request id and a
//! row: sync calls are terminal at once (`succeeded`/`failed`), async calls are inserted as
//! `queued` in the same transaction as the VM's state change, for the job engine.
//!
//! Write bodies run here, inside the inventory writer's transaction: a savepoint around the
//! body means a failing call rolls back its half-done changes and still records its failed
//! request row and audit entry. `clientToken` replays are answered from the stored response.

use dxr::Value;

use super::args::{Args, Struct, s, st};
use super::fault::{ApiError, ErrorType, fail};
use super::{Ctx, Method, Outcome, WriteFn};
use crate::inventory::requests::{ApiCall, CallRecord, PendingCounts, Requests};
use crate::inventory::{self, Tx};
use crate::model::{EventKind, Work};
use crate::util::{now_rfc3339, unix_now};

pub use crate::jobs::new_request_id;

/// A struct as stored in `requests.response`/`result` (its XML-RPC encoding).
pub use crate::codec::{decode, encode};

/// Runs a write method in the writer's transaction. The outer `Result` is the database's (it
/// aborts the job); the inner one is the call's answer, committed either way.
pub fn run_write(
    conn: &Tx<'_>,
    m: &Method,
    ctx: &Ctx,
    args: &Args,
    body: WriteFn,
) -> inventory::Result<Result<Struct, ApiError>> {
    let token = match args.client_token() {
        Ok(t) if m.idempotent => t,
        Ok(_) => None,
        Err(e) => return Ok(Err(e)),
    };
    let digest = args.digest();
    if let Some(token) = token {
        let earlier =
            conn.earlier_call(ctx.caller.customer_id, m.name, token, unix_now() - 86_400)?;
        if let Some((earlier_digest, response)) = earlier {
            return Ok(if earlier_digest.as_deref() == Some(digest.as_str()) {
                Ok(decode(response.as_deref().unwrap_or_default()))
            } else {
                Err(ApiError::new(
                    ErrorType::Conflict,
                    format!(
                        "clientToken {token:?} was used for an earlier {} call with different arguments; use a new token",
                        m.name
                    ),
                ))
            });
        }
    }
    let done = conn.nested(|| {
        body(conn, ctx, args).and_then(|out| {
            if out.pending.is_some() {
                check_pending_limits(conn, ctx)?;
            }
            Ok(out)
        })
    })?;
    let now = now_rfc3339();
    match done {
        Ok(Outcome {
            mut response,
            resource,
            pending,
        }) => {
            response.insert("requestId".into(), s(&ctx.request_id));
            let (status, finished, previous) = match &pending {
                Some(p) => ("queued", None, Some(p.previous_state.as_str())),
                None => ("succeeded", Some(now.clone()), None),
            };
            let work = match &pending {
                Some(_) => {
                    let args = crate::codec::to_json(&Value::Struct(args_without_token(args)));
                    match Work::from_call(m.name, &args) {
                        Some(w) => Some(w),
                        None => {
                            return Err(inventory::Error::Invalid(format!(
                                "{} queued a request but names no work",
                                m.name
                            )));
                        }
                    }
                }
                None => None,
            };
            conn.insert_call(&ApiCall {
                id: &ctx.request_id,
                customer_id: ctx.caller.customer_id,
                key_id: &ctx.caller.key_id,
                method: m.name,
                resource_type: resource.0,
                resource_id: &resource.1,
                status,
                work: work.as_ref(),
                client_token: token,
                args_digest: &digest,
                response: &encode(&response),
                previous_state: previous,
                accepted_at: &now,
                finished_at: finished.as_deref(),
            })?;
            inventory::audit(conn, &ctx.caller.key_id, m.name, &resource.1, "ok")?;
            inventory::record_event(conn, EventKind::Request, &ctx.request_id)?;
            Ok(Ok(response))
        }
        Err(e) => {
            conn.record_call(&CallRecord {
                id: &ctx.request_id,
                customer_id: Some(ctx.caller.customer_id),
                key_id: Some(&ctx.caller.key_id),
                method: m.name,
                status: "failed",
                error_type: e.kind.as_str(),
                error_message: &e.message,
                at: &now,
            })?;
            inventory::audit(
                conn,
                &ctx.caller.key_id,
                m.name,
                "",
                &format!("failed: {}", e.kind.as_str()),
            )?;
            Ok(Err(e))
        }
    }
}

fn args_without_token(args: &Args) -> Struct {
    let mut m = args.members().clone();
    m.remove("clientToken");
    m
}

/// maxQueued and the customer's pendingRequests quota (fault 720).
fn check_pending_limits(conn: &Tx<'_>, ctx: &Ctx) -> Result<(), ApiError> {
    let PendingCounts {
        queued,
        pending,
        quota,
    } = conn.pending_counts(ctx.caller.customer_id)?;
    if queued >= i64::from(ctx.config.max_queued) {
        return fail(
            ErrorType::TooManyPendingRequests,
            format!(
                "you have {queued} queued requests (the limit is {}); wait for some to finish (poll getRequestIdInfo)",
                ctx.config.max_queued
            ),
        );
    }
    if let Some(q) = quota
        && pending >= q
    {
        return fail(
            ErrorType::TooManyPendingRequests,
            format!(
                "you have {pending} pending requests (your quota is {q}); wait for some to finish"
            ),
        );
    }
    Ok(())
}

/// The `RequestInfo` struct of getRequestIdInfo, for the caller's own request.
pub fn request_info(conn: &Tx<'_>, customer_id: i64, id: &str) -> Result<Struct, ApiError> {
    let row = conn.request_of(customer_id, id)?.map(|r| {
        let progress = r.progress;
        let mut info = st([
            ("requestId", s(id)),
            ("method", s(r.method)),
            ("resourceType", s(r.resource_type)),
            ("resourceId", s(r.resource_id)),
            ("status", s(r.status)),
            ("acceptedAt", s(r.accepted_at)),
            ("startedAt", s(r.started_at.unwrap_or_default())),
            ("finishedAt", s(r.finished_at.unwrap_or_default())),
            ("errorType", s(r.error_type)),
            ("errorMessage", s(r.error_message)),
            ("result", Value::Struct(decode(&r.result))),
        ]);
        if let Some((done, total)) = progress {
            info.insert("progress".into(), progress_struct(done, total));
        }
        info
    });
    row.ok_or_else(|| {
        ApiError::new(
            ErrorType::NotFound,
            format!("request {id} (unknown, not yours, or older than the retention period)"),
        )
    })
}

/// `progress` of a running request: `done` and `total` (bytes, as doubles: XML-RPC's int is
/// 32 bits) and `percent`.
fn progress_struct(done: u64, total: u64) -> Value {
    let percent = (done.min(total) * 100).checked_div(total).unwrap_or(0);
    Value::Struct(st([
        ("done", Value::Double(done as f64)),
        ("total", Value::Double(total as f64)),
        ("percent", Value::Integer(percent as i32)),
    ]))
}

/// The `CommandStatus` of a VM's latest async request (`{}` if it has none).
pub fn command_status(conn: &Tx<'_>, vm_public_id: &str) -> inventory::Result<Struct> {
    Ok(conn
        .latest_vm_request(vm_public_id)?
        .map(|(id, method, status)| {
            st([
                ("requestId", s(id)),
                ("method", s(method)),
                ("status", s(status)),
            ])
        })
        .unwrap_or_default())
}
