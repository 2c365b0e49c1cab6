//! `nhn`: the network-boot and switch-automation appliance in one binary.
//!
//! This file is the command line only: it parses arguments (clap), loads the configuration and
//! hands off to the module that does the work. See ARCHITECTURE.md for the map of the code.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use nhn::api::keys::{self, Scope};
use nhn::config::{Config, LogFormat};
use nhn::inventory::site::{self, store};
use nhn::inventory::{self, Inventory};
use nhn::placement::store as vms;
use nhn::serve;
use nhn::switch;
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
struct Cli {
    /// Configuration file (TOML). Without it the embedded defaults apply; see `nhn config show`.
    #[arg(long, short, global = true, env = "NHN_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override the configuration's data_dir (where nhn.db lives).
    #[arg(long, global = true, env = "NHN_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the appliance: HTTP (status page, /metrics, /healthz) on the inventory.
    ///
    /// Holds an exclusive lock on the data dir, so a second `nhn serve` on the same data fails
    /// instead of corrupting it. Stops cleanly on SIGTERM or SIGINT.
    Serve {
        /// Override [http] listen, e.g. 0.0.0.0:8080.
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<std::net::SocketAddr>,
        /// Override [api] internal_listen (facility callbacks), e.g. 127.0.0.1:8081.
        #[arg(long, value_name = "ADDR:PORT")]
        internal_listen: Option<std::net::SocketAddr>,
    },
    /// Show the configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Load, write out and summarize the site: switches, cabling, machines, pools, customers.
    #[command(subcommand)]
    Inventory(InventoryCmd),
    /// Boot assets: copy the distribution's iPXE binaries into the boot directory.
    #[command(subcommand)]
    Boot(BootCmd),
    /// Build the switchroot initrd (busybox, iscsistart, kernel modules, nhn's init scripts).
    #[command(subcommand)]
    Initrd(InitrdCmd),
    /// Volumes: iSCSI boot volumes of diskless machines (sparse files exported by the target daemon).
    #[command(subcommand)]
    Volume(VolumeCmd),
    /// DHCP leases (dynamic addresses handed to machines the inventory does not know).
    #[command(subcommand)]
    Lease(LeaseCmd),
    /// Manage customers' API keys (the secret is shown once and stored only as a hash).
    #[command(subcommand)]
    Key(KeyCmd),
    /// The switch plane: the VLAN plan and the reconciler's per-switch state.
    #[command(subcommand)]
    Switch(SwitchCmd),
    /// Place, move and remove VMs. These only change the inventory; `nhn serve`'s reconciler
    /// then moves the VLANs on the switches.
    #[command(subcommand)]
    Vm(VmCmd),
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
    Power(PowerArgs),
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
    Agent(AgentCmd),
    /// Hypervisors: agent state, last report, VMs and free capacity.
    #[command(subcommand)]
    Host(HostCmd),
}

#[derive(Subcommand)]
enum AgentCmd {
    /// Run the agent on this hypervisor (reads the [agent] section of --config).
    ///
    /// First, on the appliance: `nhn agent enroll HOST --url http://HOST-ADDRESS:8090`. It prints
    /// a credential once; store it on the hypervisor in [agent] credential_file (mode 0600).
    /// Then here, with [agent] host = HOST, listen = HOST-ADDRESS:8090 and appliance_url = the
    /// appliance's internal listener (http://APPLIANCE:8081/RPC2): `nhn agent run --config FILE`.
    ///
    /// The agent runs the VMs the appliance places on this host as QEMU processes that outlive
    /// it (state under [agent] state_dir), plugs their NICs into [agent] bridge (Open vSwitch)
    /// with their VLAN tags, and reports results and host state back. Stop it with SIGTERM; its
    /// VMs keep running and are re-adopted at the next start.
    Run,
    /// Enroll the agent of hypervisor HOST and print its credential (shown once; only its
    /// SHA-256 is stored). Enrolling again replaces the credential.
    Enroll {
        /// The hypervisor's machine name in the inventory.
        host: String,
        /// Where its agent listens, as the appliance reaches it: http://ADDRESS:PORT.
        #[arg(long)]
        url: String,
    },
}

#[derive(Subcommand)]
enum HostCmd {
    /// One line per hypervisor: state, agent, last report, VMs, free capacity.
    List,
    /// One hypervisor in detail: its VMs with their states and reasons, and its last report.
    Show { host: String },
}

#[derive(clap::Args)]
struct PowerArgs {
    /// Drive the BMC from this command, not through the running appliance (`nhn serve`).
    #[arg(long, global = true)]
    direct: bool,
    #[command(subcommand)]
    cmd: PowerCmd,
}

