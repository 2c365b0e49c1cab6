//! Placement decisions applied to the inventory: `nhn vm place`, `vm move` and `vm remove`
//! (until the HaaS API exists, operators and tests place VMs from the CLI). These only change
//! the inventory, inside the caller's transaction; the switch reconciler follows the change
//! events and moves the VLANs. A move's steps ([`check_move`], [`begin_move`], [`move_ready`],
//! [`finish_move`]) are run as a request by `jobs::moves`.

use crate::inventory::networks::Networks;
use crate::inventory::vms::Vms;
use crate::inventory::{Error, Result, Tx, audit, record_event};
use crate::switch::plan::{Placement, Vm};
use crate::switch::snapshot;
use crate::switch::vlans::{MAX_VLAN, Vlan, VlanSet};
use crate::util::unix_now;

use super::{Choice, Request, choose};
use crate::model::EventKind;

/// What `nhn vm place` asks for.
#[derive(Debug, Clone)]
pub struct PlaceArgs {
    pub name: String,
    /// Network names, public ids, or bare VLAN ids (an L2EX network `vlan-N` is created for
    /// a VLAN that has none yet).
    pub networks: Vec<String>,
    pub host: Option<String>,
    pub vm_type: String,
}

/// Resolves a `--network` argument to (network id, VLAN), creating `vlan-N` if needed.
fn network(conn: &Tx<'_>, arg: &str) -> Result<(i64, Vlan)> {
    if let Some((id, vlan)) = conn.network_by_ref(arg)? {
        let vlan = vlan.ok_or_else(|| {
            Error::Invalid(format!(
                "network {arg} has no VLAN; a VM cannot attach to it"
            ))
        })?;
        return Ok((id, vlan));
    }
    let vlan: Vlan = arg
        .parse()
        .ok()
        .filter(|v| (1..=MAX_VLAN).contains(v))
        .ok_or_else(|| {
            Error::NotFound(format!(
                "network {arg:?} (give a network name, its net-… id, or a VLAN id 1..4094)"
            ))
        })?;
    if let Some(id) = conn.network_on_vlan(vlan)? {
        return Ok((id, vlan));
    }
    let name = format!("vlan-{vlan}");
    let id = conn.create_l2ex(&format!("net-{name}"), &name, vlan, unix_now())?;
    record_event(conn, EventKind::Network, &name)?;
    Ok((id, vlan))
}

fn vm_type(conn: &Tx<'_>, name: &str) -> Result<(u32, u32)> {
    conn.vm_type_size(name)?
        .ok_or_else(|| Error::NotFound(format!("VM type {name:?} (the seed's are V10 … V160)")))
}

fn host_id(conn: &Tx<'_>, host: &str) -> Result<i64> {
    conn.hypervisor_id(host)?
        .ok_or_else(|| Error::NotFound(format!("hypervisor {host:?}")))
}

/// Places a new VM (running) on the best hypervisor, or on `args.host` if it fits.
pub fn place(conn: &Tx<'_>, args: &PlaceArgs, infra_vlans: &VlanSet) -> Result<Choice> {
    if conn.vm_id_by_name(&args.name)?.is_some() {
        return Err(Error::Invalid(format!(
            "VM {} already exists; use `nhn vm move` to change its host",
            args.name
        )));
    }
    if args.networks.is_empty() {
        return Err(Error::Invalid(format!(
            "VM {}: give at least one --network",
            args.name
        )));
    }
    let (vcpus, memory_mb) = vm_type(conn, &args.vm_type)?;
    let nets = args
        .networks
        .iter()
        .map(|n| network(conn, n))
        .collect::<Result<Vec<_>>>()?;
    let topo = snapshot::topology(conn, infra_vlans)?;
    let placement = snapshot::placement(conn)?;
    let req = Request {
        name: args.name.clone(),
        vlans: nets.iter().map(|(_, v)| *v).collect(),
        vcpus,
        memory_mb,
    };
    let choice = choose(&topo, &placement, &req, args.host.as_deref())
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let host = host_id(conn, &choice.host)?;
    let vm = conn.create_running_vm(
        &format!("vm-{:08x}", rand::random::<u32>()),
        &args.name,
        &args.vm_type,
        host,
        unix_now(),
    )?;
    for (i, (net, _)) in nets.iter().enumerate() {
        // Locally administered MACs, unique per VM row and NIC ("NH" in the OUI bytes).
        let n = (vm as u64) * 4 + i as u64;
        let mac = format!(
            "02:4e:48:{:02x}:{:02x}:{:02x}",
            (n >> 16) & 0xff,
            (n >> 8) & 0xff,
            n & 0xff
        );
        conn.add_nic(vm, &format!("NET{}", i + 1), &mac, *net)?;
    }
    record_event(conn, EventKind::Vm, &args.name)?;
    audit(
        conn,
        "cli",
        "vm.place",
        &args.name,
        &format!("ok: {}", choice.host),
    )?;
    Ok(choice)
}

/// Removes VM `name` from a placement snapshot (to place it again) and returns it.
fn take_vm(placement: &mut Placement, name: &str) -> Result<Vm> {
    let pos = placement
        .vms
        .iter()
        .position(|v| v.name == name)
        .ok_or_else(|| Error::NotFound(format!("VM {name:?}")))?;
    Ok(placement.vms.remove(pos))
}

