//! Customers' quotas and what they use (HAAS-API.md §3.2 layer 2), in one place: every
//! allocate* and getQuota reads the same two records. A backend-neutral repository,
//! implemented for SQLite in `sqlite/quotas.rs`.

use super::Result;
use crate::model::NetworkKind;

/// Amounts per quota dimension: a customer's limits, or what it uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amounts {
    pub vms: i64,
    pub vcpu: i64,
    pub memory_mb: i64,
    pub volumes: i64,
    pub volume_gb: i64,
    pub networks_l2ex: i64,
    pub networks_l3ex: i64,
    pub networks_l3sh: i64,
    pub l3sh_addresses: i64,
    pub pending_requests: i64,
}

impl Amounts {
    /// The networks of one kind (infrastructure networks are nobody's: 0).
    pub fn networks(&self, kind: NetworkKind) -> i64 {
        match kind {
            NetworkKind::L2ex => self.networks_l2ex,
            NetworkKind::L3ex => self.networks_l3ex,
            NetworkKind::L3sh => self.networks_l3sh,
            NetworkKind::Infra => 0,
        }
    }
}

/// The ready hypervisors' capacity and what all VMs take of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capacity {
    pub vcpu: i64,
    pub memory_mb: i64,
    pub used_vcpu: i64,
    pub used_memory_mb: i64,
}

pub trait Quotas {
    /// The customer's limits (all zero without a quota row: nothing may be allocated).
    fn limits(&self, customer_id: i64) -> Result<Amounts>;
    /// What the customer uses, not counting VM `except_vm` (one being resized).
    fn usage(&self, customer_id: i64, except_vm: Option<i64>) -> Result<Amounts>;
    /// Hypervisor capacity, not counting VM `except_vm`.
    fn capacity(&self, except_vm: Option<i64>) -> Result<Capacity>;
}