#[derive(Subcommand)]
enum PowerCmd {
    /// Print what the BMC reports: on or off.
    Status {
        /// The machine's name in the inventory.
        machine: String,
    },
    /// Power on, then wait until the BMC reports on.
    On {
        /// The machine's name in the inventory.
        machine: String,
        /// Seconds to wait for the new state (default: [power] timeout_secs).
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
    },
    /// Shut down (ACPI soft-off, forced after [power] soft_off_secs), then wait until off.
    Off {
        /// The machine's name in the inventory.
        machine: String,
        /// Cut the power at once, without asking the OS to shut down.
        #[arg(long)]
        force: bool,
        /// Seconds to wait for the new state (default: [power] timeout_secs).
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
    },
    /// Hard reset (a machine that is off is powered on), then wait until the BMC reports on.
    Reset {
        /// The machine's name in the inventory.
        machine: String,
        /// Seconds to wait for the new state (default: [power] timeout_secs).
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
    },
    /// Boot from the network (PXE) at the next power on or reset, once.
    Pxe {
        /// The machine's name in the inventory.
        machine: String,
    },
}

#[derive(Subcommand)]
enum SwitchCmd {
    /// Print what would change on the switches and why (which VM on which host needs which
    /// VLAN on which port), against what each switch last reported.
    Plan,
    /// Per switch: health, queued intents with reasons, last success / read-back / error, and
    /// every managed port's planned VLANs next to what the switch last reported.
    Show,
}

#[derive(Subcommand)]
enum VmCmd {
    /// Place a new, running VM on the best hypervisor (or on --host if it fits).
    ///
    /// Capacity first; then a host that already carries the VM's VLANs; then one whose edge
    /// switch carries them; then the one adding the fewest MACs to its edge; ties by name.
    Place {
        name: String,
        /// Network name, net-… id, or VLAN id (repeat for more NICs). A VLAN without a
        /// network gets an L2EX network named vlan-N.
        #[arg(long = "network", required = true, value_name = "NETWORK|VLAN")]
        networks: Vec<String>,
        /// Put it on this hypervisor (refused with the reason if it cannot take it).
        #[arg(long)]
        host: Option<String>,
        /// VM type (V10 … V160).
        #[arg(long = "type", default_value = "V10")]
        vm_type: String,
        /// Print how every hypervisor was ranked.
        #[arg(long)]
        explain: bool,
    },
    /// Move a VM to another hypervisor (live migration or evacuation), make before break.
    ///
    /// The VM first holds a slot on both hosts and its VLANs are added along the destination's
    /// path; once the switches report them (`nhn serve` must be running), the move finishes and
    /// the source's VLANs are removed. --no-finish stops after the first step (the hypervisors
    /// then migrate the VM), --finish completes a move started that way.
    Move {
        name: String,
        #[arg(long, required_unless_present = "finish")]
        host: Option<String>,
        /// Only prepare the destination; finish later with --finish.
        #[arg(long, conflicts_with = "finish")]
        no_finish: bool,
        /// Finish a move started with --no-finish.
        #[arg(long, conflicts_with = "host")]
        finish: bool,
        /// How long to wait for the destination's VLANs.
        #[arg(long, default_value_t = 60, value_name = "SECONDS")]
        wait_secs: u64,
    },
    /// Delete a VM from the inventory.
    Remove { name: String },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print the effective configuration (file values plus defaults) as TOML.
    Show,
}

