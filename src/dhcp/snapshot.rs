//! Builds the DHCP [`Snapshot`] from the inventory and the configuration: every NIC with a
//! reserved address (machines and VMs), with its network's mask, router and resolvers, its
//! owner's name, and, when its machine or VM has a boot volume, the RFC 4173 root-path and
//! initiator name. Rebuilt off the packet path whenever the inventory changes.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use crate::storage::root_path;
use rusqlite::Connection;

use super::decide::{BootFiles, IscsiBoot, Snapshot, Static, Subnet};
use crate::config::Config;
use crate::inventory::{Error, Result};
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
pub fn build(conn: &Connection, config: &Config, subnets: Vec<Subnet>) -> Result<Snapshot> {
    let mut statics = HashMap::new();
    let mut st = conn.prepare_cached(
        "SELECT n.mac, ip.address, COALESCE(net.subnet, p.prefix), COALESCE(net.gateway, p.gateway), net.dns,
                COALESCE(m.name, v.name), m.id, v.id, COALESCE(m.initiator_iqn, '')
         FROM nics n
         JOIN ip_addresses ip ON ip.nic_id = n.id
         LEFT JOIN networks net ON net.id = ip.network_id
         LEFT JOIN ip_pools p ON p.id = COALESCE(ip.ip_pool_id, net.ip_pool_id)
         LEFT JOIN machines m ON m.id = n.machine_id
         LEFT JOIN vms v ON v.id = n.vm_id
         -- A NIC's storage_ip is on its tagged storage VLAN, not what DHCP hands out.
         WHERE net.role IS NOT 'storage' OR ip.network_id IS n.network_id",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, Option<String>>(4)?,
            r.get::<_, Option<String>>(5)?,
            r.get::<_, Option<i64>>(6)?,
            r.get::<_, Option<i64>>(7)?,
            r.get::<_, String>(8)?,
        ))
    })?;
    let boot = boot_volumes(conn)?;
    for row in rows {
        let (mac, ip, subnet, gateway, dns, owner, machine, vm, initiator) = row?;
        // A row that does not parse is skipped with a warning; one bad record must not stop DHCP.
        let parsed = (|| -> Option<(Mac, Ipv4Addr, Ipv4Net)> {
            Some((mac.parse().ok()?, ip.parse().ok()?, subnet?.parse().ok()?))
        })();
        let Some((mac, ip, net)) = parsed else {
            tracing::warn!(%mac, %ip, "NIC address without a usable network; no static DHCP answer for it");
            continue;
        };
        let key = machine.map(|id| (true, id)).or(vm.map(|id| (false, id)));
        let boot = key
            .and_then(|k| boot.get(&k))
            .map(|(root_path, default_initiator)| IscsiBoot {
                root_path: root_path.clone(),
                initiator: if initiator.is_empty() {
                    default_initiator.clone()
                } else {
                    initiator.clone()
                },
            });
        statics.insert(
            mac,
            Static {
                ip,
                net,
                router: gateway.and_then(|g| g.parse().ok()),
                dns: dns
                    .unwrap_or_default()
                    .split(',')
                    .filter_map(|d| d.trim().parse().ok())
                    .collect(),
                hostname: owner.unwrap_or_default(),
                boot,
            },
        );
    }
    let mut known = HashSet::new();
    let mut st = conn.prepare_cached("SELECT mac FROM nics")?;
    for mac in st.query_map([], |r| r.get::<_, String>(0))? {
        if let Ok(mac) = mac?.parse() {
            known.insert(mac);
        }
    }
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
fn boot_volumes(conn: &Connection) -> Result<HashMap<(bool, i64), (String, String)>> {
    let mut out = HashMap::new();
    let mut st = conn.prepare_cached(
        "SELECT vol.machine_id, vol.vm_id, vol.device, vol.lun, vol.target_iqn, p.address, p.port, p.iqn_prefix,
                COALESCE(m.name, v.public_id)
         FROM volumes vol JOIN iscsi_portals p ON p.id = vol.portal_id
         LEFT JOIN machines m ON m.id = vol.machine_id LEFT JOIN vms v ON v.id = vol.vm_id
         WHERE vol.machine_id IS NOT NULL OR vol.device = 'DISK1'",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, Option<i64>>(0)?,
            r.get::<_, Option<i64>>(1)?,
            r.get::<_, u32>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, u16>(6)?,
            r.get::<_, String>(7)?,
            r.get::<_, Option<String>>(8)?,
        ))
    })?;
    for row in rows {
        let (machine, vm, lun, target, portal, port, prefix, owner) = row?;
        let Ok(portal) = portal.parse::<Ipv4Addr>() else {
            continue;
        };
        let key = match (machine, vm) {
            (Some(id), _) => (true, id),
            (None, Some(id)) => (false, id),
            (None, None) => continue,
        };
        let initiator = crate::storage::default_initiator(&prefix, &owner.unwrap_or_default());
        out.insert(key, (root_path(portal, port, lun, &target), initiator));
    }
    Ok(out)
}
