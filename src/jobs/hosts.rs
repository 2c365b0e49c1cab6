//! What hypervisors' agents report, and what the appliance concludes (FACILITY.md: "the
//! controller holds the desired state, the agent reports what it actually sees").
//!
//! Every `[agent] report_secs` each agent sends a [`HostReport`]: its VMs and their state, free
//! capacity, and QEMU processes it does not know (which it never kills). Applying one:
//! - the host is `up`, with the time and the report kept for `nhn host show`;
//! - the progress of its running requests (image installs) is kept for getRequestIdInfo;
//! - a VM whose QEMU exited while it should run becomes `error`, with the agent's reason;
//!   a VM whose guest powered itself off becomes `stopped` (and leaves its slot);
//! - a VM the inventory runs on the host but the agent does not mention at all is `error`
//!   after [`MISSES`] reports in a row (OpenNebula's "gone after 3 missed probes").
//!
//! [`sweep`] marks hosts whose agent has been silent for `[facility] host_dead_secs`
//! `unreachable`; their VMs stay as they are (evacuation needs a confirmed fence).

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;

pub use crate::facility::agent::{HostReport, VmReport};
use crate::inventory::hosts::{AgentRecord, Hosts};
use crate::inventory::requests::Requests;
use crate::inventory::vms::Vms;
use crate::inventory::{self, Tx, audit, record_event};
use crate::model::{EventKind, VmState};
use crate::util::unix_now;

/// Reports in a row that must miss a VM before it counts as gone.
pub const MISSES: u32 = 3;

/// Consecutive misses per VM, across reports.
#[derive(Default)]
pub struct Misses(Mutex<HashMap<String, u32>>);

/// Applies one report of host `host_id`; returns the VMs whose state it changed.
pub fn apply(
    tx: &Tx<'_>,
    host_id: i64,
    report: &HostReport,
    misses: &Misses,
) -> inventory::Result<Vec<String>> {
    let now = unix_now();
    let json = serde_json::to_string(report).unwrap_or_default();
    let (host, was) = tx.record_report(host_id, &json, now)?;
    for p in &report.progress {
        tx.set_progress(&p.request_id, host_id, p.done, p.total)?;
    }
    if was != "up" {
        record_event(tx, EventKind::Host, &host)?;
        audit(tx, "agent", "host.up", &host, &was)?;
    }
    // VMs that should run here and are not busy with a request (a request's own result
    // decides those).
    let expected = tx.expected_running(host_id)?;
    let mut changed = Vec::new();
    let mut misses = misses.0.lock().unwrap_or_else(|p| p.into_inner());
    for vm in expected {
        let seen = report.vms.iter().find(|v| v.vm_id == vm);
        let (state, reason) = match seen {
            Some(v) if v.state == "gone" => (
                VmState::Error,
                format!(
                    "its QEMU on {host} exited without being asked: {}",
                    v.reason
                ),
            ),
            Some(v) if v.state == "shutdown" => {
                (VmState::Stopped, "the guest powered itself off".to_owned())
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
                    VmState::Error,
                    format!("not running on its hypervisor {host} ({MISSES} reports in a row)"),
                )
            }
        };
        misses.remove(&vm);
        tx.set_observed_state(&vm, state, &reason, now)?;
        record_event(tx, EventKind::Vm, &vm)?;
        audit(tx, "agent", &format!("vm.{state}"), &vm, &reason)?;
        tracing::warn!(%vm, %host, %state, %reason, "VM state changed by the host's report");
        changed.push(vm);
    }
    Ok(changed)
}

/// Marks hosts silent for `dead_secs` `unreachable`; returns their names.
pub fn sweep(tx: &Tx<'_>, dead_secs: u64) -> inventory::Result<Vec<String>> {
    let cutoff = unix_now() - i64::try_from(dead_secs).unwrap_or(i64::MAX / 2);
    let dead = tx.silent_since(cutoff)?;
    for (id, name) in &dead {
        tx.mark_unreachable(*id)?;
        record_event(tx, EventKind::Host, name)?;
        audit(tx, "engine", "host.unreachable", name, "no report")?;
        tracing::warn!(host = %name, dead_secs, "hypervisor unreachable: its agent stopped reporting");
    }
    Ok(dead.into_iter().map(|(_, n)| n).collect())
}

/// Enrolls (or re-enrolls) the agent of hypervisor `host` at `url`: a new credential, printed
/// once by the caller, of which only the SHA-256 is stored. Re-enrolling revokes the old one.
pub fn enroll(tx: &Tx<'_>, host: &str, url: &str) -> inventory::Result<String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(inventory::Error::Invalid(format!(
            "agent URL {url:?} must be http://ADDRESS:PORT"
        )));
    }
    let Some((id, kind)) = tx.machine_kind(host)? else {
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
    tx.enroll_agent(id, url, &hash, unix_now())?;
    record_event(tx, EventKind::Host, host)?;
    audit(tx, "cli", "agent.enroll", host, url)?;
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
pub fn list(tx: &Tx<'_>) -> inventory::Result<Vec<HostRow>> {
    tx.hypervisors()?
        .into_iter()
        .map(|h| {
            let agent = h.agent.unwrap_or(AgentRecord {
                state: "not enrolled".into(),
                url: String::new(),
                last_report_at: None,
                report: String::new(),
            });
            Ok(HostRow {
                vms: tx.placed_vms(h.id)?,
                name: h.name,
                state: h.state,
                agent: agent.state,
                agent_url: agent.url,
                last_report_at: agent.last_report_at.unwrap_or_default(),
                vcpus: h.vcpus,
                memory_mb: h.memory_mb,
                report: serde_json::from_str(&agent.report).unwrap_or_default(),
            })
        })
        .collect()
}

/// A count per state, every state listed (zeros included).
pub type StateCounts = Vec<(&'static str, i64)>;

/// VM states and agent states with their counts, for /metrics.
pub fn state_counts(tx: &Tx<'_>) -> inventory::Result<(StateCounts, StateCounts)> {
    const HOST_STATES: [&str; 3] = ["unknown", "up", "unreachable"];
    let vms = VmState::ALL
        .iter()
        .map(|s| Ok((s.as_str(), tx.count_in_state(*s)?)))
        .collect::<inventory::Result<_>>()?;
    let hosts = HOST_STATES
        .iter()
        .map(|s| Ok((*s, tx.count_agents(s)?)))
        .collect::<inventory::Result<_>>()?;
    Ok((vms, hosts))
}
