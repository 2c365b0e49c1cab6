//! The facility layer seen from the service layer (DESIGN.md §6): whatever acts on machines.
//! The job engine hands each async request, as a typed [`Command`], to a [`Driver`] and learns
//! the outcome from the facility's `reportRequestResult` callback on the internal listener, or
//! by asking [`Driver::status`] when a callback is late.
//!
//! [`router::Router`] is the driver the engine uses: a bare-metal machine's power request goes
//! to its BMC ([`machine::MachineRoute`], in this process); a VM's request goes to the
//! `nhn agent` of the hypervisor it is placed on ([`agent::AgentDriver`]); anything else to the
//! legacy facility at `[api] facility_url` ([`http::HttpDriver`]), when one is configured.
//!
//! This layer imports the inventory, the codec and the signing helpers, never the API.

pub mod agent;
pub mod command;
pub mod http;
pub mod machine;
pub mod power;
pub mod router;

use std::future::Future;
use std::pin::Pin;

use crate::codec::Struct;
pub use command::Command;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One async request handed to the facility.
#[derive(Debug, Clone)]
pub struct Dispatch {
    pub request_id: String,
    /// The API method that made the request, e.g. `powerOnVm` (for logs and the legacy facility).
    pub method: String,
    /// The VM's public id, or the bare-metal machine's name.
    pub resource_id: String,
    /// The machine that carries it out: the hypervisor the VM is placed on, or the machine.
    pub host: Option<String>,
    pub command: Command,
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
        "facility at {url} unreachable: {reason}; check that it runs and that this host reaches it"
    )]
    Unreachable { url: String, reason: String },
    #[error("facility at {url} refused {method}: {reason}")]
    Refused {
        url: String,
        method: String,
        reason: String,
    },
    #[error("no facility can carry out {what}: {fix}")]
    NoRoute { what: String, fix: String },
}

/// A facility transport.
pub trait Driver: Send + Sync {
    /// Hands over a request; Ok means the facility accepted it and will report back.
    /// Must be idempotent per request id (restarts may dispatch a request again).
    fn dispatch(&self, job: Dispatch) -> BoxFuture<'_, Result<(), Error>>;
    /// Asks about a request whose callback is overdue or was lost across a restart.
    fn status(&self, job: Dispatch) -> BoxFuture<'_, Result<Status, Error>>;
}
