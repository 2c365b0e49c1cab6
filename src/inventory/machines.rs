//! The machines aggregate (hypervisors, bare-metal servers): a backend-neutral repository,
//! implemented for SQLite in `sqlite/machines.rs`. Grows as modules move behind it.

use super::Result;

pub trait Machines {
    /// The `power_driver` of machine `name` (`None`: no such machine).
    fn power_driver(&self, name: &str) -> Result<Option<String>>;
}
