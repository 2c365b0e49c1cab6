//! `nhn power`: bare-metal machines' power. Changes go as requests to the running appliance's
//! job engine (`nhn::jobs::machine`) and are waited for; `--direct` and `status` talk to the
//! BMC from this process (`nhn::facility::power`).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Subcommand;

use super::Ended;

use nhn::config::Config;
use nhn::facility::command::MachineOp;
use nhn::inventory::Inventory;

#[derive(clap::Args)]
pub struct PowerArgs {
    /// Drive the BMC from this command, not through the running appliance (`nhn serve`).
    #[arg(long, global = true)]
    direct: bool,
    #[command(subcommand)]
    cmd: PowerCmd,
}

#[derive(Subcommand)]
pub enum PowerCmd {
    /// Print what the BMC reports: on or off.
    Status {
        /// The machine's name in the inventory.
        machine: String,
    },
    /// Power on, then wait until the BMC reports on.
    On {
        /// The machine's name in the inventory.
        machine: String,
        /// Seconds to wait for the new state (default: [power] timeout_secs).
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
    },
    /// Shut down (ACPI soft-off, forced after [power] soft_off_secs), then wait until off.
    Off {
        /// The machine's name in the inventory.
        machine: String,
        /// Cut the power at once, without asking the OS to shut down.
        #[arg(long)]
        force: bool,
        /// Seconds to wait for the new state (default: [power] timeout_secs).
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
    },
    /// Hard reset (a machine that is off is powered on), then wait until the BMC reports on.
    Reset {
        /// The machine's name in the inventory.
        machine: String,
        /// Seconds to wait for the new state (default: [power] timeout_secs).
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
    },
    /// Boot from the network (PXE) at the next power on or reset, once.
    Pxe {
        /// The machine's name in the inventory.
        machine: String,
    },
}

pub fn run(args: PowerArgs, inv: &Inventory, config: &Config) -> Result<()> {
    let (machine, op, timeout) = match args.cmd {
        PowerCmd::Status { machine } => return direct(inv, config, &machine, None, None),
        PowerCmd::Pxe { machine } => (machine, MachineOp::PxeOnce, None),
        PowerCmd::On { machine, timeout } => (machine, MachineOp::On, timeout),
        PowerCmd::Off {
            machine,
            force,
            timeout,
        } => {
            let op = if force {
                MachineOp::ForceOff
            } else {
                MachineOp::Off
            };
            (machine, op, timeout)
        }
        PowerCmd::Reset { machine, timeout } => (machine, MachineOp::Reset, timeout),
    };
    if args.direct {
        direct(inv, config, &machine, Some(op), timeout)
    } else {
        request(inv, config, &machine, op, timeout)
    }
}

/// `nhn power` through the running appliance: queue the request, wait for its result.
fn request(
    inv: &Inventory,
    config: &Config,
    machine: &str,
    op: MachineOp,
    timeout: Option<u64>,
) -> Result<()> {
    use nhn::jobs::machine;
    let timeout = timeout.unwrap_or(config.power.timeout_secs);
    let name = machine.to_owned();
    let id = inv
        .write_blocking(move |c| machine::enqueue(c, &name, op, timeout, "operator"))?
        .map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(format!("{machine}: {} (request {id}) queued", op.method()));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let ended = super::wait_request(inv, &id, None, || {
        spinner.set_message(format!("{machine}: {} (request {id}) running", op.method()))
    })?;
    spinner.finish_and_clear();
    match ended {
        Ended::Succeeded(result) => {
            let state = nhn::codec::text(&result, "power");
            let secs = started.elapsed().as_secs_f64();
            if op == MachineOp::PxeOnce {
                println!(
                    "{machine}: next boot from the network (PXE), once; now {state} (request {id})"
                );
            } else {
                println!(
                    "{machine}: {state} ({} observed after {secs:.1} s, request {id})",
                    op.method()
                );
            }
            Ok(())
        }
        Ended::Failed(why) => {
            anyhow::bail!("{machine}: {} failed (request {id}): {why}", op.method())
        }
        Ended::NotPickedUp | Ended::StillRunning => anyhow::bail!(
            "{machine}: request {id} was not picked up within 10 s and is canceled: is `nhn serve` running with this inventory? Start it, or pass --direct to drive the BMC from this command"
        ),
    }
}

/// `nhn power` from this process: status, or a change with `--direct`.
fn direct(
    inv: &Inventory,
    config: &Config,
    machine: &str,
    op: Option<MachineOp>,
    timeout: Option<u64>,
) -> Result<()> {
    use nhn::facility::power::{self, PowerAction};
    let name = machine.to_owned();
    let bmc = inv
        .read_blocking(move |c| power::machine_bmc(c, &name))?
        .with_context(|| {
            format!(
                "no machine named {machine:?} in the inventory; `nhn inventory show` lists them"
            )
        })?;
    let driver = power::for_machine(&bmc, config)?;
    let runtime = super::current_thread()?;
    let started = Instant::now();
    let bmc = driver.bmc();
    runtime.block_on(async {
        let action = match op {
            None => {
                let state = driver.get_state().await?;
                println!("{machine}: {state} (BMC {bmc})");
                return Ok(());
            }
            Some(MachineOp::PxeOnce) => {
                driver.set_boot_once_pxe().await?;
                println!("{machine}: next boot from the network (PXE), once (BMC {bmc})");
                return Ok(());
            }
            Some(MachineOp::On) => PowerAction::On,
            Some(MachineOp::Off) => PowerAction::Off,
            Some(MachineOp::ForceOff) => PowerAction::ForceOff,
            Some(MachineOp::Reset) => PowerAction::Reset,
        };
        let timeout = timeout.unwrap_or(config.power.timeout_secs);
        let state = driver
            .set_state(action, Duration::from_secs(timeout))
            .await?;
        let secs = started.elapsed().as_secs_f64();
        println!("{machine}: {state} (BMC {bmc}, {action} observed after {secs:.1} s)");
        Ok(())
    })
}
