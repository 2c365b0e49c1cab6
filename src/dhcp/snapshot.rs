//! Builds the DHCP [`Snapshot`] from the inventory and the configuration: every NIC with a
//! reserved address (machines and VMs), with its network's mask, router and resolvers, its
//! owner's name, and, when its machine or VM has a boot volume, the RFC 4173 root-path and
//! initiator name. Rebuilt off the packet path whenever the inventory changes.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use crate::inventory::boot::{Boot, OwnedVolume};
use crate::storage::root_path;

use super::decide::{BootFiles, IscsiBoot, Snapshot, Static, Subnet};
use crate::config::Config;
use crate::inventory::{Error, Result, Tx};
use crate::net::{Ipv4Net, Mac};

/// The configured subnets, checked (pools inside their subnet, in order).
pub fn subnets(config: &Config) -> Result<Vec<Subnet>> {
    config
        .dhcp
        .subnets
        .iter()
        .map(|s| {
            let pool = match (s.pool_first, s.pool_last) {
                (Some(a), Some(b)) if s.subnet.contains(a) && s.subnet.contains(b) && a <= b => Some((a, b)),
                (None, None) => None,
                _ => {
                    return Err(Error::Invalid(format!(
                        "[[dhcp.subnets]] {}: pool_first and pool_last must both lie in the subnet, first <= last",
                        s.subnet
                    )));
                }
            };
            Ok(Subnet {
                net: s.subnet,
                pool,
                router: s.router,
                dns: s.dns.clone(),
                domain: s.domain.clone(),
                lease_secs: s.lease_time_secs.unwrap_or(config.dhcp.lease_time_secs),
            })
        })
        .collect()
}

/// Reads the snapshot: static answers for every NIC with an address, and all known MACs.
pub fn build(tx: &Tx<'_>, config: &Config, subnets: Vec<Subnet>) -> Result<Snapshot> {
    let mut statics = HashMap::new();
    let boot = boot_volumes(tx)?;
    for r in tx.reservations()? {
        // A row that does not parse is skipped with a warning; one bad record must not stop DHCP.
        let parsed = (|| -> Option<(Mac, Ipv4Addr, Ipv4Net)> {
            Some((
                r.mac.parse().ok()?,
                r.address.parse().ok()?,
                r.subnet.as_deref()?.parse().ok()?,
            ))
        })();
        let Some((mac, ip, net)) = parsed else {
            tracing::warn!(mac = %r.mac, ip = %r.address, "NIC address without a usable network; no static DHCP answer for it");
            continue;
        };
        let key = r
            .machine
            .map(|id| (true, id))
            .or(r.vm.map(|id| (false, id)));
        let boot = key
            .and_then(|k| boot.get(&k))
            .map(|(root_path, default_initiator)| IscsiBoot {
                root_path: root_path.clone(),
                initiator: if r.initiator.is_empty() {
                    default_initiator.clone()
                } else {
                    r.initiator.clone()
                },
            });
        statics.insert(
            mac,
            Static {
                ip,
                net,
                router: r.gateway.and_then(|g| g.parse().ok()),
                dns: r
                    .dns
                    .unwrap_or_default()
                    .split(',')
                    .filter_map(|d| d.trim().parse().ok())
                    .collect(),
                hostname: r.owner.unwrap_or_default(),
                boot,
            },
        );
    }
    let known: HashSet<Mac> = tx
        .known_macs()?
        .iter()
        .filter_map(|m| m.parse().ok())
        .collect();
    Ok(Snapshot {
        statics,
        known,
        subnets,
        boot: BootFiles {
            bios: config.boot.bios_file.clone(),
            efi: config.boot.efi_file.clone(),
            http_base: config.boot.http_base.clone(),
            http_port: config.http.listen.port(),
        },
        static_lease_secs: config.dhcp.lease_time_secs,
    })
}

/// Boot volumes: a machine's volume (volumes.machine_id) or a VM's DISK1, keyed by
/// (is_machine, id), with the root-path and a default initiator name.
fn boot_volumes(tx: &Tx<'_>) -> Result<HashMap<(bool, i64), (String, String)>> {
    let mut out = HashMap::new();
    for OwnedVolume {
        machine,
        vm,
        owner,
        volume: v,
    } in tx.boot_volumes()?
    {
        let Ok(portal) = v.address.parse::<Ipv4Addr>() else {
            continue;
        };
        let key = match (machine, vm) {
            (Some(id), _) => (true, id),
            (None, Some(id)) => (false, id),
            (None, None) => continue,
        };
        let initiator =
            crate::storage::default_initiator(&v.iqn_prefix, &owner.unwrap_or_default());
        out.insert(
            key,
            (root_path(portal, v.port, v.lun, &v.target), initiator),
        );
    }
    Ok(out)
}
