//! [`SiteObjects`] and [`SiteStore`] on SQLite: the site file's objects as rows. Enums are
//! stored in their site-file spelling, addresses and prefixes as text, DNS resolvers as a
//! comma-separated list; a value that does not parse back is reported as corrupt.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use rusqlite::{OptionalExtension, Row, Statement, params};

use super::Tx;
use crate::inventory::site::repository::{SiteObjects, SiteStore};
use crate::inventory::site::store::enum_str;
use crate::inventory::site::{
    At, Customer, Image, IpPool, Link, Machine, Network, Nic, PortRef, Portal, Quota, SiteInfo,
    Switch, VlanPool, VmType,
};
use crate::inventory::{Error, Result};
use crate::net::{Ipv4Net, Mac};
use crate::util::rfc3339;

fn corrupt(table: &str, value: &str) -> Error {
    Error::Invalid(format!("corrupt value {value:?} in table {table}"))
}

fn parse_col<T: std::str::FromStr>(table: &str, value: &str) -> Result<T> {
    value.parse().map_err(|_| corrupt(table, value))
}

fn parse_opt<T: std::str::FromStr>(table: &str, value: Option<String>) -> Result<Option<T>> {
    value.map(|v| parse_col(table, &v)).transpose()
}

fn enum_col<T: serde::de::DeserializeOwned>(table: &str, value: &str) -> Result<T> {
    use serde::de::IntoDeserializer;
    let de: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
        value.into_deserializer();
    T::deserialize(de).map_err(|_| corrupt(table, value))
}

fn ip_text(ip: Option<Ipv4Addr>) -> Option<String> {
    ip.map(|a| a.to_string())
}

impl Tx<'_> {
    /// Runs a query without parameters and maps each row, which may fail to parse.
    fn rows<T>(&self, sql: &str, mut map: impl FnMut(&Row<'_>) -> Result<T>) -> Result<Vec<T>> {
        let mut st = self.conn.prepare_cached(sql)?;
        let mut rows = st.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(map(row)?);
        }
        Ok(out)
    }

    /// Runs a query whose rows are `(parent name, child)`; the children of each parent, in
    /// row order.
    fn grouped<C>(
        &self,
        sql: &str,
        map: impl FnMut(&Row<'_>) -> Result<(String, C)>,
    ) -> Result<HashMap<String, Vec<C>>> {
        let mut out: HashMap<String, Vec<C>> = HashMap::new();
        for (parent, child) in self.rows(sql, map)? {
            out.entry(parent).or_default().push(child);
        }
        Ok(out)
    }

    fn port_id(&self, p: &PortRef) -> Result<i64> {
        self.conn
            .prepare_cached(
                "SELECT p.id FROM switch_ports p JOIN switches s ON s.id = p.switch_id
                 WHERE s.name = ?1 AND p.name = ?2",
            )?
            .query_row(params![p.switch, p.port], |r| r.get(0))
            .optional()?
            .ok_or_else(|| Error::Invalid(format!("port {p} is not in the inventory")))
    }

    fn network_id(&self, name: &str) -> Result<i64> {
        self.conn
            .prepare_cached("SELECT id FROM networks WHERE name = ?1")?
            .query_row([name], |r| r.get(0))
            .optional()?
            .ok_or_else(|| Error::Invalid(format!("network {name:?} is not in the inventory")))
    }

    fn add_address(&self, ip: Ipv4Addr, network: Option<i64>, nic: i64) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO ip_addresses (address, network_id, nic_id) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![ip.to_string(), network, nic])?;
        Ok(())
    }
}

