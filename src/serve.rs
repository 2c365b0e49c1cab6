//! `nhn serve`: opens the inventory (holding the data dir's lock), starts every service and
//! stops them all on one shutdown signal (SIGTERM or SIGINT), in the style of mini-redis.
//!
//! Every service has one shape: a `start_*` function that takes the shared context
//! ([`Shared`]: configuration, inventory, secret, boot files, metrics and the shutdown `watch`
//! receiver) plus whatever state it serves, and returns a [`Service`], a named task that
//! finishes its in-flight work and ends once the signal flips. Shutdown flips the signal once
//! and waits for all of them under one deadline, naming in the log any service that did not
//! finish in time. The data dir's lock and the inventory outlive every service: HTTP has
//! stopped accepting before the inventory closes.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::api::Api;
use crate::api::internal::{self, Internal};
use crate::boot::files::BootRoot;
use crate::config::Config;
use crate::dhcp;
use crate::facility::agent::AgentDriver;
use crate::facility::http::HttpDriver;
use crate::facility::machine::{Finished, MachineRoute};
use crate::facility::router::Router;
use crate::http::{self, AppState};
use crate::inventory::Inventory;
use crate::jobs::Engine;
use crate::switch::reconciler;
use crate::switch::templates::Templates;
use crate::tftp;

/// How long the services together get to finish in-flight work after the shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Takes the data dir's exclusive lock, so that two appliances never share one inventory.
/// The lock is released by the kernel when the process exits, even on kill -9.
fn lock_data_dir(dir: &Path) -> Result<File> {
    let path = dir.join("serve.lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open lock file {}", path.display()))?;
    if file.try_lock().is_err() {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        bail!(
            "another `nhn serve` (pid {}) is already running on data dir {}; stop it first or use another --data-dir",
            if holder.is_empty() { "unknown" } else { holder },
            dir.display()
        );
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    Ok(file)
}

/// Whether an appliance (`nhn serve`) runs on data dir `dir`: something holds its lock. For
/// commands that hand work to the appliance when one runs and do it themselves otherwise.
pub fn appliance_running(dir: &Path) -> Result<bool> {
    let path = dir.join("serve.lock");
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    // Taken only to look: released when `file` closes at the end of this function.
    match file.try_lock_shared() {
        Ok(()) => Ok(false),
        Err(std::fs::TryLockError::WouldBlock) => Ok(true),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

pub async fn run(config: Config) -> Result<()> {
    // Handle SIGTERM/SIGINT from the first moment: a signal during start-up must still mean
    // "stop cleanly", not the default "die".
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let _lock = lock_data_dir(&config.data_dir)?;
    let inventory = Inventory::open(&config.db_path())?;
    inventory.follow_external_writers()?;
    let secret = crate::secret::load_or_create(&config.data_dir).with_context(|| {
        format!(
            "cannot read or create the appliance secret in {}",
            config.data_dir.display()
        )
    })?;

    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    metrics::gauge!("nhn_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);

    let listener = TcpListener::bind(config.http.listen).await.with_context(|| {
        format!(
            "cannot listen on {} for HTTP; set [http] listen in the config (or --listen) to a free local address",
            config.http.listen
        )
    })?;
    let (stop, stopping) = watch::channel(false);
    let ctx = Shared {
        boot_root: Arc::new(BootRoot::new(&config.boot.dir)),
        config: Arc::new(config),
        inventory,
        secret,
        metrics,
        stopping,
    };
    let mut services = vec![start_tftp(&ctx).await?];
    services.extend(start_storage(&ctx));
    services.extend(start_dhcp(&ctx).await?);
    services.extend(start_switches(&ctx)?);
    services.push(start_upkeep(&ctx));
    let internal_listener = TcpListener::bind(ctx.config.api.internal_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for facility callbacks; set [api] internal_listen to a free local address",
                ctx.config.api.internal_listen
            )
        })?;
    let requests = requests(&ctx)?;
    services.push(start_job_engine(
        &ctx,
        requests.engine,
        requests.machine_results,
    ));
    services.push(start_call_log(&ctx, &requests.api));
    services.push(start_internal(&ctx, internal_listener, requests.internal));
    let mut http = start_http(&ctx, listener, requests.api);
    tracing::info!(data_dir = %ctx.config.data_dir.display(), "nhn serving");

    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        ended = &mut http.task => {
            return match ended {
                Ok(Ok(())) => bail!("the HTTP service stopped unexpectedly"),
                Ok(Err(e)) => Err(e).context("the HTTP service failed"),
                Err(e) => Err(e).context("the HTTP service panicked"),
            };
        }
    }
    services.push(http);
    shut_down(stop, services, SHUTDOWN_GRACE).await;
    tracing::info!("stopped");
    Ok(())
}

