//! Loads the planner's inputs from the inventory: the topology (switches, links, hypervisors
//! and the edge ports they are cabled to, every hypervisor and bare-metal NIC with the network
//! it is on, the storage networks' VLANs), the placement (VMs, their hosts and VLANs) and what
//! each switch port carried when last read back (`switch_applied`). Read-only; one consistent
//! snapshot per call because the caller passes one connection (one read transaction).

use std::collections::BTreeMap;

use rusqlite::Connection;

use crate::inventory::site::{MachineKind, PortRef, SwitchRole};
use crate::inventory::{Error, Result};

use super::plan::{
    Host, MachineNic, NicNetwork, Placement, PortPlan, PortPlans, SwitchNode, Topology, Vm,
};
use super::vlans::{Vlan, VlanSet};

/// VM states in which its NICs are on the wire, so its VLANs must be on its host's port.
const ACTIVE_STATES: &[&str] = &[
    "starting",
    "running",
    "stopping",
    "resetting",
    "installing",
    "configuring",
];

/// The topology; `infra_vlans` comes from the configuration (`[switch] infra_vlans`).
pub fn topology(conn: &Connection, infra_vlans: &VlanSet) -> Result<Topology> {
    let mut t = Topology {
        infra_vlans: infra_vlans.clone(),
        ..Topology::default()
    };
    let mut st = conn.prepare("SELECT name, role, max_macs FROM switches ORDER BY name")?;
    for row in st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<u32>>(2)?,
        ))
    })? {
        let (name, role, max_macs) = row?;
        let role = match role.as_str() {
            "core" => SwitchRole::Core,
            "edge" => SwitchRole::Edge,
            other => {
                return Err(Error::Invalid(format!(
                    "switch {name}: corrupt role {other:?} in table switches"
                )));
            }
        };
        t.switches.push(SwitchNode {
            name,
            role,
            max_macs,
        });
    }
    let mut st = conn.prepare(
        "SELECT sa.name, pa.name, sb.name, pb.name FROM links l
           JOIN switch_ports pa ON pa.id = l.a_port_id JOIN switches sa ON sa.id = pa.switch_id
           JOIN switch_ports pb ON pb.id = l.b_port_id JOIN switches sb ON sb.id = pb.switch_id
         ORDER BY sa.name, pa.position",
    )?;
    for row in st.query_map([], |r| {
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
    })? {
        t.links.push(row?);
    }
    let mut st = conn.prepare(
        "SELECT m.name, m.vcpus, m.memory_mb, m.state, s.name, p.name FROM machines m
           LEFT JOIN nics n ON n.machine_id = m.id AND n.switch_port_id IS NOT NULL
           LEFT JOIN switch_ports p ON p.id = n.switch_port_id
           LEFT JOIN switches s ON s.id = p.switch_id
         WHERE m.kind = 'hypervisor' ORDER BY m.name, n.device",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, u32>(1)?,
            r.get::<_, u32>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, Option<String>>(4)?,
            r.get::<_, Option<String>>(5)?,
        ))
    })?;
    for row in rows {
        let (name, vcpus, memory_mb, state, switch, port) = row?;
        if t.hosts.last().is_none_or(|h| h.name != name) {
            t.hosts.push(Host {
                name,
                vcpus,
                memory_mb,
                available: state == "ready",
                ports: Vec::new(),
            });
        }
        if let (Some(switch), Some(port), Some(h)) = (switch, port, t.hosts.last_mut()) {
            h.ports.push(PortRef { switch, port });
        }
    }
    let mut st = conn.prepare(
        "SELECT m.name, m.kind, n.device, s.name, p.name, net.name, net.vlan, n.boot FROM nics n
           JOIN machines m ON m.id = n.machine_id
           JOIN switch_ports p ON p.id = n.switch_port_id JOIN switches s ON s.id = p.switch_id
           LEFT JOIN networks net ON net.id = n.network_id
         WHERE m.kind IN ('hypervisor', 'bare-metal') ORDER BY m.name, n.device",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, Option<String>>(5)?,
            r.get::<_, Option<Vlan>>(6)?,
            r.get::<_, bool>(7)?,
        ))
    })?;
    for row in rows {
        let (machine, kind, device, switch, port, net, vlan, boot) = row?;
        let kind = if kind == "hypervisor" {
            MachineKind::Hypervisor
        } else {
            MachineKind::BareMetal
        };
        let network = match (net, vlan) {
            (Some(name), Some(vlan)) => Some(NicNetwork { name, vlan }),
            _ => None,
        };
        t.nics.push(MachineNic {
            machine,
            kind,
            device,
            port: PortRef { switch, port },
            network,
            boot,
        });
    }
    let mut st = conn.prepare(
        "SELECT vlan FROM networks WHERE role = 'storage' AND vlan IS NOT NULL ORDER BY vlan",
    )?;
    for row in st.query_map([], |r| r.get::<_, Vlan>(0))? {
        t.storage_vlans.insert(row?);
    }
    Ok(t)
}

