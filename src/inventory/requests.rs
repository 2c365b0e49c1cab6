//! The requests aggregate (HAAS-API.md §3.3) as the job engine and the operator's machine
//! requests use it: a backend-neutral repository, implemented for SQLite in
//! `sqlite/requests.rs`. Times are Unix seconds here; the backend keeps its own text form.
//! Customers are numbered by the backend, and 0 stands for the operator (requests with no
//! customer, such as `nhn power`).

use std::collections::HashMap;

use super::Result;
use crate::model::{RequestStatus, VmState, Work};

/// A queued or running request as the engine dispatches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    /// The API method (or operator method) that made it.
    pub method: String,
    pub resource_id: String,
    /// What it asks for (`None`: the stored work is unreadable).
    pub work: Option<Work>,
    /// The typed command (JSON) stored when the request was first claimed.
    pub command: Option<String>,
    /// The machine it was handed to, or (not claimed yet) the hypervisor its VM is placed on,
    /// or the bare-metal machine itself.
    pub host: Option<String>,
}

/// Who has work waiting and how much runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Queue {
    /// Customers with queued requests.
    pub queued: Vec<i64>,
    /// Running requests per customer.
    pub running: HashMap<i64, u32>,
}

/// What finishing a request needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub method: String,
    pub resource_id: String,
    pub status: RequestStatus,
    /// The VM state to go back to on failure.
    pub previous_state: Option<VmState>,
    /// What it asks for (`None`: the stored work is unreadable).
    pub work: Option<Work>,
}

/// How a request ended, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending<'a> {
    /// `succeeded` or `failed`.
    pub status: &'a str,
    /// The result struct, encoded.
    pub result: &'a str,
    pub error_type: &'a str,
    pub error_message: &'a str,
    pub at: i64,
}

/// A request's status, result and error as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub status: String,
    pub result: String,
    pub error_message: String,
}

/// An operator's request on a machine (no customer, no client token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRequest<'a> {
    pub id: &'a str,
    pub actor: &'a str,
    pub method: &'a str,
    pub resource_type: &'a str,
    pub resource_id: &'a str,
    pub work: &'a Work,
    pub at: i64,
}

/// A synchronous API call's record (written in batches by the call log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord<'a> {
    pub id: &'a str,
    pub customer_id: Option<i64>,
    pub key_id: Option<&'a str>,
    pub method: &'a str,
    /// `succeeded` or `failed`.
    pub status: &'a str,
    pub error_type: &'a str,
    pub error_message: &'a str,
    /// When it was accepted and finished (RFC 3339, as the API reported it).
    pub at: &'a str,
}

/// An API call's row as the API writes it when the call is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiCall<'a> {
    pub id: &'a str,
    pub customer_id: i64,
    pub key_id: &'a str,
    pub method: &'a str,
    pub resource_type: &'a str,
    pub resource_id: &'a str,
    /// `queued` (async) or `succeeded`.
    pub status: &'a str,
    /// What an async call asks for (`None` for a synchronous call).
    pub work: Option<&'a Work>,
    pub client_token: Option<&'a str>,
    pub args_digest: &'a str,
    /// The answer, encoded (replayed for a repeated client token).
    pub response: &'a str,
    /// The VM state to go back to if an async call fails.
    pub previous_state: Option<&'a str>,
    pub accepted_at: &'a str,
    pub finished_at: Option<&'a str>,
}

/// A request as getRequestIdInfo shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRow {
    pub method: String,
    pub resource_type: String,
    pub resource_id: String,
    pub status: String,
    pub accepted_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub error_type: String,
    pub error_message: String,
    /// The result struct, encoded.
    pub result: String,
    /// `(done, total)` as the facility last reported it while the request ran (restoreImage:
    /// archive bytes the install boot has read).
    pub progress: Option<(u64, u64)>,
}

/// A customer's queue as the pending limits see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingCounts {
    pub queued: i64,
    /// Queued or running.
    pub pending: i64,
    /// The customer's `pendingRequests` quota, if any.
    pub quota: Option<i64>,
}

/// The requests the job engine works on.
pub trait Requests {
    /// The digest and response of the customer's earlier call of `method` with client token
    /// `token`, accepted after `since`.
    fn earlier_call(
        &self,
        customer_id: i64,
        method: &str,
        token: &str,
        since: i64,
    ) -> Result<Option<(Option<String>, Option<String>)>>;
    /// Stores an answered API call.
    fn insert_call(&self, call: &ApiCall<'_>) -> Result<()>;
    fn pending_counts(&self, customer_id: i64) -> Result<PendingCounts>;
    /// Request `id` if it is the customer's.
    fn request_of(&self, customer_id: i64, id: &str) -> Result<Option<RequestRow>>;
    /// Records the progress that host `host_id` reports for running request `id` (ignored
    /// once the request has ended, or when it was handed to another machine).
    fn set_progress(&self, id: &str, host_id: i64, done: u64, total: u64) -> Result<()>;
    /// Id, method and status of VM `vm`'s latest async request.
    fn latest_vm_request(&self, vm: &str) -> Result<Option<(String, String, String)>>;
    /// Records a finished call (nothing if the id is taken).
    fn record_call(&self, call: &CallRecord<'_>) -> Result<()>;
    /// The machine request `id` was dispatched to: `None` for an unknown request, `Some(None)`
    /// for one not dispatched to a machine.
    fn dispatched_to(&self, id: &str) -> Result<Option<Option<i64>>>;
    /// Customers with queued requests, and how many each has running.
    fn queue(&self) -> Result<Queue>;
    /// The customer's oldest queued request.
    fn oldest_queued(&self, customer: i64) -> Result<Option<Job>>;
    /// Every running request, oldest start first.
    fn running(&self) -> Result<Vec<Job>>;
    /// Running requests whose deadline is before `now`.
    fn overdue(&self, now: i64) -> Result<Vec<Job>>;
    /// Marks a request running since `at` until `deadline`, with the command it was handed
    /// (JSON) and the machine that carries it out.
    fn start(
        &self,
        id: &str,
        at: i64,
        deadline: i64,
        command: &str,
        host: Option<&str>,
    ) -> Result<()>;
    /// What finishing request `id` needs (`None`: no such request).
    fn pending(&self, id: &str) -> Result<Option<Pending>>;
    /// Stores a request's end.
    fn end(&self, id: &str, ending: &Ending<'_>) -> Result<()>;
    /// Status, result and error of request `id`.
    fn stored(&self, id: &str) -> Result<Option<Stored>>;
    /// Queues an operator's request.
    fn queue_operator(&self, r: &OperatorRequest<'_>) -> Result<()>;
    /// Cancels request `id` if it is still queued; whether it was.
    fn cancel_queued(&self, id: &str, why: &str, at: i64) -> Result<bool>;
    /// Deletes terminal requests that finished before `cutoff`; how many.
    fn purge_finished_before(&self, cutoff: i64) -> Result<usize>;
}
