//! `nhn vm`: place, move and remove VMs in the inventory (`nhn::placement::store`); the
//! reconciler of `nhn serve` then moves their VLANs on the switches.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Subcommand;

use nhn::config::Config;
use nhn::inventory::Inventory;
use nhn::placement::store as vms;

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
    /// then migrate the VM), --finish completes a move started that way.
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
            if let Some(host) = host {
                let (n, h, i) = (name.clone(), host.clone(), infra.clone());
                inv.write_blocking(move |c| vms::begin_move(c, &n, &h, &i))
                    .with_context(|| format!("cannot move VM {name} to {host}"))?;
                println!("moving {name} to {host}: waiting for its VLANs on the destination");
                let deadline = Instant::now() + Duration::from_secs(wait_secs);
                loop {
                    let (n, i) = (name.clone(), infra.clone());
                    if inv.read_blocking(move |c| vms::move_ready(c, &n, &i))? {
                        break;
                    }
                    if Instant::now() >= deadline {
                        anyhow::bail!(
                            "the destination's VLANs for {name} were not confirmed within {wait_secs} s \
                             (is `nhn serve` running? see `nhn switch show`); {name} stays on both hosts: \
                             run `nhn vm move {name} --finish` once the switches are ready"
                        );
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                println!("destination ready for {name} on {host}");
                if no_finish {
                    return Ok(());
                }
            }
            let n = name.clone();
            let to = inv
                .write_blocking(move |c| vms::finish_move(c, &n))
                .with_context(|| format!("cannot finish moving VM {name}"))?;
            println!("moved {name} to {to}");
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
