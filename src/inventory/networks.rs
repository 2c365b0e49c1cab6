//! Networks (VLANs), their address pools, NICs and L3SH addresses: a backend-neutral
//! repository, implemented for SQLite in `sqlite/networks.rs`.

use super::{Page, Result, Window};
use crate::model::NetworkKind;

/// A customer's network (never an infrastructure one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRecord {
    pub id: i64,
    pub public_id: String,
    pub kind: NetworkKind,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_pool_id: Option<i64>,
    pub comment: String,
    pub created_at: String,
}

/// A network in a customer's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSummary {
    pub public_id: String,
    pub kind: NetworkKind,
    /// Empty for L2EX.
    pub subnet: String,
    pub comment: String,
}

/// An L3SH address and the NIC it is assigned to (empty strings if none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressUse {
    pub address: String,
    pub vm: String,
    pub device: String,
}

/// A customer VLAN pool, `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanPool {
    pub id: i64,
    pub first: i64,
    pub last: i64,
}

/// An address pool (`ip_pools`): L3EX prefixes to cut, or the L3SH shared segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpPool {
    pub id: i64,
    pub prefix: String,
    pub gateway: Option<String>,
    pub default_prefix_length: Option<i64>,
    pub vlan: Option<i64>,
    pub range_first: Option<String>,
    pub range_last: Option<String>,
}

/// A customer's new network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNetwork<'a> {
    pub public_id: &'a str,
    pub kind: NetworkKind,
    pub customer: i64,
    pub vlan: i64,
    pub vlan_pool: Option<i64>,
    pub ip_pool: Option<i64>,
    pub subnet: Option<&'a str>,
    pub gateway: Option<&'a str>,
    pub comment: &'a str,
}

/// A VM's NIC: its row id, MAC and network row id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub id: i64,
    pub mac: String,
    pub network: Option<i64>,
}

pub trait Networks {
    /// The id and VLAN of the network named (or with public id) `name`.
    fn network_by_ref(&self, name: &str) -> Result<Option<(i64, Option<u16>)>>;
    /// The network carried on `vlan` (a customer's before the shared L3SH segment).
    fn network_on_vlan(&self, vlan: u16) -> Result<Option<i64>>;
    /// Creates an operator's L2EX network on `vlan`; its id.
    fn create_l2ex(&self, public_id: &str, name: &str, vlan: u16, at: i64) -> Result<i64>;

    /// Customer `customer`'s network `public_id`.
    fn customer_network(&self, customer: i64, public_id: &str) -> Result<Option<NetworkRecord>>;
    /// A page of the customer's networks (of `kind`, if given), oldest first.
    fn network_page(
        &self,
        customer: i64,
        kind: Option<NetworkKind>,
        window: Window,
    ) -> Result<Page<NetworkSummary>>;
    /// The VMs' NICs on network `id`: `(vm public id, device)`, by VM.
    fn attachments(&self, id: i64) -> Result<Vec<(String, String)>>;
    /// The L3SH addresses allocated on network `id`, oldest first.
    fn addresses_on(&self, id: i64) -> Result<Vec<AddressUse>>;
    /// How many NICs and allocated addresses network `id` has.
    fn network_use(&self, id: i64) -> Result<(i64, i64)>;
    /// Every VLAN a network uses.
    fn used_vlans(&self) -> Result<Vec<i64>>;
    /// The customer VLAN pools, lowest first.
    fn vlan_pools(&self) -> Result<Vec<VlanPool>>;
    /// The address pools of `kind` (L3EX prefixes, the L3SH segment), oldest first.
    fn ip_pools(&self, kind: NetworkKind) -> Result<Vec<IpPool>>;
    /// Address pool `id`.
    fn ip_pool(&self, id: i64) -> Result<Option<IpPool>>;
    /// The subnets L3EX and infrastructure networks use.
    fn routed_subnets(&self) -> Result<Vec<String>>;
    fn insert_network(&self, network: &NewNetwork<'_>, at: i64) -> Result<()>;
    fn delete_network(&self, id: i64) -> Result<()>;
    /// The public id and kind of network row `id`.
    fn network_ref(&self, id: i64) -> Result<Option<(String, NetworkKind)>>;

    /// The addresses allocated from pool `pool`.
    fn pool_addresses(&self, pool: i64) -> Result<Vec<String>>;
    /// Allocates `address` on network `network` from `pool` to `customer`.
    fn insert_address(&self, address: &str, network: i64, pool: i64, customer: i64) -> Result<()>;
    /// The customer's allocated `address` on `network`: its row id and the NIC holding it.
    fn customer_address(
        &self,
        customer: i64,
        network: i64,
        address: &str,
    ) -> Result<Option<(i64, Option<i64>)>>;
    fn delete_address(&self, id: i64) -> Result<()>;
    /// Assigns address row `id` to NIC `nic`.
    fn assign_address(&self, id: i64, nic: i64) -> Result<()>;
    /// Takes `address` off NIC `nic`; whether it was on it.
    fn unassign_address(&self, address: &str, nic: i64) -> Result<bool>;

    /// Whether a NIC has MAC `mac`.
    fn mac_taken(&self, mac: &str) -> Result<bool>;
    /// VM `vm`'s NICs: `(device, network row id)`.
    fn nics_of(&self, vm: i64) -> Result<Vec<(String, Option<i64>)>>;
    /// VM `vm`'s NIC at `device`.
    fn nic_at(&self, vm: i64, device: &str) -> Result<Option<Nic>>;
    /// Removes NIC `id`; its addresses stay allocated, unassigned.
    fn remove_nic(&self, id: i64) -> Result<()>;
}