/// A kind of site object stored as one row of its own: its statements, and its row's columns.
trait Stored: Sized {
    /// Every row, in export order.
    const SELECT: &'static str;
    /// Creates the row, or updates the one of its name (parameters bound by [`Stored::write`]).
    const UPSERT: &'static str;
    fn read(r: &Row<'_>) -> Result<Self>;
    /// Runs [`Stored::UPSERT`] for `self`; `at` dates a creation.
    fn write(&self, upsert: &mut Statement<'_>, at: &str) -> rusqlite::Result<usize>;
}

impl<T: Stored> SiteObjects<T> for Tx<'_> {
    fn all(&self) -> Result<Vec<T>> {
        self.rows(T::SELECT, T::read)
    }

    fn put(&self, object: &T, at: i64) -> Result<()> {
        let mut upsert = self.conn.prepare_cached(T::UPSERT)?;
        object.write(&mut upsert, &rfc3339(at))?;
        Ok(())
    }
}

impl Stored for Portal {
    const SELECT: &str = "SELECT name, address, port, iqn_prefix FROM iscsi_portals ORDER BY name";
    const UPSERT: &str = "INSERT INTO iscsi_portals (name, address, port, iqn_prefix)
        VALUES (?1, ?2, ?3, ?4)
        ON CONFLICT(name) DO UPDATE SET address = excluded.address, port = excluded.port,
            iqn_prefix = excluded.iqn_prefix";

    fn read(r: &Row<'_>) -> Result<Self> {
        Ok(Portal {
            name: r.get(0)?,
            address: parse_col("iscsi_portals", &r.get::<_, String>(1)?)?,
            port: r.get(2)?,
            iqn_prefix: r.get(3)?,
        })
    }

    fn write(&self, upsert: &mut Statement<'_>, _at: &str) -> rusqlite::Result<usize> {
        upsert.execute(params![
            self.name,
            self.address.to_string(),
            self.port,
            self.iqn_prefix
        ])
    }
}

impl Stored for VlanPool {
    const SELECT: &str = "SELECT name, first_vlan, last_vlan FROM vlan_pools ORDER BY name";
    const UPSERT: &str = "INSERT INTO vlan_pools (name, first_vlan, last_vlan) VALUES (?1, ?2, ?3)
        ON CONFLICT(name) DO UPDATE SET first_vlan = excluded.first_vlan,
            last_vlan = excluded.last_vlan";

    fn read(r: &Row<'_>) -> Result<Self> {
        Ok(VlanPool {
            name: r.get(0)?,
            first: r.get(1)?,
            last: r.get(2)?,
        })
    }

    fn write(&self, upsert: &mut Statement<'_>, _at: &str) -> rusqlite::Result<usize> {
        upsert.execute(params![self.name, self.first, self.last])
    }
}

/// Infrastructure networks only: customer networks are the API's.
impl Stored for Network {
    const SELECT: &str = "SELECT name, role, vlan, subnet, gateway, dns FROM networks
        WHERE kind = 'infra' ORDER BY name";
    const UPSERT: &str = "INSERT INTO networks (public_id, name, kind, role, vlan, subnet, gateway,
                              dns, created_at)
        VALUES (?1, ?1, 'infra', ?2, ?3, ?4, ?5, ?6, ?7)
        ON CONFLICT(name) DO UPDATE SET role = excluded.role, vlan = excluded.vlan,
            subnet = excluded.subnet, gateway = excluded.gateway, dns = excluded.dns";

    fn read(r: &Row<'_>) -> Result<Self> {
        const T: &str = "networks";
        Ok(Network {
            name: r.get(0)?,
            role: enum_col(T, &r.get::<_, String>(1)?)?,
            vlan: r.get(2)?,
            subnet: parse_col(T, &r.get::<_, String>(3)?)?,
            gateway: parse_opt(T, r.get(4)?)?,
            dns: r
                .get::<_, String>(5)?
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| parse_col(T, s))
                .collect::<Result<_>>()?,
        })
    }

    fn write(&self, upsert: &mut Statement<'_>, at: &str) -> rusqlite::Result<usize> {
        let dns = self.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>();
        upsert.execute(params![
            self.name,
            enum_str(&self.role),
            self.vlan,
            self.subnet.to_string(),
            ip_text(self.gateway),
            dns.join(","),
            at
        ])
    }
}

