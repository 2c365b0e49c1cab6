//! `nhn vm`: place, move and remove VMs in the inventory (`nhn::placement::store`); the
//! reconciler of `nhn serve` then moves their VLANs on the switches. A move is a request
//! (`nhn::jobs::moves`): run by the appliance's job engine when `nhn serve` runs on this data
//! dir, else claimed and run by this command; either way it is waited for.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;

use nhn::config::Config;
use nhn::inventory::Inventory;
use nhn::model::Work;
use nhn::placement::store as vms;

use super::Ended;

#[derive(Subcommand)]
pub enum VmCmd {
    /// Place a new, running VM on the best hypervisor (or on --host if it fits).
    ///
    /// Capacity first; then a host that already carries the VM's VLANs; then one whose edge
    /// switch carries them; then the one adding the fewest MACs to its edge; ties by name.
    Place {
        name: String,
        /// Network name, net-… id, or VLAN id (repeat for more NICs). A VLAN without a
        /// network gets an L2EX network named vlan-N.
        #[arg(long = "network", required = true, value_name = "NETWORK|VLAN")]
        networks: Vec<String>,
        /// Put it on this hypervisor (refused with the reason if it cannot take it).
        #[arg(long)]
        host: Option<String>,
        /// VM type (V10 … V160).
        #[arg(long = "type", default_value = "V10")]
        vm_type: String,
        /// Print how every hypervisor was ranked.
        #[arg(long)]
        explain: bool,
    },
    /// Move a VM to another hypervisor (live migration or evacuation), make before break.
    ///
    /// The VM first holds a slot on both hosts and its VLANs are added along the destination's
    /// path; once the switches report them (`nhn serve` must be running), the move finishes and
    /// the source's VLANs are removed. --no-finish stops after the first step (the hypervisors
    /// then migrate the VM), --finish completes a move started that way. The move is a request
    /// that the running appliance carries out (this command runs it itself when none runs).
    Move {
        name: String,
        #[arg(long, required_unless_present = "finish")]
        host: Option<String>,
        /// Only prepare the destination; finish later with --finish.
        #[arg(long, conflicts_with = "finish")]
        no_finish: bool,
        /// Finish a move started with --no-finish.
        #[arg(long, conflicts_with = "host")]
        finish: bool,
        /// How long to wait for the destination's VLANs.
        #[arg(long, default_value_t = 60, value_name = "SECONDS")]
        wait_secs: u64,
    },
    /// Delete a VM from the inventory.
    Remove { name: String },
}

pub fn run(cmd: VmCmd, inv: &Inventory, config: &Config) -> Result<()> {
    let infra = super::infra_vlans(config);
    match cmd {
        VmCmd::Place {
            name,
            networks,
            host,
            vm_type,
            explain,
        } => {
            let args = vms::PlaceArgs {
                name: name.clone(),
                networks,
                host,
                vm_type,
            };
            let choice = inv
                .write_blocking(move |c| vms::place(c, &args, &infra))
                .with_context(|| format!("cannot place VM {name}"))?;
            println!("placed {name} on {}", choice.host);
            if explain {
                for line in choice.explain() {
                    println!("  {line}");
                }
            }
        }
        VmCmd::Move {
            name,
            host,
            no_finish,
            // Without --host, --finish is the only thing left to do.
            finish: _,
            wait_secs,
        } => {
            let work = match host {
                Some(to) => Work::Move {
                    to,
                    finish: !no_finish,
                    wait_secs,
                },
                None => Work::FinishMove,
            };
            move_vm(inv, config, &name, work)?;
        }
        VmCmd::Remove { name } => {
            let n = name.clone();
            let host = inv
                .write_blocking(move |c| vms::remove_vm(c, &n))
                .with_context(|| format!("cannot remove VM {name}"))?;
            match host {
                Some(h) => println!("removed {name} (was on {h})"),
                None => println!("removed {name}"),
            }
        }
    }
    Ok(())
}

/// `nhn vm move`: queues the move request; runs it here when no appliance runs on the data
/// dir (or waits for the appliance's engine), then prints how it went.
fn move_vm(inv: &Inventory, config: &Config, name: &str, work: Work) -> Result<()> {
    use nhn::jobs::moves;
    let (to, wait_secs) = match &work {
        Work::Move { to, wait_secs, .. } => (Some(to.clone()), *wait_secs),
        _ => (None, 0),
    };
    let infra = super::infra_vlans(config);
    let (n, i) = (name.to_owned(), infra.clone());
    let id = inv
        .write_blocking(move |c| moves::enqueue(c, &n, &work, &i))
        .with_context(|| match &to {
            Some(to) => format!("cannot move VM {name} to {to}"),
            None => format!("cannot finish moving VM {name}"),
        })?;
    if let Some(to) = &to {
        println!("moving {name} to {to}: waiting for its VLANs on the destination");
    }
    if !nhn::serve::appliance_running(&config.data_dir)? {
        let rid = id.clone();
        // `None`: an appliance started meanwhile and took it; then it is waited for below.
        if let Some(job) = inv.write_blocking(move |c| moves::claim(c, &rid))? {
            super::current_thread()?.block_on(moves::execute(inv, &infra, &job, "cli"))?;
        }
    }
    let patience = Duration::from_secs(10 + wait_secs + 60);
    match super::wait_request(inv, &id, Some(patience), || {})? {
        Ended::Succeeded(result) => {
            let (ready, host) = (
                nhn::codec::text(&result, "destination"),
                nhn::codec::text(&result, "host"),
            );
            if !ready.is_empty() {
                println!("destination ready for {name} on {ready}");
            }
            if !host.is_empty() {
                println!("moved {name} to {host}");
            }
            Ok(())
        }
        Ended::Failed(why) => anyhow::bail!("{why}"),
        Ended::NotPickedUp => anyhow::bail!(
            "{name}: request {id} was not picked up within 10 s and is canceled: is `nhn serve` running with this inventory?"
        ),
        Ended::StillRunning => anyhow::bail!(
            "{name}: request {id} still runs after {} s; `nhn serve` finishes it (see `nhn switch show`)",
            patience.as_secs()
        ),
    }
}
