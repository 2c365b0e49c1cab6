//! `nhn agent`: the facility on a hypervisor (DESIGN.md §6, FACILITY.md). It runs the VMs the
//! appliance places there and reports what it sees.
//!
//! - **API** (HTTP, JSON): `POST /v1/requests` takes a typed command for a request id,
//!   `GET /v1/requests/<id>` tells its status. Every call must carry the appliance's signature
//!   made with this host's key ([`crate::sign`]): the SHA-256 of the credential that
//!   `nhn agent enroll HOST` printed once. Anything else gets 401 and nothing runs. Requests are
//!   idempotent per id and kept in `<state_dir>/requests/<id>.json`, so a request survives an
//!   agent restart and never runs twice.
//! - **VMs** are QEMU processes that outlive the agent ([`vm`]); at start the agent re-adopts
//!   them and re-runs requests it had not finished (every command is idempotent).
//! - **Results** go to the appliance's `reportRequestResult`, retried until the appliance has
//!   them; **reports** (`reportHostState`) every `[agent] report_secs`: VMs and their state,
//!   free capacity, VMs that vanished, QEMU processes the agent does not know.

pub mod appliance;
pub mod offline;
pub mod ovs;
pub mod qmp;
pub mod vm;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::to_bytes;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::config::Agent as AgentConfig;
use crate::facility::agent::{Handover, HostReport, Progress, RequestStatus, VmReport};
use crate::facility::command::{Chap, Command, Payload, VmSpec};
use crate::sign::{HEADER, credential_key, verify};
use crate::util::unix_now;
use appliance::Appliance;
use vm::Vm;

/// Largest request body (a command is small).
const BODY_LIMIT: usize = 256 * 1024;

/// A request as the agent keeps it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Record {
    vm: String,
    command: Command,
    status: RequestStatus,
    /// The appliance has the result.
    reported: bool,
}

struct Agent {
    config: AgentConfig,
    key: [u8; 32],
    accel: &'static str,
    appliance: Appliance,
    requests: Mutex<HashMap<String, Record>>,
    vms: Mutex<HashMap<String, Vm>>,
    /// VMs that ended without being asked, reported until the appliance has heard it.
    ended: Mutex<Vec<VmReport>>,
    /// One operation at a time per VM.
    vm_turns: Turns,
    /// One VM start at a time per owner (customer), first come first served: a customer's
    /// burst queues behind itself, not in front of other customers.
    start_turns: Turns,
    /// CHAP accounts of running requests (memory only).
    chap: Mutex<HashMap<String, Vec<Chap>>>,
    /// Progress of running installs, by request id, sent with each host report.
    progress: std::sync::Mutex<HashMap<String, (u64, u64)>>,
}

/// Runs the agent until SIGTERM/SIGINT.
pub async fn run(config: AgentConfig) -> Result<()> {
    if config.host.is_empty() {
        anyhow::bail!(
            "[agent] host is empty: set it to this hypervisor's machine name in the inventory"
        );
    }
    let credential = std::fs::read_to_string(&config.credential_file).with_context(|| {
        format!(
            "cannot read the agent credential {}: run `nhn agent enroll {} --url URL` on the appliance and store what it prints there (mode 0600)",
            config.credential_file.display(),
            config.host
        )
    })?;
    let credential = credential.trim().to_owned();
    for d in ["vm", "requests", "cache"] {
        std::fs::create_dir_all(config.state_dir.join(d))
            .with_context(|| format!("cannot create {}", config.state_dir.join(d).display()))?;
    }
    let accel = vm::choose_accel(&config);
    tracing::info!(host = %config.host, accel, "nhn agent starting");
    let (running, gone) = vm::adopt(&config).await;
    let ended = gone
        .into_iter()
        .map(|(spec, reason)| VmReport {
            vm_id: spec.vm,
            state: "gone".into(),
            reason,
        })
        .collect();
    let requests = load_requests(&config.state_dir.join("requests"));
    let agent = Arc::new(Agent {
        key: credential_key(&credential),
        appliance: Appliance::new(&config.appliance_url, credential),
        accel,
        requests: Mutex::new(requests),
        vms: Mutex::new(running),
        ended: Mutex::new(ended),
        vm_turns: Turns::default(),
        start_turns: Turns::default(),
        chap: Mutex::default(),
        progress: std::sync::Mutex::default(),
        config,
    });
    // Requests the previous agent had not finished run again; results it had not delivered
    // are delivered.
    let pending: Vec<(String, Record)> = agent
        .requests
        .lock()
        .await
        .iter()
        .filter(|(_, r)| r.status.status == "running" || !r.reported)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (id, record) in pending {
        let a = agent.clone();
        if record.status.status == "running" {
            tokio::spawn(async move { a.execute(id, record.command).await });
        } else {
            tokio::spawn(async move { a.deliver(id).await });
        }
    }
    tokio::spawn(agent.clone().report_loop());
    let listener = tokio::net::TcpListener::bind(agent.config.listen)
        .await
        .with_context(|| format!("cannot listen on {} ([agent] listen)", agent.config.listen))?;
    tracing::info!(listen = %agent.config.listen, "nhn agent listening");
    let app = Router::new()
        .route("/v1/requests", post(handover))
        .route("/v1/requests/{id}", get(status))
        .with_state(agent.clone());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        })
        .await?;
    tracing::info!("nhn agent stopped (its VMs keep running)");
    Ok(())
}