#[derive(Subcommand)]
enum InventoryCmd {
    /// Import a site file (TOML). Idempotent: importing the same file twice changes nothing.
    ///
    /// The file is checked as a whole first (duplicate MACs, dangling links, overlapping pools,
    /// unknown switches, ...); any problem aborts the import with nothing changed. Objects in the
    /// inventory that the file does not mention are kept and listed.
    Import {
        /// Site file, e.g. examples/seed-site.toml.
        file: PathBuf,
    },
    /// Write the site (everything `import` reads) as TOML, to stdout or --out.
    Export {
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Summarize the inventory: counts, switches, links, machines, networks.
    Show,
}

#[derive(Subcommand)]
enum BootCmd {
    /// Copy the PXE boot programs (undionly.kpxe, ipxe.efi, snponly.efi) from Debian's `ipxe`
    /// package into [boot] dir, where TFTP serves them. They are not part of nhn.
    InstallIpxe {
        /// Where the ipxe package put them.
        #[arg(long, value_name = "DIR", default_value = "/usr/lib/ipxe")]
        from: PathBuf,
    },
}

#[derive(Subcommand)]
enum InitrdCmd {
    /// Build a reproducible initrd: the same inputs give byte-identical output.
    ///
    /// Packs static busybox, iscsistart with its libraries, the named kernel modules plus
    /// their dependencies (from modules.dep) and nhn's init scripts into a newc cpio archive.
    /// The default output is the boot directory's initrd, which iPXE fetches over HTTP.
    Build {
        /// Kernel release the modules come from (default: the running kernel, `uname -r`).
        #[arg(long, value_name = "KVER")]
        kernel_version: Option<String>,
        /// Folder holding <KVER>/modules.dep.
        #[arg(long, value_name = "DIR", default_value = "/lib/modules")]
        modules_dir: PathBuf,
        /// Kernel modules to include (their dependencies come along).
        #[arg(long, value_delimiter = ',', default_values_t = nhn::initrd::DEFAULT_MODULES.iter().map(|s| s.to_string()))]
        modules: Vec<String>,
        #[arg(long, value_enum, default_value = "gzip")]
        compress: nhn::initrd::Compress,
        /// Output file (default: <boot.dir>/<boot.initrd> from the configuration).
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
        /// The static busybox to pack.
        #[arg(long, value_name = "FILE", default_value = "/bin/busybox")]
        busybox: PathBuf,
        /// The iscsistart to pack (open-iscsi).
        #[arg(long, value_name = "FILE", default_value = "/sbin/iscsistart")]
        iscsistart: PathBuf,
    },
}

#[derive(Subcommand)]
enum VolumeCmd {
    /// Create a machine's boot volume (target <portal iqn_prefix>:vol-<machine>, LUN 1, ACL:
    /// the machine's initiator). `nhn serve` with [storage] driver = "tgt" exports it.
    Create {
        /// The machine (from the site file) that boots from it.
        #[arg(long)]
        machine: String,
        /// Size in GiB (a sparse file: space is used as data is written).
        #[arg(long, value_name = "GB")]
        size_gb: u32,
        /// iSCSI portal name (needed when the site has several).
        #[arg(long)]
        portal: Option<String>,
    },
    /// List volumes: id, size, owner, target IQN, backing file.
    List,
}

#[derive(Subcommand)]
enum LeaseCmd {
    /// List leases: address, MAC, state, expiry, relay (giaddr), client hostname.
    List,
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Create an API key for a customer and print its secret once.
    Create {
        /// Customer name (from the site file's [[customers]]).
        #[arg(long)]
        customer: String,
        /// read: get* calls; operate: + power, restore, init, attach/detach; full: + allocate/deallocate/change.
        #[arg(long, value_enum)]
        scope: Scope,
    },
    /// List keys (ids, customers, scopes, state; never secrets).
    List,
    /// Revoke a key by its id; it stops working at once.
    Revoke {
        /// The access key id (AK...).
        id: String,
    },
}

/// Logs go to stderr. `serve` logs at the configured level; one-shot commands only warn unless
/// `NHN_LOG` asks for more.
fn init_logging(config: &Config, level: &str) {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(dir) = cli.data_dir {
        config.data_dir = dir;
    }
    match cli.command {
        Command::Serve {
            listen,
            internal_listen,
        } => {
            if let Some(listen) = listen {
                config.http.listen = listen;
            }
            if let Some(addr) = internal_listen {
                config.api.internal_listen = addr;
            }
            let level = config.log.level.clone();
            init_logging(&config, &level);
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            runtime.block_on(serve::run(config))
        }
        Command::Config(ConfigCmd::Show) => {
            print!("{}", config.to_toml());
            Ok(())
        }
        Command::Inventory(cmd) => {
            init_logging(&config, "warn");
            let inv = open_inventory(&config)?;
            match cmd {
                InventoryCmd::Import { file } => import(&inv, &file),
                InventoryCmd::Export { out } => export(&inv, out.as_deref()),
                InventoryCmd::Show => show(&inv),
            }
        }
        Command::Boot(BootCmd::InstallIpxe { from }) => {
            let dir = &config.boot.dir;
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for name in ["undionly.kpxe", "ipxe.efi", "snponly.efi"] {
                let src = from.join(name);
                if !src.exists() {
                    anyhow::bail!(
                        "{} not found: install the ipxe package (apt-get install ipxe) or pass --from",
                        src.display()
                    );
                }
                std::fs::copy(&src, dir.join(name)).with_context(|| {
                    format!("cannot copy {} into {}", src.display(), dir.display())
                })?;
                println!("{} -> {}", src.display(), dir.join(name).display());
            }
            Ok(())
        }
        Command::Initrd(InitrdCmd::Build {
            kernel_version,
            modules_dir,
            modules,
            compress,
            out,
            busybox,
            iscsistart,
        }) => {
            init_logging(&config, "warn");
            let kernel_version = match kernel_version {
                Some(k) => k,
                None => String::from_utf8(
                    std::process::Command::new("uname")
                        .arg("-r")
                        .output()?
                        .stdout,
                )?
                .trim()
                .to_owned(),
            };
            let mtime = std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let out = out.unwrap_or_else(|| config.boot.dir.join(&config.boot.initrd));
            let options = nhn::initrd::Options {
                kernel_version,
                modules_dir,
                modules,
                compress,
                busybox,
                iscsistart,
                mtime,
            };
            build_initrd(&options, &out)
        }
        Command::Volume(cmd) => {
            init_logging(&config, "warn");
            let inv = open_inventory(&config)?;
            match cmd {
                VolumeCmd::Create {
                    machine,
                    size_gb,
                    portal,
                } => {
                    let v = inv.write_blocking(move |c| {
                        nhn::storage::volumes::create(c, &machine, size_gb, portal.as_deref())
                    })?;
                    println!(
                        "created {} ({} GB) for {}: target {}, backing {}",
                        v.id, v.size_gb, v.owner, v.target_iqn, v.backing
                    );
                }
                VolumeCmd::List => {
                    let list = inv.read_blocking(nhn::storage::volumes::list)?;
                    if list.is_empty() {
                        println!("no volumes");
                    }
                    for v in list {
                        println!(
                            "{:<20} {:>5} GB  {:<16} {:<6} {}  {}",
                            v.id, v.size_gb, v.owner, v.device, v.target_iqn, v.backing
                        );
                    }
                }
            }
            Ok(())
        }
        Command::Lease(LeaseCmd::List) => {
            init_logging(&config, "warn");
            let inv = open_inventory(&config)?;
            let leases = inv.read_blocking(nhn::dhcp::service::list)?;
            if leases.is_empty() {
                println!("no leases");
            }
            for l in leases {
                println!(
                    "{:<15} {}  {:<8} until {}  {}{}",
                    l.address,
                    l.mac,
                    l.state,
                    nhn::util::rfc3339(l.expires_at),
                    l.giaddr.map(|g| format!("via {g}  ")).unwrap_or_default(),
                    l.hostname
                );
            }
            Ok(())
        }
        Command::Switch(cmd) => {
            init_logging(&config, "warn");
            let inv = open_inventory(&config)?;
            match cmd {
                SwitchCmd::Plan => switch_plan(&inv, &config),
                SwitchCmd::Show => switch_show(&inv, &config),
            }
        }
        Command::Vm(cmd) => {
            init_logging(&config, "warn");
            let inv = open_inventory(&config)?;
            vm(&inv, &config, cmd)
        }
        Command::Agent(AgentCmd::Run) => {
            let level = config.log.level.clone();
            init_logging(&config, &level);
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            runtime.block_on(nhn::agent::run(config.agent))
        }
        Command::Agent(AgentCmd::Enroll { host, url }) => {
            init_logging(&config, "warn");
            let inv = open_inventory(&config)?;
            let credential =
                inv.write_blocking(move |c| nhn::jobs::hosts::enroll(c, &host, &url))?;
            println!("{credential}");
            eprintln!(
                "Store this credential on the hypervisor in [agent] credential_file (mode 0600); it is not shown again."
            );
            Ok(())
        }
        Command::Host(cmd) => {
            init_logging(&config, "warn");
            let inv = open_inventory(&config)?;
            let hosts = inv.read_blocking(nhn::jobs::hosts::list)?;
            host_cmd(&hosts, cmd)
        }
        Command::Power(cmd) => {
            // rustls-platform-verifier logs every refused certificate at ERROR; nhn's own
            // error says the same and what to do about it.
            init_logging(&config, "warn,rustls_platform_verifier=off");
            let inv = open_inventory(&config)?;
            power(&inv, &config, cmd)
        }
        Command::Key(cmd) => {
            init_logging(&config, "warn");
            let inv = open_inventory(&config)?;
            match cmd {
                KeyCmd::Create { customer, scope } => {
                    let key = inv.write_blocking(move |c| keys::create(c, &customer, scope))?;
                    println!("key id:   {}", key.id);
                    println!("customer: {}", key.customer);
                    println!("scope:    {}", key.scope.as_str());
                    println!("secret:   {}", key.secret);
                    println!();
                    println!("The secret is shown only now; nhn keeps only its hash.");
                    println!(
                        "API clients authenticate with \"{}:<secret>\" as the first parameter.",
                        key.id
                    );
                    Ok(())
                }
                KeyCmd::List => {
                    let list = inv.read_blocking(|c| keys::list(c))?;
                    if list.is_empty() {
                        println!(
                            "no keys; create one with `nhn key create --customer NAME --scope read|operate|full`"
                        );
                    }
                    for k in list {
                        let state = if k.enabled { "enabled" } else { "revoked" };
                        let used = k.last_used_at.as_deref().unwrap_or("never used");
                        println!(
                            "{}  {:<16} {:<8} {:<8} created {}  {}",
                            k.id, k.customer, k.scope, state, k.created_at, used
                        );
                    }
                    Ok(())
                }
                KeyCmd::Revoke { id } => {
                    let shown = id.clone();
                    inv.write_blocking(move |c| keys::revoke(c, &id))?;
                    println!("revoked {shown}");
                    Ok(())
                }
            }
        }
    }
}

fn build_initrd(options: &nhn::initrd::Options, out: &Path) -> Result<()> {
    use std::io::IsTerminal;
    let bar = indicatif::ProgressBar::new(5);
    if !std::io::stderr().is_terminal() || std::env::var_os("CI").is_some() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let built = nhn::initrd::build(options, &mut |done, _, what| {
        bar.set_position(done);
        bar.set_message(what.to_owned());
    })?;
    bar.finish_and_clear();
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = out.with_extension("partial");
    std::fs::write(&tmp, &built.bytes)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "{}: {} bytes, {} entries, kernel {}, modules: {}",
        out.display(),
        built.bytes.len(),
        built.entries,
        options.kernel_version,
        built.modules.join(" ")
    );
    if !built.builtin.is_empty() {
        println!(
            "built into the kernel (nothing to pack): {}",
            built.builtin.join(" ")
        );
    }
    Ok(())
}