/// Gives a stopped VM (made by the API, so without a host) the best hypervisor for its size
/// and VLANs, for a power-on: records it as the VM's host and returns the decision. `Ok(Err)`
/// when no hypervisor can take it now (the reason names hosts: for operators, not customers).
pub fn place_for_start(
    conn: &Tx<'_>,
    vm_id: i64,
    infra_vlans: &VlanSet,
) -> Result<std::result::Result<Choice, String>> {
    let name = conn.vm_name(vm_id)?;
    let topo = snapshot::topology(conn, infra_vlans)?;
    let mut placement = snapshot::placement(conn)?;
    let vm = take_vm(&mut placement, &name)?;
    let req = Request {
        name: name.clone(),
        vlans: vm.vlans,
        vcpus: vm.vcpus,
        memory_mb: vm.memory_mb,
    };
    let choice = match choose(&topo, &placement, &req, None) {
        Ok(c) => c,
        Err(e) => return Ok(Err(e.to_string())),
    };
    conn.set_host(vm_id, host_id(conn, &choice.host)?)?;
    Ok(Ok(choice))
}

/// Whether VM `name` can start moving to `host` (it is not moving, not already there, and the
/// host can take it): the decision, or why not. Reads only.
pub fn check_move(conn: &Tx<'_>, name: &str, host: &str, infra_vlans: &VlanSet) -> Result<Choice> {
    let topo = snapshot::topology(conn, infra_vlans)?;
    let mut placement = snapshot::placement(conn)?;
    let vm = take_vm(&mut placement, name)?;
    if let Some(to) = &vm.moving_to {
        return Err(Error::Invalid(format!(
            "VM {name} is already moving to {to}; finish that move first (`nhn vm move {name} --finish`)"
        )));
    }
    if vm.host.as_deref() == Some(host) {
        return Err(Error::Invalid(format!("VM {name} already runs on {host}")));
    }
    let req = Request {
        name: name.to_owned(),
        vlans: vm.vlans,
        vcpus: vm.vcpus,
        memory_mb: vm.memory_mb,
    };
    choose(&topo, &placement, &req, Some(host)).map_err(|e| Error::Invalid(e.to_string()))
}

/// Starts moving a VM to `host` (live migration or evacuation), if the host can take it
/// ([`check_move`]). Until [`finish_move`], the VM holds a slot on both hosts and the plan
/// keeps its VLANs on both, so the destination's network is built before the VM moves.
pub fn begin_move(
    conn: &Tx<'_>,
    name: &str,
    host: &str,
    infra_vlans: &VlanSet,
    actor: &str,
) -> Result<Choice> {
    let choice = check_move(conn, name, host, infra_vlans)?;
    let host_id = host_id(conn, host)?;
    if !conn.begin_move(name, host_id, unix_now())? {
        return Err(Error::NotFound(format!("VM {name:?}")));
    }
    record_event(conn, EventKind::Vm, name)?;
    audit(
        conn,
        actor,
        "vm.move.begin",
        name,
        &format!("ok: to {host}"),
    )?;
    Ok(choice)
}

/// True when every port that the plan gives one of the VM's VLANs reported carrying it at its
/// last read-back: the destination's path is built and the VM can move.
pub fn move_ready(conn: &Tx<'_>, name: &str, infra_vlans: &VlanSet) -> Result<bool> {
    let placement = snapshot::placement(conn)?;
    let vm = placement
        .vms
        .iter()
        .find(|v| v.name == name)
        .ok_or_else(|| Error::NotFound(format!("VM {name:?}")))?;
    let planned = crate::switch::plan_inventory(conn, infra_vlans).map_err(|e| match e {
        crate::switch::Error::Inventory(e) => e,
        crate::switch::Error::Plan(e) => Error::Invalid(e.to_string()),
    })?;
    let applied = snapshot::applied(conn)?;
    let empty = crate::switch::PortPlan::default();
    for (switch, ports) in &planned.desired.ports {
        for (port, want) in ports {
            let have = applied
                .get(switch)
                .and_then(|p| p.get(port))
                .unwrap_or(&empty);
            if vm
                .vlans
                .iter()
                .any(|v| want.contains(*v) && !have.contains(*v))
            {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Where VM `name` is moving, or why it cannot finish a move (no such VM, not moving).
pub fn move_destination(conn: &Tx<'_>, name: &str) -> Result<String> {
    conn.move_target(name)?
        .ok_or_else(|| Error::NotFound(format!("VM {name:?}")))?
        .ok_or_else(|| Error::Invalid(format!("VM {name} is not moving")))
}

/// Finishes a move: the VM now runs on its destination only, and the source's VLANs go.
pub fn finish_move(conn: &Tx<'_>, name: &str, actor: &str) -> Result<String> {
    let to = move_destination(conn, name)?;
    conn.finish_move(name, unix_now())?;
    record_event(conn, EventKind::Vm, name)?;
    audit(conn, actor, "vm.move.finish", name, &format!("ok: on {to}"))?;
    Ok(to)
}

/// Deletes a VM (its NICs go with it); returns the host it was on.
pub fn remove_vm(conn: &Tx<'_>, name: &str) -> Result<Option<String>> {
    let host = conn
        .host_of_vm(name)?
        .ok_or_else(|| Error::NotFound(format!("VM {name:?}")))?;
    conn.delete_vm(name)?;
    record_event(conn, EventKind::Vm, name)?;
    audit(conn, "cli", "vm.remove", name, "ok")?;
    Ok(host)
}