/// The shared context every service starts from.
struct Shared {
    config: Arc<Config>,
    inventory: Inventory,
    /// The appliance secret (`<data_dir>/api-secret`).
    secret: [u8; 32],
    /// The boot directory with its in-memory cache, shared by TFTP and HTTP.
    boot_root: Arc<BootRoot>,
    metrics: PrometheusHandle,
    /// Flips to `true` once, at shutdown.
    stopping: watch::Receiver<bool>,
}

impl Shared {
    /// The secret CHAP accounts derive from, with `[storage] chap` on.
    fn chap(&self) -> Option<[u8; 32]> {
        self.config.storage.chap.then_some(self.secret)
    }
}

/// A started service: a task that, once the shutdown signal flips, finishes its in-flight work
/// and ends.
struct Service {
    name: &'static str,
    /// What the log says when the service is still busy at the shutdown deadline.
    late: &'static str,
    task: JoinHandle<Result<()>>,
}

impl Service {
    fn spawn(
        name: &'static str,
        late: &'static str,
        work: impl Future<Output = Result<()>> + Send + 'static,
    ) -> Service {
        Service {
            name,
            late,
            task: tokio::spawn(work),
        }
    }
}

/// Flips the shutdown signal once and waits for every service under one overall deadline.
/// The services stop concurrently (each is its own task); waiting for them in turn against the
/// same deadline takes at most `grace` in all. A service still busy then is named in the log
/// and ends with the runtime.
async fn shut_down(stop: watch::Sender<bool>, services: Vec<Service>, grace: Duration) {
    let _ = stop.send(true);
    let deadline = Instant::now() + grace;
    for service in services {
        match tokio::time::timeout_at(deadline, service.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::warn!(service = service.name, error = %format!("{e:#}"), "service failed while stopping")
            }
            Ok(Err(e)) => tracing::error!(service = service.name, error = %e, "service panicked"),
            Err(_) => tracing::warn!(service = service.name, "{}", service.late),
        }
    }
}

/// TFTP on every `[tftp] listen` address, serving the boot directory.
async fn start_tftp(ctx: &Shared) -> Result<Service> {
    let mut listeners = tftp::server::start(
        &ctx.config.tftp,
        ctx.boot_root.clone(),
        ctx.stopping.clone(),
    )
    .await
    .context("cannot start TFTP")?;
    Ok(Service::spawn(
        "tftp",
        "TFTP listeners did not stop within the grace period",
        async move {
            while listeners.join_next().await.is_some() {}
            Ok(())
        },
    ))
}

/// With `[storage] driver = "tgt"`, keeps the target daemon in step with the volumes.
fn start_storage(ctx: &Shared) -> Option<Service> {
    if ctx.config.storage.driver != crate::config::StorageDriver::Tgt {
        return None;
    }
    let driver = Arc::new(crate::storage::tgt::Tgt {
        control_port: ctx.config.storage.tgt_control_port,
    });
    let follow = crate::storage::follow(
        driver,
        ctx.inventory.clone(),
        ctx.config.data_dir.clone(),
        ctx.chap(),
        ctx.stopping.clone(),
    );
    Some(Service::spawn(
        "storage",
        "iSCSI target reconciliation did not finish within the grace period; it runs again at the next start",
        async move {
            follow.await;
            Ok(())
        },
    ))
}

