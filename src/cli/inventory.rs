//! `nhn inventory`: the site file in and out of the inventory (`nhn::inventory::site`), and a
//! summary of what the inventory holds.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;

use nhn::inventory::site::{self, store};
use nhn::inventory::{self, Inventory};

#[derive(Subcommand)]
pub enum InventoryCmd {
    /// Import a site file (TOML). Idempotent: importing the same file twice changes nothing.
    ///
    /// The file is checked as a whole first (duplicate MACs, dangling links, overlapping pools,
    /// unknown switches, ...); any problem aborts the import with nothing changed. Objects in the
    /// inventory that the file does not mention are kept and listed.
    Import {
        /// Site file, e.g. examples/seed-site.toml.
        file: PathBuf,
    },
    /// Write the site (everything `import` reads) as TOML, to stdout or --out.
    Export {
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Summarize the inventory: counts, switches, links, machines, networks.
    Show,
}

pub fn run(cmd: InventoryCmd, inv: &Inventory) -> Result<()> {
    match cmd {
        InventoryCmd::Import { file } => import(inv, &file),
        InventoryCmd::Export { out } => export(inv, out.as_deref()),
        InventoryCmd::Show => show(inv),
    }
}

fn import(inv: &Inventory, file: &Path) -> Result<()> {
    let name = file.display().to_string();
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read site file {name}"))?;
    let parsed = site::parse(&name, &text)?;
    let problems = site::validate(&text, &parsed);
    if !problems.is_empty() {
        return Err(site::SiteErrors {
            file: name,
            errors: problems,
        }
        .into());
    }
    let object = name.clone();
    let report = inv
        .write_blocking(move |c| {
            let report = store::import(c, &parsed)?;
            if !report.is_noop() {
                let result = format!(
                    "ok: {} created, {} updated",
                    report.created.len(),
                    report.updated.len()
                );
                inventory::audit(c, "cli", "inventory.import", &object, &result)?;
            }
            Ok(report)
        })
        .with_context(|| format!("{name}: import failed; nothing was changed"))?;
    if report.is_noop() {
        println!(
            "no change: the inventory already matches {name} ({} objects)",
            report.unchanged
        );
    } else {
        println!(
            "imported {name}: {} created, {} updated, {} unchanged",
            report.created.len(),
            report.updated.len(),
            report.unchanged
        );
        for (kind, obj) in &report.created {
            println!("  + {kind} {obj}");
        }
        for (kind, obj) in &report.updated {
            println!("  ~ {kind} {obj}");
        }
    }
    if !report.only_in_inventory.is_empty() {
        println!("kept (in the inventory, not in {name}):");
        for (kind, obj) in &report.only_in_inventory {
            println!("  = {kind} {obj}");
        }
    }
    Ok(())
}

fn export(inv: &Inventory, out: Option<&Path>) -> Result<()> {
    let site = inv.read_blocking(store::export)?;
    let text = format!(
        "# nhn site export (nhn {}); import with `nhn inventory import FILE`\n{}",
        env!("CARGO_PKG_VERSION"),
        site::to_toml(&site).context("cannot render the site as TOML")?
    );
    match out {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    Ok(())
}

fn show(inv: &Inventory) -> Result<()> {
    let (counts, site) =
        inv.read_blocking(|c| Ok((inventory::queries::counts(c)?, store::export(c)?)))?;
    if site.site.name.is_empty() {
        println!("site: (none imported yet; run `nhn inventory import examples/seed-site.toml`)");
    } else {
        println!("site: {}  {}", site.site.name, site.site.description);
    }
    println!(
        "{} switches ({} core, {} edge), {} links, {} machines ({} hypervisors, {} discovered), {} VMs, {} networks, {} volumes, {} images, {} customers",
        counts.switches,
        counts.core_switches,
        counts.edge_switches,
        counts.links,
        counts.machines,
        counts.hypervisors,
        counts.discovered,
        counts.vms,
        counts.networks,
        counts.volumes,
        counts.images,
        counts.customers
    );
    if !site.switches.is_empty() {
        println!("\nswitches:");
        for s in &site.switches {
            println!(
                "  {:<16} {:<4} {:<4} {:<12} {:<16} {} ports{}",
                s.name,
                store::enum_str(&s.role),
                store::enum_str(&s.driver),
                s.os,
                s.address,
                s.ports.len(),
                s.max_macs.map_or(String::new(), |m| format!(", {m} MACs"))
            );
        }
    }
    if !site.links.is_empty() {
        println!("\nlinks:");
        for l in &site.links {
            println!("  {} <-> {}", l.a, l.b);
        }
    }
    if !site.machines.is_empty() {
        println!("\nmachines:");
        for m in &site.machines {
            println!(
                "  {:<16} {:<10} {} vCPU, {} MB",
                m.name,
                store::enum_str(&m.kind),
                m.vcpus,
                m.memory_mb
            );
            for n in &m.nics {
                let port = n
                    .port
                    .as_ref()
                    .map_or(String::new(), |p| format!(" -> {p}"));
                let ip = n.ip.map_or(String::new(), |ip| format!(" {ip}"));
                println!("    {} {}{ip}{port}", n.device, n.mac);
            }
        }
    }
    if !site.networks.is_empty() {
        println!("\nnetworks:");
        for n in &site.networks {
            println!(
                "  {:<12} {:<12} VLAN {:<5} {}",
                n.name,
                store::enum_str(&n.role),
                n.vlan,
                n.subnet
            );
        }
    }
    Ok(())
}
