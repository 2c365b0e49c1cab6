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

pub trait Switches {
    /// The edge ports machine `machine`'s NICs are cabled to.
    fn edge_ports_of(&self, machine: &str) -> Result<Vec<EdgePort>>;
}