fn load_requests(dir: &std::path::Path) -> HashMap<String, Record> {
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let week = std::time::SystemTime::now() - Duration::from_secs(7 * 86_400);
    for e in entries.flatten() {
        let path = e.path();
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|m| m < week);
        let record = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<Record>(&t).ok());
        match (record, path.file_stem().and_then(|s| s.to_str())) {
            (Some(r), Some(id)) if !(old && r.reported) => {
                out.insert(id.to_owned(), r);
            }
            _ => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    out
}

fn refused(why: impl std::fmt::Display) -> Response {
    tracing::warn!(%why, "refused a call without a valid signature");
    (StatusCode::UNAUTHORIZED, format!("{why}\n")).into_response()
}

async fn handover(State(agent): State<Arc<Agent>>, req: Request) -> Response {
    let headers = req.headers().clone();
    let Ok(body) = to_bytes(req.into_body(), BODY_LIMIT).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "body too large\n").into_response();
    };
    if let Err(e) = agent.check(&headers, &body) {
        return refused(e);
    }
    let h: Handover = match serde_json::from_slice(&body) {
        Ok(h) => h,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("not a request: {e}\n")).into_response();
        }
    };
    if !valid_id(&h.request_id) {
        return (StatusCode::BAD_REQUEST, "malformed request id\n").into_response();
    }
    let mut requests = agent.requests.lock().await;
    if let Some(r) = requests.get(&h.request_id) {
        return axum::Json(r.status.clone()).into_response();
    }
    let record = Record {
        vm: h.vm.clone(),
        command: h.command.clone(),
        status: RequestStatus {
            status: "running".into(),
            ..Default::default()
        },
        reported: false,
    };
    if let Err(e) = agent.persist(&h.request_id, &record) {
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response();
    }
    requests.insert(h.request_id.clone(), record.clone());
    drop(requests);
    agent.chap.lock().await.insert(h.request_id.clone(), h.chap);
    tracing::info!(request_id = %h.request_id, command = h.command.kind(), "request accepted");
    let a = agent.clone();
    tokio::spawn(async move { a.execute(h.request_id, h.command).await });
    (StatusCode::ACCEPTED, axum::Json(record.status)).into_response()
}

async fn status(
    State(agent): State<Arc<Agent>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/v1/requests/{id}");
    if let Err(e) = agent.check(&headers, path.as_bytes()) {
        return refused(e);
    }
    let st = agent
        .requests
        .lock()
        .await
        .get(&id)
        .map(|r| r.status.clone())
        .unwrap_or(RequestStatus {
            status: "unknown".into(),
            ..Default::default()
        });
    axum::Json(st).into_response()
}

/// An offline boot to run: the VM, and the payload disk with its checksum and size (on the
/// kernel command line, for the initrd to check).
struct OfflineBoot<'a> {
    id: &'a str,
    spec: &'a VmSpec,
    chap: &'a [Chap],
    payload: &'a std::path::Path,
    sha256: &'a str,
    bytes: u64,
}

