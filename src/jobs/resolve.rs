//! Turns a claimed request into the typed facility [`Command`] (DESIGN.md §6): everything the
//! facility needs, read from the inventory in the claim's transaction, so that the facility
//! never reads the inventory or the caller's XML-RPC arguments. This is the one place that
//! knows which API method means which command.

use rusqlite::Connection;

use crate::codec::{Struct, text};
use crate::facility::command::{BootSpec, Command, DiskSpec, MachineOp, NicSpec, VmSpec};
use crate::inventory;
use crate::storage::default_initiator;

/// What a VM boots, prepared by the engine outside the writer (hashing files takes time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmBoot {
    pub kernel_url: String,
    pub kernel_sha256: String,
    pub initrd_url: String,
    pub initrd_sha256: String,
    /// The operator's part of the command line; the root is added per VM.
    pub cmdline: String,
    /// Targets have CHAP accounts (`[storage] chap`).
    pub chap: bool,
}

/// The command of an async request: an API call on VM `vm`, or an operator's power request on
/// bare-metal machine `vm` ([`super::machine`]).
pub fn command(
    conn: &Connection,
    method: &str,
    vm: &str,
    args: &Struct,
    boot: &VmBoot,
) -> inventory::Result<Command> {
    if let Some(op) = MachineOp::from_method(method) {
        let timeout_secs = match args.get("timeoutSecs") {
            Some(dxr::Value::Integer(t)) => u64::try_from(*t).unwrap_or(0),
            _ => 0,
        };
        return Ok(Command::Machine { op, timeout_secs });
    }
    Ok(match method {
        "powerOnVm" => Command::PowerOn(vm_spec(conn, vm, boot)?),
        "powerOffVm" => Command::PowerOff {
            force: matches!(args.get("force"), Some(dxr::Value::Boolean(true))),
        },
        "resetVm" => Command::Reset,
        "restoreImage" => Command::Restore {
            image: text(args, "imageId"),
        },
        other => Command::Configure {
            method: other.to_owned(),
            settings: crate::codec::to_json(&dxr::Value::Struct(args.clone())),
        },
    })
}

/// The VM as its hypervisor must run it.
pub fn vm_spec(conn: &Connection, vm: &str, boot: &VmBoot) -> inventory::Result<VmSpec> {
    let (id, owner, vcpus, memory_mb, bandwidth_mbps): (i64, String, u32, u32, u32) = conn
        .query_row(
            "SELECT v.id, COALESCE(c.name, ''), t.vcpus, t.memory_mb, t.bandwidth_mbps FROM vms v
             JOIN vm_types t ON t.name = v.vm_type LEFT JOIN customers c ON c.id = v.customer_id
             WHERE v.public_id = ?1",
            [vm],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )?;
    let nics = conn
        .prepare_cached(
            "SELECT n.device, n.mac, w.vlan FROM nics n LEFT JOIN networks w ON w.id = n.network_id
             WHERE n.vm_id = ?1 ORDER BY n.device",
        )?
        .query_map([id], |r| {
            Ok(NicSpec {
                device: r.get(0)?,
                mac: r.get(1)?,
                vlan: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let disks = conn
        .prepare_cached(
            "SELECT vol.device, p.address, p.port, vol.target_iqn, vol.lun, p.iqn_prefix FROM volumes vol
             JOIN iscsi_portals p ON p.id = vol.portal_id
             WHERE vol.vm_id = ?1 AND vol.device IS NOT NULL ORDER BY vol.device",
        )?
        .query_map([id], |r| {
            let (device, address, port, target, lun, prefix): (
                String,
                String,
                u16,
                String,
                u32,
                String,
            ) = (
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            );
            Ok(DiskSpec {
                device,
                portal: format!("{address}:{port}"),
                target,
                lun,
                initiator: default_initiator(&prefix, vm),
                chap: boot.chap,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(VmSpec {
        vm: vm.to_owned(),
        owner,
        vcpus,
        memory_mb,
        bandwidth_mbps,
        nics,
        disks,
        boot: BootSpec {
            kernel_url: boot.kernel_url.clone(),
            kernel_sha256: boot.kernel_sha256.clone(),
            initrd_url: boot.initrd_url.clone(),
            initrd_sha256: boot.initrd_sha256.clone(),
            // DISK1 is the first virtio disk.
            cmdline: format!("{} nhn.root=disk nhn.rootdev=/dev/vda", boot.cmdline)
                .trim()
                .to_owned(),
        },
    })
}
