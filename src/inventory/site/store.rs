//! Site file ↔ inventory: [`export`] reads the physical world out of the database as a
//! [`SiteFile`]; [`import`] compares a validated file with that export object by object and
//! writes only what differs, inside the caller's transaction (so a failure changes nothing).

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{Connection, OptionalExtension, params};

use super::*;
use crate::inventory::{Error, Result, record_event};
use crate::util::now_rfc3339;

fn spanned<T>(v: T) -> At<T> {
    At::new(v)
}

fn parse_col<T: std::str::FromStr>(table: &str, value: &str) -> Result<T> {
    value
        .parse()
        .map_err(|_| Error::Invalid(format!("corrupt value {value:?} in table {table}")))
}

fn enum_from_str<T: serde::de::DeserializeOwned>(table: &str, value: &str) -> Result<T> {
    use serde::de::IntoDeserializer;
    let de: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
        value.into_deserializer();
    T::deserialize(de)
        .map_err(|_| Error::Invalid(format!("corrupt value {value:?} in table {table}")))
}

/// The string form of a unit enum, as it appears in site files and in the database.
pub fn enum_str<T: serde::Serialize>(v: &T) -> String {
    match toml::Value::try_from(v) {
        Ok(toml::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// Reads the physical world out of the inventory, canonically ordered.
pub fn export(conn: &Connection) -> Result<SiteFile> {
    let site = conn
        .query_row(
            "SELECT name, description FROM sites ORDER BY id LIMIT 1",
            [],
            |r| {
                Ok(SiteInfo {
                    name: r.get(0)?,
                    description: r.get(1)?,
                })
            },
        )
        .optional()?
        .unwrap_or_default();
    let mut out = SiteFile {
        site,
        ..SiteFile::default()
    };

    let mut st =
        conn.prepare("SELECT name, address, port, iqn_prefix FROM iscsi_portals ORDER BY name")?;
    for row in st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get(2)?,
            r.get(3)?,
        ))
    })? {
        let (name, address, port, iqn_prefix) = row?;
        let address = parse_col("iscsi_portals", &address)?;
        out.iscsi_portals.push(spanned(Portal {
            name,
            address,
            port,
            iqn_prefix,
        }));
    }

    let mut st =
        conn.prepare("SELECT name, first_vlan, last_vlan FROM vlan_pools ORDER BY name")?;
    for row in st.query_map([], |r| {
        Ok(VlanPool {
            name: r.get(0)?,
            first: r.get(1)?,
            last: r.get(2)?,
        })
    })? {
        out.vlan_pools.push(spanned(row?));
    }

    let mut st = conn.prepare(
        "SELECT name, role, vlan, subnet, gateway, dns FROM networks WHERE kind = 'infra' ORDER BY name",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, u16>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, Option<String>>(4)?,
            r.get::<_, String>(5)?,
        ))
    })?;
    for row in rows {
        let (name, role, vlan, subnet, gateway, dns) = row?;
        out.networks.push(spanned(Network {
            name,
            role: enum_from_str("networks", &role)?,
            vlan,
            subnet: parse_col("networks", &subnet)?,
            gateway: gateway.map(|g| parse_col("networks", &g)).transpose()?,
            dns: dns
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| parse_col("networks", s))
                .collect::<Result<_>>()?,
        }));
    }

    let mut st = conn.prepare(
        "SELECT name, kind, prefix, gateway, vlan, range_first, range_last, default_prefix_length
         FROM ip_pools ORDER BY name",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, Option<u16>>(4)?,
            r.get::<_, Option<String>>(5)?,
            r.get::<_, Option<String>>(6)?,
            r.get::<_, Option<u8>>(7)?,
        ))
    })?;
    for row in rows {
        let (name, kind, prefix, gateway, vlan, first, last, default_prefix_length) = row?;
        let ip = |v: Option<String>| v.map(|s| parse_col("ip_pools", &s)).transpose();
        out.ip_pools.push(spanned(IpPool {
            name,
            kind: enum_from_str("ip_pools", &kind)?,
            prefix: parse_col("ip_pools", &prefix)?,
            gateway: ip(gateway)?,
            vlan,
            first: ip(first)?,
            last: ip(last)?,
            default_prefix_length,
        }));
    }

    let mut st = conn.prepare(
        "SELECT id, name, role, driver, os, address, credentials, host_key, max_macs FROM switches ORDER BY name",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, String>(6)?,
            r.get::<_, Option<String>>(7)?,
            r.get::<_, Option<u32>>(8)?,
        ))
    })?;
    let mut ports_st =
        conn.prepare("SELECT name FROM switch_ports WHERE switch_id = ?1 ORDER BY position, name")?;
    for row in rows {
        let (id, name, role, driver, os, address, credentials, host_key, max_macs) = row?;
        let ports = ports_st
            .query_map([id], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        out.switches.push(spanned(Switch {
            name,
            role: enum_from_str("switches", &role)?,
            driver: enum_from_str("switches", &driver)?,
            os,
            address,
            credentials,
            host_key,
            max_macs,
            ports,
        }));
    }

    let mut st = conn.prepare(
        "SELECT sa.name, pa.name, sb.name, pb.name FROM links l
         JOIN switch_ports pa ON pa.id = l.a_port_id JOIN switches sa ON sa.id = pa.switch_id
         JOIN switch_ports pb ON pb.id = l.b_port_id JOIN switches sb ON sb.id = pb.switch_id
         ORDER BY sa.name, pa.position, sb.name, pb.position",
    )?;
    for row in st.query_map([], |r| {
        Ok(Link {
            a: PortRef {
                switch: r.get(0)?,
                port: r.get(1)?,
            },
            b: PortRef {
                switch: r.get(2)?,
                port: r.get(3)?,
            },
        })
    })? {
        out.links.push(spanned(row?));
    }

    let mut st = conn.prepare(
        "SELECT id, name, kind, vcpus, memory_mb, power_driver, bmc_address, bmc_credentials, initiator_iqn
         FROM machines WHERE kind != 'discovered' ORDER BY name",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, u32>(3)?,
            r.get::<_, u32>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, Option<String>>(6)?,
            r.get::<_, Option<String>>(7)?,
            r.get::<_, Option<String>>(8)?,
        ))
    })?;
    let mut nics_st = conn.prepare(
        "SELECT n.device, n.mac, s.name, p.name, net.name, ip.address, n.boot,
            (SELECT sip.address FROM ip_addresses sip JOIN networks sn ON sn.id = sip.network_id
             WHERE sip.nic_id = n.id AND sn.role = 'storage' AND sip.network_id IS NOT n.network_id)
         FROM nics n
         LEFT JOIN switch_ports p ON p.id = n.switch_port_id LEFT JOIN switches s ON s.id = p.switch_id
         LEFT JOIN networks net ON net.id = n.network_id
         LEFT JOIN ip_addresses ip ON ip.nic_id = n.id AND ip.network_id IS n.network_id
         WHERE n.machine_id = ?1 ORDER BY n.device",
    )?;
    for row in rows {
        let (id, name, kind, vcpus, memory_mb, power, bmc_address, bmc_credentials, initiator_iqn) =
            row?;
        let mut nics = Vec::new();
        let nic_rows = nics_st.query_map([id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, bool>(6)?,
                r.get::<_, Option<String>>(7)?,
            ))
        })?;
        for nic in nic_rows {
            let (device, mac, sw, port, network, ip, boot, storage_ip) = nic?;
            nics.push(spanned(Nic {
                device,
                mac: parse_col("nics", &mac)?,
                port: sw.zip(port).map(|(switch, port)| PortRef { switch, port }),
                network,
                ip: ip.map(|s| parse_col("ip_addresses", &s)).transpose()?,
                boot,
                storage_ip: storage_ip
                    .map(|s| parse_col("ip_addresses", &s))
                    .transpose()?,
            }));
        }
        out.machines.push(spanned(Machine {
            name,
            kind: enum_from_str("machines", &kind)?,
            vcpus,
            memory_mb,
            power_driver: enum_from_str("machines", &power)?,
            bmc_address,
            bmc_credentials,
            initiator_iqn,
            nics,
        }));
    }

    let mut st = conn.prepare(
        "SELECT name, vcpus, memory_mb, bandwidth_mbps FROM vm_types ORDER BY vcpus, name",
    )?;
    for row in st.query_map([], |r| {
        Ok(VmType {
            name: r.get(0)?,
            vcpus: r.get(1)?,
            memory_mb: r.get(2)?,
            bandwidth_mbps: r.get(3)?,
        })
    })? {
        out.vm_types.push(spanned(row?));
    }

    let mut st = conn.prepare(
        "SELECT name, os, os_version, architecture, min_disk_gb, init_supported, description, archive, sha256
         FROM images ORDER BY name",
    )?;
    for row in st.query_map([], |r| {
        Ok(Image {
            name: r.get(0)?,
            os: r.get(1)?,
            os_version: r.get(2)?,
            architecture: r.get(3)?,
            min_disk_gb: r.get(4)?,
            init_supported: r.get(5)?,
            description: r.get(6)?,
            archive: r.get(7)?,
            sha256: r.get(8)?,
        })
    })? {
        out.images.push(spanned(row?));
    }

    let mut st = conn.prepare(
        "SELECT c.name, c.enabled, q.vms, q.vcpu, q.memory_mb, q.volumes, q.volume_gb, q.networks_l2ex,
                q.networks_l3ex, q.networks_l3sh, q.l3sh_addresses, q.pending_requests
         FROM customers c JOIN quotas q ON q.customer_id = c.id ORDER BY c.name",
    )?;
    for row in st.query_map([], |r| {
        Ok(Customer {
            name: r.get(0)?,
            enabled: r.get(1)?,
            quota: Quota {
                vms: r.get(2)?,
                vcpu: r.get(3)?,
                memory_mb: r.get(4)?,
                volumes: r.get(5)?,
                volume_gb: r.get(6)?,
                networks_l2ex: r.get(7)?,
                networks_l3ex: r.get(8)?,
                networks_l3sh: r.get(9)?,
                l3sh_addresses: r.get(10)?,
                pending_requests: r.get(11)?,
            },
        })
    })? {
        out.customers.push(spanned(row?));
    }
    Ok(out)
}

