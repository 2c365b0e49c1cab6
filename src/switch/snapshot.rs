//! Loads the planner's inputs from the inventory: the topology (switches, links, hypervisors
//! and the edge ports they are cabled to, every hypervisor and bare-metal NIC with the network
//! it is on, the storage networks' VLANs), the placement (VMs, their hosts and VLANs) and what
//! each switch port carried when last read back (`switch_applied`). Read-only; one consistent
//! snapshot per call because the caller passes one transaction.

use crate::inventory::site::{MachineKind, SwitchRole};
use crate::inventory::switches::{AppliedRow, SwitchRow, Switches};
use crate::inventory::{Error, Result, Tx};

use super::plan::{
    Host, MachineNic, NicNetwork, Placement, PortPlan, PortPlans, SwitchNode, Topology, Vm,
};
use super::vlans::VlanSet;

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
pub fn topology(tx: &Tx<'_>, infra_vlans: &VlanSet) -> Result<Topology> {
    let mut t = Topology {
        infra_vlans: infra_vlans.clone(),
        ..Topology::default()
    };
    for SwitchRow {
        name,
        role,
        max_macs,
    } in tx.switch_rows()?
    {
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
    t.links = tx.links()?;
    for row in tx.host_ports()? {
        if t.hosts.last().is_none_or(|h| h.name != row.name) {
            t.hosts.push(Host {
                name: row.name,
                vcpus: row.vcpus,
                memory_mb: row.memory_mb,
                available: row.state == "ready",
                ports: Vec::new(),
            });
        }
        if let (Some(port), Some(h)) = (row.port, t.hosts.last_mut()) {
            h.ports.push(port);
        }
    }
    for nic in tx.machine_nics()? {
        let kind = if nic.kind == "hypervisor" {
            MachineKind::Hypervisor
        } else {
            MachineKind::BareMetal
        };
        let network = match (nic.network, nic.vlan) {
            (Some(name), Some(vlan)) => Some(NicNetwork { name, vlan }),
            _ => None,
        };
        t.nics.push(MachineNic {
            machine: nic.machine,
            kind,
            device: nic.device,
            port: nic.port,
            network,
            boot: nic.boot,
        });
    }
    for v in tx.storage_vlans()? {
        t.storage_vlans.insert(v);
    }
    Ok(t)
}

/// Every VM with its host, VLANs and size, and every network's VLAN.
pub fn placement(tx: &Tx<'_>) -> Result<Placement> {
    let mut p = Placement::default();
    for vm in tx.vm_placements()? {
        p.vms.push(Vm {
            name: vm.name,
            host: vm.host,
            moving_to: vm.moving_to,
            active: ACTIVE_STATES.contains(&vm.state.as_str()),
            vlans: vm.vlans,
            vcpus: vm.vcpus,
            memory_mb: vm.memory_mb,
        });
    }
    for v in tx.allocated_vlans()? {
        p.allocated.insert(v);
    }
    Ok(p)
}

/// What each switch port carried when last read back (`switch_applied`: its mode, every VLAN
/// it carries, and its native VLAN).
pub fn applied(tx: &Tx<'_>) -> Result<PortPlans> {
    let mut out = PortPlans::new();
    for AppliedRow {
        switch,
        port,
        mode,
        vlans,
        native,
    } in tx.applied_rows()?
    {
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