/// Every VM with its host, VLANs and size, and every network's VLAN.
pub fn placement(conn: &Connection) -> Result<Placement> {
    let mut vlans_of: BTreeMap<i64, Vec<u16>> = BTreeMap::new();
    let mut st = conn.prepare(
        "SELECT n.vm_id, net.vlan FROM nics n JOIN networks net ON net.id = n.network_id
         WHERE n.vm_id IS NOT NULL AND net.vlan IS NOT NULL ORDER BY n.vm_id, n.device",
    )?;
    for row in st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, u16>(1)?)))? {
        let (vm, vlan) = row?;
        vlans_of.entry(vm).or_default().push(vlan);
    }
    let mut p = Placement::default();
    let mut st = conn.prepare(
        "SELECT v.id, v.name, m.name, v.state, t.vcpus, t.memory_mb, d.name FROM vms v
           JOIN vm_types t ON t.name = v.vm_type
           LEFT JOIN machines m ON m.id = v.hypervisor_id
           LEFT JOIN machines d ON d.id = v.migrating_to
         ORDER BY v.name",
    )?;
    for row in st.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, u32>(4)?,
            r.get::<_, u32>(5)?,
            r.get::<_, Option<String>>(6)?,
        ))
    })? {
        let (id, name, host, state, vcpus, memory_mb, moving_to) = row?;
        p.vms.push(Vm {
            name,
            host,
            moving_to,
            active: ACTIVE_STATES.contains(&state.as_str()),
            vlans: vlans_of.remove(&id).unwrap_or_default(),
            vcpus,
            memory_mb,
        });
    }
    let mut st = conn.prepare("SELECT DISTINCT vlan FROM networks WHERE vlan IS NOT NULL")?;
    for row in st.query_map([], |r| r.get::<_, u16>(0))? {
        p.allocated.insert(row?);
    }
    Ok(p)
}

/// What each switch port carried when last read back (`switch_applied`: its mode, every VLAN
/// it carries, and its native VLAN).
pub fn applied(conn: &Connection) -> Result<PortPlans> {
    let mut out = PortPlans::new();
    let mut st = conn.prepare(
        "SELECT s.name, a.port, a.mode, a.vlans, a.native_vlan FROM switch_applied a
           JOIN switches s ON s.id = a.switch_id",
    )?;
    for row in st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, Option<Vlan>>(4)?,
        ))
    })? {
        let (switch, port, mode, vlans, native) = row?;
        let corrupt = |what: String| {
            Error::Invalid(format!(
                "switch {switch} port {port}: corrupt {what} in switch_applied"
            ))
        };
        let set: VlanSet = vlans
            .parse()
            .map_err(|e| corrupt(format!("VLAN list ({e})")))?;
        let plan = match mode.as_str() {
            "trunk" => PortPlan::trunk(native, set),
            "access" => match native.or_else(|| set.iter().next()) {
                Some(v) => PortPlan::access(v),
                None => return Err(corrupt("access port without a VLAN".into())),
            },
            other => return Err(corrupt(format!("mode {other:?}"))),
        };
        out.entry(switch).or_default().insert(port, plan);
    }
    Ok(out)
}
