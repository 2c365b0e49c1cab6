//! Turns a claimed request into the typed facility [`Command`] (DESIGN.md §6): everything the
//! facility needs, read from the inventory in the claim's transaction, so that the facility
//! never reads the inventory or the caller's XML-RPC arguments. The request's [`Work`] (decided
//! from the API method when the call was accepted) says what to do.

use crate::facility::command::{BootSpec, Command, DiskSpec, NicSpec, VmSpec};
use crate::inventory::vms::{Hardware, Vms};
use crate::inventory::{self, Tx};
use crate::model::Work;
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

/// The command of an async request: an API call's work on VM `vm`, or an operator's power
/// request on bare-metal machine `vm` ([`super::machine`]).
pub fn command(tx: &Tx<'_>, work: &Work, vm: &str, boot: &VmBoot) -> inventory::Result<Command> {
    Ok(match work {
        Work::PowerOn => Command::PowerOn(vm_spec(tx, vm, boot)?),
        Work::PowerOff { force } => Command::PowerOff { force: *force },
        Work::Reset => Command::Reset,
        Work::Restore { image } => Command::Restore {
            image: image.clone(),
        },
        Work::Configure { method, settings } => Command::Configure {
            method: method.clone(),
            settings: settings.clone(),
        },
        Work::Machine { op, timeout_secs } => Command::Machine {
            op: *op,
            timeout_secs: *timeout_secs,
        },
        Work::Move { .. } | Work::FinishMove => {
            return Err(inventory::Error::Invalid(
                "a VM move is run by the job engine (jobs::moves), not by the facility".into(),
            ));
        }
    })
}

/// The VM as its hypervisor must run it.
pub fn vm_spec(tx: &Tx<'_>, vm: &str, boot: &VmBoot) -> inventory::Result<VmSpec> {
    let Hardware {
        owner,
        vcpus,
        memory_mb,
        bandwidth_mbps,
        nics,
        disks,
    } = tx.hardware(vm)?;
    let nics = nics
        .into_iter()
        .map(|(device, mac, vlan)| NicSpec { device, mac, vlan })
        .collect();
    let disks = disks
        .into_iter()
        .map(|d| DiskSpec {
            device: d.device,
            portal: format!("{}:{}", d.address, d.port),
            target: d.target,
            lun: d.lun,
            initiator: default_initiator(&d.iqn_prefix, vm),
            chap: boot.chap,
        })
        .collect();
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
