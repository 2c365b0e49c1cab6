//! The site's repository: what [`super::store`]'s import and export need from a backend, in
//! the site file's own types (typed rows in and out, no backend ids). Implemented for SQLite
//! in `sqlite/site.rs`.

use std::net::Ipv4Addr;

use super::{Machine, Nic, SiteInfo};
use crate::inventory::Result;
use crate::net::{Ipv4Net, Mac};

/// The objects of one kind a site file lists by name or by their ends: iSCSI portals, VLAN
/// pools, infrastructure networks, IP pools, switches (with their ports), links, VM types,
/// images, customers (with their quotas).
pub trait SiteObjects<T> {
    /// Every object of the kind, in the order an export lists them.
    fn all(&self) -> Result<Vec<T>>;
    /// Creates `object`, or updates the one of its name (a link: replaces the links its two
    /// ports had). `at` (Unix seconds) dates a creation.
    fn put(&self, object: &T, at: i64) -> Result<()>;
}

/// The rest of the site: its name, and the machines with their NICs, which import writes in
/// steps so that it can check each NIC against the rest of the inventory.
pub trait SiteStore {
    /// The site this inventory describes, if one was imported.
    fn site_info(&self) -> Result<Option<SiteInfo>>;
    /// Names (or renames) and describes the site.
    fn put_site_info(&self, site: &SiteInfo) -> Result<()>;
    /// Every machine but discovered ones, by name, with its NICs by device.
    fn site_machines(&self) -> Result<Vec<Machine>>;
    /// Creates machine `machine` without NICs, or updates the one of its name (whose NICs
    /// [`SiteStore::clear_nics`] removed); a discovered one becomes ready. `at` dates a creation.
    fn put_machine(&self, machine: &Machine, at: i64) -> Result<()>;
    /// Removes machine `machine`'s NICs and their addresses.
    fn clear_nics(&self, machine: &str) -> Result<()>;
    /// Removes the discovered placeholder machine that owns `mac`, if there is one.
    fn drop_discovered(&self, mac: Mac) -> Result<()>;
    /// The machine or VM that owns `mac`.
    fn mac_owner(&self, mac: Mac) -> Result<Option<String>>;
    /// Whether `ip` is allocated to anything.
    fn address_taken(&self, ip: Ipv4Addr) -> Result<bool>;
    /// The storage networks' names and subnets, by name.
    fn storage_networks(&self) -> Result<Vec<(String, Ipv4Net)>>;
    /// Gives machine `machine` NIC `nic` with its addresses; its `storage_ip` belongs to
    /// `storage_network`.
    fn add_nic(&self, machine: &str, nic: &Nic, storage_network: Option<&str>) -> Result<()>;
}
