//! Networks (VLANs): a backend-neutral repository, implemented for SQLite in
//! `sqlite/networks.rs`. Grows as the API's network methods move behind it.

use super::Result;

pub trait Networks {
    /// The network named `name` or with public id `name`: its id and VLAN.
    fn network_by_ref(&self, name: &str) -> Result<Option<(i64, Option<u16>)>>;
    /// A network on `vlan` (an L2EX one before an L3SH one).
    fn network_on_vlan(&self, vlan: u16) -> Result<Option<i64>>;
    /// Creates an L2EX network; its id.
    fn create_l2ex(&self, public_id: &str, name: &str, vlan: u16, at: i64) -> Result<i64>;
}
