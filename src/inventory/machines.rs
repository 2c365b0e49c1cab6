//! The machines aggregate (hypervisors, bare-metal servers): a backend-neutral repository,
//! implemented for SQLite in `sqlite/machines.rs`. Grows as modules move behind it.

use super::Result;
use super::site::PowerDriver;

/// A machine's power settings as the inventory has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineBmc {
    pub name: String,
    pub driver: PowerDriver,
    pub address: Option<String>,
    /// The name of the `[credentials.NAME]` section.
    pub credential: Option<String>,
}

pub trait Machines {
    /// Machine `name`'s power settings (`None`: no such machine).
    fn bmc(&self, name: &str) -> Result<Option<MachineBmc>>;
    /// The `power_driver` of machine `name` (`None`: no such machine).
    fn power_driver(&self, name: &str) -> Result<Option<String>>;
}
