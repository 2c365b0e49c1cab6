//! The agent transport: JSON over HTTP to the `nhn agent` of a hypervisor, at the URL given at
//! enrollment (`nhn agent enroll HOST --url URL`, stored in the `agents` table with the SHA-256
//! of the agent's credential).
//!
//! - `POST /v1/requests` `{requestId, command, chap}` hands over a request (idempotent per
//!   request id); `chap` carries the CHAP accounts of the command's disks, derived from the
//!   appliance secret on the way out and never stored.
//! - `GET /v1/requests/<id>` asks about one.
//!
//! Both are signed with the host's key ([`crate::sign`]; for a GET the signed body is the
//! path), so an agent acts only for its appliance, and the appliance can tell the agents apart.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::command::{Chap, Command};
use super::{BoxFuture, Dispatch, Error, Status};
use crate::codec::{Struct, s};
use crate::inventory::hosts::Hosts;
use crate::inventory::{self, Inventory, Tx};
use crate::sign::{HEADER, parse_hex32, sign};
use crate::util::unix_now;

/// Per-call time limit (connect, send, answer).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The body of `POST /v1/requests`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Handover {
    pub request_id: String,
    /// The VM the request is about.
    pub vm: String,
    pub command: Command,
    #[serde(default)]
    pub chap: Vec<Chap>,
}

/// What an agent reports every `[agent] report_secs` (`reportHostState`): its VMs and their
/// state, free capacity, and QEMU processes it does not know.
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
    /// How far the requests that report progress (image installs) have got.
    #[serde(default)]
    pub progress: Vec<Progress>,
}

/// A running request's progress: `done` of `total` (an install: archive bytes read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub request_id: String,
    pub done: u64,
    pub total: u64,
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

/// The answer of `GET /v1/requests/<id>`, and what the agent keeps per request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestStatus {
    /// `running`, `succeeded`, `failed` or `unknown`.
    pub status: String,
    #[serde(default)]
    pub result: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub error_type: String,
    #[serde(default)]
    pub error_message: String,
}

impl RequestStatus {
    pub fn into_status(self) -> Status {
        match self.status.as_str() {
            "running" => Status::Running,
            "succeeded" => Status::Succeeded(result_struct(&self.result)),
            "failed" => Status::Failed {
                error_type: self.error_type,
                message: self.error_message,
            },
            _ => Status::Unknown,
        }
    }
}

/// An agent's string results as an XML-RPC struct.
pub fn result_struct(m: &serde_json::Map<String, serde_json::Value>) -> Struct {
    m.iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(t) => t.clone(),
                other => other.to_string(),
            };
            (k.clone(), s(v))
        })
        .collect()
}

/// Where a host's agent is.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub url: String,
    key: [u8; 32],
}

/// The enrolled agent of `host`, if any.
pub fn endpoint(tx: &Tx<'_>, host: &str) -> inventory::Result<Option<Endpoint>> {
    Ok(tx.agent_of(host)?.and_then(|(url, hash)| {
        Some(Endpoint {
            host: host.to_owned(),
            url: url.trim_end_matches('/').to_owned(),
            key: parse_hex32(&hash)?,
        })
    }))
}

pub struct AgentDriver {
    inventory: Inventory,
    client: reqwest::Client,
    /// The appliance secret, when targets have CHAP accounts (`[storage] chap`).
    chap_secret: Option<[u8; 32]>,
}

impl AgentDriver {
    pub fn new(inventory: Inventory, chap_secret: Option<[u8; 32]>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .build()
            .unwrap_or_default();
        AgentDriver {
            inventory,
            client,
            chap_secret,
        }
    }

    /// The enrolled agent of `host` (None: the host has none).
    pub async fn endpoint(&self, host: &str) -> Result<Option<Endpoint>, Error> {
        let host = host.to_owned();
        self.inventory
            .read(move |c| endpoint(c, &host))
            .await
            .map_err(|e| Error::NoRoute {
                what: "the request".into(),
                fix: format!("cannot read the agents table: {e}"),
            })
    }

    fn chap_accounts(&self, command: &Command) -> Vec<Chap> {
        let (Some(secret), Some(spec)) = (&self.chap_secret, command.vm_spec()) else {
            return Vec::new();
        };
        spec.disks
            .iter()
            .filter(|d| d.chap)
            .map(|d| {
                let c = crate::storage::chap_for(secret, &d.target);
                Chap {
                    target: d.target.clone(),
                    user: c.user,
                    secret: c.secret,
                }
            })
            .collect()
    }

    fn unreachable(ep: &Endpoint, e: impl ToString) -> Error {
        Error::Unreachable {
            url: ep.url.clone(),
            reason: e.to_string(),
        }
    }

    pub fn dispatch_to(&self, ep: Endpoint, job: Dispatch) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let body = serde_json::to_vec(&Handover {
                request_id: job.request_id.clone(),
                vm: job.resource_id.clone(),
                chap: self.chap_accounts(&job.command),
                command: job.command,
            })
            .unwrap_or_default();
            let resp = self
                .client
                .post(format!("{}/v1/requests", ep.url))
                .header(HEADER, sign(&ep.key, unix_now(), &body))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map_err(|e| Self::unreachable(&ep, e))?;
            let code = resp.status();
            if code.is_success() {
                return Ok(());
            }
            let text = resp.text().await.unwrap_or_default();
            if code.is_server_error() {
                return Err(Self::unreachable(&ep, format!("{code}: {}", text.trim())));
            }
            Err(Error::Refused {
                url: ep.url.clone(),
                method: job.method,
                reason: format!("{code}: {}", text.trim()),
            })
        })
    }

    pub fn status_at(
        &self,
        ep: Endpoint,
        request_id: String,
    ) -> BoxFuture<'_, Result<Status, Error>> {
        Box::pin(async move {
            let path = format!("/v1/requests/{request_id}");
            let resp = self
                .client
                .get(format!("{}{path}", ep.url))
                .header(HEADER, sign(&ep.key, unix_now(), path.as_bytes()))
                .send()
                .await
                .map_err(|e| Self::unreachable(&ep, e))?;
            if !resp.status().is_success() {
                return Err(Self::unreachable(&ep, resp.status()));
            }
            let st: RequestStatus = resp.json().await.map_err(|e| {
                Self::unreachable(&ep, format!("answer is not a request status: {e}"))
            })?;
            Ok(st.into_status())
        })
    }
}
