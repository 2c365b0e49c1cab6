//! DHCP leases: a backend-neutral repository, implemented for SQLite in `sqlite/leases.rs`.
//! The DHCP server keeps its leases in memory; this is where they are made durable (in the
//! persister's group-committed batches) and read back at start.

use super::Result;

/// A lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub address: String,
    pub mac: String,
    /// `bound`, `released` or `declined`.
    pub state: String,
    pub hostname: String,
    pub expires_at: i64,
    pub giaddr: Option<String>,
}

/// A lease to store (insert or replace, by address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseWrite<'a> {
    pub address: &'a str,
    pub mac: &'a str,
    /// `bound` or `declined`.
    pub state: &'a str,
    pub hostname: &'a str,
    pub client_id: Option<&'a [u8]>,
    pub giaddr: Option<String>,
    pub circuit_id: Option<&'a [u8]>,
    pub remote_id: Option<&'a [u8]>,
    pub expires_at: i64,
    pub at: i64,
}

pub trait LeaseStore {
    /// Every lease (in no particular order).
    fn leases(&self) -> Result<Vec<LeaseRow>>;
    fn put_lease(&self, lease: &LeaseWrite<'_>) -> Result<()>;
    /// Marks the lease of `address` released.
    fn release_lease(&self, address: &str, at: i64) -> Result<()>;
    /// A MAC no NIC in the inventory has got a lease: records it as a "discovered" machine an
    /// operator can enroll. The machine's name if it was recorded now.
    fn discover(&self, mac: &str, at: i64) -> Result<Option<String>>;
}