impl Stored for IpPool {
    const SELECT: &str = "SELECT name, kind, prefix, gateway, vlan, range_first, range_last,
               default_prefix_length
        FROM ip_pools ORDER BY name";
    const UPSERT: &str = "INSERT INTO ip_pools (name, kind, prefix, gateway, vlan, range_first,
                              range_last, default_prefix_length)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
        ON CONFLICT(name) DO UPDATE SET kind = excluded.kind, prefix = excluded.prefix,
            gateway = excluded.gateway, vlan = excluded.vlan, range_first = excluded.range_first,
            range_last = excluded.range_last, default_prefix_length = excluded.default_prefix_length";

    fn read(r: &Row<'_>) -> Result<Self> {
        const T: &str = "ip_pools";
        Ok(IpPool {
            name: r.get(0)?,
            kind: enum_col(T, &r.get::<_, String>(1)?)?,
            prefix: parse_col(T, &r.get::<_, String>(2)?)?,
            gateway: parse_opt(T, r.get(3)?)?,
            vlan: r.get(4)?,
            first: parse_opt(T, r.get(5)?)?,
            last: parse_opt(T, r.get(6)?)?,
            default_prefix_length: r.get(7)?,
        })
    }

    fn write(&self, upsert: &mut Statement<'_>, _at: &str) -> rusqlite::Result<usize> {
        upsert.execute(params![
            self.name,
            enum_str(&self.kind),
            self.prefix.to_string(),
            ip_text(self.gateway),
            self.vlan,
            ip_text(self.first),
            ip_text(self.last),
            self.default_prefix_length
        ])
    }
}

impl Stored for VmType {
    const SELECT: &str =
        "SELECT name, vcpus, memory_mb, bandwidth_mbps FROM vm_types ORDER BY vcpus, name";
    const UPSERT: &str = "INSERT INTO vm_types (name, vcpus, memory_mb, bandwidth_mbps)
        VALUES (?1, ?2, ?3, ?4)
        ON CONFLICT(name) DO UPDATE SET vcpus = excluded.vcpus, memory_mb = excluded.memory_mb,
            bandwidth_mbps = excluded.bandwidth_mbps";

    fn read(r: &Row<'_>) -> Result<Self> {
        let (name, vcpus, memory_mb, bandwidth_mbps) = r.try_into()?;
        Ok(VmType {
            name,
            vcpus,
            memory_mb,
            bandwidth_mbps,
        })
    }

    fn write(&self, upsert: &mut Statement<'_>, _at: &str) -> rusqlite::Result<usize> {
        upsert.execute(params![
            self.name,
            self.vcpus,
            self.memory_mb,
            self.bandwidth_mbps
        ])
    }
}

impl Stored for Image {
    const SELECT: &str = "SELECT name, os, os_version, architecture, min_disk_gb, init_supported,
               description, archive, sha256
        FROM images ORDER BY name";
    const UPSERT: &str = "INSERT INTO images (public_id, name, os, os_version, architecture,
                            min_disk_gb, init_supported, description, archive, sha256, created_at)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
        ON CONFLICT(name) DO UPDATE SET os = excluded.os, os_version = excluded.os_version,
            architecture = excluded.architecture, min_disk_gb = excluded.min_disk_gb,
            init_supported = excluded.init_supported, description = excluded.description,
            archive = excluded.archive, sha256 = excluded.sha256";

    fn read(r: &Row<'_>) -> Result<Self> {
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
    }

    fn write(&self, upsert: &mut Statement<'_>, at: &str) -> rusqlite::Result<usize> {
        upsert.execute(params![
            format!("img-{}", self.name),
            self.name,
            self.os,
            self.os_version,
            self.architecture,
            self.min_disk_gb,
            self.init_supported,
            self.description,
            self.archive,
            self.sha256,
            at
        ])
    }
}

