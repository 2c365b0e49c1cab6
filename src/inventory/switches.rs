//! Switches, their ports and what they last reported: backend-neutral repositories,
//! implemented for SQLite in `sqlite/switches.rs` ([`Switches`]: what the planner and the
//! operator read) and `sqlite/intents.rs` ([`SwitchIntents`]: the reconciler's bookkeeping).

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
    pub driver: crate::model::DriverKind,
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
    pub id: i64,
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
    pub state: crate::model::VmState,
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

/// How the reconciler reaches a switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchAccess {
    pub id: i64,
    /// `ssh` or `snmp`.
    pub driver: crate::model::DriverKind,
    /// Template set (`openvswitch`, `cisco-ios`, ...).
    pub os: String,
    pub address: String,
    /// The credential's name in the configuration (never a secret).
    pub credentials: String,
    /// The pinned SSH host key, if any.
    pub host_key: Option<String>,
}

/// A change to queue for a switch port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIntent {
    pub port: String,
    /// `add`, `remove` or `access`.
    pub action: String,
    /// Whether `add`/`remove` is about the port's untagged (native) VLAN.
    pub native: bool,
    pub vlan: u16,
    pub reason: String,
}

/// What one port of a switch carried when read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedPort {
    pub port: String,
    /// `trunk` or `access`.
    pub mode: String,
    /// The VLAN list (`10,100-105`).
    pub vlans: String,
    pub native: Option<u16>,
}

/// What a session with a switch records on its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusUpdate<'a> {
    /// The switch was read back.
    ReadBack,
    /// The session went through.
    Success,
    /// The session failed with this error.
    Error(&'a str),
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
    /// Switch `switch`'s pending intents, oldest first (by id).
    fn pending_intents(&self, switch: &str) -> Result<Vec<PendingIntent>>;
    /// The edge ports machine `machine`'s NICs are cabled to.
    fn edge_ports_of(&self, machine: &str) -> Result<Vec<EdgePort>>;
}

/// The reconciler's bookkeeping: intents queued before anything is sent and marked once the
/// switch has them, each switch's last read-back, and its status (last success, read-back,
/// error, plan refusal). Times are Unix seconds.
pub trait SwitchIntents {
    /// The id of switch `name`.
    fn switch_id(&self, name: &str) -> Result<Option<i64>>;
    /// How to reach switch `name`.
    fn switch_access(&self, name: &str) -> Result<Option<SwitchAccess>>;
    /// Pins switch `switch_id`'s SSH host key (trust on first use).
    fn pin_host_key(&self, switch_id: i64, host_key: &str) -> Result<()>;
    /// How many intents switch `switch` has pending.
    fn pending_count(&self, switch: &str) -> Result<usize>;
    /// Queues `intent` on switch `switch_id` as pending.
    fn queue_intent(&self, switch_id: i64, intent: &NewIntent, at: i64) -> Result<()>;
    /// Cancels intent `id` (the plan no longer wants it).
    fn cancel_intent(&self, id: i64, at: i64) -> Result<()>;
    /// Marks intent `id` applied, if it is still pending.
    fn mark_applied(&self, id: i64, at: i64) -> Result<()>;
    /// The VLANs with a pending add (tagged, native or access) on a switch other than
    /// `switch_id`, ascending.
    fn vlans_added_elsewhere(&self, switch_id: i64) -> Result<Vec<u16>>;
    /// Switch `switch_id`'s last read-back, by port.
    fn applied_ports(&self, switch_id: i64) -> Result<Vec<AppliedPort>>;
    /// Replaces switch `switch_id`'s read-back with `ports`, read at `at`.
    fn replace_applied(&self, switch_id: i64, ports: &[AppliedPort], at: i64) -> Result<()>;
    /// Records on switch `switch_id`'s status what happened at `at`.
    fn record_status(&self, switch_id: i64, update: StatusUpdate<'_>, at: i64) -> Result<()>;
    /// Marks edge `switch` as refused by the plan for `reason` (the first refusal's time is
    /// kept while it lasts); whether the mark changed.
    fn refuse_plan(&self, switch: &str, reason: &str, at: i64) -> Result<bool>;
    /// The switches marked as refused by the plan, by name.
    fn plan_refused(&self) -> Result<Vec<String>>;
    /// Clears switch `switch`'s plan refusal mark.
    fn clear_plan_refusal(&self, switch: &str) -> Result<()>;
}
