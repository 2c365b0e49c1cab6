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
use serde::Serialize;

use super::complete::VM_STATES;
pub use crate::facility::agent::{HostReport, VmReport};
use crate::inventory::{self, audit, record_event};
use crate::util::{now_rfc3339, rfc3339, unix_now};

/// Reports in a row that must miss a VM before it counts as gone.
pub const MISSES: u32 = 3;

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
                format!(
                    "its QEMU on {host} exited without being asked: {}",
                    v.reason
                ),
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

/// Enrolls (or re-enrolls) the agent of hypervisor `host` at `url`: a new credential, printed
/// once by the caller, of which only the SHA-256 is stored. Re-enrolling revokes the old one.
pub fn enroll(conn: &Connection, host: &str, url: &str) -> inventory::Result<String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(inventory::Error::Invalid(format!(
            "agent URL {url:?} must be http://ADDRESS:PORT"
        )));
    }
    let machine: Option<(i64, String)> = inventory::optional(conn.query_row(
        "SELECT id, kind FROM machines WHERE name = ?1",
        [host],
        |r| Ok((r.get(0)?, r.get(1)?)),
    ))?;
    let Some((id, kind)) = machine else {
        return Err(inventory::Error::NotFound(format!(
            "no machine {host} in the inventory (see `nhn inventory show`)"
        )));
    };
    if kind != "hypervisor" {
        return Err(inventory::Error::Invalid(format!(
            "{host} is a {kind}, not a hypervisor: only hypervisors run nhn agent"
        )));
    }
    let mut raw = [0u8; 24];
    rand::fill(&mut raw);
    let credential = format!("nhna_{}", crate::sign::hex(&raw));
    let hash = crate::sign::hex(&crate::sign::credential_key(&credential));
    conn.execute(
        "INSERT INTO agents (machine_id, url, credential_sha256, enrolled_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (machine_id) DO UPDATE SET url = excluded.url,
            credential_sha256 = excluded.credential_sha256, enrolled_at = excluded.enrolled_at,
            state = 'unknown'",
        params![id, url, hash, now_rfc3339()],
    )?;
    record_event(conn, "host", host)?;
    audit(conn, "cli", "agent.enroll", host, url)?;
    Ok(credential)
}

/// One hypervisor as `nhn host list|show` and the status page show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostRow {
    pub name: String,
    pub state: String,
    /// `unknown`, `up`, `unreachable`, or `not enrolled`.
    pub agent: String,
    pub agent_url: String,
    pub last_report_at: String,
    pub vcpus: i64,
    pub memory_mb: i64,
    /// VMs the inventory places here, with their state.
    pub vms: Vec<(String, String, String)>,
    pub report: HostReport,
}

/// Every hypervisor with its agent and VMs.
pub fn list(conn: &Connection) -> inventory::Result<Vec<HostRow>> {
    let mut st = conn.prepare(
        "SELECT m.id, m.name, m.state, m.vcpus, m.memory_mb, a.state, a.url, a.last_report_at, a.report
         FROM machines m LEFT JOIN agents a ON a.machine_id = m.id
         WHERE m.kind = 'hypervisor' ORDER BY m.name",
    )?;
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                HostRow {
                    name: r.get(1)?,
                    state: r.get(2)?,
                    vcpus: r.get(3)?,
                    memory_mb: r.get(4)?,
                    agent: r
                        .get::<_, Option<String>>(5)?
                        .unwrap_or_else(|| "not enrolled".into()),
                    agent_url: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
                    last_report_at: r.get::<_, Option<String>>(7)?.unwrap_or_default(),
                    vms: Vec::new(),
                    report: r
                        .get::<_, Option<String>>(8)?
                        .and_then(|j| serde_json::from_str(&j).ok())
                        .unwrap_or_default(),
                },
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut vms = conn.prepare_cached(
        "SELECT public_id, state, state_reason FROM vms WHERE hypervisor_id = ?1 ORDER BY public_id",
    )?;
    let mut out = Vec::new();
    for (id, mut row) in rows {
        row.vms = vms
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        out.push(row);
    }
    Ok(out)
}

/// Every VM with its state, host and reason, for the status page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmRow {
    pub vm: String,
    pub customer: String,
    pub vm_type: String,
    pub state: String,
    pub host: String,
    pub reason: String,
}

pub fn vms(conn: &Connection) -> inventory::Result<Vec<VmRow>> {
    let mut st = conn.prepare(
        "SELECT v.public_id, COALESCE(c.name, ''), v.vm_type, v.state, COALESCE(m.name, ''), v.state_reason
         FROM vms v LEFT JOIN customers c ON c.id = v.customer_id LEFT JOIN machines m ON m.id = v.hypervisor_id
         ORDER BY v.public_id",
    )?;
    let rows = st
        .query_map([], |r| {
            Ok(VmRow {
                vm: r.get(0)?,
                customer: r.get(1)?,
                vm_type: r.get(2)?,
                state: r.get(3)?,
                host: r.get(4)?,
                reason: r.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// A count per state, every state listed (zeros included).
pub type StateCounts = Vec<(&'static str, i64)>;

/// VM states and agent states with their counts, for /metrics.
pub fn state_counts(conn: &Connection) -> inventory::Result<(StateCounts, StateCounts)> {
    const HOST_STATES: [&str; 3] = ["unknown", "up", "unreachable"];
    let count = |sql: &str, state: &str| -> rusqlite::Result<i64> {
        conn.prepare_cached(sql)?.query_row([state], |r| r.get(0))
    };
    let vms = VM_STATES
        .iter()
        .map(|s| Ok((*s, count("SELECT COUNT(*) FROM vms WHERE state = ?1", s)?)))
        .collect::<rusqlite::Result<_>>()?;
    let hosts = HOST_STATES
        .iter()
        .map(|s| {
            Ok((
                *s,
                count("SELECT COUNT(*) FROM agents WHERE state = ?1", s)?,
            ))
        })
        .collect::<rusqlite::Result<_>>()?;
    Ok((vms, hosts))
}