/// DHCP on the `[dhcp] interfaces`; none when no interface is configured. Its workers are
/// threads: the service stops them (the persister commits what it holds) when the signal flips.
async fn start_dhcp(ctx: &Shared) -> Result<Option<Service>> {
    let Some(server) = dhcp::service::start(&ctx.config, ctx.inventory.clone())
        .await
        .context("cannot start DHCP")?
    else {
        return Ok(None);
    };
    let mut stopping = ctx.stopping.clone();
    Ok(Some(Service::spawn(
        "dhcp",
        "DHCP workers did not stop within the grace period",
        async move {
            let _ = stopping.wait_for(|s| *s).await;
            tokio::task::spawn_blocking(move || server.stop()).await?;
            Ok(())
        },
    )))
}

/// The switch reconciler, with `[switch] reconcile`. The templates load either way, so that a
/// broken `[switch] templates_dir` is reported at start.
fn start_switches(ctx: &Shared) -> Result<Option<Service>> {
    let templates = match &ctx.config.switch.templates_dir {
        Some(dir) => Templates::from_dir(dir),
        None => Templates::builtin(),
    }
    .context("cannot load the switch templates")?;
    if !ctx.config.switch.reconcile {
        return Ok(None);
    }
    let run = reconciler::run(
        ctx.inventory.clone(),
        (*ctx.config).clone(),
        templates,
        ctx.stopping.clone(),
    );
    Ok(Some(Service::spawn(
        "switch reconciler",
        "switch sessions did not finish within the grace period; their intents stay queued",
        async move {
            run.await;
            Ok(())
        },
    )))
}

/// The metrics recorder's upkeep (histogram maintenance), every 5 seconds.
fn start_upkeep(ctx: &Shared) -> Service {
    let (metrics, mut stopping) = (ctx.metrics.clone(), ctx.stopping.clone());
    Service::spawn(
        "metrics upkeep",
        "metrics upkeep did not stop within the grace period",
        async move {
            loop {
                tokio::select! {
                    _ = stopping.wait_for(|s| *s) => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(5)) => metrics.run_upkeep(),
                }
            }
        },
    )
}

/// The request path: the API that accepts requests, the job engine that carries them out (with
/// the results of machine power commands it gets back) and the internal listener's handler for
/// the facility's and agents' reports.
struct Requests {
    api: Arc<Api>,
    engine: Arc<Engine>,
    machine_results: UnboundedReceiver<Finished>,
    internal: Internal,
}

fn requests(ctx: &Shared) -> Result<Requests> {
    let jobs = Arc::new(Notify::new());
    let api = Api::new(
        ctx.inventory.clone(),
        ctx.config.api.clone(),
        jobs.clone(),
        ctx.secret,
        ctx.config.switch.infra_vlans.iter().copied().collect(),
    );
    let (results, machine_results) = tokio::sync::mpsc::unbounded_channel();
    let router = Router {
        agents: AgentDriver::new(ctx.inventory.clone(), ctx.chap()),
        legacy: legacy_facility(&ctx.config)?,
        machines: MachineRoute::new(ctx.inventory.clone(), ctx.config.clone(), results),
    };
    let engine = Engine::new(
        ctx.inventory.clone(),
        api.config.clone(),
        Arc::new(router),
        jobs,
        crate::jobs::Options {
            boot: crate::jobs::boot::BootFiles::from_config(&ctx.config),
            edge_gate: ctx.config.switch.reconcile,
            host_dead_secs: ctx.config.facility.host_dead_secs,
            infra_vlans: ctx.config.switch.infra_vlans.iter().copied().collect(),
        },
    );
    let internal = Internal::new(
        engine.clone(),
        ctx.inventory.clone(),
        &ctx.config.api.facility_credential_sha256,
        ctx.config.api.max_xml_depth,
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    Ok(Requests {
        api,
        engine,
        machine_results,
        internal,
    })
}

/// The legacy facility (`[api] facility_url`), if one is configured.
fn legacy_facility(config: &Config) -> Result<Option<HttpDriver>> {
    if config.api.facility_url.is_empty() {
        return Ok(None);
    }
    let key: [u8; 32] = crate::sign::parse_hex32(&config.api.facility_credential_sha256)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "[api] facility_url is set but facility_credential_sha256 is not 64 hex digits: \
                 the facility reports results with that credential and nhn signs dispatches with it \
                 (printf %s \"$SECRET\" | sha256sum)"
            )
        })?;
    let driver = HttpDriver::new(&config.api.facility_url, key)
        .map_err(|e| anyhow::anyhow!("[api] facility_url: {e}"))?;
    Ok(Some(driver))
}

