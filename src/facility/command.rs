//! The typed commands the job engine hands to the facility, with everything resolved from the
//! inventory when the request is claimed (DESIGN.md §6): the facility never reads the
//! inventory or the caller's XML-RPC arguments. A command is stored as JSON in the request's
//! row, so a re-dispatch after a restart sends exactly what the first dispatch sent.
//!
//! Secrets are never part of a command: a disk names whether its target wants CHAP, and the
//! transport that sends the command to an agent adds the account on the way out.

use serde::{Deserialize, Serialize};

/// What to do to a machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Command {
    /// Start the VM described (a no-op success if it already runs).
    PowerOn(VmSpec),
    /// Stop it: ACPI shutdown, forced after the agent's grace period, or forced at once.
    PowerOff { force: bool },
    /// Hard reset of a running VM.
    Reset,
    /// Install an image on DISK1 (restoreImage): the VM boots the image's kernel and nhn
    /// initrd in install mode (`spec.boot`), with the archive as a read-only disk, and reports
    /// on its second serial port; a success once the initrd reports the image unpacked.
    Restore { spec: VmSpec, payload: Payload },
    /// Apply an Init* method's settings to DISK1 (configure mode): the VM boots nhn's initrd
    /// with `nhn.mode=configure` (`spec.boot`) and the settings as a read-only disk, and
    /// reports on its second serial port like an install.
    Configure {
        spec: VmSpec,
        method: String,
        settings: serde_json::Value,
    },
    /// A bare-metal machine's power, through its BMC (`power_driver` ipmi or redfish); a
    /// success only once the BMC reports the new state, within `timeout_secs`.
    Machine { op: MachineOp, timeout_secs: u64 },
}

pub use crate::model::MachineOp;

impl Command {
    /// The VM the command boots, if it boots one (a power-on, an install boot).
    pub fn vm_spec(&self) -> Option<&VmSpec> {
        match self {
            Command::PowerOn(spec)
            | Command::Restore { spec, .. }
            | Command::Configure { spec, .. } => Some(spec),
            _ => None,
        }
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::PowerOn(_) => "power_on",
            Command::PowerOff { .. } => "power_off",
            Command::Reset => "reset",
            Command::Restore { .. } => "restore",
            Command::Configure { .. } => "configure",
            Command::Machine { .. } => "machine_power",
        }
    }
}

/// A VM as its hypervisor must run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSpec {
    /// The VM's public id (`vm-…`): its directory and QEMU name on the hypervisor.
    pub vm: String,
    /// The customer the VM belongs to. The agent starts one VM at a time per owner, so one
    /// customer's burst of power-ons shares a host's CPUs with another's single one instead of
    /// crowding it out (HAAS-API.md §3.2 layer 3, carried onto the host).
    #[serde(default)]
    pub owner: String,
    pub vcpus: u32,
    pub memory_mb: u32,
    /// The VM type's bandwidth cap, per NIC.
    pub bandwidth_mbps: u32,
    pub nics: Vec<NicSpec>,
    pub disks: Vec<DiskSpec>,
    pub boot: BootSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicSpec {
    /// NET1, NET2.
    pub device: String,
    pub mac: String,
    /// The access VLAN of the NIC's network (`None`: not attached, the NIC has no link).
    pub vlan: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSpec {
    /// DISK1, DISK2.
    pub device: String,
    /// `address:port` of the iSCSI portal.
    pub portal: String,
    pub target: String,
    pub lun: u32,
    /// The initiator name the target's ACL allows.
    pub initiator: String,
    /// The target wants a CHAP account (the transport adds it; it is never stored here).
    pub chap: bool,
}

/// Direct kernel boot: the kernel and initrd the appliance serves over HTTP, with their SHA-256
/// so the hypervisor can keep a verified copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootSpec {
    pub kernel_url: String,
    pub kernel_sha256: String,
    pub initrd_url: String,
    pub initrd_sha256: String,
    pub cmdline: String,
}

/// What an install boot unpacks: an image's archive, served by the appliance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    /// The image's public id.
    pub image: String,
    /// Where the archive is ("" when the image has no content: it was never imported).
    pub url: String,
    pub sha256: String,
    pub bytes: u64,
}

/// A CHAP account for one target, added by the transport when it sends a command.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chap {
    pub target: String,
    pub user: String,
    pub secret: String,
}

impl std::fmt::Debug for Chap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chap")
            .field("target", &self.target)
            .field("user", &self.user)
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_tagged_json_that_round_trips() {
        let c = Command::PowerOff { force: true };
        let j = serde_json::to_string(&c).unwrap();
        assert_eq!(j, r#"{"kind":"power_off","force":true}"#);
        assert_eq!(serde_json::from_str::<Command>(&j).unwrap(), c);
        assert_eq!(
            serde_json::to_string(&Command::Reset).unwrap(),
            r#"{"kind":"reset"}"#
        );
    }

    #[test]
    fn machine_ops_map_to_their_methods_and_back() {
        for op in [
            MachineOp::On,
            MachineOp::Off,
            MachineOp::ForceOff,
            MachineOp::Reset,
            MachineOp::PxeOnce,
        ] {
            assert_eq!(MachineOp::from_method(op.method()), Some(op));
        }
        assert_eq!(MachineOp::from_method("powerOnVm"), None);
        let c = Command::Machine {
            op: MachineOp::ForceOff,
            timeout_secs: 30,
        };
        let j = serde_json::to_string(&c).unwrap();
        assert_eq!(
            j,
            r#"{"kind":"machine","op":"force_off","timeout_secs":30}"#
        );
        assert_eq!(serde_json::from_str::<Command>(&j).unwrap(), c);
    }

    #[test]
    fn chap_secrets_are_not_printed() {
        let c = Chap {
            target: "iqn.x".into(),
            user: "u".into(),
            secret: "s3cret".into(),
        };
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