fn host_cmd(hosts: &[nhn::jobs::hosts::HostRow], cmd: HostCmd) -> Result<()> {
    match cmd {
        HostCmd::List => {
            println!(
                "{:<16} {:<12} {:<13} {:<21} {:>4} {:>10} {:>11}",
                "HOST", "STATE", "AGENT", "LAST REPORT", "VMS", "FREE VCPU", "FREE MEM MB"
            );
            for h in hosts {
                println!(
                    "{:<16} {:<12} {:<13} {:<21} {:>4} {:>10} {:>11}",
                    h.name,
                    h.state,
                    h.agent,
                    if h.last_report_at.is_empty() {
                        "-"
                    } else {
                        &h.last_report_at
                    },
                    h.vms.len(),
                    h.report.vcpus_free,
                    h.report.memory_free_mb
                );
            }
            Ok(())
        }
        HostCmd::Show { host } => {
            let Some(h) = hosts.iter().find(|h| h.name == host) else {
                anyhow::bail!("no hypervisor {host} (see `nhn host list`)");
            };
            println!("host:         {}", h.name);
            println!("state:        {}", h.state);
            println!("capacity:     {} vCPU, {} MB", h.vcpus, h.memory_mb);
            println!("agent:        {} {}", h.agent, h.agent_url);
            println!(
                "last report:  {}",
                if h.last_report_at.is_empty() {
                    "never"
                } else {
                    &h.last_report_at
                }
            );
            println!(
                "accelerator:  {}",
                if h.report.accel.is_empty() {
                    "-"
                } else {
                    &h.report.accel
                }
            );
            println!(
                "free:         {} vCPU, {} MB (as the agent sees the host)",
                h.report.vcpus_free, h.report.memory_free_mb
            );
            println!("VMs placed here:");
            for (vm, state, reason) in &h.vms {
                let seen = h
                    .report
                    .vms
                    .iter()
                    .find(|v| &v.vm_id == vm)
                    .map_or("not reported", |v| v.state.as_str());
                println!("  {vm:<14} {state:<10} agent: {seen:<12} {reason}");
            }
            for p in &h.report.unknown_processes {
                println!("  unknown QEMU process (left alone): {p}");
            }
            Ok(())
        }
    }
}

