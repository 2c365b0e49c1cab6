//! [`Vms`] on SQLite.

use rusqlite::{OptionalExtension, params};

use super::{Tx, page};
use crate::inventory::vms::{
    AttachedDisk, Disk1, DiskSummary, Hardware, NewVm, NicSummary, VmDetail, VmOverview, VmRecord,
    VmSummary, Vms,
};
use crate::inventory::{Page, Result, Window};
use crate::model::VmState;
use crate::util::rfc3339;

impl Vms for Tx<'_> {
    fn hardware(&self, vm: &str) -> Result<Hardware> {
        let (id, owner, vcpus, memory_mb, bandwidth_mbps, image): (
            i64,
            String,
            u32,
            u32,
            u32,
            Option<String>,
        ) = self.conn.query_row(
            "SELECT v.id, COALESCE(c.name, ''), t.vcpus, t.memory_mb, t.bandwidth_mbps, i.public_id
             FROM vms v JOIN vm_types t ON t.name = v.vm_type
             LEFT JOIN customers c ON c.id = v.customer_id LEFT JOIN images i ON i.id = v.image_id
             WHERE v.public_id = ?1",
            [vm],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )?;
        let nics = self
            .conn
            .prepare_cached(
                "SELECT n.device, n.mac, w.vlan FROM nics n LEFT JOIN networks w ON w.id = n.network_id
                 WHERE n.vm_id = ?1 ORDER BY n.device",
            )?
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let disks = self
            .conn
            .prepare_cached(
                "SELECT vol.device, p.address, p.port, vol.target_iqn, vol.lun, p.iqn_prefix FROM volumes vol
                 JOIN iscsi_portals p ON p.id = vol.portal_id
                 WHERE vol.vm_id = ?1 AND vol.device IS NOT NULL ORDER BY vol.device",
            )?
            .query_map([id], |r| {
                Ok(AttachedDisk {
                    device: r.get(0)?,
                    address: r.get(1)?,
                    port: r.get(2)?,
                    target: r.get(3)?,
                    lun: r.get(4)?,
                    iqn_prefix: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Hardware {
            owner,
            vcpus,
            memory_mb,
            bandwidth_mbps,
            nics,
            disks,
            image,
        })
    }

    fn end_request(
        &self,
        vm: &str,
        request: &str,
        state: VmState,
        reason: &str,
        at: i64,
    ) -> Result<bool> {
        let reason = if state == VmState::Error { reason } else { "" };
        let n = self.conn.execute(
            "UPDATE vms SET state = ?3, current_request_id = NULL, updated_at = ?4, state_reason = ?5,
                hypervisor_id = CASE WHEN ?3 = 'stopped' THEN NULL ELSE hypervisor_id END
             WHERE public_id = ?1 AND current_request_id = ?2",
            params![vm, request, state, rfc3339(at), reason],
        )?;
        Ok(n > 0)
    }

    fn set_observed_state(&self, vm: &str, state: VmState, reason: &str, at: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE vms SET state = ?2, state_reason = ?3, updated_at = ?4,
                hypervisor_id = CASE WHEN ?2 = 'stopped' THEN NULL ELSE hypervisor_id END
             WHERE public_id = ?1",
            params![vm, state, reason, rfc3339(at)],
        )?;
        Ok(())
    }

    fn overview(&self) -> Result<Vec<VmOverview>> {
        let mut st = self.conn.prepare_cached(
            "SELECT v.public_id, COALESCE(c.name, ''), v.vm_type, v.state, COALESCE(m.name, ''), v.state_reason
             FROM vms v LEFT JOIN customers c ON c.id = v.customer_id LEFT JOIN machines m ON m.id = v.hypervisor_id
             ORDER BY v.public_id",
        )?;
        let rows = st.query_map([], |r| {
            Ok(VmOverview {
                vm: r.get(0)?,
                customer: r.get(1)?,
                vm_type: r.get(2)?,
                state: r.get(3)?,
                host: r.get(4)?,
                reason: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn count_in_state(&self, state: VmState) -> Result<i64> {
        Ok(self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM vms WHERE state = ?1")?
            .query_row([state], |r| r.get(0))?)
    }

    fn nic_network(&self, vm_id: i64, device: &str) -> Result<Option<(String, Option<String>)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT w.kind, w.subnet FROM nics n JOIN networks w ON w.id = n.network_id
                 WHERE n.vm_id = ?1 AND n.device = ?2",
                params![vm_id, device],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    fn vm_type_size(&self, name: &str) -> Result<Option<(u32, u32)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT vcpus, memory_mb FROM vm_types WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    fn hypervisor_id(&self, name: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id FROM machines WHERE name = ?1 AND kind = 'hypervisor'",
                [name],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn vm_id_by_name(&self, name: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row("SELECT id FROM vms WHERE name = ?1", [name], |r| r.get(0))
            .optional()?)
    }

    fn vm_name(&self, id: i64) -> Result<String> {
        Ok(self
            .conn
            .query_row("SELECT name FROM vms WHERE id = ?1", [id], |r| r.get(0))?)
    }

    fn create_running_vm(
        &self,
        public_id: &str,
        name: &str,
        vm_type: &str,
        host_id: i64,
        at: i64,
    ) -> Result<i64> {
        Ok(self.conn.query_row(
            "INSERT INTO vms (public_id, name, vm_type, state, hypervisor_id, created_at, updated_at)
             VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?5) RETURNING id",
            params![public_id, name, vm_type, host_id, rfc3339(at)],
            |r| r.get(0),
        )?)
    }

    fn add_nic(&self, vm_id: i64, device: &str, mac: &str, network_id: i64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO nics (mac, vm_id, device, network_id) VALUES (?1, ?2, ?3, ?4)",
            params![mac, vm_id, device, network_id],
        )?;
        Ok(())
    }

    fn set_host(&self, vm_id: i64, host_id: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE vms SET hypervisor_id = ?1 WHERE id = ?2",
            params![host_id, vm_id],
        )?;
        Ok(())
    }

    fn begin_move(&self, name: &str, host_id: i64, at: i64) -> Result<bool> {
        Ok(self.conn.execute(
            "UPDATE vms SET migrating_to = ?1, updated_at = ?2 WHERE name = ?3",
            params![host_id, rfc3339(at), name],
        )? == 1)
    }

    fn move_target(&self, name: &str) -> Result<Option<Option<String>>> {
        Ok(self
            .conn
            .query_row(
                "SELECT d.name FROM vms v LEFT JOIN machines d ON d.id = v.migrating_to WHERE v.name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn finish_move(&self, name: &str, at: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE vms SET hypervisor_id = migrating_to, migrating_to = NULL, updated_at = ?1 WHERE name = ?2",
            params![rfc3339(at), name],
        )?;
        Ok(())
    }

    fn host_of_vm(&self, name: &str) -> Result<Option<Option<String>>> {
        Ok(self
            .conn
            .query_row(
                "SELECT m.name FROM vms v LEFT JOIN machines m ON m.id = v.hypervisor_id WHERE v.name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn delete_vm(&self, name: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM vms WHERE name = ?1", [name])?;
        Ok(())
    }

    fn set_installed_image(&self, vm: &str, image: &str) -> Result<()> {
        let ids: Option<(i64, Option<i64>)> = self
            .conn
            .query_row(
                "SELECT v.id, (SELECT id FROM images WHERE public_id = ?2) FROM vms v
                 WHERE v.public_id = ?1",
                params![vm, image],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((vm_id, image_id)) = ids else {
            return Ok(());
        };
        self.conn.execute(
            "UPDATE volumes SET image_id = ?2 WHERE vm_id = ?1 AND device = 'DISK1'",
            params![vm_id, image_id],
        )?;
        self.conn.execute(
            "UPDATE vms SET image_id = ?2 WHERE id = ?1",
            params![vm_id, image_id],
        )?;
        Ok(())
    }

    fn customer_vm(&self, customer: i64, public_id: &str) -> Result<Option<VmRecord>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, public_id, vm_type, architecture, state, image_id, current_request_id
                 FROM vms WHERE public_id = ?1 AND customer_id = ?2",
            )?
            .query_row(params![public_id, customer], |r| {
                Ok(VmRecord {
                    id: r.get(0)?,
                    public_id: r.get(1)?,
                    vm_type: r.get(2)?,
                    architecture: r.get(3)?,
                    state: r.get(4)?,
                    image_id: r.get(5)?,
                    current_request_id: r.get(6)?,
                })
            })
            .optional()?)
    }

    fn vm_page(
        &self,
        customer: i64,
        state: Option<&str>,
        window: Window,
    ) -> Result<Page<VmSummary>> {
        page(
            self.conn,
            "public_id, vm_type, architecture, state, comment",
            "FROM vms WHERE customer_id = ?1 AND (?2 IS NULL OR state = ?2)",
            "id",
            &[&customer, &state],
            window,
            vm_summary,
        )
    }

    fn vm_detail(&self, customer: i64, public_id: &str) -> Result<Option<VmDetail>> {
        let found = self
            .conn
            .prepare_cached(
                "SELECT v.id, v.public_id, v.vm_type, v.architecture, v.state, v.comment,
                        t.vcpus, t.memory_mb, t.bandwidth_mbps, COALESCE(i.public_id, ''),
                        v.created_at, v.updated_at, COALESCE(v.current_request_id, '')
                 FROM vms v JOIN vm_types t ON t.name = v.vm_type LEFT JOIN images i ON i.id = v.image_id
                 WHERE v.public_id = ?1 AND v.customer_id = ?2",
            )?
            .query_row(params![public_id, customer], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    VmDetail {
                        summary: VmSummary {
                            public_id: r.get(1)?,
                            vm_type: r.get(2)?,
                            architecture: r.get(3)?,
                            state: r.get(4)?,
                            comment: r.get(5)?,
                        },
                        vcpus: r.get(6)?,
                        memory_mb: r.get(7)?,
                        bandwidth_mbps: r.get(8)?,
                        image: r.get(9)?,
                        created_at: r.get(10)?,
                        updated_at: r.get(11)?,
                        current_request: r.get(12)?,
                        disks: Vec::new(),
                        nics: Vec::new(),
                    },
                ))
            })
            .optional()?;
        let Some((id, mut vm)) = found else {
            return Ok(None);
        };
        vm.disks = self
            .conn
            .prepare_cached(
                "SELECT device, public_id, size_gb FROM volumes WHERE vm_id = ?1 ORDER BY device",
            )?
            .query_map([id], |r| {
                Ok(DiskSummary {
                    device: r.get(0)?,
                    volume: r.get(1)?,
                    size_gb: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let nics: Vec<(i64, NicSummary)> = self
            .conn
            .prepare_cached(
                "SELECT n.id, n.device, COALESCE(w.public_id, ''), COALESCE(w.kind, ''), n.mac
                 FROM nics n LEFT JOIN networks w ON w.id = n.network_id WHERE n.vm_id = ?1 ORDER BY n.device",
            )?
            .query_map([id], |r| {
                Ok((
                    r.get(0)?,
                    NicSummary {
                        device: r.get(1)?,
                        network: r.get(2)?,
                        network_kind: r.get(3)?,
                        mac: r.get(4)?,
                        addresses: Vec::new(),
                    },
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut addresses = self.conn.prepare_cached(
            "SELECT address FROM ip_addresses WHERE nic_id = ?1 ORDER BY address",
        )?;
        for (nic, mut summary) in nics {
            summary.addresses = addresses
                .query_map([nic], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            vm.nics.push(summary);
        }
        Ok(Some(vm))
    }

    fn vm_type_names(&self) -> Result<Vec<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT name FROM vm_types ORDER BY vcpus, name")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn insert_vm(&self, vm: &NewVm<'_>, at: i64) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO vms (public_id, name, customer_id, vm_type, architecture, state, comment, created_at, updated_at)
                 VALUES (?1, ?1, ?2, ?3, ?4, 'stopped', ?5, ?6, ?6)",
            )?
            .execute(params![
                vm.public_id,
                vm.customer,
                vm.vm_type,
                vm.architecture,
                vm.comment,
                rfc3339(at)
            ])?;
        Ok(())
    }

    fn deallocate_vm(&self, id: i64) -> Result<()> {
        for sql in [
            "UPDATE volumes SET vm_id = NULL, device = NULL WHERE vm_id = ?1",
            "UPDATE ip_addresses SET nic_id = NULL WHERE nic_id IN (SELECT id FROM nics WHERE vm_id = ?1)",
            "DELETE FROM nics WHERE vm_id = ?1",
            "DELETE FROM vms WHERE id = ?1",
        ] {
            self.conn.prepare_cached(sql)?.execute([id])?;
        }
        Ok(())
    }

    fn begin_request(&self, id: i64, state: VmState, request: &str, at: i64) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE vms SET state = ?2, current_request_id = ?3, updated_at = ?4 WHERE id = ?1",
            )?
            .execute(params![id, state, request, rfc3339(at)])?;
        Ok(())
    }

    fn disk1(&self, id: i64) -> Result<Option<Disk1>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT size_gb, image_id FROM volumes WHERE vm_id = ?1 AND device = 'DISK1'",
            )?
            .query_row([id], |r| {
                Ok(Disk1 {
                    size_gb: r.get(0)?,
                    image_id: r.get(1)?,
                })
            })
            .optional()?)
    }

    fn set_vm_type(&self, id: i64, vm_type: &str, at: i64) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE vms SET vm_type = ?2, updated_at = ?3 WHERE id = ?1")?
            .execute(params![id, vm_type, rfc3339(at)])?;
        Ok(())
    }

    fn set_architecture(&self, id: i64, architecture: &str, at: i64) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE vms SET architecture = ?2, updated_at = ?3 WHERE id = ?1")?
            .execute(params![id, architecture, rfc3339(at)])?;
        Ok(())
    }
}

fn vm_summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<VmSummary> {
    Ok(VmSummary {
        public_id: r.get(0)?,
        vm_type: r.get(1)?,
        architecture: r.get(2)?,
        state: r.get(3)?,
        comment: r.get(4)?,
    })
}