/// A switch with its ports in position order.
impl SiteObjects<Switch> for Tx<'_> {
    fn all(&self) -> Result<Vec<Switch>> {
        const T: &str = "switches";
        let mut ports = self.grouped(
            "SELECT s.name, p.name FROM switch_ports p JOIN switches s ON s.id = p.switch_id
             ORDER BY p.switch_id, p.position, p.name",
            |r| Ok(r.try_into()?),
        )?;
        self.rows(
            "SELECT name, role, driver, os, address, credentials, host_key, max_macs
             FROM switches ORDER BY name",
            |r| {
                Ok(Switch {
                    ports: ports.remove(&r.get::<_, String>(0)?).unwrap_or_default(),
                    name: r.get(0)?,
                    role: enum_col(T, &r.get::<_, String>(1)?)?,
                    driver: enum_col(T, &r.get::<_, String>(2)?)?,
                    os: r.get(3)?,
                    address: r.get(4)?,
                    credentials: r.get(5)?,
                    host_key: r.get(6)?,
                    max_macs: r.get(7)?,
                })
            },
        )
    }

    /// Ports missing from `s` are removed, which fails while a machine NIC is cabled to one.
    fn put(&self, s: &Switch, _at: i64) -> Result<()> {
        let id: i64 = self
            .conn
            .prepare_cached(
                "INSERT INTO switches (site_id, name, role, driver, os, address, credentials, host_key,
                                       max_macs)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(name) DO UPDATE SET role = excluded.role, driver = excluded.driver,
                     os = excluded.os, address = excluded.address, credentials = excluded.credentials,
                     host_key = excluded.host_key, max_macs = excluded.max_macs
                 RETURNING id",
            )?
            .query_row(
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
                |r| r.get(0),
            )?;
        let listed = serde_json::to_string(&s.ports)
            .map_err(|e| Error::Invalid(format!("switch {:?}: {e}", s.name)))?;
        let removed = self
            .conn
            .prepare_cached(
                "DELETE FROM switch_ports
                 WHERE switch_id = ?1 AND name NOT IN (SELECT value FROM json_each(?2))",
            )?
            .execute(params![id, listed]);
        if let Err(e) = removed {
            return Err(Error::Invalid(format!(
                "switch {:?}: cannot remove ports missing from the file, a machine NIC in the inventory still uses one ({e})",
                s.name
            )));
        }
        let mut add = self.conn.prepare_cached(
            "INSERT INTO switch_ports (switch_id, name, position) VALUES (?1, ?2, ?3)
             ON CONFLICT(switch_id, name) DO UPDATE SET position = excluded.position",
        )?;
        for (i, p) in s.ports.iter().enumerate() {
            add.execute(params![id, p, i as i64 + 1])?;
        }
        Ok(())
    }
}

impl SiteObjects<Link> for Tx<'_> {
    fn all(&self) -> Result<Vec<Link>> {
        self.rows(
            "SELECT sa.name, pa.name, sb.name, pb.name FROM links l
             JOIN switch_ports pa ON pa.id = l.a_port_id JOIN switches sa ON sa.id = pa.switch_id
             JOIN switch_ports pb ON pb.id = l.b_port_id JOIN switches sb ON sb.id = pb.switch_id
             ORDER BY sa.name, pa.position, sb.name, pb.position",
            |r| {
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
            },
        )
    }

    /// Re-cabling: a port holds one cable, so the link replaces those its ports had.
    fn put(&self, l: &Link, _at: i64) -> Result<()> {
        let a = self.port_id(&l.a)?;
        let b = self.port_id(&l.b)?;
        self.conn
            .prepare_cached(
                "DELETE FROM links WHERE a_port_id IN (?1, ?2) OR b_port_id IN (?1, ?2)",
            )?
            .execute(params![a, b])?;
        self.conn
            .prepare_cached("INSERT INTO links (a_port_id, b_port_id) VALUES (?1, ?2)")?
            .execute(params![a, b])?;
        Ok(())
    }
}