/// The job engine, and the loop that applies the results of machine power commands; that loop
/// ends with the engine (a machine power command still running is dispatched again at the next
/// start).
fn start_job_engine(
    ctx: &Shared,
    engine: Arc<Engine>,
    finished: UnboundedReceiver<Finished>,
) -> Service {
    let stopping = ctx.stopping.clone();
    Service::spawn(
        "job engine",
        "the job engine did not finish within the grace period; its requests are recovered at the next start",
        async move {
            let results = tokio::spawn(engine.clone().apply_results(finished));
            engine.run(stopping).await;
            results.abort();
            Ok(())
        },
    )
}

/// The API's call log: records of read and refused calls, written in batches.
fn start_call_log(ctx: &Shared, api: &Api) -> Service {
    let run = api
        .call_log
        .clone()
        .run(ctx.inventory.clone(), ctx.stopping.clone());
    Service::spawn(
        "call log",
        "the call log did not flush within the grace period; the last calls' records are lost",
        async move {
            run.await;
            Ok(())
        },
    )
}

/// The internal listener (`[api] internal_listen`): the facility's and agents' callbacks.
fn start_internal(ctx: &Shared, listener: TcpListener, internal: Internal) -> Service {
    let serve = internal::serve(listener, internal, ctx.stopping.clone());
    Service::spawn(
        "internal listener",
        "facility callbacks did not finish within the grace period; closing them",
        async move { Ok(serve.await?) },
    )
}

/// HTTP (`[http] listen`): the API, the status page, /metrics, /healthz and boot files.
fn start_http(ctx: &Shared, listener: TcpListener, api: Arc<Api>) -> Service {
    let state = AppState {
        inventory: ctx.inventory.clone(),
        metrics: ctx.metrics.clone(),
        boot_root: ctx.boot_root.clone(),
        boot: Arc::new(ctx.config.boot.clone()),
        api,
        chap: ctx.chap(),
        data_dir: Arc::new(ctx.config.data_dir.clone()),
    };
    let serve = http::serve(listener, state, ctx.stopping.clone());
    Service::spawn(
        "http",
        "HTTP connections did not finish within the grace period; closing them",
        async move { Ok(serve.await?) },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service that finishes `after` the shutdown signal.
    fn stopping_after(
        name: &'static str,
        stopping: &watch::Receiver<bool>,
        after: Duration,
    ) -> Service {
        let mut stopping = stopping.clone();
        Service::spawn(name, "late", async move {
            let _ = stopping.wait_for(|s| *s).await;
            tokio::time::sleep(after).await;
            Ok(())
        })
    }

    #[tokio::test]
    async fn shutdown_ends_as_soon_as_every_service_has_stopped() {
        let (stop, stopping) = watch::channel(false);
        let services = (0..4)
            .map(|_| stopping_after("quick", &stopping, Duration::from_millis(50)))
            .collect();
        let started = Instant::now();
        shut_down(stop, services, Duration::from_secs(10)).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn services_that_do_not_stop_share_one_deadline() {
        let (stop, stopping) = watch::channel(false);
        let grace = Duration::from_millis(500);
        let services = vec![
            Service::spawn("stuck 1", "late", std::future::pending()),
            stopping_after("quick", &stopping, Duration::ZERO),
            Service::spawn("stuck 2", "late", std::future::pending()),
            Service::spawn("stuck 3", "late", std::future::pending()),
        ];
        let started = Instant::now();
        shut_down(stop, services, grace).await;
        let took = started.elapsed();
        assert!(took >= grace && took < 2 * grace, "{took:?}");
    }
}