fn open_inventory(config: &Config) -> Result<Inventory> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    Ok(Inventory::open(&config.db_path())?)
}

fn import(inv: &Inventory, file: &Path) -> Result<()> {
    let name = file.display().to_string();
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read site file {name}"))?;
    let parsed = site::parse(&name, &text)?;
    let problems = site::validate(&text, &parsed);
    if !problems.is_empty() {
        return Err(site::SiteErrors {
            file: name,
            errors: problems,
        }
        .into());
    }
    let object = name.clone();
    let report = inv
        .write_blocking(move |c| {
            let report = store::import(c, &parsed)?;
            if !report.is_noop() {
                let result = format!(
                    "ok: {} created, {} updated",
                    report.created.len(),
                    report.updated.len()
                );
                inventory::audit(c, "cli", "inventory.import", &object, &result)?;
            }
            Ok(report)
        })
        .with_context(|| format!("{name}: import failed; nothing was changed"))?;
    if report.is_noop() {
        println!(
            "no change: the inventory already matches {name} ({} objects)",
            report.unchanged
        );
    } else {
        println!(
            "imported {name}: {} created, {} updated, {} unchanged",
            report.created.len(),
            report.updated.len(),
            report.unchanged
        );
        for (kind, obj) in &report.created {
            println!("  + {kind} {obj}");
        }
        for (kind, obj) in &report.updated {
            println!("  ~ {kind} {obj}");
        }
    }
    if !report.only_in_inventory.is_empty() {
        println!("kept (in the inventory, not in {name}):");
        for (kind, obj) in &report.only_in_inventory {
            println!("  = {kind} {obj}");
        }
    }
    Ok(())
}