/// A customer with its quota.
impl SiteObjects<Customer> for Tx<'_> {
    fn all(&self) -> Result<Vec<Customer>> {
        self.rows(
            "SELECT c.name, c.enabled, q.vms, q.vcpu, q.memory_mb, q.volumes, q.volume_gb,
                    q.networks_l2ex, q.networks_l3ex, q.networks_l3sh, q.l3sh_addresses,
                    q.pending_requests
             FROM customers c JOIN quotas q ON q.customer_id = c.id ORDER BY c.name",
            |r| {
                let limit = |i| r.get::<_, u32>(i);
                Ok(Customer {
                    name: r.get(0)?,
                    enabled: r.get(1)?,
                    quota: Quota {
                        vms: limit(2)?,
                        vcpu: limit(3)?,
                        memory_mb: limit(4)?,
                        volumes: limit(5)?,
                        volume_gb: limit(6)?,
                        networks_l2ex: limit(7)?,
                        networks_l3ex: limit(8)?,
                        networks_l3sh: limit(9)?,
                        l3sh_addresses: limit(10)?,
                        pending_requests: limit(11)?,
                    },
                })
            },
        )
    }

    fn put(&self, c: &Customer, at: i64) -> Result<()> {
        let id: i64 = self
            .conn
            .prepare_cached(
                "INSERT INTO customers (name, enabled, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(name) DO UPDATE SET enabled = excluded.enabled RETURNING id",
            )?
            .query_row(params![c.name, c.enabled, rfc3339(at)], |r| r.get(0))?;
        let q = &c.quota;
        self.conn
            .prepare_cached(
                "INSERT INTO quotas (customer_id, vms, vcpu, memory_mb, volumes, volume_gb,
                                     networks_l2ex, networks_l3ex, networks_l3sh, l3sh_addresses,
                                     pending_requests)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT(customer_id) DO UPDATE SET vms = excluded.vms, vcpu = excluded.vcpu,
                     memory_mb = excluded.memory_mb, volumes = excluded.volumes,
                     volume_gb = excluded.volume_gb, networks_l2ex = excluded.networks_l2ex,
                     networks_l3ex = excluded.networks_l3ex, networks_l3sh = excluded.networks_l3sh,
                     l3sh_addresses = excluded.l3sh_addresses,
                     pending_requests = excluded.pending_requests",
            )?
            .execute(params![
                id,
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
            ])?;
        Ok(())
    }
}

