//! `nhn lease`: the DHCP server's dynamic leases, as stored in the inventory.

use anyhow::Result;
use clap::Subcommand;

use nhn::inventory::Inventory;

#[derive(Subcommand)]
pub enum LeaseCmd {
    /// List leases: address, MAC, state, expiry, relay (giaddr), client hostname.
    List,
}

pub fn run(cmd: LeaseCmd, inv: &Inventory) -> Result<()> {
    let LeaseCmd::List = cmd;
    let leases = inv.read_blocking(nhn::dhcp::service::list)?;
    if leases.is_empty() {
        println!("no leases");
    }
    for l in leases {
        println!(
            "{:<15} {}  {:<8} until {}  {}{}",
            l.address,
            l.mac,
            l.state,
            nhn::util::rfc3339(l.expires_at),
            l.giaddr.map(|g| format!("via {g}  ")).unwrap_or_default(),
            l.hostname
        );
    }
    Ok(())
}
