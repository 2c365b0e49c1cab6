//! Switches, their ports and what they last reported: a backend-neutral repository,
//! implemented for SQLite in `sqlite/switches.rs`. Grows as the switch plane moves behind it.

use super::Result;

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

pub trait Switches {
    /// Every switch with its reconciler status, by name.
    fn statuses(&self) -> Result<Vec<SwitchStatus>>;
    /// Switch `switch`'s pending intents, oldest first.
    fn pending_intents(&self, switch: &str) -> Result<Vec<PendingIntent>>;
    /// The edge ports machine `machine`'s NICs are cabled to.
    fn edge_ports_of(&self, machine: &str) -> Result<Vec<EdgePort>>;
}
