//! `nhn switch`: the switch plane seen from the command line: the plan against what the
//! switches last reported, and the reconciler's per-switch state (`nhn::switch`).

use anyhow::{Context, Result};
use clap::Subcommand;

use nhn::config::Config;
use nhn::inventory::Inventory;
use nhn::switch;
use nhn::switch::driver::DriverKind;

#[derive(Subcommand)]
pub enum SwitchCmd {
    /// Print what would change on the switches and why (which VM on which host needs which
    /// VLAN on which port), against what each switch last reported.
    Plan,
    /// Per switch: health, queued intents with reasons, last success / read-back / error, and
    /// every managed port's planned VLANs next to what the switch last reported.
    Show,
}

pub fn run(cmd: SwitchCmd, inv: &Inventory, config: &Config) -> Result<()> {
    match cmd {
        SwitchCmd::Plan => plan(inv, config),
        SwitchCmd::Show => show(inv, config),
    }
}

fn plan(inv: &Inventory, config: &Config) -> Result<()> {
    let infra = super::infra_vlans(config);
    let planned = inv
        .read_blocking(move |c| Ok(switch::plan_inventory(c, &infra)))?
        .context("cannot plan the switches")?;
    let ports: usize = planned.desired.ports.values().map(|p| p.len()).sum();
    println!(
        "plan: {} switches, {ports} managed ports",
        planned.desired.ports.len()
    );
    for (edge, (macs, budget)) in &planned.desired.edge_macs {
        let budget = budget.map_or("unlimited".to_owned(), |b| b.to_string());
        println!("  {edge}: {macs} MACs (budget {budget})");
    }
    println!("ports (access N; native N + tagged VLANs; or the tagged VLANs of a trunk):");
    for (switch, ports) in &planned.desired.ports {
        for (port, want) in ports {
            println!("  {switch}:{port}  {want}");
        }
    }
    if !planned.never_read.is_empty() {
        println!(
            "never read back (their ports count as empty): {}",
            planned.never_read.join(", ")
        );
    }
    if planned.changes.is_empty() {
        println!("no change: every managed port matches the plan");
    } else {
        println!("{} changes:", planned.changes.len());
        for c in &planned.changes {
            println!("  {c}");
        }
    }
    Ok(())
}

fn show(inv: &Inventory, config: &Config) -> Result<()> {
    let infra = super::infra_vlans(config);
    let (statuses, pending, planned, applied) = inv.read_blocking(move |c| {
        let statuses = switch::status::all(c)?;
        let pending = statuses
            .iter()
            .map(|s| switch::status::pending(c, &s.name))
            .collect::<nhn::inventory::Result<Vec<_>>>()?;
        let planned = switch::plan_inventory(c, &infra).map_err(|e| e.to_string());
        Ok((statuses, pending, planned, switch::snapshot::applied(c)?))
    })?;
    if statuses.is_empty() {
        println!("no switches; import a site first (`nhn inventory import FILE`)");
    }
    if let Err(e) = &planned {
        println!("plan: {e}\n");
    }
    for (s, pending) in statuses.iter().zip(pending) {
        println!(
            "{}  {} {} {}  {}  {} queued intents",
            s.name,
            s.role,
            s.os,
            s.address,
            s.health(),
            s.pending
        );
        println!(
            "  last success: {}   last read-back: {}",
            s.last_success_at.as_deref().unwrap_or("never"),
            s.last_readback_at.as_deref().unwrap_or("never")
        );
        let kind = s.driver;
        let driver = switch::reconciler::describe_driver(config, kind, &s.credentials);
        match kind {
            DriverKind::Snmp => println!("  driver: {driver}, credentials {:?}", s.credentials),
            DriverKind::Ssh => println!(
                "  driver: {driver}, credentials {:?}, host key: {}",
                s.credentials,
                s.host_key.as_deref().unwrap_or("not pinned")
            ),
        }
        if let Some(refusal) = &s.plan_refusal {
            println!("  {refusal}");
        }
        if let (Some(err), Some(at)) = (&s.last_error, &s.last_error_at) {
            println!("  last error ({at}): {err}");
        }
        for line in pending {
            println!("  {line}");
        }
        if let Ok(p) = &planned
            && let Some(ports) = p.desired.ports.get(&s.name)
        {
            for (port, want) in ports {
                let have = applied.get(&s.name).and_then(|a| a.get(port));
                let have_text = have.map_or("never read".to_owned(), ToString::to_string);
                let mark = if have.is_some_and(|h| want.satisfied_by(h)) {
                    ""
                } else {
                    "  (differs)"
                };
                println!("  {port:<10} plan {want:<20} switch {have_text}{mark}");
            }
        }
    }
    Ok(())
}
