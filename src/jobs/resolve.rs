//! Turns a claimed request into the typed facility [`Command`] (DESIGN.md §6): everything the
//! facility needs, read from the inventory in the claim's transaction, so that the facility
//! never reads the inventory or the caller's XML-RPC arguments. The request's [`Work`] (decided
//! from the API method when the call was accepted) says what to do.

use crate::facility::command::{BootSpec, Command, DiskSpec, NicSpec, Payload, VmSpec};
use crate::inventory::images::{ImageContent, Images};
use crate::inventory::vms::{Hardware, Vms};
use crate::inventory::{self, Tx};
use crate::model::Work;
use crate::storage::default_initiator;

/// What a VM boots, prepared by the engine outside the writer (hashing files takes time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmBoot {
    /// Where the appliance serves files (`[facility] boot_url`), without a trailing `/`.
    pub base_url: String,
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
        Work::Restore { image } => restore(tx, vm, image, boot)?,
        Work::Configure { method, settings } => configure(tx, vm, method, settings, boot)?,
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

/// The VM as its hypervisor must run it: the kernel and initrd of the image on its DISK1 when
/// that image was imported (`boot`'s otherwise), booting DISK1.
pub fn vm_spec(tx: &Tx<'_>, vm: &str, boot: &VmBoot) -> inventory::Result<VmSpec> {
    let (mut spec, image) = hardware_spec(tx, vm, boot)?;
    if let Some((id, content)) = image {
        spec.boot = image_boot(boot, &id, &content, "");
    }
    Ok(spec)
}

/// An install boot (restoreImage): the image's own kernel and initrd in install mode, with no
/// NIC (the archive comes as a disk, the report on a serial port).
fn restore(tx: &Tx<'_>, vm: &str, image: &str, boot: &VmBoot) -> inventory::Result<Command> {
    let (mut spec, _) = hardware_spec(tx, vm, boot)?;
    spec.nics.clear();
    let content = tx.image_content(image)?.filter(ImageContent::imported);
    let payload = match &content {
        Some(c) => Payload {
            image: image.to_owned(),
            url: format!("{}/{}", boot.base_url, c.archive),
            sha256: c.sha256.clone(),
            bytes: c.archive_bytes,
        },
        None => Payload {
            image: image.to_owned(),
            url: String::new(),
            sha256: String::new(),
            bytes: 0,
        },
    };
    if let Some(c) = &content {
        spec.boot = image_boot(boot, image, c, OFFLINE_INSTALL);
    }
    Ok(Command::Restore { spec, payload })
}

/// A configure boot (the Init* methods): the kernel and initrd the VM boots (nhn's initrd
/// in every case), in configure mode, with no NIC (the settings come as a disk).
fn configure(
    tx: &Tx<'_>,
    vm: &str,
    method: &str,
    settings: &serde_json::Value,
    boot: &VmBoot,
) -> inventory::Result<Command> {
    let (mut spec, image) = hardware_spec(tx, vm, boot)?;
    spec.nics.clear();
    spec.boot = match &image {
        Some((id, content)) => image_boot(boot, id, content, OFFLINE_CONFIGURE),
        None => BootSpec {
            cmdline: root_cmdline(&format!("{} {OFFLINE_CONFIGURE}", boot.cmdline)),
            ..spec.boot
        },
    };
    Ok(Command::Configure {
        spec,
        method: method.to_owned(),
        settings: settings.clone(),
    })
}

/// The command line of the offline boots; the agent adds the payload's `nhn.payload=…`.
const OFFLINE_INSTALL: &str = "nhn.mode=install nhn.report=/dev/ttyS1";
const OFFLINE_CONFIGURE: &str = "nhn.mode=configure nhn.report=/dev/ttyS1";

/// The boot files of imported image `id`, with `extra` on the command line.
fn image_boot(boot: &VmBoot, id: &str, content: &ImageContent, extra: &str) -> BootSpec {
    BootSpec {
        kernel_url: format!("{}/images/{id}/vmlinuz", boot.base_url),
        kernel_sha256: content.kernel_sha256.clone(),
        initrd_url: format!("{}/images/{id}/initrd.img", boot.base_url),
        initrd_sha256: content.initrd_sha256.clone(),
        cmdline: root_cmdline(&format!("{} {extra}", boot.cmdline)),
    }
}

/// The command line with DISK1, the first virtio disk, as the root.
fn root_cmdline(cmdline: &str) -> String {
    format!("{} nhn.root=disk nhn.rootdev=/dev/vda", cmdline.trim())
        .trim()
        .to_owned()
}

/// The VM's hardware as a spec booting `boot`'s files, and the imported image on its DISK1.
fn hardware_spec(
    tx: &Tx<'_>,
    vm: &str,
    boot: &VmBoot,
) -> inventory::Result<(VmSpec, Option<(String, ImageContent)>)> {
    let Hardware {
        owner,
        vcpus,
        memory_mb,
        bandwidth_mbps,
        nics,
        disks,
        image,
    } = tx.hardware(vm)?;
    let image = match image {
        Some(id) => tx
            .image_content(&id)?
            .filter(|c| c.imported() && !c.kernel_sha256.is_empty())
            .map(|c| (id, c)),
        None => None,
    };
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
    let spec = VmSpec {
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
            cmdline: root_cmdline(&boot.cmdline),
        },
    };
    Ok((spec, image))
}
