//! `nhn serve`: opens the inventory (holding the data dir's lock), starts every service and
//! stops them all on one shutdown signal (SIGTERM or SIGINT), in the style of mini-redis: each
//! service gets a `watch` receiver and finishes its in-flight work when it flips.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, watch};

use crate::api::Api;
use crate::api::internal::{self, Internal};
use crate::boot::files::BootRoot;
use crate::config::Config;
use crate::dhcp;
use crate::facility::agent::AgentDriver;
use crate::facility::http::HttpDriver;
use crate::facility::machine::MachineRoute;
use crate::facility::router::Router;
use crate::http::{self, AppState};
use crate::inventory::Inventory;
use crate::jobs::Engine;
use crate::switch::reconciler;
use crate::switch::templates::Templates;
use crate::tftp;

/// How long services get to finish in-flight work after the shutdown signal.
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
    let boot_root = Arc::new(BootRoot::new(&config.boot.dir));
    tftp::server::start(&config.tftp, boot_root.clone(), stopping.clone())
        .await
        .context("cannot start TFTP")?;
    if config.storage.driver == crate::config::StorageDriver::Tgt {
        let driver = Arc::new(crate::storage::tgt::Tgt {
            control_port: config.storage.tgt_control_port,
        });
        tokio::spawn(crate::storage::follow(
            driver,
            inventory.clone(),
            config.data_dir.clone(),
            config.storage.chap.then_some(secret),
            stopping.clone(),
        ));
    }
    let dhcp_server = dhcp::service::start(&config, inventory.clone())
        .await
        .context("cannot start DHCP")?;

    let templates = match &config.switch.templates_dir {
        Some(dir) => Templates::from_dir(dir),
        None => Templates::builtin(),
    }
    .context("cannot load the switch templates")?;
    let reconciler = config.switch.reconcile.then(|| {
        tokio::spawn(reconciler::run(
            inventory.clone(),
            config.clone(),
            templates,
            stopping.clone(),
        ))
    });

    let upkeep = {
        let metrics = metrics.clone();
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopping.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => metrics.run_upkeep(),
                }
            }
        })
    };
    let internal_listener = TcpListener::bind(config.api.internal_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for facility callbacks; set [api] internal_listen to a free local address",
                config.api.internal_listen
            )
        })?;
    let jobs = Arc::new(Notify::new());
    let api = Api::new(
        inventory.clone(),
        config.api.clone(),
        jobs.clone(),
        secret,
        config.switch.infra_vlans.iter().copied().collect(),
    );
    let legacy = if config.api.facility_url.is_empty() {
        None
    } else {
        let key: [u8; 32] = crate::sign::parse_hex32(&config.api.facility_credential_sha256)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "[api] facility_url is set but facility_credential_sha256 is not 64 hex digits: \
                     the facility reports results with that credential and nhn signs dispatches with it \
                     (printf %s \"$SECRET\" | sha256sum)"
                )
            })?;
        let d = HttpDriver::new(&config.api.facility_url, key)
            .map_err(|e| anyhow::anyhow!("[api] facility_url: {e}"))?;
        Some(d)
    };
    let (machine_results, finished) = tokio::sync::mpsc::unbounded_channel();
    let router = Router {
        agents: AgentDriver::new(inventory.clone(), config.storage.chap.then_some(secret)),
        legacy,
        machines: MachineRoute::new(inventory.clone(), Arc::new(config.clone()), machine_results),
    };
    let engine = Engine::new(
        inventory.clone(),
        api.config.clone(),
        Arc::new(router),
        jobs,
        crate::jobs::Options {
            boot: crate::jobs::boot::BootFiles::from_config(&config),
            edge_gate: config.switch.reconcile,
            host_dead_secs: config.facility.host_dead_secs,
        },
    );
    let internal = Internal::new(
        engine.clone(),
        inventory.clone(),
        &config.api.facility_credential_sha256,
        config.api.max_xml_depth,
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let engine_task = tokio::spawn(engine.clone().run(stopping.clone()));
    let results_task = tokio::spawn(engine.clone().apply_results(finished));
    let call_log_task = tokio::spawn(
        api.call_log
            .clone()
            .run(inventory.clone(), stopping.clone()),
    );
    let internal_task = tokio::spawn(internal::serve(
        internal_listener,
        internal,
        stopping.clone(),
    ));
    let mut http = tokio::spawn(http::serve(
        listener,
        AppState {
            inventory,
            metrics,
            boot_root: boot_root.clone(),
            boot: Arc::new(config.boot.clone()),
            api,
            chap: config.storage.chap.then_some(secret),
        },
        stopping.clone(),
    ));
    tracing::info!(data_dir = %config.data_dir.display(), "nhn serving");

    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        ended = &mut http => {
            return match ended {
                Ok(Ok(())) => bail!("the HTTP service stopped unexpectedly"),
                Ok(Err(e)) => Err(e).context("the HTTP service failed"),
                Err(e) => Err(e).context("the HTTP service panicked"),
            };
        }
    }
    let _ = stop.send(true);
    if tokio::time::timeout(SHUTDOWN_GRACE, http).await.is_err() {
        tracing::warn!("HTTP connections did not finish within the grace period; closing them");
    }
    if let Some(r) = reconciler
        && tokio::time::timeout(SHUTDOWN_GRACE, r).await.is_err()
    {
        tracing::warn!(
            "switch sessions did not finish within the grace period; their intents stay queued"
        );
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, engine_task).await;
    // A machine power command still running is dispatched again at the next start.
    results_task.abort();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, call_log_task).await;
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, internal_task).await;
    upkeep.abort();
    if let Some(server) = dhcp_server {
        tokio::task::spawn_blocking(move || server.stop()).await?;
    }
    tracing::info!("stopped");
    Ok(())
}
