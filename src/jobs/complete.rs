//! Finishing an async request: one transaction sets its terminal status, result and error,
//! moves the VM to its final state (§2.1 transitions; failure goes back to the previous state,
//! a timeout to `error`) and clears the VM's `currentRequestId`. Idempotent: a request that is
//! already terminal is left alone, so repeated or late callbacks change nothing.

use rusqlite::{Connection, OptionalExtension, params};

use crate::codec::{Struct, decode, encode, s};
use crate::facility::Status;
use crate::inventory::{self, audit, record_event};
use crate::util::now_rfc3339;

/// The VM states of §2.1.
pub const VM_STATES: [&str; 8] = [
    "stopped",
    "starting",
    "running",
    "stopping",
    "resetting",
    "installing",
    "configuring",
    "error",
];

/// How a request ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded(Struct),
    Failed {
        error_type: String,
        message: String,
    },
    /// No result before the deadline: the facility state is unknown.
    TimedOut,
}

impl Outcome {
    /// A terminal facility status as an outcome (`None` while running or unknown).
    pub fn from_status(status: Status) -> Option<Outcome> {
        match status {
            Status::Succeeded(r) => Some(Outcome::Succeeded(r)),
            Status::Failed {
                error_type,
                message,
            } => Some(Outcome::Failed {
                error_type: if error_type.is_empty() {
                    "BackendError".into()
                } else {
                    error_type
                },
                message,
            }),
            Status::Running | Status::Unknown => None,
        }
    }
}

/// The VM state after `method` succeeded.
pub fn success_state(method: &str) -> &'static str {
    match method {
        "powerOnVm" | "resetVm" => "running",
        _ => "stopped",
    }
}

/// A method on a VM (not an operator's request on a bare-metal machine).
fn vm_method(method: &str) -> bool {
    crate::facility::command::MachineOp::from_method(method).is_none()
}

/// What happened: `Applied`, or `Ignored` for an unknown or already terminal request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    Ignored,
}

pub fn apply(
    conn: &Connection,
    request_id: &str,
    outcome: &Outcome,
    actor: &str,
) -> inventory::Result<Applied> {
    let row: Option<(String, String, String, Option<String>)> = conn
        .query_row(
            "SELECT method, resource_id, status, previous_state FROM requests WHERE id = ?1",
            [request_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((method, vm, status, previous)) = row else {
        return Ok(Applied::Ignored);
    };
    if status != "queued" && status != "running" {
        return Ok(Applied::Ignored);
    }
    let previous = previous.unwrap_or_else(|| "stopped".into());
    let (status, result, error_type, message, vm_state) = match outcome {
        Outcome::Succeeded(r) => {
            let mut r = r.clone();
            let state = success_state(&method);
            if vm_method(&method) {
                r.insert("state".into(), s(state));
            }
            (
                "succeeded",
                r,
                String::new(),
                String::new(),
                state.to_owned(),
            )
        }
        Outcome::Failed {
            error_type,
            message,
        } => (
            "failed",
            Struct::new(),
            error_type.clone(),
            message.clone(),
            previous,
        ),
        Outcome::TimedOut => (
            "failed",
            Struct::new(),
            "Timeout".to_owned(),
            format!(
                "the facility did not report {method} in time; VM {vm} is in state error until an operator checks it"
            ),
            "error".to_owned(),
        ),
    };
    let now = now_rfc3339();
    conn.execute(
        "UPDATE requests SET status = ?2, result = ?3, error_type = ?4, error_message = ?5, finished_at = ?6,
            started_at = COALESCE(started_at, ?6)
         WHERE id = ?1",
        params![request_id, status, encode(&result), error_type, message, now],
    )?;
    let vm_row: Option<i64> = conn
        .query_row(
            "SELECT id FROM vms WHERE public_id = ?1 AND current_request_id = ?2",
            params![vm, request_id],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(vm_id) = vm_row {
        // A stopped VM holds no hypervisor slot (powerOnVm places it again): its VLANs leave
        // the edge. A VM in `error` keeps its host until an operator looks.
        let reason = if vm_state == "error" {
            message.as_str()
        } else {
            ""
        };
        conn.execute(
            "UPDATE vms SET state = ?2, current_request_id = NULL, updated_at = ?3, state_reason = ?4,
                hypervisor_id = CASE WHEN ?2 = 'stopped' THEN NULL ELSE hypervisor_id END
             WHERE id = ?1",
            params![vm_id, vm_state, now, reason],
        )?;
        if method == "restoreImage" && status == "succeeded" {
            let image = restored_image(conn, request_id)?;
            conn.execute(
                "UPDATE volumes SET image_id = ?2 WHERE vm_id = ?1 AND device = 'DISK1'",
                params![vm_id, image],
            )?;
            conn.execute(
                "UPDATE vms SET image_id = ?2 WHERE id = ?1",
                params![vm_id, image],
            )?;
        }
        record_event(conn, "vm", &vm)?;
    }
    record_event(conn, "request", request_id)?;
    audit(conn, actor, &format!("{method}.result"), &vm, status)?;
    Ok(Applied::Applied)
}

/// The image a restoreImage request installed (its `imageId` argument).
fn restored_image(conn: &Connection, request_id: &str) -> inventory::Result<Option<i64>> {
    let args: String = conn.query_row(
        "SELECT args FROM requests WHERE id = ?1",
        [request_id],
        |r| r.get(0),
    )?;
    let args = decode(&args);
    let Some(dxr::Value::String(image)) = args.get("imageId") else {
        return Ok(None);
    };
    Ok(conn
        .query_row("SELECT id FROM images WHERE public_id = ?1", [image], |r| {
            r.get(0)
        })
        .optional()?)
}