/// What an import changed.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// `(kind, name)` of each object created.
    pub created: Vec<(&'static str, String)>,
    pub updated: Vec<(&'static str, String)>,
    pub unchanged: usize,
    /// Objects the inventory holds that the file does not mention (kept as they are).
    pub only_in_inventory: Vec<(&'static str, String)>,
}

impl ImportReport {
    pub fn is_noop(&self) -> bool {
        self.created.is_empty() && self.updated.is_empty()
    }
}

/// Compares `new` with `old` by name; records the result and returns the objects to write.
fn diff<'a, T: PartialEq>(
    report: &mut ImportReport,
    kind: &'static str,
    new: &'a [At<T>],
    old: &[At<T>],
    key: impl Fn(&T) -> String,
) -> Vec<&'a T> {
    let old: BTreeMap<String, &T> = old.iter().map(|o| (key(&**o), &**o)).collect();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for n in new {
        let k = key(&**n);
        seen.insert(k.clone());
        match old.get(&k) {
            None => {
                report.created.push((kind, k));
                out.push(&**n);
            }
            Some(o) if *o != &**n => {
                report.updated.push((kind, k));
                out.push(&**n);
            }
            Some(_) => report.unchanged += 1,
        }
    }
    for k in old.keys().filter(|k| !seen.contains(*k)) {
        report.only_in_inventory.push((kind, k.clone()));
    }
    out
}

