//! Request ids and the `requests` table (HAAS-API.md §3.3). Every call gets a request id and a
//! row: sync calls are terminal at once (`succeeded`/`failed`), async calls are inserted as
//! `queued` in the same transaction as the VM's state change, for the job engine.
//!
//! Write bodies run here, inside the inventory writer's transaction: a savepoint around the
//! body means a failing call rolls back its half-done changes and still records its failed
//! request row and audit entry. `clientToken` replays are answered from the stored response.

use dxr::Value;
use rusqlite::{OptionalExtension, params};

use super::args::{Args, Struct, s, st};
use super::fault::{ApiError, ErrorType, fail};
use super::{Ctx, Method, Outcome, WriteFn};
use crate::inventory;
use crate::inventory::Tx;
use crate::util::{now_rfc3339, rfc3339, unix_now};

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
        let earlier: Option<(Option<String>, Option<String>)> = conn
            .query_row(
                "SELECT args_digest, response FROM requests
                 WHERE customer_id = ?1 AND method = ?2 AND client_token = ?3 AND accepted_at > ?4",
                params![
                    ctx.caller.customer_id,
                    m.name,
                    token,
                    rfc3339(unix_now() - 86_400)
                ],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
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
    inventory::exec_cached(conn, "SAVEPOINT api_call")?;
    let done = body(conn, ctx, args).and_then(|out| {
        if out.pending.is_some() {
            check_pending_limits(conn, ctx)?;
        }
        Ok(out)
    });
    let now = now_rfc3339();
    match done {
        Ok(Outcome {
            mut response,
            resource,
            pending,
        }) => {
            inventory::exec_cached(conn, "RELEASE api_call")?;
            response.insert("requestId".into(), s(&ctx.request_id));
            let (status, finished, previous) = match &pending {
                Some(p) => ("queued", None, Some(p.previous_state.clone())),
                None => ("succeeded", Some(now.clone()), None),
            };
            let stored_args = if pending.is_some() {
                encode(&args_without_token(args))
            } else {
                String::new()
            };
            conn.execute(
                "INSERT INTO requests (id, customer_id, key_id, method, resource_type, resource_id, status,
                    args, client_token, args_digest, response, previous_state, accepted_at, finished_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                params![
                    ctx.request_id,
                    ctx.caller.customer_id,
                    ctx.caller.key_id,
                    m.name,
                    resource.0,
                    resource.1,
                    status,
                    stored_args,
                    token,
                    digest,
                    encode(&response),
                    previous,
                    now,
                    finished
                ],
            )?;
            inventory::audit(conn, &ctx.caller.key_id, m.name, &resource.1, "ok")?;
            inventory::record_event(conn, "request", &ctx.request_id)?;
            Ok(Ok(response))
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO api_call; RELEASE api_call")?;
            insert_failed(conn, ctx, m.name, &e, &now)?;
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
    let (queued, pending, quota): (i64, i64, Option<i64>) = conn.query_row(
        "SELECT
            (SELECT COUNT(*) FROM requests WHERE customer_id = ?1 AND status = 'queued'),
            (SELECT COUNT(*) FROM requests WHERE customer_id = ?1 AND status IN ('queued', 'running')),
            (SELECT pending_requests FROM quotas WHERE customer_id = ?1)",
        [ctx.caller.customer_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
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

fn insert_failed(
    conn: &Tx<'_>,
    ctx: &Ctx,
    method: &str,
    e: &ApiError,
    now: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO requests (id, customer_id, key_id, method, status, error_type, error_message,
            accepted_at, finished_at)
         VALUES (?1, ?2, ?3, ?4, 'failed', ?5, ?6, ?7, ?7)",
    )?
    .execute(params![
        ctx.request_id,
        ctx.caller.customer_id,
        ctx.caller.key_id,
        method,
        e.kind.as_str(),
        e.message,
        now
    ])?;
    Ok(())
}

/// The `RequestInfo` struct of getRequestIdInfo, for the caller's own request.
pub fn request_info(conn: &Tx<'_>, customer_id: i64, id: &str) -> Result<Struct, ApiError> {
    let row = conn
        .query_row(
            "SELECT method, resource_type, resource_id, status, accepted_at, started_at, finished_at,
                    error_type, error_message, result
             FROM requests WHERE id = ?1 AND customer_id = ?2",
            params![id, customer_id],
            |r| {
                Ok(st([
                    ("requestId", s(id)),
                    ("method", s(r.get::<_, String>(0)?)),
                    ("resourceType", s(r.get::<_, String>(1)?)),
                    ("resourceId", s(r.get::<_, String>(2)?)),
                    ("status", s(r.get::<_, String>(3)?)),
                    ("acceptedAt", s(r.get::<_, String>(4)?)),
                    ("startedAt", s(r.get::<_, Option<String>>(5)?.unwrap_or_default())),
                    ("finishedAt", s(r.get::<_, Option<String>>(6)?.unwrap_or_default())),
                    ("errorType", s(r.get::<_, String>(7)?)),
                    ("errorMessage", s(r.get::<_, String>(8)?)),
                    ("result", Value::Struct(decode(&r.get::<_, String>(9)?))),
                ]))
            },
        )
        .optional()?;
    row.ok_or_else(|| {
        ApiError::new(
            ErrorType::NotFound,
            format!("request {id} (unknown, not yours, or older than the retention period)"),
        )
    })
}

/// The `CommandStatus` of a VM's latest async request (`{}` if it has none).
pub fn command_status(conn: &Tx<'_>, vm_public_id: &str) -> rusqlite::Result<Struct> {
    Ok(conn
        .query_row(
            "SELECT id, method, status FROM requests
             WHERE resource_type = 'vm' AND resource_id = ?1 AND previous_state IS NOT NULL
             ORDER BY accepted_at DESC, rowid DESC LIMIT 1",
            [vm_public_id],
            |r| {
                Ok(st([
                    ("requestId", s(r.get::<_, String>(0)?)),
                    ("method", s(r.get::<_, String>(1)?)),
                    ("status", s(r.get::<_, String>(2)?)),
                ]))
            },
        )
        .optional()?
        .unwrap_or_default())
}
