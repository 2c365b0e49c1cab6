//! The command line: the clap definitions and the body of every command, one file per command
//! group (`nhn vm ...` is `vm.rs`), in the style of mini-redis's `src/cmd/`. Each file holds its
//! group's clap types and a `run` that does the work through the library and prints the result.
//!
//! This module belongs to the binary, not to the `nhn` library: it is the thin shell that turns
//! arguments into library calls and results into text and exit codes (anyhow, println, progress
//! bars), and nothing else calls it — the integration tests run the real binary. Kept out of the
//! library, its items stay private and the compiler reports any that fall out of use.
//!
//! What every command shares lives here once: the global options, which log filter a command
//! runs with, opening the inventory, starting an async runtime and waiting for an operator's
//! request (`nhn power`, `nhn vm move`) to end.

mod agent;
mod boot;
mod config;
mod host;
mod image;
mod initrd;
mod inventory;
mod key;
mod lease;
mod power;
mod serve;
mod switch;
mod vm;
mod volume;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use nhn::config::{Config, LogFormat};
use nhn::inventory::Inventory;
use nhn::switch::vlans::VlanSet;

#[derive(Parser)]
#[command(
    name = "nhn",
    version,
    about = "Network-boot and switch-automation appliance",
    long_about = "nhn boots diskless servers and VMs from the network onto iSCSI volumes, keeps switch VLANs \
                  in step with its inventory, and serves the HaaS XML-RPC API.\n\n\
                  Every command reads the same configuration (--config, default: the embedded defaults: \
                  data in ./nhn-data, HTTP on 127.0.0.1:8080, no DHCP on any interface)."
)]
pub struct Cli {
    /// Configuration file (TOML). Without it the embedded defaults apply; see `nhn config show`.
    #[arg(long, short, global = true, env = "NHN_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override the configuration's data_dir (where nhn.db lives).
    #[arg(long, global = true, env = "NHN_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the appliance: HTTP (status page, /metrics, /healthz) on the inventory.
    ///
    /// Holds an exclusive lock on the data dir, so a second `nhn serve` on the same data fails
    /// instead of corrupting it. Stops cleanly on SIGTERM or SIGINT.
    Serve(serve::ServeArgs),
    /// Show the configuration.
    #[command(subcommand)]
    Config(config::ConfigCmd),
    /// Load, write out and summarize the site: switches, cabling, machines, pools, customers.
    #[command(subcommand)]
    Inventory(inventory::InventoryCmd),
    /// Boot assets: copy the distribution's iPXE binaries into the boot directory.
    #[command(subcommand)]
    Boot(boot::BootCmd),
    /// Build the switchroot initrd (busybox, iscsistart, kernel modules, nhn's init scripts).
    #[command(subcommand)]
    Initrd(initrd::InitrdCmd),
    /// OS images customers restore onto DISK1: import an archive, list, show, remove.
    #[command(subcommand)]
    Image(image::ImageCmd),
    /// Volumes: iSCSI boot volumes of diskless machines (sparse files exported by the target daemon).
    #[command(subcommand)]
    Volume(volume::VolumeCmd),
    /// DHCP leases (dynamic addresses handed to machines the inventory does not know).
    #[command(subcommand)]
    Lease(lease::LeaseCmd),
    /// Manage customers' API keys (the secret is shown once and stored only as a hash).
    #[command(subcommand)]
    Key(key::KeyCmd),
    /// The switch plane: the VLAN plan and the reconciler's per-switch state.
    #[command(subcommand)]
    Switch(switch::SwitchCmd),
    /// Place, move and remove VMs. These only change the inventory; `nhn serve`'s reconciler
    /// then moves the VLANs on the switches.
    #[command(subcommand)]
    Vm(vm::VmCmd),
    /// Bare-metal machines' power, through their BMC (IPMI or Redfish).
    #[command(
        long_about = "Bare-metal machines' power, through their BMC (IPMI or Redfish).\n\n\
                      The machine's power_driver (\"ipmi\" or \"redfish\"), bmc_address and \
                      bmc_credentials come from the site file (`nhn inventory import`); \
                      bmc_credentials names a [credentials.NAME] section of the configuration \
                      with user and password (or password_file), plus ipmi_cipher_suite for \
                      IPMI (default 17; older BMCs need 3) or ca_file / insecure / \
                      redfish_system for Redfish. IPMI addresses are host or host:port; \
                      Redfish addresses are host[:port] (HTTPS) or a http(s):// URL.\n\n\
                      Every change waits until the BMC reports the new state (at most --timeout, \
                      default [power] timeout_secs) and only then succeeds. One command at a \
                      time goes to a BMC; transient failures are retried ([power] retries).\n\n\
                      Changes (on, off, reset, pxe) are requests to the running appliance: \
                      `nhn serve`'s job engine carries them out, so they never overlap the \
                      appliance's own commands to that BMC and each is kept in the requests \
                      table. A request nothing picks up within 10 s is canceled, and this \
                      command says so. --direct talks to the BMC from this command instead \
                      (for when no appliance runs). `status` always asks the BMC directly.\n\n\
                      Example:\n  nhn power pxe Server-1 && nhn power reset Server-1"
    )]
    Power(power::PowerArgs),
    /// The hypervisor agent: enroll one (on the appliance), or run one (on a hypervisor).
    ///
    /// `nhn agent` runs on every hypervisor and starts, stops and resets the VMs the appliance
    /// places there (QEMU processes that outlive the agent), with each VM NIC a tap on the
    /// hypervisor's Open vSwitch bridge tagged with its network's VLAN.
    ///
    /// 1. On the appliance: `nhn agent enroll Hypervisor-1 --url http://10.20.0.11:8090`
    ///    prints the agent's credential once (nhn keeps only its SHA-256).
    ///
    /// 2. On the hypervisor: store it in a file (mode 0600) and write a config with
    ///    [agent] host = "Hypervisor-1", listen = "10.20.0.11:8090",
    ///    appliance_url = "http://APPLIANCE:8081/RPC2" (the appliance's [api] internal_listen),
    ///    credential_file, state_dir and bridge.
    ///
    /// 3. `nhn agent run --config agent.toml`; `nhn host list` on the appliance shows it `up`.
    #[command(subcommand)]
    Agent(agent::AgentCmd),
    /// Hypervisors: agent state, last report, VMs and free capacity.
    #[command(subcommand)]
    Host(host::HostCmd),
}

