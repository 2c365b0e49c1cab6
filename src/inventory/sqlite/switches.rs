//! [`Switches`] on SQLite.

use std::collections::HashMap;

use super::Tx;
use crate::inventory::Result;
use crate::inventory::site::PortRef;
use crate::inventory::switches::{
    AppliedRow, EdgePort, HostPortRow, MachineNicRow, PendingIntent, SwitchRow, SwitchStatus,
    Switches, VmPlacementRow,
};

impl Switches for Tx<'_> {
    fn switch_rows(&self) -> Result<Vec<SwitchRow>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT name, role, max_macs FROM switches ORDER BY name")?;
        let rows = st.query_map([], |r| {
            Ok(SwitchRow {
                name: r.get(0)?,
                role: r.get(1)?,
                max_macs: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn links(&self) -> Result<Vec<(PortRef, PortRef)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT sa.name, pa.name, sb.name, pb.name FROM links l
               JOIN switch_ports pa ON pa.id = l.a_port_id JOIN switches sa ON sa.id = pa.switch_id
               JOIN switch_ports pb ON pb.id = l.b_port_id JOIN switches sb ON sb.id = pb.switch_id
             ORDER BY sa.name, pa.position",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                PortRef {
                    switch: r.get(0)?,
                    port: r.get(1)?,
                },
                PortRef {
                    switch: r.get(2)?,
                    port: r.get(3)?,
                },
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn host_ports(&self) -> Result<Vec<HostPortRow>> {
        let mut st = self.conn.prepare_cached(
            "SELECT m.name, m.vcpus, m.memory_mb, m.state, s.name, p.name FROM machines m
               LEFT JOIN nics n ON n.machine_id = m.id AND n.switch_port_id IS NOT NULL
               LEFT JOIN switch_ports p ON p.id = n.switch_port_id
               LEFT JOIN switches s ON s.id = p.switch_id
             WHERE m.kind = 'hypervisor' ORDER BY m.name, n.device",
        )?;
        let rows = st.query_map([], |r| {
            let (switch, port): (Option<String>, Option<String>) = (r.get(4)?, r.get(5)?);
            Ok(HostPortRow {
                name: r.get(0)?,
                vcpus: r.get(1)?,
                memory_mb: r.get(2)?,
                state: r.get(3)?,
                port: switch
                    .zip(port)
                    .map(|(switch, port)| PortRef { switch, port }),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn machine_nics(&self) -> Result<Vec<MachineNicRow>> {
        let mut st = self.conn.prepare_cached(
            "SELECT m.name, m.kind, n.device, s.name, p.name, net.name, net.vlan, n.boot FROM nics n
               JOIN machines m ON m.id = n.machine_id
               JOIN switch_ports p ON p.id = n.switch_port_id JOIN switches s ON s.id = p.switch_id
               LEFT JOIN networks net ON net.id = n.network_id
             WHERE m.kind IN ('hypervisor', 'bare-metal') ORDER BY m.name, n.device",
        )?;
        let rows = st.query_map([], |r| {
            Ok(MachineNicRow {
                machine: r.get(0)?,
                kind: r.get(1)?,
                device: r.get(2)?,
                port: PortRef {
                    switch: r.get(3)?,
                    port: r.get(4)?,
                },
                network: r.get(5)?,
                vlan: r.get(6)?,
                boot: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn storage_vlans(&self) -> Result<Vec<u16>> {
        let mut st = self.conn.prepare_cached(
            "SELECT vlan FROM networks WHERE role = 'storage' AND vlan IS NOT NULL ORDER BY vlan",
        )?;
        Ok(st
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn vm_placements(&self) -> Result<Vec<VmPlacementRow>> {
        let mut vlans_of: HashMap<i64, Vec<u16>> = HashMap::new();
        let mut st = self.conn.prepare_cached(
            "SELECT n.vm_id, net.vlan FROM nics n JOIN networks net ON net.id = n.network_id
             WHERE n.vm_id IS NOT NULL AND net.vlan IS NOT NULL ORDER BY n.vm_id, n.device",
        )?;
        for row in st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, u16>(1)?)))? {
            let (vm, vlan) = row?;
            vlans_of.entry(vm).or_default().push(vlan);
        }
        let mut st = self.conn.prepare_cached(
            "SELECT v.id, v.name, m.name, v.state, t.vcpus, t.memory_mb, d.name FROM vms v
               JOIN vm_types t ON t.name = v.vm_type
               LEFT JOIN machines m ON m.id = v.hypervisor_id
               LEFT JOIN machines d ON d.id = v.migrating_to
             ORDER BY v.name",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                VmPlacementRow {
                    name: r.get(1)?,
                    host: r.get(2)?,
                    state: r.get(3)?,
                    vcpus: r.get(4)?,
                    memory_mb: r.get(5)?,
                    moving_to: r.get(6)?,
                    vlans: Vec::new(),
                },
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, mut vm) = row?;
            vm.vlans = vlans_of.remove(&id).unwrap_or_default();
            out.push(vm);
        }
        Ok(out)
    }

    fn allocated_vlans(&self) -> Result<Vec<u16>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT DISTINCT vlan FROM networks WHERE vlan IS NOT NULL")?;
        Ok(st
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn applied_rows(&self) -> Result<Vec<AppliedRow>> {
        let mut st = self.conn.prepare_cached(
            "SELECT s.name, a.port, a.mode, a.vlans, a.native_vlan FROM switch_applied a
               JOIN switches s ON s.id = a.switch_id",
        )?;
        let rows = st.query_map([], |r| {
            Ok(AppliedRow {
                switch: r.get(0)?,
                port: r.get(1)?,
                mode: r.get(2)?,
                vlans: r.get(3)?,
                native: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn statuses(&self) -> Result<Vec<SwitchStatus>> {
        let mut st = self.conn.prepare_cached(
            "SELECT s.name, s.role, s.os, s.driver, s.credentials, s.address, s.host_key,
                    (SELECT COUNT(*) FROM switch_intents i WHERE i.switch_id = s.id AND i.state = 'pending'),
                    st.last_success_at, st.last_readback_at, st.last_error, st.last_error_at,
                    st.plan_refusal
             FROM switches s LEFT JOIN switch_status st ON st.switch_id = s.id ORDER BY s.name",
        )?;
        let rows = st.query_map([], |r| {
            Ok(SwitchStatus {
                name: r.get(0)?,
                role: r.get(1)?,
                os: r.get(2)?,
                driver: r.get(3)?,
                credentials: r.get(4)?,
                address: r.get(5)?,
                host_key: r.get(6)?,
                pending: r.get(7)?,
                last_success_at: r.get(8)?,
                last_readback_at: r.get(9)?,
                last_error: r.get(10)?,
                last_error_at: r.get(11)?,
                plan_refusal: r.get(12)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn pending_intents(&self, switch: &str) -> Result<Vec<PendingIntent>> {
        let mut st = self.conn.prepare_cached(
            "SELECT i.id, i.action, i.native, i.port, i.vlan, i.reason, i.created_at FROM switch_intents i
             JOIN switches s ON s.id = i.switch_id
             WHERE s.name = ?1 AND i.state = 'pending' ORDER BY i.id",
        )?;
        let rows = st.query_map([switch], |r| {
            Ok(PendingIntent {
                id: r.get(0)?,
                action: r.get(1)?,
                native: r.get(2)?,
                port: r.get(3)?,
                vlan: r.get(4)?,
                reason: r.get(5)?,
                queued_at: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn edge_ports_of(&self, machine: &str) -> Result<Vec<EdgePort>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT s.name, p.name, a.vlans FROM nics n
                 JOIN machines m ON m.id = n.machine_id
                 JOIN switch_ports p ON p.id = n.switch_port_id
                 JOIN switches s ON s.id = p.switch_id
                 LEFT JOIN switch_applied a ON a.switch_id = s.id AND a.port = p.name
                 WHERE m.name = ?1 AND s.role = 'edge'",
            )?
            .query_map([machine], |r| {
                Ok(EdgePort {
                    switch: r.get(0)?,
                    port: r.get(1)?,
                    applied: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?)
    }
}