fn export(inv: &Inventory, out: Option<&Path>) -> Result<()> {
    let site = inv.read_blocking(|c| store::export(c))?;
    let text = format!(
        "# nhn site export (nhn {}); import with `nhn inventory import FILE`\n{}",
        env!("CARGO_PKG_VERSION"),
        site::to_toml(&site).context("cannot render the site as TOML")?
    );
    match out {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    Ok(())
}

fn show(inv: &Inventory) -> Result<()> {
    let (counts, site) =
        inv.read_blocking(|c| Ok((inventory::queries::counts(c)?, store::export(c)?)))?;
    if site.site.name.is_empty() {
        println!("site: (none imported yet; run `nhn inventory import examples/seed-site.toml`)");
    } else {
        println!("site: {}  {}", site.site.name, site.site.description);
    }
    println!(
        "{} switches ({} core, {} edge), {} links, {} machines ({} hypervisors, {} discovered), {} VMs, {} networks, {} volumes, {} images, {} customers",
        counts.switches,
        counts.core_switches,
        counts.edge_switches,
        counts.links,
        counts.machines,
        counts.hypervisors,
        counts.discovered,
        counts.vms,
        counts.networks,
        counts.volumes,
        counts.images,
        counts.customers
    );
    if !site.switches.is_empty() {
        println!("\nswitches:");
        for s in &site.switches {
            println!(
                "  {:<16} {:<4} {:<4} {:<12} {:<16} {} ports{}",
                s.name,
                store::enum_str(&s.role),
                store::enum_str(&s.driver),
                s.os,
                s.address,
                s.ports.len(),
                s.max_macs.map_or(String::new(), |m| format!(", {m} MACs"))
            );
        }
    }
    if !site.links.is_empty() {
        println!("\nlinks:");
        for l in &site.links {
            println!("  {} <-> {}", l.a, l.b);
        }
    }
    if !site.machines.is_empty() {
        println!("\nmachines:");
        for m in &site.machines {
            println!(
                "  {:<16} {:<10} {} vCPU, {} MB",
                m.name,
                store::enum_str(&m.kind),
                m.vcpus,
                m.memory_mb
            );
            for n in &m.nics {
                let port = n
                    .port
                    .as_ref()
                    .map_or(String::new(), |p| format!(" -> {p}"));
                let ip = n.ip.map_or(String::new(), |ip| format!(" {ip}"));
                println!("    {} {}{ip}{port}", n.device, n.mac);
            }
        }
    }
    if !site.networks.is_empty() {
        println!("\nnetworks:");
        for n in &site.networks {
            println!(
                "  {:<12} {:<12} VLAN {:<5} {}",
                n.name,
                store::enum_str(&n.role),
                n.vlan,
                n.subnet
            );
        }
    }
    Ok(())
}

fn infra_vlans(config: &Config) -> VlanSet {
    config.switch.infra_vlans.iter().copied().collect()
}

fn switch_plan(inv: &Inventory, config: &Config) -> Result<()> {
    let infra = infra_vlans(config);
    let planned = inv
        .read_blocking(move |c| Ok(switch::plan_inventory(c, &infra)))?
        .context("cannot plan the switches")?;
    let ports: usize = planned.desired.ports.values().map(|p| p.len()).sum();
    println!(
        "plan: {} switches, {ports} managed ports",
        planned.desired.ports.len()
    );
    for (edge, (macs, budget)) in &planned.desired.edge_macs {
        let budget = budget.map_or("unlimited".to_owned(), |b| b.to_string());
        println!("  {edge}: {macs} MACs (budget {budget})");
    }
    println!("ports (access N; native N + tagged VLANs; or the tagged VLANs of a trunk):");
    for (switch, ports) in &planned.desired.ports {
        for (port, want) in ports {
            println!("  {switch}:{port}  {want}");
        }
    }
    if !planned.never_read.is_empty() {
        println!(
            "never read back (their ports count as empty): {}",
            planned.never_read.join(", ")
        );
    }
    if planned.changes.is_empty() {
        println!("no change: every managed port matches the plan");
    } else {
        println!("{} changes:", planned.changes.len());
        for c in &planned.changes {
            println!("  {c}");
        }
    }
    Ok(())
}

fn vm(inv: &Inventory, config: &Config, cmd: VmCmd) -> Result<()> {
    let infra = infra_vlans(config);
    match cmd {
        VmCmd::Place {
            name,
            networks,
            host,
            vm_type,
            explain,
        } => {
            let args = vms::PlaceArgs {
                name: name.clone(),
                networks,
                host,
                vm_type,
            };
            let choice = inv
                .write_blocking(move |c| vms::place(c, &args, &infra))
                .with_context(|| format!("cannot place VM {name}"))?;
            println!("placed {name} on {}", choice.host);
            if explain {
                for line in choice.explain() {
                    println!("  {line}");
                }
            }
        }
        VmCmd::Move {
            name,
            host,
            no_finish,
            // Without --host, --finish is the only thing left to do.
            finish: _,
            wait_secs,
        } => {
            if let Some(host) = host {
                let (n, h, i) = (name.clone(), host.clone(), infra.clone());
                inv.write_blocking(move |c| vms::begin_move(c, &n, &h, &i))
                    .with_context(|| format!("cannot move VM {name} to {host}"))?;
                println!("moving {name} to {host}: waiting for its VLANs on the destination");
                let deadline =
                    std::time::Instant::now() + std::time::Duration::from_secs(wait_secs);
                loop {
                    let (n, i) = (name.clone(), infra.clone());
                    if inv.read_blocking(move |c| vms::move_ready(c, &n, &i))? {
                        break;
                    }
                    if std::time::Instant::now() >= deadline {
                        anyhow::bail!(
                            "the destination's VLANs for {name} were not confirmed within {wait_secs} s \
                             (is `nhn serve` running? see `nhn switch show`); {name} stays on both hosts: \
                             run `nhn vm move {name} --finish` once the switches are ready"
                        );
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                println!("destination ready for {name} on {host}");
                if no_finish {
                    return Ok(());
                }
            }
            let n = name.clone();
            let to = inv
                .write_blocking(move |c| vms::finish_move(c, &n))
                .with_context(|| format!("cannot finish moving VM {name}"))?;
            println!("moved {name} to {to}");
        }
        VmCmd::Remove { name } => {
            let n = name.clone();
            let host = inv
                .write_blocking(move |c| vms::remove_vm(c, &n))
                .with_context(|| format!("cannot remove VM {name}"))?;
            match host {
                Some(h) => println!("removed {name} (was on {h})"),
                None => println!("removed {name}"),
            }
        }
    }
    Ok(())
}

fn power(inv: &Inventory, config: &Config, args: PowerArgs) -> Result<()> {
    use nhn::facility::command::MachineOp;
    let (machine, op, timeout) = match args.cmd {
        PowerCmd::Status { machine } => return power_direct(inv, config, &machine, None, None),
        PowerCmd::Pxe { machine } => (machine, MachineOp::PxeOnce, None),
        PowerCmd::On { machine, timeout } => (machine, MachineOp::On, timeout),
        PowerCmd::Off {
            machine,
            force,
            timeout,
        } => {
            let op = if force {
                MachineOp::ForceOff
            } else {
                MachineOp::Off
            };
            (machine, op, timeout)
        }
        PowerCmd::Reset { machine, timeout } => (machine, MachineOp::Reset, timeout),
    };
    if args.direct {
        power_direct(inv, config, &machine, Some(op), timeout)
    } else {
        power_request(inv, config, &machine, op, timeout)
    }
}

/// `nhn power` through the running appliance: queue the request, wait for its result.
fn power_request(
    inv: &Inventory,
    config: &Config,
    machine: &str,
    op: nhn::facility::command::MachineOp,
    timeout: Option<u64>,
) -> Result<()> {
    use nhn::jobs::machine::{self, Progress};
    const PICKUP: std::time::Duration = std::time::Duration::from_secs(10);
    let timeout = timeout.unwrap_or(config.power.timeout_secs);
    let name = machine.to_owned();
    let id = inv
        .write_blocking(move |c| machine::enqueue(c, &name, op, timeout, "operator"))?
        .map_err(anyhow::Error::msg)?;
    let started = std::time::Instant::now();
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(format!("{machine}: {} (request {id}) queued", op.method()));
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    loop {
        let rid = id.clone();
        let progress = inv.read_blocking(move |c| machine::progress(c, &rid))?;
        match progress {
            Some(Progress::Queued) if started.elapsed() > PICKUP => {
                let rid = id.clone();
                let canceled = inv.write_blocking(move |c| {
                    machine::cancel_if_queued(c, &rid, "nothing picked it up within 10 s")
                })?;
                if canceled {
                    spinner.finish_and_clear();
                    anyhow::bail!(
                        "{machine}: request {id} was not picked up within 10 s and is canceled: is `nhn serve` running with this inventory? Start it, or pass --direct to drive the BMC from this command"
                    );
                }
            }
            Some(Progress::Queued) => {}
            Some(Progress::Running) => {
                spinner.set_message(format!("{machine}: {} (request {id}) running", op.method()))
            }
            Some(Progress::Succeeded(result)) => {
                spinner.finish_and_clear();
                let state = nhn::codec::text(&result, "power");
                let secs = started.elapsed().as_secs_f64();
                if op == nhn::facility::command::MachineOp::PxeOnce {
                    println!(
                        "{machine}: next boot from the network (PXE), once; now {state} (request {id})"
                    );
                } else {
                    println!(
                        "{machine}: {state} ({} observed after {secs:.1} s, request {id})",
                        op.method()
                    );
                }
                return Ok(());
            }
            Some(Progress::Failed(why)) => {
                spinner.finish_and_clear();
                anyhow::bail!("{machine}: {} failed (request {id}): {why}", op.method());
            }
            None => anyhow::bail!("request {id} vanished from the inventory"),
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `nhn power` from this process: status, or a change with `--direct`.
fn power_direct(
    inv: &Inventory,
    config: &Config,
    machine: &str,
    op: Option<nhn::facility::command::MachineOp>,
    timeout: Option<u64>,
) -> Result<()> {
    use nhn::facility::command::MachineOp;
    use nhn::facility::power::{self, PowerAction};
    let name = machine.to_owned();
    let bmc = inv
        .read_blocking(move |c| power::machine_bmc(c, &name))?
        .with_context(|| {
            format!(
                "no machine named {machine:?} in the inventory; `nhn inventory show` lists them"
            )
        })?;
    let driver = power::for_machine(&bmc, config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let started = std::time::Instant::now();
    let bmc = driver.bmc();
    runtime.block_on(async {
        let action = match op {
            None => {
                let state = driver.get_state().await?;
                println!("{machine}: {state} (BMC {bmc})");
                return Ok(());
            }
            Some(MachineOp::PxeOnce) => {
                driver.set_boot_once_pxe().await?;
                println!("{machine}: next boot from the network (PXE), once (BMC {bmc})");
                return Ok(());
            }
            Some(MachineOp::On) => PowerAction::On,
            Some(MachineOp::Off) => PowerAction::Off,
            Some(MachineOp::ForceOff) => PowerAction::ForceOff,
            Some(MachineOp::Reset) => PowerAction::Reset,
        };
        let timeout = timeout.unwrap_or(config.power.timeout_secs);
        let state = driver
            .set_state(action, std::time::Duration::from_secs(timeout))
            .await?;
        let secs = started.elapsed().as_secs_f64();
        println!("{machine}: {state} (BMC {bmc}, {action} observed after {secs:.1} s)");
        Ok(())
    })
}

fn switch_show(inv: &Inventory, config: &Config) -> Result<()> {
    let infra = infra_vlans(config);
    let (statuses, pending, planned, applied) = inv.read_blocking(move |c| {
        let statuses = switch::status::all(c)?;
        let pending = statuses
            .iter()
            .map(|s| switch::status::pending(c, &s.name))
            .collect::<nhn::inventory::Result<Vec<_>>>()?;
        let planned = switch::plan_inventory(c, &infra).map_err(|e| e.to_string());
        Ok((statuses, pending, planned, switch::snapshot::applied(c)?))
    })?;
    if statuses.is_empty() {
        println!("no switches; import a site first (`nhn inventory import FILE`)");
    }
    if let Err(e) = &planned {
        println!("plan: {e}\n");
    }
    for (s, pending) in statuses.iter().zip(pending) {
        println!(
            "{}  {} {} {}  {}  {} queued intents",
            s.name,
            s.role,
            s.os,
            s.address,
            s.health(),
            s.pending
        );
        println!(
            "  last success: {}   last read-back: {}",
            s.last_success_at.as_deref().unwrap_or("never"),
            s.last_readback_at.as_deref().unwrap_or("never")
        );
        let driver = switch::reconciler::describe_driver(config, &s.driver, &s.credentials);
        if s.driver == "snmp" {
            println!("  driver: {driver}, credentials {:?}", s.credentials);
        } else {
            println!(
                "  driver: {driver}, credentials {:?}, host key: {}",
                s.credentials,
                s.host_key.as_deref().unwrap_or("not pinned")
            );
        }
        if let Some(refusal) = &s.plan_refusal {
            println!("  {refusal}");
        }
        if let (Some(err), Some(at)) = (&s.last_error, &s.last_error_at) {
            println!("  last error ({at}): {err}");
        }
        for line in pending {
            println!("  {line}");
        }
        if let Ok(p) = &planned
            && let Some(ports) = p.desired.ports.get(&s.name)
        {
            for (port, want) in ports {
                let have = applied.get(&s.name).and_then(|a| a.get(port));
                let have_text = have.map_or("never read".to_owned(), ToString::to_string);
                let mark = if have.is_some_and(|h| want.satisfied_by(h)) {
                    ""
                } else {
                    "  (differs)"
                };
                println!("  {port:<10} plan {want:<20} switch {have_text}{mark}");
            }
        }
    }
    Ok(())
}
