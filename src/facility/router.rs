//! The driver the job engine uses: routes each request by the machine that carries it out. A
//! bare-metal machine's power request goes to its BMC ([`MachineRoute`]). A VM placed on a
//! hypervisor with an enrolled `nhn agent` goes to that agent; otherwise to the legacy facility
//! at `[api] facility_url` when one is configured; otherwise the request fails at once with
//! what to do (enroll an agent), instead of waiting in the queue for nobody.

use super::agent::AgentDriver;
use super::http::HttpDriver;
use super::machine::{MachineRoute, op_of};
use super::{BoxFuture, Dispatch, Driver, Error, Status};

pub struct Router {
    pub agents: AgentDriver,
    pub legacy: Option<HttpDriver>,
    pub machines: MachineRoute,
}

impl Router {
    fn no_route(job: &Dispatch) -> Error {
        Error::NoRoute {
            what: format!("{} of {}", job.method, job.resource_id),
            fix: match &job.host {
                Some(h) => format!(
                    "hypervisor {h} has no enrolled agent; run `nhn agent enroll {h} --url http://ADDRESS:PORT` and start `nhn agent` there"
                ),
                None => "the VM is not placed on a hypervisor".into(),
            },
        }
    }
}

impl Driver for Router {
    fn dispatch(&self, job: Dispatch) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            if let Some((op, timeout)) = op_of(&job.command) {
                return self.machines.dispatch(job, op, timeout).await;
            }
            if let Some(host) = &job.host
                && let Some(ep) = self.agents.endpoint(host).await?
            {
                return self.agents.dispatch_to(ep, job).await;
            }
            match &self.legacy {
                Some(legacy) => legacy.dispatch(job).await,
                None => Err(Self::no_route(&job)),
            }
        })
    }

    fn status(&self, job: Dispatch) -> BoxFuture<'_, Result<Status, Error>> {
        Box::pin(async move {
            if op_of(&job.command).is_some() {
                return Ok(self.machines.status(&job));
            }
            if let Some(host) = &job.host
                && let Some(ep) = self.agents.endpoint(host).await?
            {
                return self.agents.status_at(ep, job.request_id).await;
            }
            match &self.legacy {
                Some(legacy) => legacy.status(job).await,
                None => Ok(Status::Unknown),
            }
        })
    }
}