impl SiteStore for Tx<'_> {
    fn site_info(&self) -> Result<Option<SiteInfo>> {
        Ok(self
            .conn
            .prepare_cached("SELECT name, description FROM sites ORDER BY id LIMIT 1")?
            .query_row([], |r| {
                Ok(SiteInfo {
                    name: r.get(0)?,
                    description: r.get(1)?,
                })
            })
            .optional()?)
    }

    fn put_site_info(&self, site: &SiteInfo) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO sites (id, name, description) VALUES (1, ?1, ?2)
                 ON CONFLICT(id) DO UPDATE SET name = excluded.name, description = excluded.description",
            )?
            .execute(params![site.name, site.description])?;
        Ok(())
    }

    fn site_machines(&self) -> Result<Vec<Machine>> {
        const T: &str = "machines";
        let mut nics = self.grouped(
            "SELECT m.name, n.device, n.mac, s.name, p.name, net.name, ip.address, n.boot,
                (SELECT sip.address FROM ip_addresses sip JOIN networks sn ON sn.id = sip.network_id
                 WHERE sip.nic_id = n.id AND sn.role = 'storage' AND sip.network_id IS NOT n.network_id)
             FROM nics n JOIN machines m ON m.id = n.machine_id AND m.kind != 'discovered'
             LEFT JOIN switch_ports p ON p.id = n.switch_port_id LEFT JOIN switches s ON s.id = p.switch_id
             LEFT JOIN networks net ON net.id = n.network_id
             LEFT JOIN ip_addresses ip ON ip.nic_id = n.id AND ip.network_id IS n.network_id
             ORDER BY n.machine_id, n.device",
            |r| {
                let (switch, port): (Option<String>, Option<String>) = (r.get(3)?, r.get(4)?);
                let nic = Nic {
                    device: r.get(1)?,
                    mac: parse_col("nics", &r.get::<_, String>(2)?)?,
                    port: switch
                        .zip(port)
                        .map(|(switch, port)| PortRef { switch, port }),
                    network: r.get(5)?,
                    ip: parse_opt("ip_addresses", r.get(6)?)?,
                    boot: r.get(7)?,
                    storage_ip: parse_opt("ip_addresses", r.get(8)?)?,
                };
                Ok((r.get::<_, String>(0)?, At::new(nic)))
            },
        )?;
        self.rows(
            "SELECT name, kind, vcpus, memory_mb, power_driver, bmc_address, bmc_credentials,
                    initiator_iqn
             FROM machines WHERE kind != 'discovered' ORDER BY name",
            |r| {
                Ok(Machine {
                    nics: nics.remove(&r.get::<_, String>(0)?).unwrap_or_default(),
                    name: r.get(0)?,
                    kind: enum_col(T, &r.get::<_, String>(1)?)?,
                    vcpus: r.get(2)?,
                    memory_mb: r.get(3)?,
                    power_driver: enum_col(T, &r.get::<_, String>(4)?)?,
                    bmc_address: r.get(5)?,
                    bmc_credentials: r.get(6)?,
                    initiator_iqn: r.get(7)?,
                })
            },
        )
    }

    fn put_machine(&self, m: &Machine, at: i64) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO machines (site_id, name, kind, vcpus, memory_mb, power_driver, bmc_address,
                                       bmc_credentials, initiator_iqn, state, created_at)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'ready', ?9)
                 ON CONFLICT(name) DO UPDATE SET site_id = 1, kind = excluded.kind,
                     vcpus = excluded.vcpus, memory_mb = excluded.memory_mb,
                     power_driver = excluded.power_driver, bmc_address = excluded.bmc_address,
                     bmc_credentials = excluded.bmc_credentials,
                     initiator_iqn = excluded.initiator_iqn,
                     state = CASE WHEN machines.state = 'discovered' THEN 'ready' ELSE machines.state END",
            )?
            .execute(params![
                m.name,
                enum_str(&m.kind),
                m.vcpus,
                m.memory_mb,
                enum_str(&m.power_driver),
                m.bmc_address,
                m.bmc_credentials,
                m.initiator_iqn,
                rfc3339(at)
            ])?;
        Ok(())
    }

    fn clear_nics(&self, machine: &str) -> Result<()> {
        self.conn
            .prepare_cached(
                "DELETE FROM ip_addresses WHERE nic_id IN
                     (SELECT n.id FROM nics n JOIN machines m ON m.id = n.machine_id WHERE m.name = ?1)",
            )?
            .execute([machine])?;
        self.conn
            .prepare_cached(
                "DELETE FROM nics WHERE machine_id = (SELECT id FROM machines WHERE name = ?1)",
            )?
            .execute([machine])?;
        Ok(())
    }

    fn drop_discovered(&self, mac: Mac) -> Result<()> {
        self.conn
            .prepare_cached(
                "DELETE FROM machines
                 WHERE kind = 'discovered' AND id = (SELECT machine_id FROM nics WHERE mac = ?1)",
            )?
            .execute([mac.to_string()])?;
        Ok(())
    }

    fn mac_owner(&self, mac: Mac) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT COALESCE(m.name, v.name) FROM nics n LEFT JOIN machines m ON m.id = n.machine_id
                 LEFT JOIN vms v ON v.id = n.vm_id WHERE n.mac = ?1",
            )?
            .query_row([mac.to_string()], |r| r.get(0))
            .optional()?)
    }

    fn address_taken(&self, ip: Ipv4Addr) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM ip_addresses WHERE address = ?1")?
            .exists([ip.to_string()])?)
    }

    fn storage_networks(&self) -> Result<Vec<(String, Ipv4Net)>> {
        let all = self.rows(
            "SELECT name, subnet FROM networks WHERE role = 'storage' ORDER BY name",
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)),
        )?;
        Ok(all
            .into_iter()
            .filter_map(|(name, subnet)| Some((name, subnet?.parse().ok()?)))
            .collect())
    }

    fn add_nic(&self, machine: &str, n: &Nic, storage_network: Option<&str>) -> Result<()> {
        let port = n.port.as_ref().map(|p| self.port_id(p)).transpose()?;
        let network = n
            .network
            .as_deref()
            .map(|name| self.network_id(name))
            .transpose()?;
        let nic: i64 = self
            .conn
            .prepare_cached(
                "INSERT INTO nics (mac, machine_id, device, switch_port_id, network_id, boot)
                 VALUES (?1, (SELECT id FROM machines WHERE name = ?2), ?3, ?4, ?5, ?6) RETURNING id",
            )?
            .query_row(
                params![n.mac.to_string(), machine, n.device, port, network, n.boot],
                |r| r.get(0),
            )?;
        if let Some(ip) = n.ip {
            self.add_address(ip, network, nic)?;
        }
        if let (Some(ip), Some(storage)) = (n.storage_ip, storage_network) {
            self.add_address(ip, Some(self.network_id(storage)?), nic)?;
        }
        Ok(())
    }
}
