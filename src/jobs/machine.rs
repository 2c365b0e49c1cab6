//! Operators' power requests on bare-metal machines (`nhn power on|off|reset|pxe`). They are
//! requests like the API's async calls, owned by no customer: queued here, dispatched by the
//! job engine to the machine's BMC ([`crate::facility::machine`]), finished by its result. So
//! the appliance is the one place that drives a BMC: the same machine's commands never
//! overlap, and each leaves a row and an audit entry.

use crate::codec::{Struct, decode};
use crate::inventory::machines::Machines;
use crate::inventory::requests::{OperatorRequest, Requests};
use crate::inventory::{self, Tx, audit, record_event};
use crate::model::{EventKind, MachineOp, Work};
use crate::util::unix_now;

/// Queues `op` on `machine`; its request id, or why not (no such machine, no BMC).
pub fn enqueue(
    tx: &Tx<'_>,
    machine: &str,
    op: MachineOp,
    timeout_secs: u64,
    actor: &str,
) -> inventory::Result<Result<String, String>> {
    match tx.power_driver(machine)?.as_deref() {
        None => {
            return Ok(Err(format!(
                "no machine named {machine:?} in the inventory; `nhn inventory show` lists them"
            )));
        }
        Some("ipmi" | "redfish") => {}
        Some(other) => {
            return Ok(Err(format!(
                "machine {machine} has power_driver {other:?}, not a BMC; set power_driver = \"ipmi\" or \"redfish\" and bmc_address in the site file"
            )));
        }
    }
    let id = super::new_request_id();
    tx.queue_operator(&OperatorRequest {
        id: &id,
        actor,
        method: op.method(),
        resource_type: "machine",
        resource_id: machine,
        work: &Work::Machine { op, timeout_secs },
        at: unix_now(),
    })?;
    record_event(tx, EventKind::Request, &id)?;
    audit(tx, actor, op.method(), machine, "queued")?;
    Ok(Ok(id))
}

/// Where a request stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    Queued,
    Running,
    Succeeded(Struct),
    Failed(String),
}

/// The state of request `id` (`None`: no such request).
pub fn progress(tx: &Tx<'_>, id: &str) -> inventory::Result<Option<Progress>> {
    Ok(tx.stored(id)?.map(|s| match s.status.as_str() {
        "queued" => Progress::Queued,
        "running" => Progress::Running,
        "succeeded" => Progress::Succeeded(decode(&s.result)),
        "canceled" => Progress::Failed("canceled".into()),
        _ => Progress::Failed(s.error_message),
    }))
}

/// Cancels request `id` if nothing has picked it up yet; whether it did.
pub fn cancel_if_queued(tx: &Tx<'_>, id: &str, why: &str) -> inventory::Result<bool> {
    let canceled = tx.cancel_queued(id, why, unix_now())?;
    if canceled {
        record_event(tx, EventKind::Request, id)?;
    }
    Ok(canceled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Inventory;

    #[test]
    fn only_machines_with_a_bmc_take_power_requests() {
        let dir = tempfile::tempdir().unwrap();
        let inv = Inventory::open(&dir.path().join("nhn.db")).unwrap();
        let out = inv
            .write_blocking(|c| {
                c.raw().execute_batch(
                    "INSERT INTO machines (name, kind, power_driver, bmc_address, created_at) VALUES
                        ('bm1', 'bare-metal', 'ipmi', '127.0.0.1:623', ''),
                        ('hv1', 'hypervisor', 'agent', NULL, '')",
                )?;
                let ok = enqueue(c, "bm1", MachineOp::Reset, 30, "operator")?;
                let agent = enqueue(c, "hv1", MachineOp::On, 30, "operator")?;
                let none = enqueue(c, "nope", MachineOp::On, 30, "operator")?;
                let id = ok.clone().unwrap();
                let queued = progress(c, &id)?;
                let canceled = cancel_if_queued(c, &id, "test")?;
                let again = cancel_if_queued(c, &id, "test")?;
                Ok((ok, agent, none, queued, canceled, again, progress(c, &id)?))
            })
            .unwrap();
        assert!(out.0.is_ok());
        assert!(out.1.unwrap_err().contains("not a BMC"));
        assert!(out.2.unwrap_err().contains("no machine named"));
        assert_eq!(out.3, Some(Progress::Queued));
        assert!(out.4 && !out.5);
        assert_eq!(out.6, Some(Progress::Failed("canceled".into())));
    }
}
