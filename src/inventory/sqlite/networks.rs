//! [`Networks`] on SQLite.

use rusqlite::{OptionalExtension, params};

use super::{Tx, page};
use crate::inventory::networks::{
    AddressUse, IpPool, NetworkRecord, NetworkSummary, Networks, NewNetwork, Nic, VlanPool,
};
use crate::inventory::{Page, Result, Window};
use crate::model::NetworkKind;
use crate::util::rfc3339;

impl Networks for Tx<'_> {
    fn network_by_ref(&self, name: &str) -> Result<Option<(i64, Option<u16>)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, vlan FROM networks WHERE name = ?1 OR public_id = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    fn network_on_vlan(&self, vlan: u16) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id FROM networks WHERE vlan = ?1 ORDER BY kind = 'L3SH', id LIMIT 1",
                [vlan],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn create_l2ex(&self, public_id: &str, name: &str, vlan: u16, at: i64) -> Result<i64> {
        Ok(self.conn.query_row(
            "INSERT INTO networks (public_id, name, kind, vlan, created_at) VALUES (?1, ?2, 'L2EX', ?3, ?4)
             RETURNING id",
            params![public_id, name, vlan, rfc3339(at)],
            |r| r.get(0),
        )?)
    }

    fn customer_network(&self, customer: i64, public_id: &str) -> Result<Option<NetworkRecord>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, public_id, kind, subnet, gateway, ip_pool_id, comment, created_at FROM networks
                 WHERE public_id = ?1 AND customer_id = ?2 AND kind != 'infra'",
            )?
            .query_row(params![public_id, customer], |r| {
                Ok(NetworkRecord {
                    id: r.get(0)?,
                    public_id: r.get(1)?,
                    kind: r.get(2)?,
                    subnet: r.get(3)?,
                    gateway: r.get(4)?,
                    ip_pool_id: r.get(5)?,
                    comment: r.get(6)?,
                    created_at: r.get(7)?,
                })
            })
            .optional()?)
    }

    fn network_page(
        &self,
        customer: i64,
        kind: Option<NetworkKind>,
        window: Window,
    ) -> Result<Page<NetworkSummary>> {
        page(
            self.conn,
            "public_id, kind, COALESCE(subnet, ''), comment",
            "FROM networks WHERE customer_id = ?1 AND kind != 'infra' AND (?2 IS NULL OR kind = ?2)",
            "id",
            &[&customer, &kind],
            window,
            |r| {
                Ok(NetworkSummary {
                    public_id: r.get(0)?,
                    kind: r.get(1)?,
                    subnet: r.get(2)?,
                    comment: r.get(3)?,
                })
            },
        )
    }

    fn attachments(&self, id: i64) -> Result<Vec<(String, String)>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT v.public_id, n.device FROM nics n JOIN vms v ON v.id = n.vm_id
                 WHERE n.network_id = ?1 ORDER BY v.public_id, n.device",
            )?
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn addresses_on(&self, id: i64) -> Result<Vec<AddressUse>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT a.address, COALESCE(v.public_id, ''), COALESCE(n.device, '')
                 FROM ip_addresses a LEFT JOIN nics n ON n.id = a.nic_id LEFT JOIN vms v ON v.id = n.vm_id
                 WHERE a.network_id = ?1 ORDER BY a.id",
            )?
            .query_map([id], |r| {
                Ok(AddressUse {
                    address: r.get(0)?,
                    vm: r.get(1)?,
                    device: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn network_use(&self, id: i64) -> Result<(i64, i64)> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT (SELECT COUNT(*) FROM nics WHERE network_id = ?1),
                    (SELECT COUNT(*) FROM ip_addresses WHERE network_id = ?1)",
            )?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))?)
    }

    fn used_vlans(&self) -> Result<Vec<i64>> {
        Ok(self
            .conn
            .prepare_cached("SELECT vlan FROM networks WHERE vlan IS NOT NULL")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn vlan_pools(&self) -> Result<Vec<VlanPool>> {
        Ok(self
            .conn
            .prepare_cached("SELECT id, first_vlan, last_vlan FROM vlan_pools ORDER BY first_vlan")?
            .query_map([], |r| {
                Ok(VlanPool {
                    id: r.get(0)?,
                    first: r.get(1)?,
                    last: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn ip_pools(&self, kind: NetworkKind) -> Result<Vec<IpPool>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {POOL} FROM ip_pools WHERE kind = ?1 ORDER BY id"
            ))?
            .query_map([kind], ip_pool)?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn ip_pool(&self, id: i64) -> Result<Option<IpPool>> {
        Ok(self
            .conn
            .prepare_cached(&format!("SELECT {POOL} FROM ip_pools WHERE id = ?1"))?
            .query_row([id], ip_pool)
            .optional()?)
    }

    fn routed_subnets(&self) -> Result<Vec<String>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT subnet FROM networks WHERE subnet IS NOT NULL AND kind IN ('L3EX', 'infra')",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn insert_network(&self, n: &NewNetwork<'_>, at: i64) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO networks (public_id, name, kind, customer_id, vlan, vlan_pool_id, ip_pool_id, subnet, gateway, comment, created_at)
                 VALUES (?1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                n.public_id,
                n.kind,
                n.customer,
                n.vlan,
                n.vlan_pool,
                n.ip_pool,
                n.subnet,
                n.gateway,
                n.comment,
                rfc3339(at)
            ])?;
        Ok(())
    }

    fn delete_network(&self, id: i64) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM networks WHERE id = ?1")?
            .execute([id])?;
        Ok(())
    }

    fn network_ref(&self, id: i64) -> Result<Option<(String, NetworkKind)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT public_id, kind FROM networks WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    fn pool_addresses(&self, pool: i64) -> Result<Vec<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT address FROM ip_addresses WHERE ip_pool_id = ?1")?
            .query_map([pool], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn insert_address(&self, address: &str, network: i64, pool: i64, customer: i64) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO ip_addresses (address, network_id, ip_pool_id, customer_id) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![address, network, pool, customer])?;
        Ok(())
    }

    fn customer_address(
        &self,
        customer: i64,
        network: i64,
        address: &str,
    ) -> Result<Option<(i64, Option<i64>)>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, nic_id FROM ip_addresses WHERE address = ?1 AND network_id = ?2 AND customer_id = ?3",
            )?
            .query_row(params![address, network, customer], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?)
    }

    fn delete_address(&self, id: i64) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM ip_addresses WHERE id = ?1")?
            .execute([id])?;
        Ok(())
    }

    fn assign_address(&self, id: i64, nic: i64) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE ip_addresses SET nic_id = ?2 WHERE id = ?1")?
            .execute(params![id, nic])?;
        Ok(())
    }

    fn unassign_address(&self, address: &str, nic: i64) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached(
                "UPDATE ip_addresses SET nic_id = NULL WHERE address = ?1 AND nic_id = ?2",
            )?
            .execute(params![address, nic])?
            > 0)
    }

    fn mac_taken(&self, mac: &str) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM nics WHERE mac = ?1)")?
            .query_row([mac], |r| r.get(0))?)
    }

    fn nics_of(&self, vm: i64) -> Result<Vec<(String, Option<i64>)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT device, network_id FROM nics WHERE vm_id = ?1")?
            .query_map([vm], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn nic_at(&self, vm: i64, device: &str) -> Result<Option<Nic>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, mac, network_id FROM nics WHERE vm_id = ?1 AND device = ?2",
            )?
            .query_row(params![vm, device], |r| {
                Ok(Nic {
                    id: r.get(0)?,
                    mac: r.get(1)?,
                    network: r.get(2)?,
                })
            })
            .optional()?)
    }

    fn remove_nic(&self, id: i64) -> Result<()> {
        for sql in [
            "UPDATE ip_addresses SET nic_id = NULL WHERE nic_id = ?1",
            "DELETE FROM nics WHERE id = ?1",
        ] {
            self.conn.prepare_cached(sql)?.execute([id])?;
        }
        Ok(())
    }
}

const POOL: &str = "id, prefix, gateway, default_prefix_length, vlan, range_first, range_last";

fn ip_pool(r: &rusqlite::Row<'_>) -> rusqlite::Result<IpPool> {
    Ok(IpPool {
        id: r.get(0)?,
        prefix: r.get(1)?,
        gateway: r.get(2)?,
        default_prefix_length: r.get(3)?,
        vlan: r.get(4)?,
        range_first: r.get(5)?,
        range_last: r.get(6)?,
    })
}