impl Cli {
    /// The configuration every command reads: the file (or the embedded defaults) with the
    /// global overrides applied.
    pub fn config(&self) -> Result<Config> {
        let mut config = Config::load(self.config.as_deref())?;
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        Ok(config)
    }
}

impl Command {
    /// The log filter the command runs with, `None` for the commands that log nothing. The
    /// services (`serve`, `agent run`) log at the configured level; one-shot commands only warn
    /// unless `NHN_LOG` asks for more.
    pub fn log_filter<'a>(&self, config: &'a Config) -> Option<&'a str> {
        match self {
            Command::Config(_) | Command::Boot(_) => None,
            Command::Serve(_) | Command::Agent(agent::AgentCmd::Run) => Some(&config.log.level),
            // rustls-platform-verifier logs every refused certificate at ERROR; nhn's own
            // error says the same and what to do about it.
            Command::Power(_) => Some("warn,rustls_platform_verifier=off"),
            Command::Inventory(_)
            | Command::Initrd(_)
            | Command::Volume(_)
            | Command::Image(_)
            | Command::Lease(_)
            | Command::Key(_)
            | Command::Switch(_)
            | Command::Vm(_)
            | Command::Agent(_)
            | Command::Host(_) => Some("warn"),
        }
    }

    /// Runs the command to its end.
    pub fn run(self, config: Config) -> Result<()> {
        match self {
            Command::Serve(args) => serve::run(args, config),
            Command::Config(cmd) => config::run(cmd, &config),
            Command::Inventory(cmd) => inventory::run(cmd, &open_inventory(&config)?),
            Command::Boot(cmd) => boot::run(cmd, &config),
            Command::Initrd(cmd) => initrd::run(cmd, &config),
            Command::Volume(cmd) => volume::run(cmd, &open_inventory(&config)?),
            Command::Image(cmd) => image::run(cmd, &open_inventory(&config)?, &config),
            Command::Lease(cmd) => lease::run(cmd, &open_inventory(&config)?),
            Command::Key(cmd) => key::run(cmd, &open_inventory(&config)?),
            Command::Switch(cmd) => switch::run(cmd, &open_inventory(&config)?, &config),
            Command::Vm(cmd) => vm::run(cmd, &open_inventory(&config)?, &config),
            Command::Power(args) => power::run(args, &open_inventory(&config)?, &config),
            Command::Agent(cmd) => agent::run(cmd, config),
            Command::Host(cmd) => host::run(cmd, &open_inventory(&config)?),
        }
    }
}