/// Machines compare with their NICs in device order, whatever order the file lists them in.
fn normalized_machines(ms: &[At<Machine>]) -> Vec<At<Machine>> {
    ms.iter()
        .map(|m| {
            let mut m = m.clone();
            m.nics.sort_by(|a, b| a.device.cmp(&b.device));
            m
        })
        .collect()
}

/// Applies a validated site file; writes only objects that differ from the inventory.
pub fn import(conn: &Connection, file: &SiteFile) -> Result<ImportReport> {
    let current = export(conn)?;
    if !current.site.name.is_empty() && current.site.name != file.site.name {
        return Err(Error::Invalid(format!(
            "this inventory describes site {:?}, but the file describes site {:?}; import into the right data dir",
            current.site.name, file.site.name
        )));
    }
    let mut report = ImportReport::default();
    let now = now_rfc3339();

    if current.site != file.site {
        let list = if current.site.name.is_empty() {
            &mut report.created
        } else {
            &mut report.updated
        };
        list.push(("site", file.site.name.clone()));
        conn.execute(
            "INSERT INTO sites (id, name, description) VALUES (1, ?1, ?2)
             ON CONFLICT(id) DO UPDATE SET name = excluded.name, description = excluded.description",
            params![file.site.name, file.site.description],
        )?;
        record_event(conn, "site", &file.site.name)?;
    }

    for p in diff(
        &mut report,
        "iSCSI portal",
        &file.iscsi_portals,
        &current.iscsi_portals,
        |p| p.name.clone(),
    ) {
        conn.execute(
            "INSERT INTO iscsi_portals (name, address, port, iqn_prefix) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(name) DO UPDATE SET address = excluded.address, port = excluded.port,
                                             iqn_prefix = excluded.iqn_prefix",
            params![p.name, p.address.to_string(), p.port, p.iqn_prefix],
        )?;
        record_event(conn, "iscsi_portal", &p.name)?;
    }

    for p in diff(
        &mut report,
        "VLAN pool",
        &file.vlan_pools,
        &current.vlan_pools,
        |p| p.name.clone(),
    ) {
        conn.execute(
            "INSERT INTO vlan_pools (name, first_vlan, last_vlan) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET first_vlan = excluded.first_vlan, last_vlan = excluded.last_vlan",
            params![p.name, p.first, p.last],
        )?;
        record_event(conn, "vlan_pool", &p.name)?;
    }

    for n in diff(
        &mut report,
        "network",
        &file.networks,
        &current.networks,
        |n| n.name.clone(),
    ) {
        let dns = n
            .dns
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(",");
        conn.execute(
            "INSERT INTO networks (public_id, name, kind, role, vlan, subnet, gateway, dns, created_at)
             VALUES (?1, ?1, 'infra', ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(name) DO UPDATE SET role = excluded.role, vlan = excluded.vlan,
                 subnet = excluded.subnet, gateway = excluded.gateway, dns = excluded.dns",
            params![
                n.name,
                enum_str(&n.role),
                n.vlan,
                n.subnet.to_string(),
                n.gateway.map(|g| g.to_string()),
                dns,
                now
            ],
        )?;
        record_event(conn, "network", &n.name)?;
    }

    for p in diff(
        &mut report,
        "IP pool",
        &file.ip_pools,
        &current.ip_pools,
        |p| p.name.clone(),
    ) {
        let ip = |v: Option<std::net::Ipv4Addr>| v.map(|a| a.to_string());
        conn.execute(
            "INSERT INTO ip_pools (name, kind, prefix, gateway, vlan, range_first, range_last, default_prefix_length)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT(name) DO UPDATE SET kind = excluded.kind, prefix = excluded.prefix,
                 gateway = excluded.gateway, vlan = excluded.vlan, range_first = excluded.range_first,
                 range_last = excluded.range_last, default_prefix_length = excluded.default_prefix_length",
            params![
                p.name,
                enum_str(&p.kind),
                p.prefix.to_string(),
                ip(p.gateway),
                p.vlan,
                ip(p.first),
                ip(p.last),
                p.default_prefix_length
            ],
        )?;
        record_event(conn, "ip_pool", &p.name)?;
    }

    // A switch without `host_key` in the file keeps the key the inventory has pinned (set
    // earlier, or learned on first use): re-importing a site must not unpin switches.
    let switches: Vec<At<Switch>> = file
        .switches
        .iter()
        .map(|s| {
            let mut s = s.clone();
            if s.host_key.is_none() {
                s.host_key = current
                    .switches
                    .iter()
                    .find(|c| c.name == s.name)
                    .and_then(|c| c.host_key.clone());
            }
            s
        })
        .collect();
    for s in diff(&mut report, "switch", &switches, &current.switches, |s| {
        s.name.clone()
    }) {
        upsert_switch(conn, s)?;
    }

    let old_links: BTreeSet<_> = current.links.iter().map(|l| l.normalized()).collect();
    let new_links: BTreeSet<_> = file.links.iter().map(|l| l.normalized()).collect();
    for l in &file.links {
        if old_links.contains(&l.normalized()) {
            report.unchanged += 1;
            continue;
        }
        report
            .created
            .push(("link", format!("{} <-> {}", l.a, l.b)));
        let a = port_id(conn, &l.a)?;
        let b = port_id(conn, &l.b)?;
        // Re-cabling: a port holds one cable, so a link in the file replaces the old one.
        conn.execute(
            "DELETE FROM links WHERE a_port_id IN (?1, ?2) OR b_port_id IN (?1, ?2)",
            params![a, b],
        )?;
        conn.execute(
            "INSERT INTO links (a_port_id, b_port_id) VALUES (?1, ?2)",
            params![a, b],
        )?;
        record_event(conn, "link", &format!("{} <-> {}", l.a, l.b))?;
    }
    for (a, b) in old_links.difference(&new_links) {
        report
            .only_in_inventory
            .push(("link", format!("{a} <-> {b}")));
    }

    let machines = normalized_machines(&file.machines);
    let changed: Vec<Machine> = diff(&mut report, "machine", &machines, &current.machines, |m| {
        m.name.clone()
    })
    .into_iter()
    .cloned()
    .collect();
    // Remove the NICs of every changed machine first, so a NIC may move between machines.
    for m in &changed {
        conn.execute(
            "DELETE FROM ip_addresses WHERE nic_id IN
                 (SELECT n.id FROM nics n JOIN machines m ON m.id = n.machine_id WHERE m.name = ?1)",
            [&m.name],
        )?;
        conn.execute(
            "DELETE FROM nics WHERE machine_id = (SELECT id FROM machines WHERE name = ?1)",
            [&m.name],
        )?;
    }
    for m in &changed {
        upsert_machine(conn, m, &now)?;
    }

    for t in diff(
        &mut report,
        "VM type",
        &file.vm_types,
        &current.vm_types,
        |t| t.name.clone(),
    ) {
        conn.execute(
            "INSERT INTO vm_types (name, vcpus, memory_mb, bandwidth_mbps) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(name) DO UPDATE SET vcpus = excluded.vcpus, memory_mb = excluded.memory_mb,
                 bandwidth_mbps = excluded.bandwidth_mbps",
            params![t.name, t.vcpus, t.memory_mb, t.bandwidth_mbps],
        )?;
        record_event(conn, "vm_type", &t.name)?;
    }

    for i in diff(&mut report, "image", &file.images, &current.images, |i| {
        i.name.clone()
    }) {
        conn.execute(
            "INSERT INTO images (public_id, name, os, os_version, architecture, min_disk_gb, init_supported,
                                 description, archive, sha256, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT(name) DO UPDATE SET os = excluded.os, os_version = excluded.os_version,
                 architecture = excluded.architecture, min_disk_gb = excluded.min_disk_gb,
                 init_supported = excluded.init_supported, description = excluded.description,
                 archive = excluded.archive, sha256 = excluded.sha256",
            params![
                format!("img-{}", i.name),
                i.name,
                i.os,
                i.os_version,
                i.architecture,
                i.min_disk_gb,
                i.init_supported,
                i.description,
                i.archive,
                i.sha256,
                now
            ],
        )?;
        record_event(conn, "image", &i.name)?;
    }

    for c in diff(
        &mut report,
        "customer",
        &file.customers,
        &current.customers,
        |c| c.name.clone(),
    ) {
        conn.execute(
            "INSERT INTO customers (name, enabled, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET enabled = excluded.enabled",
            params![c.name, c.enabled, now],
        )?;
        let q = &c.quota;
        conn.execute(
            "INSERT INTO quotas (customer_id, vms, vcpu, memory_mb, volumes, volume_gb, networks_l2ex,
                                 networks_l3ex, networks_l3sh, l3sh_addresses, pending_requests)
             VALUES ((SELECT id FROM customers WHERE name = ?1), ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT(customer_id) DO UPDATE SET vms = excluded.vms, vcpu = excluded.vcpu,
                 memory_mb = excluded.memory_mb, volumes = excluded.volumes, volume_gb = excluded.volume_gb,
                 networks_l2ex = excluded.networks_l2ex, networks_l3ex = excluded.networks_l3ex,
                 networks_l3sh = excluded.networks_l3sh, l3sh_addresses = excluded.l3sh_addresses,
                 pending_requests = excluded.pending_requests",
            params![
                c.name,
                q.vms,
                q.vcpu,
                q.memory_mb,
                q.volumes,
                q.volume_gb,
                q.networks_l2ex,
                q.networks_l3ex,
                q.networks_l3sh,
                q.l3sh_addresses,
                q.pending_requests
            ],
        )?;
        record_event(conn, "customer", &c.name)?;
    }
    Ok(report)
}

fn upsert_switch(conn: &Connection, s: &Switch) -> Result<()> {
    conn.execute(
        "INSERT INTO switches (site_id, name, role, driver, os, address, credentials, host_key, max_macs)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(name) DO UPDATE SET role = excluded.role, driver = excluded.driver, os = excluded.os,
             address = excluded.address, credentials = excluded.credentials, host_key = excluded.host_key,
             max_macs = excluded.max_macs",
        params![
            s.name,
            enum_str(&s.role),
            enum_str(&s.driver),
            s.os,
            s.address,
            s.credentials,
            s.host_key,
            s.max_macs
        ],
    )?;
    let id: i64 = conn.query_row("SELECT id FROM switches WHERE name = ?1", [&s.name], |r| {
        r.get(0)
    })?;
    let listed = s
        .ports
        .iter()
        .map(|p| format!("'{}'", p.replace('\'', "''")))
        .collect::<Vec<_>>();
    let removed = conn.execute(
        &format!(
            "DELETE FROM switch_ports WHERE switch_id = ?1 AND name NOT IN ({})",
            listed.join(",")
        ),
        [id],
    );
    if let Err(e) = removed {
        return Err(Error::Invalid(format!(
            "switch {:?}: cannot remove ports missing from the file, a machine NIC in the inventory still uses one ({e})",
            s.name
        )));
    }
    for (i, p) in s.ports.iter().enumerate() {
        conn.execute(
            "INSERT INTO switch_ports (switch_id, name, position) VALUES (?1, ?2, ?3)
             ON CONFLICT(switch_id, name) DO UPDATE SET position = excluded.position",
            params![id, p, i as i64 + 1],
        )?;
    }
    record_event(conn, "switch", &s.name)
}

fn port_id(conn: &Connection, p: &PortRef) -> Result<i64> {
    conn.query_row(
        "SELECT p.id FROM switch_ports p JOIN switches s ON s.id = p.switch_id WHERE s.name = ?1 AND p.name = ?2",
        params![p.switch, p.port],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| Error::Invalid(format!("port {p} is not in the inventory")))
}

/// The storage network whose subnet holds `ip`.
fn storage_network(conn: &Connection, ip: std::net::Ipv4Addr) -> Result<Option<i64>> {
    let mut st = conn.prepare("SELECT id, subnet FROM networks WHERE role = 'storage'")?;
    let rows = st
        .query_map([], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows.into_iter().find_map(|(id, subnet)| {
        let net: crate::net::Ipv4Net = subnet?.parse().ok()?;
        net.contains(ip).then_some(id)
    }))
}

fn upsert_machine(conn: &Connection, m: &Machine, now: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO machines (site_id, name, kind, vcpus, memory_mb, power_driver, bmc_address, bmc_credentials,
                               initiator_iqn, state, created_at)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'ready', ?9)
         ON CONFLICT(name) DO UPDATE SET site_id = 1, kind = excluded.kind, vcpus = excluded.vcpus,
             memory_mb = excluded.memory_mb, power_driver = excluded.power_driver,
             bmc_address = excluded.bmc_address, bmc_credentials = excluded.bmc_credentials,
             initiator_iqn = excluded.initiator_iqn,
             state = CASE WHEN machines.state = 'discovered' THEN 'ready' ELSE machines.state END",
        params![
            m.name,
            enum_str(&m.kind),
            m.vcpus,
            m.memory_mb,
            enum_str(&m.power_driver),
            m.bmc_address,
            m.bmc_credentials,
            m.initiator_iqn,
            now
        ],
    )?;
    let id: i64 = conn.query_row("SELECT id FROM machines WHERE name = ?1", [&m.name], |r| {
        r.get(0)
    })?;
    for n in &m.nics {
        // Enrolling a discovered machine: the site file now names it, so the placeholder goes.
        conn.execute(
            "DELETE FROM machines WHERE kind = 'discovered' AND id = (SELECT machine_id FROM nics WHERE mac = ?1)",
            [n.mac.to_string()],
        )?;
        let owner: Option<String> = conn
            .query_row(
                "SELECT COALESCE(m.name, v.name) FROM nics n LEFT JOIN machines m ON m.id = n.machine_id
                 LEFT JOIN vms v ON v.id = n.vm_id WHERE n.mac = ?1",
                [n.mac.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(owner) = owner {
            return Err(Error::Invalid(format!(
                "machine {:?} NIC {}: MAC {} already belongs to {owner:?} in the inventory",
                m.name, n.device, n.mac
            )));
        }
        let port = n.port.as_ref().map(|p| port_id(conn, p)).transpose()?;
        let network: Option<i64> = match &n.network {
            Some(name) => Some(
                conn.query_row("SELECT id FROM networks WHERE name = ?1", [name], |r| {
                    r.get(0)
                })
                .optional()?
                .ok_or_else(|| {
                    Error::Invalid(format!("network {name:?} is not in the inventory"))
                })?,
            ),
            None => None,
        };
        conn.execute(
            "INSERT INTO nics (mac, machine_id, device, switch_port_id, network_id, boot) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![n.mac.to_string(), id, n.device, port, network, n.boot],
        )?;
        let nic_id = conn.last_insert_rowid();
        if let Some(ip) = n.ip {
            let taken: Option<String> = conn
                .query_row(
                    "SELECT address FROM ip_addresses WHERE address = ?1",
                    [ip.to_string()],
                    |r| r.get(0),
                )
                .optional()?;
            if taken.is_some() {
                return Err(Error::Invalid(format!(
                    "machine {:?} NIC {}: address {ip} is already allocated in the inventory",
                    m.name, n.device
                )));
            }
            conn.execute(
                "INSERT INTO ip_addresses (address, network_id, nic_id) VALUES (?1, ?2, ?3)",
                params![ip.to_string(), network, nic_id],
            )?;
        }
        if let Some(ip) = n.storage_ip {
            let storage = storage_network(conn, ip)?.ok_or_else(|| {
                Error::Invalid(format!(
                    "machine {:?} NIC {}: storage_ip {ip} is in no storage network",
                    m.name, n.device
                ))
            })?;
            conn.execute(
                "INSERT INTO ip_addresses (address, network_id, nic_id) VALUES (?1, ?2, ?3)",
                params![ip.to_string(), storage, nic_id],
            )?;
        }
    }
    record_event(conn, "machine", &m.name)
}
