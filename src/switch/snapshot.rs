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
            active: vm.state.on_the_wire(),
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

#[cfg(test)]
mod tests {
    //! The planner's inputs as read from an in-memory store holding the seed site.

    use super::*;
    use crate::inventory::site;
    use crate::inventory::vms::Vms;
    use crate::model::VmState;
    use crate::placement::store::{PlaceArgs, place};

    #[test]
    fn the_topology_is_the_site_files() {
        let mem = site::seeded();
        let t = topology(&mem.tx(), &"4000".parse().unwrap()).unwrap();
        let roles: Vec<(String, SwitchRole, Option<u32>)> = t
            .switches
            .iter()
            .map(|s| (s.name.clone(), s.role, s.max_macs))
            .collect();
        assert_eq!(roles.len(), 5);
        assert_eq!(
            roles.iter().filter(|r| r.1 == SwitchRole::Core).count(),
            2,
            "{roles:?}"
        );
        assert!(roles.contains(&("Edge-Switch-1".into(), SwitchRole::Edge, Some(64))));
        assert_eq!(t.links.len(), 7);
        let hosts: Vec<(String, u32, bool, Vec<String>)> = t
            .hosts
            .iter()
            .map(|h| {
                let ports = h.ports.iter().map(|p| format!("{}:{}", p.switch, p.port));
                (h.name.clone(), h.vcpus, h.available, ports.collect())
            })
            .collect();
        assert_eq!(
            hosts,
            (1..=3)
                .map(|n| (
                    format!("Hypervisor-{n}"),
                    32,
                    true,
                    vec![format!("Edge-Switch-{n}:swp3")]
                ))
                .collect::<Vec<_>>()
        );
        assert_eq!(t.nics.len(), 3);
        assert!(
            t.nics
                .iter()
                .all(|n| n.kind == MachineKind::Hypervisor && n.boot)
        );
        assert_eq!(t.storage_vlans.to_string(), "10");
        assert_eq!(t.infra_vlans.to_string(), "4000");
    }

    #[test]
    fn only_vms_on_the_wire_are_active() {
        let mem = site::seeded();
        let tx = mem.tx();
        for (name, vlan) in [("VM1", "100"), ("VM2", "200")] {
            let args = PlaceArgs {
                name: name.into(),
                networks: vec![vlan.into()],
                host: Some("Hypervisor-1".into()),
                vm_type: "V10".into(),
            };
            place(&tx, &args, &VlanSet::new()).unwrap();
        }
        for (state, active) in [
            (VmState::Running, true),
            (VmState::Installing, true),
            (VmState::Stopping, true),
            (VmState::Error, false),
            (VmState::Stopped, false),
        ] {
            let id = tx.vm_id_by_name("VM2").unwrap().unwrap();
            tx.begin_request(id, state, "req-1", 0).unwrap();
            let p = placement(&tx).unwrap();
            let vm2 = p.vms.iter().find(|v| v.name == "VM2").unwrap();
            assert_eq!(vm2.active, active, "{state}");
            assert_eq!(vm2.vlans, [200]);
            assert_eq!(p.allocated.to_string(), "10,20,100,200");
        }
    }
}
