//! [`Boot`] on SQLite.

use rusqlite::{OptionalExtension, params};

use super::Tx;
use crate::inventory::Result;
use crate::inventory::boot::{Boot, BootOwner, BootToken, BootVolume, OwnedVolume, Reservation};

impl Boot for Tx<'_> {
    fn reservations(&self) -> Result<Vec<Reservation>> {
        let mut st = self.conn.prepare_cached(
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
            Ok(Reservation {
                mac: r.get(0)?,
                address: r.get(1)?,
                subnet: r.get(2)?,
                gateway: r.get(3)?,
                dns: r.get(4)?,
                owner: r.get(5)?,
                machine: r.get(6)?,
                vm: r.get(7)?,
                initiator: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn boot_volumes(&self) -> Result<Vec<OwnedVolume>> {
        let mut st = self.conn.prepare_cached(
            "SELECT vol.machine_id, vol.vm_id, vol.lun, vol.target_iqn, p.address, p.port, p.iqn_prefix,
                    COALESCE(m.name, v.public_id)
             FROM volumes vol JOIN iscsi_portals p ON p.id = vol.portal_id
             LEFT JOIN machines m ON m.id = vol.machine_id LEFT JOIN vms v ON v.id = vol.vm_id
             WHERE vol.machine_id IS NOT NULL OR vol.device = 'DISK1'",
        )?;
        let rows = st.query_map([], |r| {
            Ok(OwnedVolume {
                machine: r.get(0)?,
                vm: r.get(1)?,
                owner: r.get(7)?,
                volume: BootVolume {
                    lun: r.get(2)?,
                    target: r.get(3)?,
                    address: r.get(4)?,
                    port: r.get(5)?,
                    iqn_prefix: r.get(6)?,
                },
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn known_macs(&self) -> Result<Vec<String>> {
        let mut st = self.conn.prepare_cached("SELECT mac FROM nics")?;
        Ok(st
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn address_given(&self, mac: &str, address: &str, now: i64) -> Result<bool> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM nics n JOIN ip_addresses ip ON ip.nic_id = n.id
                            WHERE n.mac = ?1 AND ip.address = ?2)
                 OR EXISTS (SELECT 1 FROM leases WHERE mac = ?1 AND address = ?2 AND state = 'bound'
                            AND expires_at > ?3)",
            params![mac, address, now],
            |r| r.get(0),
        )?)
    }

    fn store_token(
        &self,
        sha256: &str,
        mac: &str,
        address: &str,
        expires_at: i64,
        forget_before: i64,
    ) -> Result<()> {
        self.conn.execute(
            "DELETE FROM boot_tokens WHERE expires_at < ?1",
            [forget_before],
        )?;
        self.conn.execute(
            "INSERT INTO boot_tokens (token_sha256, mac, address, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![sha256, mac, address, expires_at],
        )?;
        Ok(())
    }

    fn token(&self, sha256: &str) -> Result<Option<BootToken>> {
        Ok(self
            .conn
            .query_row(
                "SELECT mac, address, expires_at, used_at FROM boot_tokens WHERE token_sha256 = ?1",
                [sha256],
                |r| {
                    Ok(BootToken {
                        mac: r.get(0)?,
                        address: r.get(1)?,
                        expires_at: r.get(2)?,
                        used_at: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    fn spend_token(&self, sha256: &str, at: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE boot_tokens SET used_at = ?2 WHERE token_sha256 = ?1",
            params![sha256, at],
        )?;
        Ok(())
    }

    fn boot_owner(&self, mac: &str) -> Result<Option<BootOwner>> {
        Ok(self
            .conn
            .query_row(
                "SELECT n.machine_id, n.vm_id, COALESCE(m.name, v.name), COALESCE(m.initiator_iqn, ''), m.kind
                 FROM nics n LEFT JOIN machines m ON m.id = n.machine_id LEFT JOIN vms v ON v.id = n.vm_id
                 WHERE n.mac = ?1",
                [mac],
                |r| {
                    Ok(BootOwner {
                        machine: r.get(0)?,
                        vm: r.get(1)?,
                        name: r.get(2)?,
                        initiator: r.get(3)?,
                        kind: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    fn boot_volume(&self, owner: &BootOwner) -> Result<Option<BootVolume>> {
        Ok(self
            .conn
            .query_row(
                "SELECT vol.lun, vol.target_iqn, p.address, p.port, p.iqn_prefix FROM volumes vol
                 JOIN iscsi_portals p ON p.id = vol.portal_id
                 WHERE (?1 IS NOT NULL AND vol.machine_id = ?1) OR (?2 IS NOT NULL AND vol.vm_id = ?2 AND vol.device = 'DISK1')
                 ORDER BY vol.id LIMIT 1",
                params![owner.machine, owner.vm],
                |r| {
                    Ok(BootVolume {
                        lun: r.get(0)?,
                        target: r.get(1)?,
                        address: r.get(2)?,
                        port: r.get(3)?,
                        iqn_prefix: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    fn storage_address(&self, mac: &str) -> Result<Option<(u16, String, Option<String>)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT w.vlan, ip.address, w.subnet FROM nics n JOIN ip_addresses ip ON ip.nic_id = n.id
                 JOIN networks w ON w.id = ip.network_id
                 WHERE n.mac = ?1 AND w.role = 'storage' AND ip.network_id IS NOT n.network_id",
                [mac],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?)
    }
}
