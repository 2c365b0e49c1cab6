//! Finishing an async request: one transaction sets its terminal status, result and error,
//! moves the VM to its final state (§2.1 transitions; failure goes back to the previous state,
//! a timeout to `error`) and clears the VM's `currentRequestId`; a restoreImage records the
//! image on DISK1, or none when it failed; work that sets no VM state
//! (a bare-metal machine's power, a VM move: [`Work::sets_vm_state`]) ends only the request.
//! Idempotent: a request that is already terminal is left alone, so repeated or late
//! callbacks change nothing.

use crate::codec::{Struct, encode, s};
use crate::facility::Status;
use crate::inventory::requests::{Ending, Pending, Requests};
use crate::inventory::vms::Vms;
use crate::inventory::{self, Tx, audit, record_event};
use crate::model::{EventKind, VmState, Work};
use crate::util::unix_now;

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

/// What happened: `Applied`, or `Ignored` for an unknown or already terminal request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    Ignored,
}

pub fn apply(
    tx: &Tx<'_>,
    request_id: &str,
    outcome: &Outcome,
    actor: &str,
) -> inventory::Result<Applied> {
    let Some(Pending {
        method,
        resource_id: vm,
        status,
        previous_state,
        work,
    }) = tx.pending(request_id)?
    else {
        return Ok(Applied::Ignored);
    };
    if !status.is_open() {
        return Ok(Applied::Ignored);
    }
    let previous = previous_state.unwrap_or(VmState::Stopped);
    let (status, result, error_type, message, vm_state) = match outcome {
        Outcome::Succeeded(r) => {
            let mut r = r.clone();
            let state = work.as_ref().map_or(VmState::Stopped, Work::success_state);
            if work.as_ref().is_none_or(Work::sets_vm_state) {
                r.insert("state".into(), s(state.as_str()));
            }
            ("succeeded", r, String::new(), String::new(), state)
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
            VmState::Error,
        ),
    };
    let now = unix_now();
    tx.end(
        request_id,
        &Ending {
            status,
            result: &encode(&result),
            error_type: &error_type,
            error_message: &message,
            at: now,
        },
    )?;
    let sets_state = work.as_ref().is_none_or(Work::sets_vm_state);
    if sets_state && tx.end_request(&vm, request_id, vm_state, &message, now)? {
        if let Some(Work::Restore { image }) = &work {
            // A failed install may have left DISK1 half written: the VM has no image then.
            let installed = if status == "succeeded" {
                image.as_str()
            } else {
                ""
            };
            tx.set_installed_image(&vm, installed)?;
        }
        record_event(tx, EventKind::Vm, &vm)?;
    }
    record_event(tx, EventKind::Request, request_id)?;
    audit(tx, actor, &format!("{method}.result"), &vm, status)?;
    Ok(Applied::Applied)
}
