//! The switch plane: VLANs on core and edge switches follow the inventory.
//!
//! - [`plan`]: the pure planner — a [`PortPlan`] per managed port (a trunk's native VLAN and
//!   tagged VLANs, or an access port's VLAN), MAC budgets — and the diff against what the
//!   switches last reported, with the reason for every change.
//! - [`snapshot`]: loads the planner's inputs from the inventory.
//! - [`vlans`]: the VLAN set type everything above works on.
//! - [`templates`]: per-OS CLI templates and the batch renderer; [`readback`]: parsers of
//!   the switches' own view of their VLANs.
//! - [`driver`]: the trait the reconciler drives switches through, with its two
//!   implementations: [`ssh`] (CLI over exec and PTY sessions, pinned host keys) and [`snmp`]
//!   (Q-BRIDGE-MIB over SNMPv2c/v3, port names read from the switch), picked by a switch's
//!   `DriverKind`.
//! - [`reconciler`]: intents persisted before sending, one actor per switch, retries,
//!   make-before-break, periodic read-back; [`status`]: what the operator sees of it.
//!
//! Placement (which hypervisor a VM goes on) lives in `crate::placement` and uses the same
//! snapshot, so placement and switch state are decided together.

pub mod driver;
pub mod plan;
pub mod readback;
pub mod reconciler;
pub mod snapshot;
pub mod snmp;
pub mod ssh;
pub mod status;
pub mod templates;
pub mod vlans;

pub use plan::{Action, Change, DesiredState, Mode, PlanError, PortPlan, PortPlans, diff, plan};

use crate::inventory::{self, Tx};
use vlans::VlanSet;

/// Errors of the switch plane at its boundary.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Inventory(#[from] inventory::Error),
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// The plan for the inventory as it is now, and its diff against the last read-back.
pub struct Planned {
    pub desired: DesiredState,
    pub changes: Vec<Change>,
    /// Switches with managed ports that were never read back (their ports count as empty).
    pub never_read: Vec<String>,
}

/// Plans from one consistent snapshot of the inventory.
pub fn plan_inventory(conn: &Tx<'_>, infra_vlans: &VlanSet) -> Result<Planned, Error> {
    let topo = snapshot::topology(conn, infra_vlans)?;
    let placement = snapshot::placement(conn)?;
    let actual = snapshot::applied(conn)?;
    let desired = plan(&topo, &placement)?;
    let changes = diff(&desired, &actual);
    let never_read = desired
        .ports
        .keys()
        .filter(|s| !actual.contains_key(*s))
        .cloned()
        .collect();
    Ok(Planned {
        desired,
        changes,
        never_read,
    })
}
