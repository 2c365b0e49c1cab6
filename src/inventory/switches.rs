//! Switches, their ports and what they last reported: a backend-neutral repository,
//! implemented for SQLite in `sqlite/switches.rs`. Grows as the switch plane moves behind it.

use super::Result;
use super::site::PortRef;

/// An edge port cabled to a machine, with the VLANs the switch last reported on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgePort {
    pub switch: String,
    pub port: String,
    /// The read-back VLAN list (`10,100-105`), if the switch has reported the port.
    pub applied: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchStatus {
    pub name: String,
    pub role: String,
    pub os: String,
    /// `ssh` or `snmp`.
    pub driver: String,
    /// The credential's name in the configuration (never a secret).
    pub credentials: String,
    pub address: String,
    pub host_key: Option<String>,
    pub pending: i64,
    pub last_success_at: Option<String>,
    pub last_readback_at: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// Why the last plan was refused for this edge (MAC budget), while it still is.
    pub plan_refusal: Option<String>,
}

/// A queued switch intent as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingIntent {
    pub action: String,
    pub native: bool,
    pub port: String,
    pub vlan: u16,
    pub reason: String,
    pub queued_at: String,
}

/// A switch as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchRow {
    pub name: String,
    /// `core` or `edge`.
    pub role: String,
    pub max_macs: Option<u32>,
}

/// A hypervisor with one of its cabled ports (none if it has no cabled NIC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPortRow {
    pub name: String,
    pub vcpus: u32,
    pub memory_mb: u32,
    pub state: String,
    pub port: Option<PortRef>,
}

/// A hypervisor's or bare-metal machine's cabled NIC with its network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineNicRow {
    pub machine: String,
    /// `hypervisor` or `bare-metal`.
    pub kind: String,
    pub device: String,
    pub port: PortRef,
    pub network: Option<String>,
    pub vlan: Option<u16>,
    pub boot: bool,
}

/// A VM as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPlacementRow {
    pub name: String,
    pub host: Option<String>,
    pub state: String,
    pub vcpus: u32,
    pub memory_mb: u32,
    pub moving_to: Option<String>,
    /// The VLANs of its attached NICs, by device.
    pub vlans: Vec<u16>,
}

/// What a switch port carried when last read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedRow {
    pub switch: String,
    pub port: String,
    /// `trunk` or `access`.
    pub mode: String,
    /// The VLAN list (`10,100-105`).
    pub vlans: String,
    pub native: Option<u16>,
}

pub trait Switches {
    /// Every switch, by name.
    fn switch_rows(&self) -> Result<Vec<SwitchRow>>;
    /// Every inter-switch link, by the first switch's name and port position.
    fn links(&self) -> Result<Vec<(PortRef, PortRef)>>;
    /// Every hypervisor with each cabled port (one row per port), by name and device.
    fn host_ports(&self) -> Result<Vec<HostPortRow>>;
    /// Every cabled NIC of hypervisors and bare-metal machines, by machine and device.
    fn machine_nics(&self) -> Result<Vec<MachineNicRow>>;
    /// The storage networks' VLANs, ascending.
    fn storage_vlans(&self) -> Result<Vec<u16>>;
    /// Every VM with its host and VLANs, by name.
    fn vm_placements(&self) -> Result<Vec<VmPlacementRow>>;
    /// Every VLAN a network has.
    fn allocated_vlans(&self) -> Result<Vec<u16>>;
    /// Every port's last read-back.
    fn applied_rows(&self) -> Result<Vec<AppliedRow>>;
    /// Every switch with its reconciler status, by name.
    fn statuses(&self) -> Result<Vec<SwitchStatus>>;
    /// Switch `switch`'s pending intents, oldest first.
    fn pending_intents(&self, switch: &str) -> Result<Vec<PendingIntent>>;
    /// The edge ports machine `machine`'s NICs are cabled to.
    fn edge_ports_of(&self, machine: &str) -> Result<Vec<EdgePort>>;
}
