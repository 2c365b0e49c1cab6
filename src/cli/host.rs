//! `nhn host`: the hypervisors as the job engine sees them (`nhn::jobs::hosts`): agent state,
//! last report, VMs and free capacity.

use anyhow::Result;
use clap::Subcommand;

use nhn::inventory::Inventory;

#[derive(Subcommand)]
pub enum HostCmd {
    /// One line per hypervisor: state, agent, last report, VMs, free capacity.
    List,
    /// One hypervisor in detail: its VMs with their states and reasons, and its last report.
    Show { host: String },
}

pub fn run(cmd: HostCmd, inv: &Inventory) -> Result<()> {
    let hosts = inv.read_blocking(nhn::jobs::hosts::list)?;
    match cmd {
        HostCmd::List => {
            println!(
                "{:<16} {:<12} {:<13} {:<21} {:>4} {:>10} {:>11}",
                "HOST", "STATE", "AGENT", "LAST REPORT", "VMS", "FREE VCPU", "FREE MEM MB"
            );
            for h in &hosts {
                println!(
                    "{:<16} {:<12} {:<13} {:<21} {:>4} {:>10} {:>11}",
                    h.name,
                    h.state,
                    h.agent,
                    if h.last_report_at.is_empty() {
                        "-"
                    } else {
                        &h.last_report_at
                    },
                    h.vms.len(),
                    h.report.vcpus_free,
                    h.report.memory_free_mb
                );
            }
            Ok(())
        }
        HostCmd::Show { host } => {
            let Some(h) = hosts.iter().find(|h| h.name == host) else {
                anyhow::bail!("no hypervisor {host} (see `nhn host list`)");
            };
            println!("host:         {}", h.name);
            println!("state:        {}", h.state);
            println!("capacity:     {} vCPU, {} MB", h.vcpus, h.memory_mb);
            println!("agent:        {} {}", h.agent, h.agent_url);
            println!(
                "last report:  {}",
                if h.last_report_at.is_empty() {
                    "never"
                } else {
                    &h.last_report_at
                }
            );
            println!(
                "accelerator:  {}",
                if h.report.accel.is_empty() {
                    "-"
                } else {
                    &h.report.accel
                }
            );
            println!(
                "free:         {} vCPU, {} MB (as the agent sees the host)",
                h.report.vcpus_free, h.report.memory_free_mb
            );
            println!("VMs placed here:");
            for (vm, state, reason) in &h.vms {
                let seen = h
                    .report
                    .vms
                    .iter()
                    .find(|v| &v.vm_id == vm)
                    .map_or("not reported", |v| v.state.as_str());
                println!("  {vm:<14} {state:<10} agent: {seen:<12} {reason}");
            }
            for p in &h.report.unknown_processes {
                println!("  unknown QEMU process (left alone): {p}");
            }
            Ok(())
        }
    }
}