/// Keyed FIFO turns: one holder per key at a time, waiters served in arrival order (tokio's
/// mutex is fair).
#[derive(Default)]
struct Turns(Mutex<HashMap<String, Arc<Mutex<()>>>>);

impl Turns {
    async fn slot(&self, key: &str) -> Arc<Mutex<()>> {
        self.0
            .lock()
            .await
            .entry(key.to_owned())
            .or_default()
            .clone()
    }

    /// Waits for `key`'s turn.
    async fn take(&self, key: &str) -> OwnedMutexGuard<()> {
        self.slot(key).await.lock_owned().await
    }

    /// `key`'s turn if nobody holds it.
    async fn try_take(&self, key: &str) -> Option<OwnedMutexGuard<()>> {
        self.slot(key).await.try_lock_owned().ok()
    }
}

/// Request ids are the appliance's `xxxxxxxx-…` hex groups: safe as file names.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

impl Agent {
    fn check(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), crate::sign::Refused> {
        let header = headers.get(HEADER).and_then(|v| v.to_str().ok());
        verify(&self.key, header, body, unix_now())
    }

    fn persist(&self, id: &str, record: &Record) -> std::io::Result<()> {
        let dir = self.config.state_dir.join("requests");
        let tmp = dir.join(format!("{id}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec(record).unwrap_or_default())?;
        std::fs::rename(tmp, dir.join(format!("{id}.json")))
    }

    /// Carries out a request and delivers its result.
    async fn execute(self: Arc<Self>, id: String, command: Command) {
        let outcome = self.carry_out(&id, &command).await;
        self.chap.lock().await.remove(&id);
        let status = match outcome {
            Ok(result) => RequestStatus {
                status: "succeeded".into(),
                result,
                ..Default::default()
            },
            Err(message) => {
                tracing::warn!(request_id = %id, %message, "request failed");
                RequestStatus {
                    status: "failed".into(),
                    error_type: "BackendError".into(),
                    error_message: message,
                    ..Default::default()
                }
            }
        };
        {
            let mut requests = self.requests.lock().await;
            if let Some(r) = requests.get_mut(&id) {
                r.status = status;
                if let Err(e) = self.persist(&id, r) {
                    tracing::error!(request_id = %id, error = %e, "cannot record a result");
                }
            }
        }
        self.deliver(id).await;
    }

    /// Sends a result until the appliance has it (or refuses it for good).
    async fn deliver(self: Arc<Self>, id: String) {
        let mut delay = Duration::from_millis(200);
        loop {
            let Some(st) = self
                .requests
                .lock()
                .await
                .get(&id)
                .map(|r| r.status.clone())
            else {
                return;
            };
            match self.appliance.report_result(&id, &st).await {
                Ok(()) => break,
                Err(e @ appliance::Error::Refused { .. }) => {
                    tracing::warn!(request_id = %id, error = %e, "the appliance refused a result; not retrying");
                    break;
                }
                Err(e) => {
                    tracing::warn!(request_id = %id, error = %e, "cannot report a result; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
        let mut requests = self.requests.lock().await;
        if let Some(r) = requests.get_mut(&id) {
            r.reported = true;
            let _ = self.persist(&id, r);
        }
    }

    async fn carry_out(
        &self,
        id: &str,
        command: &Command,
    ) -> Result<serde_json::Map<String, serde_json::Value>, String> {
        let mut result = serde_json::Map::new();
        result.insert("host".into(), self.config.host.clone().into());
        match command {
            Command::PowerOn(spec) => {
                let _vm = self.vm_turns.take(&spec.vm).await;
                result.insert("vmId".into(), spec.vm.clone().into());
                if self.vms.lock().await.get(&spec.vm).is_some_and(Vm::alive) {
                    return Ok(result);
                }
                let chap = self.chap.lock().await.get(id).cloned().unwrap_or_default();
                let _owner = self.start_turns.take(&spec.owner).await;
                let vm = self.power_on(spec, &chap).await?;
                tracing::info!(vm = %spec.vm, pid = vm.pid, "VM started");
                self.vms.lock().await.insert(spec.vm.clone(), vm);
                Ok(result)
            }
            Command::PowerOff { force } => {
                let vm = self.target_vm(id).await?;
                let _vm = self.vm_turns.take(&vm).await;
                result.insert("vmId".into(), vm.clone().into());
                let Some(running) = self.vms.lock().await.get(&vm).cloned() else {
                    return Ok(result);
                };
                let grace = Duration::from_secs(self.config.shutdown_grace_secs);
                vm::stop(&self.config, &running, *force, grace)
                    .await
                    .map_err(|e| e.to_string())?;
                self.vms.lock().await.remove(&vm);
                tracing::info!(%vm, force, "VM stopped");
                Ok(result)
            }
            Command::Reset => {
                let vm = self.target_vm(id).await?;
                let _vm = self.vm_turns.take(&vm).await;
                result.insert("vmId".into(), vm.clone().into());
                let running = self.vms.lock().await.get(&vm).cloned();
                let running = running
                    .ok_or_else(|| format!("VM {vm} does not run on {}", self.config.host))?;
                vm::reset(&running).await.map_err(|e| e.to_string())?;
                Ok(result)
            }
            Command::Machine { .. } => Err(format!(
                "{} is for a bare-metal machine's BMC, not a hypervisor's agent",
                command.kind()
            )),
            Command::Restore { spec, payload } => {
                let _vm = self.vm_turns.take(&spec.vm).await;
                result.insert("vmId".into(), spec.vm.clone().into());
                result.insert("imageId".into(), payload.image.clone().into());
                let chap = self.chap.lock().await.get(id).cloned().unwrap_or_default();
                let uuid = self.restore(id, spec, payload, &chap).await;
                self.progress_map().remove(id);
                result.insert("rootUuid".into(), uuid?.into());
                Ok(result)
            }
            Command::Configure {
                spec,
                method,
                settings,
            } => {
                let _vm = self.vm_turns.take(&spec.vm).await;
                result.insert("vmId".into(), spec.vm.clone().into());
                let chap = self.chap.lock().await.get(id).cloned().unwrap_or_default();
                let done = self.configure(id, spec, method, settings, &chap).await;
                self.progress_map().remove(id);
                done?;
                Ok(result)
            }
        }
    }

    /// The VM a request is about, as the appliance named it.
    async fn target_vm(&self, id: &str) -> Result<String, String> {
        self.requests
            .lock()
            .await
            .get(id)
            .map(|r| r.vm.clone())
            .filter(|vm| !vm.is_empty())
            .ok_or_else(|| format!("request {id} names no VM"))
    }

    async fn power_on(&self, spec: &VmSpec, chap: &[Chap]) -> Result<Vm, String> {
        let (kernel, initrd) = self.boot_files(spec).await?;
        let media = vm::Media {
            kernel: &kernel,
            initrd: &initrd,
            payload: None,
        };
        vm::start(&self.config, self.accel, spec, chap, media)
            .await
            .map_err(|e| e.to_string())
    }

    /// Verified local copies of the VM's kernel and initrd.
    async fn boot_files(&self, spec: &VmSpec) -> Result<(PathBuf, PathBuf), String> {
        let cache = self.cache_dir();
        let kernel = self
            .appliance
            .cached(&cache, &spec.boot.kernel_url, &spec.boot.kernel_sha256)
            .await?;
        let initrd = self
            .appliance
            .cached(&cache, &spec.boot.initrd_url, &spec.boot.initrd_sha256)
            .await?;
        Ok((kernel, initrd))
    }

    fn cache_dir(&self) -> PathBuf {
        self.config.state_dir.join("cache")
    }

    fn progress_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, u64)>> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// restoreImage: an install boot ([`offline`]) with the image archive (fetched, verified
    /// and cached) as its payload; the root filesystem's UUID once the initrd reports the image
    /// installed with the archive's SHA-256.
    async fn restore(
        &self,
        id: &str,
        spec: &VmSpec,
        payload: &Payload,
        chap: &[Chap],
    ) -> Result<String, String> {
        if payload.url.is_empty() {
            return Err(format!(
                "image {} has no content on the appliance: the operator must `nhn image import` it",
                payload.image
            ));
        }
        let archive = self
            .appliance
            .cached(&self.cache_dir(), &payload.url, &payload.sha256)
            .await?;
        let boot = OfflineBoot {
            id,
            spec,
            chap,
            payload: &archive,
            sha256: &payload.sha256,
            bytes: payload.bytes,
        };
        match self.offline_boot(&boot).await? {
            offline::Verdict::Done(fields) if fields.get("sha256") == Some(&payload.sha256) => {
                let uuid = fields.get("uuid").cloned().unwrap_or_default();
                tracing::info!(vm = %spec.vm, image = %payload.image, %uuid, "image installed");
                Ok(uuid)
            }
            offline::Verdict::Done(fields) => Err(format!(
                "the install boot reported SHA-256 {}, not the image's {}",
                fields.get("sha256").map_or("(none)", String::as_str),
                payload.sha256
            )),
            offline::Verdict::Failed(why) => {
                let mut why = format!("install failed at {why}");
                if !offline::intact(&archive, &payload.sha256).await {
                    // The guest read a bad copy: fetch it again next time.
                    let _ = std::fs::remove_file(&archive);
                    why.push_str(
                        " (this hypervisor's cached copy of the archive was damaged; it is removed and the next restoreImage fetches it again)",
                    );
                }
                Err(why)
            }
        }
    }

    /// An Init* method: a configure boot ([`offline`]) with the settings bundle as its payload
    /// (written 0600 for the run, removed after it).
    async fn configure(
        &self,
        id: &str,
        spec: &VmSpec,
        method: &str,
        settings: &serde_json::Value,
        chap: &[Chap],
    ) -> Result<(), String> {
        let tar = offline::bundle(method, settings)?;
        let dir = self.config.state_dir.join("bundles");
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join(format!("{id}.tar"));
        vm::write_private(&path, &tar).map_err(|e| format!("cannot write the bundle: {e}"))?;
        let sha256 = crate::sign::hex(&<sha2::Sha256 as sha2::Digest>::digest(&tar));
        let boot = OfflineBoot {
            id,
            spec,
            chap,
            payload: &path,
            sha256: &sha256,
            bytes: tar.len() as u64,
        };
        let verdict = self.offline_boot(&boot).await;
        let _ = std::fs::remove_file(&path);
        match verdict? {
            offline::Verdict::Done(_) => {
                tracing::info!(vm = %spec.vm, %method, "settings applied");
                Ok(())
            }
            offline::Verdict::Failed(why) => Err(format!("{method} failed at {why}")),
        }
    }

    /// Boots the VM into nhn's initrd with a payload disk and watches it to its verdict. A run
    /// the previous agent left behind is stopped first: both modes may run again safely.
    async fn offline_boot(&self, boot: &OfflineBoot<'_>) -> Result<offline::Verdict, String> {
        let vm_id = &boot.spec.vm;
        let leftover = self.vms.lock().await.remove(vm_id);
        if let Some(old) = leftover {
            tracing::info!(vm = %vm_id, "stopping a run left from before to start afresh");
            vm::stop(&self.config, &old, true, Duration::ZERO)
                .await
                .map_err(|e| e.to_string())?;
        }
        let (kernel, initrd) = self.boot_files(boot.spec).await?;
        self.progress_map()
            .insert(boot.id.to_owned(), (0, boot.bytes));
        let mut spec = boot.spec.clone();
        spec.boot.cmdline = format!(
            "{} nhn.payload=disk nhn.payload.sha256={} nhn.payload.bytes={}",
            spec.boot.cmdline, boot.sha256, boot.bytes
        );
        let media = vm::Media {
            kernel: &kernel,
            initrd: &initrd,
            payload: Some(boot.payload),
        };
        let running = vm::start(&self.config, self.accel, &spec, boot.chap, media)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(vm = %vm_id, pid = running.pid, cmdline = %spec.boot.cmdline, "offline boot started");
        self.vms.lock().await.insert(vm_id.clone(), running.clone());
        let (report, ended) = offline::watch(&running, |done, total| {
            self.progress_map()
                .insert(boot.id.to_owned(), (done, total));
        })
        .await;
        let console = offline::console_tail(&running, 8);
        self.vms.lock().await.remove(vm_id);
        if let Err(e) = vm::stop(&self.config, &running, true, Duration::ZERO).await {
            tracing::warn!(vm = %vm_id, error = %e, "cannot stop an offline boot's QEMU");
        }
        match (report.verdict, ended) {
            (Some(v), _) => Ok(v),
            (None, offline::Ended::TimedOut) => Err(format!(
                "the offline boot did not finish within {} minutes (console: {console})",
                offline::LIMIT.as_secs() / 60
            )),
            (None, _) => Err(format!(
                "the offline boot ended without a report (console: {console})"
            )),
        }
    }

    /// Every `report_secs`: what runs, what ended, what the agent does not know.
    async fn report_loop(self: Arc<Self>) {
        let every = Duration::from_secs(self.config.report_secs.max(1));
        loop {
            let report = self.observe().await;
            match self.appliance.report_host(&report).await {
                Ok(()) => {
                    let sent: Vec<String> = report
                        .vms
                        .iter()
                        .filter(|v| v.state == "gone" || v.state == "shutdown")
                        .map(|v| v.vm_id.clone())
                        .collect();
                    self.ended.lock().await.retain(|v| !sent.contains(&v.vm_id));
                }
                Err(e) => tracing::warn!(error = %e, "cannot report to the appliance"),
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Looks at every VM: a dead QEMU is `gone`, a guest that powered off is `shutdown` (its
    /// QEMU is then stopped and its taps removed).
    async fn observe(&self) -> HostReport {
        let known: Vec<Vm> = self.vms.lock().await.values().cloned().collect();
        let mut vms = Vec::new();
        for vm in known {
            let id = vm.spec.vm.clone();
            // Skip VMs busy with an operation: its result tells the appliance.
            let Some(_vm) = self.vm_turns.try_take(&id).await else {
                vms.push(VmReport {
                    vm_id: id,
                    state: "busy".into(),
                    reason: String::new(),
                });
                continue;
            };
            // The list was taken before the turn: the VM may have ended (an offline boot) and
            // started again since. Only the VM as it is now counts.
            let now = self.vms.lock().await.get(&id).cloned();
            let Some(vm) = now.filter(|now| now.pid == vm.pid) else {
                continue;
            };
            if !vm.alive() {
                let reason = format!("QEMU (pid {}) exited", vm.pid);
                tracing::warn!(vm = %id, %reason, "a VM ended without being asked");
                vm::forget(&self.config, &vm);
                self.vms.lock().await.remove(&id);
                self.ended.lock().await.push(VmReport {
                    vm_id: id,
                    state: "gone".into(),
                    reason,
                });
                continue;
            }
            let status = match qmp::Qmp::connect(&vm.qmp_path()).await {
                Ok(mut q) => q.status().await.unwrap_or_else(|_| "unknown".into()),
                Err(_) => "unknown".into(),
            };
            if status == "shutdown" {
                tracing::info!(vm = %id, "the guest powered itself off");
                if let Err(e) = vm::stop(&self.config, &vm, true, Duration::ZERO).await {
                    tracing::warn!(vm = %id, error = %e, "cannot stop a powered-off VM's QEMU");
                    continue;
                }
                self.vms.lock().await.remove(&id);
                self.ended.lock().await.push(VmReport {
                    vm_id: id,
                    state: "shutdown".into(),
                    reason: "the guest powered itself off".into(),
                });
                continue;
            }
            vms.push(VmReport {
                vm_id: id,
                state: status,
                reason: String::new(),
            });
        }
        vms.extend(self.ended.lock().await.iter().cloned());
        let running: Vec<Vm> = self.vms.lock().await.values().cloned().collect();
        let pids: Vec<u32> = running.iter().map(|v| v.pid).collect();
        let (vcpus, memory) = running.iter().fold((0i64, 0i64), |(c, m), v| {
            (c + i64::from(v.spec.vcpus), m + i64::from(v.spec.memory_mb))
        });
        HostReport {
            accel: self.accel.to_owned(),
            vcpus_free: host_vcpus() - vcpus,
            memory_free_mb: host_memory_mb() - memory,
            vms,
            unknown_processes: vm::unknown_processes(&self.config, &pids),
            progress: self
                .progress_map()
                .iter()
                .map(|(id, (done, total))| Progress {
                    request_id: id.clone(),
                    done: *done,
                    total: *total,
                })
                .collect(),
        }
    }
}

fn host_vcpus() -> i64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as i64)
}

fn host_memory_mb() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<i64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}
