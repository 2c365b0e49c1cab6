//! [`Quotas`] on SQLite: one statement each, cached (they run on every allocate*). Pending
//! requests are counted through the partial index of open requests: a customer's finished
//! calls (hundreds of thousands under load) must not be scanned on every allocate.

use rusqlite::{OptionalExtension, params};

use super::Tx;
use crate::inventory::Result;
use crate::inventory::quotas::{Amounts, Capacity, Quotas};

fn amounts(r: &rusqlite::Row<'_>) -> rusqlite::Result<Amounts> {
    Ok(Amounts {
        vms: r.get(0)?,
        vcpu: r.get(1)?,
        memory_mb: r.get(2)?,
        volumes: r.get(3)?,
        volume_gb: r.get(4)?,
        networks_l2ex: r.get(5)?,
        networks_l3ex: r.get(6)?,
        networks_l3sh: r.get(7)?,
        l3sh_addresses: r.get(8)?,
        pending_requests: r.get(9)?,
    })
}

impl Quotas for Tx<'_> {
    fn limits(&self, customer_id: i64) -> Result<Amounts> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT vms, vcpu, memory_mb, volumes, volume_gb, networks_l2ex, networks_l3ex,
                        networks_l3sh, l3sh_addresses, pending_requests
                 FROM quotas WHERE customer_id = ?1",
            )?
            .query_row([customer_id], amounts)
            .optional()?
            .unwrap_or_default())
    }

    fn usage(&self, customer_id: i64, except_vm: Option<i64>) -> Result<Amounts> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT
                   (SELECT COUNT(*) FROM vms WHERE customer_id = ?1 AND id != ?2),
                   (SELECT COALESCE(SUM(t.vcpus), 0) FROM vms v JOIN vm_types t ON t.name = v.vm_type
                     WHERE v.customer_id = ?1 AND v.id != ?2),
                   (SELECT COALESCE(SUM(t.memory_mb), 0) FROM vms v JOIN vm_types t ON t.name = v.vm_type
                     WHERE v.customer_id = ?1 AND v.id != ?2),
                   (SELECT COUNT(*) FROM volumes WHERE customer_id = ?1),
                   (SELECT COALESCE(SUM(size_gb), 0) FROM volumes WHERE customer_id = ?1),
                   (SELECT COUNT(*) FROM networks WHERE customer_id = ?1 AND kind = 'L2EX'),
                   (SELECT COUNT(*) FROM networks WHERE customer_id = ?1 AND kind = 'L3EX'),
                   (SELECT COUNT(*) FROM networks WHERE customer_id = ?1 AND kind = 'L3SH'),
                   (SELECT COUNT(*) FROM ip_addresses WHERE customer_id = ?1 AND network_id IS NOT NULL),
                   (SELECT COUNT(*) FROM requests INDEXED BY requests_status
                     WHERE status IN ('queued', 'running') AND customer_id = ?1)",
            )?
            .query_row(params![customer_id, except_vm.unwrap_or(-1)], amounts)?)
    }

    fn capacity(&self, except_vm: Option<i64>) -> Result<Capacity> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT
                   (SELECT COALESCE(SUM(vcpus), 0) FROM machines WHERE kind = 'hypervisor' AND state = 'ready'),
                   (SELECT COALESCE(SUM(memory_mb), 0) FROM machines WHERE kind = 'hypervisor' AND state = 'ready'),
                   (SELECT COALESCE(SUM(t.vcpus), 0) FROM vms v JOIN vm_types t ON t.name = v.vm_type WHERE v.id != ?1),
                   (SELECT COALESCE(SUM(t.memory_mb), 0) FROM vms v JOIN vm_types t ON t.name = v.vm_type WHERE v.id != ?1)",
            )?
            .query_row([except_vm.unwrap_or(-1)], |r| {
                Ok(Capacity {
                    vcpu: r.get(0)?,
                    memory_mb: r.get(1)?,
                    used_vcpu: r.get(2)?,
                    used_memory_mb: r.get(3)?,
                })
            })?)
    }
}
