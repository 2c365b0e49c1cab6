//! The route of bare-metal machines' requests: an operator's power request (`nhn power on|off|
//! reset|pxe`, queued as a request by [`crate::jobs::machine`]) is carried out here, in the
//! appliance, through the machine's BMC ([`super::power`]). The job engine dispatches it like
//! any request, so it is durable, one command at a time per BMC, and visible in the
//! `requests` table; the result comes back through the channel the engine reads
//! ([`crate::jobs::Engine::apply_results`]) instead of an agent's callback.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use super::command::{Command, MachineOp};
use super::power::{self, PowerAction};
use super::{BoxFuture, Dispatch, Error, Status};
use crate::codec::{Struct, s};
use crate::config::Config;
use crate::inventory::Inventory;

/// A finished request and how it ended.
pub type Finished = (String, Status);

/// Carries out machine commands in this process.
pub struct MachineRoute {
    inventory: Inventory,
    config: Arc<Config>,
    results: UnboundedSender<Finished>,
    /// Requests being carried out (a dispatch again while one runs is a no-op).
    running: Arc<Mutex<HashSet<String>>>,
}

impl MachineRoute {
    pub fn new(
        inventory: Inventory,
        config: Arc<Config>,
        results: UnboundedSender<Finished>,
    ) -> Self {
        MachineRoute {
            inventory,
            config,
            results,
            running: Arc::default(),
        }
    }

    /// Starts `op` on the job's machine; the outcome goes to the results channel.
    pub fn dispatch(
        &self,
        job: Dispatch,
        op: MachineOp,
        timeout_secs: u64,
    ) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let id = job.request_id.clone();
            if !lock(&self.running).insert(id.clone()) {
                return Ok(());
            }
            let inventory = self.inventory.clone();
            let config = self.config.clone();
            let running = self.running.clone();
            let results = self.results.clone();
            let machine = job.resource_id;
            tokio::spawn(async move {
                let status = match carry_out(&inventory, &config, &machine, op, timeout_secs).await
                {
                    Ok(state) => {
                        tracing::info!(request_id = %id, %machine, ?op, %state, "machine power done");
                        let mut r = Struct::new();
                        r.insert("machine".into(), s(&machine));
                        r.insert("power".into(), s(state.to_string()));
                        Status::Succeeded(r)
                    }
                    Err(message) => {
                        tracing::warn!(request_id = %id, %machine, ?op, %message, "machine power failed");
                        Status::Failed {
                            error_type: "BackendError".into(),
                            message,
                        }
                    }
                };
                lock(&running).remove(&id);
                // The engine is gone only when nhn stops; the request is then re-sent at start.
                let _ = results.send((id, status));
            });
            Ok(())
        })
    }

    /// `Running` while this process carries it out; else `Unknown` (dispatch again: every
    /// machine command is safe to repeat).
    pub fn status(&self, job: &Dispatch) -> Status {
        if lock(&self.running).contains(&job.request_id) {
            Status::Running
        } else {
            Status::Unknown
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Drives the BMC; the state it reports at the end, or what went wrong and what to do.
async fn carry_out(
    inventory: &Inventory,
    config: &Config,
    machine: &str,
    op: MachineOp,
    timeout_secs: u64,
) -> Result<power::PowerState, String> {
    let name = machine.to_owned();
    let bmc = inventory
        .read(move |c| power::machine_bmc(c, &name))
        .await
        .map_err(|e| format!("cannot read machine {machine}: {e}"))?
        .ok_or_else(|| format!("no machine named {machine:?} in the inventory"))?;
    let driver = power::for_machine(&bmc, config).map_err(|e| e.to_string())?;
    let timeout = Duration::from_secs(if timeout_secs == 0 {
        config.power.timeout_secs
    } else {
        timeout_secs
    });
    let action = match op {
        MachineOp::PxeOnce => {
            driver
                .set_boot_once_pxe()
                .await
                .map_err(|e| e.to_string())?;
            return driver.get_state().await.map_err(|e| e.to_string());
        }
        MachineOp::On => PowerAction::On,
        MachineOp::Off => PowerAction::Off,
        MachineOp::ForceOff => PowerAction::ForceOff,
        MachineOp::Reset => PowerAction::Reset,
    };
    driver
        .set_state(action, timeout)
        .await
        .map_err(|e| e.to_string())
}

/// The op of a machine command (`None` for VM commands).
pub fn op_of(command: &Command) -> Option<(MachineOp, u64)> {
    match command {
        Command::Machine { op, timeout_secs } => Some((*op, *timeout_secs)),
        _ => None,
    }
}
