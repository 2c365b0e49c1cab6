//! What the boot plane reads and writes: who owns a MAC and what it boots from, and the
//! one-time boot-secret tokens. A backend-neutral repository, implemented for SQLite in
//! `sqlite/boot.rs`. MACs are in their canonical text form.

use super::Result;

/// A stored boot-secret token (by its SHA-256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootToken {
    pub mac: String,
    pub address: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// The machine or VM a NIC belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootOwner {
    pub machine: Option<i64>,
    pub vm: Option<i64>,
    pub name: Option<String>,
    /// The machine's own initiator name ("" if the site file sets none).
    pub initiator: String,
    /// The machine's kind (`None` for a VM).
    pub kind: Option<String>,
}

/// The volume a machine (or a VM's DISK1) boots from, with its portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootVolume {
    pub lun: u32,
    pub target: String,
    pub address: String,
    pub port: u16,
    pub iqn_prefix: String,
}

/// A NIC's reserved address with what DHCP answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub mac: String,
    pub address: String,
    /// The network's (or pool's) prefix.
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    /// Resolvers, comma-separated.
    pub dns: Option<String>,
    /// The machine's or VM's name.
    pub owner: Option<String>,
    pub machine: Option<i64>,
    pub vm: Option<i64>,
    /// The machine's own initiator name ("" if none).
    pub initiator: String,
}

/// A boot volume with the machine or VM it belongs to (its name, or the VM's public id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedVolume {
    pub machine: Option<i64>,
    pub vm: Option<i64>,
    pub owner: Option<String>,
    pub volume: BootVolume,
}

pub trait Boot {
    /// Every NIC's reserved address that DHCP hands out (storage addresses on tagged VLANs
    /// are not).
    fn reservations(&self) -> Result<Vec<Reservation>>;
    /// Every machine's boot volume and every VM's DISK1.
    fn boot_volumes(&self) -> Result<Vec<OwnedVolume>>;
    /// The MAC of every NIC the inventory knows.
    fn known_macs(&self) -> Result<Vec<String>>;
    /// Whether `address` is what the DHCP server gives `mac` at `now`: its reservation or a
    /// bound lease.
    fn address_given(&self, mac: &str, address: &str, now: i64) -> Result<bool>;
    /// Stores a token (its SHA-256) issued to `mac` at `address`, and forgets tokens that
    /// expired before `forget_before`.
    fn store_token(
        &self,
        sha256: &str,
        mac: &str,
        address: &str,
        expires_at: i64,
        forget_before: i64,
    ) -> Result<()>;
    fn token(&self, sha256: &str) -> Result<Option<BootToken>>;
    fn spend_token(&self, sha256: &str, at: i64) -> Result<()>;
    /// Who owns the NIC with MAC `mac`.
    fn boot_owner(&self, mac: &str) -> Result<Option<BootOwner>>;
    /// The boot volume of `owner`.
    fn boot_volume(&self, owner: &BootOwner) -> Result<Option<BootVolume>>;
    /// The NIC's address on a tagged storage network: VLAN, address, the network's subnet.
    fn storage_address(&self, mac: &str) -> Result<Option<(u16, String, Option<String>)>>;
}