/// Logs go to stderr, in the configured format, filtered by `NHN_LOG` or else `level`.
pub fn init_logging(config: &Config, level: &str) {
    use std::io::IsTerminal;
    let filter = std::env::var("NHN_LOG").unwrap_or_else(|_| level.to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|e| {
        eprintln!("warning: invalid log filter {filter:?} ({e}); using \"info\"");
        tracing_subscriber::EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Opens the inventory in the data dir, creating the dir (and the database) if needed.
fn open_inventory(config: &Config) -> Result<Inventory> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    Ok(Inventory::open(&config.db_path())?)
}

/// Runs a long-lived service (`serve`, `agent run`) on a multi-threaded async runtime.
fn block_on(service: impl Future<Output = Result<()>>) -> Result<()> {
    tokio::runtime::Runtime::new()
        .context("cannot start the async runtime")?
        .block_on(service)
}

/// A single-threaded async runtime for a command's own async work (BMC calls, a VM move).
fn current_thread() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// How an operator's request ended, as [`wait_request`] saw it.
enum Ended {
    Succeeded(nhn::codec::Struct),
    Failed(String),
    /// Queued for 10 s with nothing picking it up: canceled.
    NotPickedUp,
    /// Still queued or running after the caller's patience.
    StillRunning,
}

/// Waits for operator request `id` to end, looking every 100 ms; `running` is called each time
/// it is seen running. A request that nothing picked up within 10 s is canceled (no appliance
/// runs); one still pending after `patience` is left to the appliance.
fn wait_request(
    inv: &Inventory,
    id: &str,
    patience: Option<std::time::Duration>,
    mut running: impl FnMut(),
) -> Result<Ended> {
    use nhn::jobs::machine::{self, Progress};
    use std::time::{Duration, Instant};
    const PICKUP: Duration = Duration::from_secs(10);
    let started = Instant::now();
    loop {
        let rid = id.to_owned();
        let progress = inv.read_blocking(move |c| machine::progress(c, &rid))?;
        match progress {
            Some(Progress::Queued) if started.elapsed() > PICKUP => {
                let rid = id.to_owned();
                let canceled = inv.write_blocking(move |c| {
                    machine::cancel_if_queued(c, &rid, "nothing picked it up within 10 s")
                })?;
                if canceled {
                    return Ok(Ended::NotPickedUp);
                }
            }
            Some(Progress::Queued | Progress::Running)
                if patience.is_some_and(|p| started.elapsed() > p) =>
            {
                return Ok(Ended::StillRunning);
            }
            Some(Progress::Queued) => {}
            Some(Progress::Running) => running(),
            Some(Progress::Succeeded(result)) => return Ok(Ended::Succeeded(result)),
            Some(Progress::Failed(why)) => return Ok(Ended::Failed(why)),
            None => anyhow::bail!("request {id} vanished from the inventory"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `[switch] infra_vlans` of the configuration, which every plan and placement takes.
fn infra_vlans(config: &Config) -> VlanSet {
    config.switch.infra_vlans.iter().copied().collect()
}

/// A progress bar on stderr with `template`; hidden when stderr is not a terminal or under CI.
pub fn progress_bar(len: u64, template: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    let bar = indicatif::ProgressBar::new(len);
    if !std::io::stderr().is_terminal() || std::env::var_os("CI").is_some() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}
