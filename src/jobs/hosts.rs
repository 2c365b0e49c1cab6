//! What hypervisors' agents report, and what the appliance concludes (FACILITY.md: "the
//! controller holds the desired state, the agent reports what it actually sees").
//!
//! Every `[agent] report_secs` each agent sends a [`HostReport`]: its VMs and their state, free
//! capacity, and QEMU processes it does not know (which it never kills). Applying one:
//! - the host is `up`, with the time and the report kept for `nhn host show`;
//! - a VM whose QEMU exited while it should run becomes `error`, with the agent's reason;
//!   a VM whose guest powered itself off becomes `stopped` (and leaves its slot);
//! - a VM the inventory runs on the host but the agent does not mention at all is `error`
//!   after [`MISSES`] reports in a row (OpenNebula's "gone after 3 missed probes").
//!
//! [`sweep`] marks hosts whose agent has been silent for `[facility] host_dead_secs`
//! `unreachable`; their VMs stay as they are (evacuation needs a confirmed fence).

use std::collections::HashMap;
use std::sync::Mutex;

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use crate::inventory::{self, audit, record_event};
use crate::util::{now_rfc3339, rfc3339, unix_now};

/// Reports in a row that must miss a VM before it counts as gone.
pub const MISSES: u32 = 3;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostReport {
    /// `kvm` or `tcg`.
    #[serde(default)]
    pub accel: String,
    #[serde(default)]
    pub vcpus_free: i64,
    #[serde(default)]
    pub memory_free_mb: i64,
    #[serde(default)]
    pub vms: Vec<VmReport>,
    /// QEMU processes on the host that the agent did not start (left alone).
    #[serde(default)]
    pub unknown_processes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmReport {
    pub vm_id: String,
    /// `running`, `paused`, `starting`, `stopping`, `shutdown` (the guest powered off) or
    /// `gone` (its QEMU exited without being asked).
    pub state: String,
    #[serde(default)]
    pub reason: String,
}

/// Consecutive misses per VM, across reports.
#[derive(Default)]
pub struct Misses(Mutex<HashMap<String, u32>>);

/// The machine an agent credential belongs to: `(machine id, name)`.
pub fn host_of_credential(
    conn: &Connection,
    credential_sha256: &str,
) -> inventory::Result<Option<(i64, String)>> {
    inventory::optional(conn.query_row(
        "SELECT m.id, m.name FROM agents a JOIN machines m ON m.id = a.machine_id
         WHERE a.credential_sha256 = ?1",
        [credential_sha256],
        |r| Ok((r.get(0)?, r.get(1)?)),
    ))
}

/// Applies one report of host `host_id`; returns the VMs whose state it changed.
pub fn apply(
    conn: &Connection,
    host_id: i64,
    report: &HostReport,
    misses: &Misses,
) -> inventory::Result<Vec<String>> {
    let now = now_rfc3339();
    let was: String = conn.query_row(
        "SELECT state FROM agents WHERE machine_id = ?1",
        [host_id],
        |r| r.get(0),
    )?;
    conn.execute(
        "UPDATE agents SET state = 'up', last_report_at = ?2, report = ?3 WHERE machine_id = ?1",
        params![
            host_id,
            now,
            serde_json::to_string(report).unwrap_or_default()
        ],
    )?;
    let host: String =
        conn.query_row("SELECT name FROM machines WHERE id = ?1", [host_id], |r| {
            r.get(0)
        })?;
    if was != "up" {
        record_event(conn, "host", &host)?;
        audit(conn, "agent", "host.up", &host, &was)?;
    }
    // VMs that should run here and are not busy with a request (a request's own result
    // decides those).
    let expected: Vec<(i64, String)> = conn
        .prepare_cached(
            "SELECT id, public_id FROM vms WHERE hypervisor_id = ?1 AND state = 'running'
             AND current_request_id IS NULL",
        )?
        .query_map([host_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut changed = Vec::new();
    let mut misses = misses.0.lock().unwrap_or_else(|p| p.into_inner());
    for (id, vm) in expected {
        let seen = report.vms.iter().find(|v| v.vm_id == vm);
        let (state, reason) = match seen {
            Some(v) if v.state == "gone" => (
                "error",
                format!("its QEMU on {host} exited without being asked: {}", v.reason),
            ),
            Some(v) if v.state == "shutdown" => {
                ("stopped", "the guest powered itself off".to_owned())
            }
            Some(_) => {
                misses.remove(&vm);
                continue;
            }
            None => {
                let n = misses.entry(vm.clone()).or_default();
                *n += 1;
                if *n < MISSES {
                    continue;
                }
                (
                    "error",
                    format!("not running on its hypervisor {host} ({MISSES} reports in a row)"),
                )
            }
        };
        misses.remove(&vm);
        conn.execute(
            "UPDATE vms SET state = ?2, state_reason = ?3, updated_at = ?4,
                hypervisor_id = CASE WHEN ?2 = 'stopped' THEN NULL ELSE hypervisor_id END
             WHERE id = ?1",
            params![id, state, reason, now],
        )?;
        record_event(conn, "vm", &vm)?;
        audit(conn, "agent", &format!("vm.{state}"), &vm, &reason)?;
        tracing::warn!(%vm, %host, %state, %reason, "VM state changed by the host's report");
        changed.push(vm);
    }
    Ok(changed)
}

/// Marks hosts silent for `dead_secs` `unreachable`; returns their names.
pub fn sweep(conn: &Connection, dead_secs: u64) -> inventory::Result<Vec<String>> {
    let cutoff = rfc3339(unix_now() - i64::try_from(dead_secs).unwrap_or(i64::MAX / 2));
    let dead: Vec<(i64, String)> = conn
        .prepare_cached(
            "SELECT a.machine_id, m.name FROM agents a JOIN machines m ON m.id = a.machine_id
             WHERE a.state = 'up' AND a.last_report_at < ?1",
        )?
        .query_map([cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (id, name) in &dead {
        conn.execute(
            "UPDATE agents SET state = 'unreachable' WHERE machine_id = ?1",
            [id],
        )?;
        record_event(conn, "host", name)?;
        audit(conn, "engine", "host.unreachable", name, "no report")?;
        tracing::warn!(host = %name, dead_secs, "hypervisor unreachable: its agent stopped reporting");
    }
    Ok(dead.into_iter().map(|(_, n)| n).collect())
}
