//! `nhn volume`: diskless machines' boot volumes in the inventory (`nhn::storage::volumes`);
//! `nhn serve` exports them as iSCSI targets.

use anyhow::Result;
use clap::Subcommand;

use nhn::inventory::Inventory;
use nhn::storage::volumes;

#[derive(Subcommand)]
pub enum VolumeCmd {
    /// Create a machine's boot volume (target <portal iqn_prefix>:vol-<machine>, LUN 1, ACL:
    /// the machine's initiator). `nhn serve` with [storage] driver = "tgt" exports it.
    Create {
        /// The machine (from the site file) that boots from it.
        #[arg(long)]
        machine: String,
        /// Size in GiB (a sparse file: space is used as data is written).
        #[arg(long, value_name = "GB")]
        size_gb: u32,
        /// iSCSI portal name (needed when the site has several).
        #[arg(long)]
        portal: Option<String>,
    },
    /// List volumes: id, size, owner, target IQN, backing file.
    List,
}

pub fn run(cmd: VolumeCmd, inv: &Inventory) -> Result<()> {
    match cmd {
        VolumeCmd::Create {
            machine,
            size_gb,
            portal,
        } => {
            let v = inv.write_blocking(move |c| {
                volumes::create(c, &machine, size_gb, portal.as_deref())
            })?;
            println!(
                "created {} ({} GB) for {}: target {}, backing {}",
                v.id, v.size_gb, v.owner, v.target_iqn, v.backing
            );
        }
        VolumeCmd::List => {
            let list = inv.read_blocking(volumes::list)?;
            if list.is_empty() {
                println!("no volumes");
            }
            for v in list {
                println!(
                    "{:<20} {:>5} GB  {:<16} {:<6} {}  {}",
                    v.id, v.size_gb, v.owner, v.device, v.target_iqn, v.backing
                );
            }
        }
    }
    Ok(())
}
