//! Typed read queries used by several services (status page, metrics, CLI summaries).
//! Queries that belong to one service live next to that service.

use super::{Result, Tx};

/// How much the inventory holds; shown on the status page, `/metrics` and `inventory show`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub switches: i64,
    pub core_switches: i64,
    pub edge_switches: i64,
    pub links: i64,
    pub machines: i64,
    pub hypervisors: i64,
    pub discovered: i64,
    pub nics: i64,
    pub vms: i64,
    pub networks: i64,
    pub volumes: i64,
    pub images: i64,
    pub customers: i64,
    pub leases: i64,
}

/// Whole-inventory summaries.
pub trait Overview {
    fn counts(&self) -> Result<Counts>;
}

pub fn counts(tx: &Tx<'_>) -> Result<Counts> {
    tx.counts()
}
