//! The facility layer seen from the service layer (DESIGN.md §6): whatever acts on machines
//! (the `nhn agent` on each hypervisor, IPMI, Redfish). The job engine hands each async
//! request to a [`Driver`] and learns the outcome from the facility's `reportRequestResult`
//! callback on the internal listener, or by asking [`Driver::status`] when a callback is late.
//!
//! [`http::HttpDriver`] is the one transport so far: XML-RPC over HTTP to a facility URL
//! (the future `nhn agent` serves it; the tests run a small Python facility).

pub mod http;
pub mod power;

use std::future::Future;
use std::pin::Pin;

use crate::api::args::Struct;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One async request handed to the facility.
#[derive(Debug, Clone)]
pub struct Dispatch {
    pub request_id: String,
    /// The API method, e.g. `powerOnVm`.
    pub method: String,
    /// The VM's public id.
    pub resource_id: String,
    /// The call's arguments (without `clientToken`).
    pub args: Struct,
    /// The hypervisor the VM is placed on (powerOnVm places it), if it has one.
    pub hypervisor: Option<String>,
}

/// What the facility knows about a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Running,
    Succeeded(Struct),
    Failed {
        error_type: String,
        message: String,
    },
    /// The facility never received it (or forgot it): dispatch again.
    Unknown,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "facility at {url} unreachable: {reason}; check [api] facility_url and that the facility runs"
    )]
    Unreachable { url: String, reason: String },
    #[error("facility at {url} refused {method}: {reason}")]
    Refused {
        url: String,
        method: String,
        reason: String,
    },
}

/// A facility transport.
pub trait Driver: Send + Sync {
    /// Hands over a request; Ok means the facility accepted it and will report back.
    /// Must be idempotent per request id (restarts may dispatch a request again).
    fn dispatch(&self, job: Dispatch) -> BoxFuture<'_, Result<(), Error>>;
    /// Asks about a request whose callback is overdue or was lost across a restart.
    fn status(&self, request_id: String) -> BoxFuture<'_, Result<Status, Error>>;
}
