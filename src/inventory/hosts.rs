//! Hypervisors and their agents (`agents` rows): a backend-neutral repository, implemented
//! for SQLite in `sqlite/hosts.rs`. Hosts are named by an opaque id within one transaction.

use super::Result;

/// A hypervisor as the inventory has it, with its agent if one is enrolled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRecord {
    pub id: i64,
    pub name: String,
    pub state: String,
    pub vcpus: i64,
    pub memory_mb: i64,
    pub agent: Option<AgentRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    /// `unknown`, `up` or `unreachable`.
    pub state: String,
    pub url: String,
    pub last_report_at: Option<String>,
    /// The last report, as JSON.
    pub report: String,
}

/// A VM placed on a host: public id, state, reason.
pub type PlacedVm = (String, String, String);

pub trait Hosts {
    /// The host whose agent holds the credential with this SHA-256 (hex): id and name.
    fn host_of_credential(&self, credential_sha256: &str) -> Result<Option<(i64, String)>>;
    /// The URL and credential SHA-256 (hex) of host `name`'s enrolled agent.
    fn agent_of(&self, name: &str) -> Result<Option<(String, String)>>;
    /// Stores a report of host `id` received at `at`; the host's name and its agent's state
    /// before.
    fn record_report(&self, id: i64, report_json: &str, at: i64) -> Result<(String, String)>;
    /// The VMs the inventory runs on host `id` that no request is busy with.
    fn expected_running(&self, id: i64) -> Result<Vec<String>>;
    /// Agents that were `up` and have not reported since `cutoff`: id and name.
    fn silent_since(&self, cutoff: i64) -> Result<Vec<(i64, String)>>;
    fn mark_unreachable(&self, id: i64) -> Result<()>;
    /// A machine's id and kind by name.
    fn machine_kind(&self, name: &str) -> Result<Option<(i64, String)>>;
    /// Enrolls (or re-enrolls, revoking the old credential) the agent of host `id`.
    fn enroll_agent(&self, id: i64, url: &str, credential_sha256: &str, at: i64) -> Result<()>;
    /// Every hypervisor, by name.
    fn hypervisors(&self) -> Result<Vec<HostRecord>>;
    /// The VMs placed on host `id`, by public id.
    fn placed_vms(&self, id: i64) -> Result<Vec<PlacedVm>>;
    /// How many agents are in `state`.
    fn count_agents(&self, state: &str) -> Result<i64>;
}
