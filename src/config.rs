//! The appliance's configuration: one TOML file in which every field has a default, so
//! `nhn serve` with no file runs on the embedded default (data in `./nhn-data`, HTTP on
//! loopback, no DHCP anywhere). Unknown keys are errors with file, line and column, because
//! a misspelt key silently ignored is how a boot server ends up answering the wrong network.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::util::line_col;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the inventory (`nhn.db`), volumes and generated boot files live.
    pub data_dir: PathBuf,
    pub http: Http,
    pub api: Api,
    pub log: Log,
    pub dhcp: Dhcp,
    pub tftp: Tftp,
    pub boot: Boot,
    pub storage: Storage,
    pub switch: SwitchPlane,
    pub facility: Facility,
    /// `nhn agent` on a hypervisor (only the agent reads this section).
    pub agent: Agent,
    pub power: Power,
    /// Switch and BMC credentials by name; site files refer to them by that name
    /// (`credentials` of a switch, `bmc_credentials` of a machine).
    /// Secrets live only here: never in the inventory, never in logs.
    pub credentials: BTreeMap<String, Credential>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./nhn-data"),
            http: Http::default(),
            api: Api::default(),
            log: Log::default(),
            dhcp: Dhcp::default(),
            tftp: Tftp::default(),
            boot: Boot::default(),
            storage: Storage::default(),
            switch: SwitchPlane::default(),
            facility: Facility::default(),
            agent: Agent::default(),
            power: Power::default(),
            credentials: BTreeMap::new(),
        }
    }
}

/// The iSCSI target daemon that exports volumes. `none` (the default) leaves any daemon alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    pub driver: StorageDriver,
    /// tgtd's control port (`tgtd --control-port N`); unset: its default socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tgt_control_port: Option<u16>,
    /// Require CHAP on every target besides the initiator ACL. Each target gets its own
    /// account, its secret derived from the appliance secret (never stored); a booting
    /// machine's initrd fetches it over HTTP with a one-time token bound to its DHCP address,
    /// so it never appears on a kernel command line.
    pub chap: bool,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            driver: StorageDriver::None,
            tgt_control_port: None,
            chap: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageDriver {
    None,
    Tgt,
}

/// The DHCP server. It answers only on the interfaces listed here; with none (the default)
/// it does not run at all, so a fresh appliance never answers on a network nobody planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dhcp {
    /// Network interfaces to serve, e.g. `["eth1"]`. Empty: DHCP is off.
    pub interfaces: Vec<String>,
    /// Lease time for static (inventory) answers and pools that do not set their own.
    pub lease_time_secs: u32,
    /// Per-MAC flood limit: packets per second a client may send, and the burst it may save up.
    pub per_mac_rate: u32,
    pub per_mac_burst: u32,
    /// IPv6 router advertisements on every interface in `interfaces` (on by default). Debian's
    /// iPXE otherwise waits ~13 s for IPv6 autoconfiguration at every boot. The advertisement
    /// has router lifetime 0 and no prefix and no managed/other flags: other hosts on the
    /// segment take no default route, no address and no DHCPv6 hint from it. Turn it off where
    /// a router of yours advertises on the segment: iPXE takes the first advertisement it
    /// hears, so nhn's could win over one that starts DHCPv6.
    pub ipv6_ra: bool,
    /// Subnets served directly (on an interface with an address in it) or through relays
    /// (giaddr inside it). Unknown MACs get addresses from `pool_first`..`pool_last`.
    pub subnets: Vec<DhcpSubnet>,
}

impl Default for Dhcp {
    fn default() -> Self {
        Dhcp {
            interfaces: Vec::new(),
            lease_time_secs: 3600,
            per_mac_rate: 10,
            per_mac_burst: 30,
            ipv6_ra: true,
            subnets: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpSubnet {
    pub subnet: crate::net::Ipv4Net,
    /// The dynamic pool for machines the inventory does not know (they become "discovered").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_first: Option<std::net::Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_last: Option<std::net::Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<std::net::Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<std::net::Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_time_secs: Option<u32>,
}

/// The TFTP server (read-only, serving `boot.dir`). Off unless `listen` names an address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tftp {
    /// Addresses to serve on, e.g. `["10.96.0.1:69"]`. Empty: TFTP is off.
    pub listen: Vec<SocketAddr>,
    /// Concurrent transfers; more are refused with a TFTP error (the client retries).
    pub max_sessions: usize,
    /// Retransmission timeout when the client does not ask for one (RFC 2349), milliseconds.
    pub timeout_ms: u64,
    /// Retransmissions of one packet before a transfer is abandoned.
    pub retries: u32,
    /// Largest block size (RFC 2348) and window (RFC 7440) granted to a client.
    pub max_blksize: u16,
    pub max_windowsize: u16,
}

impl Default for Tftp {
    fn default() -> Self {
        Tftp {
            listen: Vec::new(),
            max_sessions: 512,
            timeout_ms: 1000,
            retries: 5,
            max_blksize: 65464,
            max_windowsize: 64,
        }
    }
}

/// What booting clients are sent: PXE boot files (served by TFTP from `dir`), the iPXE script
/// URL, and the kernel, initrd and command line the script loads over HTTP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Boot {
    /// Static boot assets (iPXE binaries, kernels, initrds), served by TFTP and by HTTP under /boot/.
    pub dir: PathBuf,
    /// Boot file for legacy BIOS PXE firmware.
    pub bios_file: String,
    /// Boot file for UEFI x64 PXE firmware (`snponly.efi` or `ipxe.efi`).
    pub efi_file: String,
    /// Base URL iPXE fetches scripts, kernels and initrds from. Default:
    /// `http://<DHCP server address>:<HTTP port>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_base: Option<String>,
    /// Kernel and initrd (under `dir`) and the kernel command line of the default boot.
    pub kernel: String,
    pub initrd: String,
    pub cmdline: String,
}

impl Default for Boot {
    fn default() -> Self {
        Boot {
            dir: PathBuf::from("./boot"),
            bios_file: "undionly.kpxe".into(),
            efi_file: "snponly.efi".into(),
            http_base: None,
            kernel: "vmlinuz".into(),
            initrd: "initrd.img".into(),
            cmdline: "console=ttyS0".into(),
        }
    }
}

/// The operator/boot HTTP listener (status page, /metrics, /healthz; later /RPC2 and /boot).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    pub listen: SocketAddr,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

/// The HaaS XML-RPC API (`POST /RPC2` on the HTTP listener) and its job engine
/// (HAAS-API.md §3). The defaults are the contract's; the internal listener stays on loopback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Api {
    /// Largest accepted request body; bigger ones get HTTP 413 before any parsing.
    pub body_limit_bytes: usize,
    /// Deepest element nesting accepted in a request (a struct in an array is 5 levels).
    pub max_xml_depth: usize,
    /// Token bucket per customer for allocate/deallocate/change*/async calls.
    pub mutating_per_second: u32,
    pub mutating_burst: u32,
    /// Token bucket per customer for get* calls (and every other call).
    pub read_per_second: u32,
    pub read_burst: u32,
    /// Failed authentications allowed per source address (and per key id) before throttling,
    /// refilled at `auth_failures_per_minute`.
    pub auth_failures_burst: u32,
    pub auth_failures_per_minute: u32,
    /// Async requests per customer running at the facility at once.
    pub max_in_flight: u32,
    /// Async requests per customer waiting to run; beyond it fault 720.
    pub max_queued: u32,
    /// Async requests running at the facility at once, over all customers.
    pub workers: u32,
    /// Where the job engine dispatches async requests (XML-RPC `dispatchRequest` over HTTP,
    /// served by `nhn agent` or the facility driver). Empty: requests stay queued.
    pub facility_url: String,
    /// The internal listener for the facility's `reportRequestResult` callbacks; never the
    /// customer port.
    pub internal_listen: SocketAddr,
    /// SHA-256 (hex) of the facility's credential for the internal listener, e.g.
    /// `printf %s "$SECRET" | sha256sum`. Empty: the internal listener refuses every call.
    pub facility_credential_sha256: String,
    /// How long the job engine keeps re-trying a dispatch while the facility is unreachable
    /// (backoff 0.5 s doubling to 8 s); past it the request fails with BackendError.
    pub dispatch_retry_secs: u64,
    /// How long terminal requests stay queryable with getRequestIdInfo.
    pub request_retention_days: u32,
    /// How often the reconciler looks for requests past their deadline.
    pub reconcile_interval_secs: u64,
    /// How long the facility has to report a request, from dispatch: power on/off/reset,
    /// Init* calls, restoreImage. Past it the request fails with Timeout and the VM is `error`.
    pub power_deadline_secs: u64,
    pub init_deadline_secs: u64,
    pub restore_deadline_secs: u64,
    /// The guest files `writeFile` may write (the operator's whitelist).
    pub write_file_paths: Vec<String>,
}

impl Default for Api {
    fn default() -> Self {
        Api {
            body_limit_bytes: 1 << 20,
            max_xml_depth: 24,
            mutating_per_second: 2,
            mutating_burst: 10,
            read_per_second: 10,
            read_burst: 40,
            auth_failures_burst: 10,
            auth_failures_per_minute: 10,
            max_in_flight: 4,
            max_queued: 50,
            workers: 32,
            facility_url: String::new(),
            internal_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            facility_credential_sha256: String::new(),
            dispatch_retry_secs: 60,
            request_retention_days: 7,
            reconcile_interval_secs: 30,
            power_deadline_secs: 600,
            init_deadline_secs: 600,
            restore_deadline_secs: 3600,
            write_file_paths: [
                "/etc/hosts",
                "/etc/ntp.conf",
                "/etc/sysconfig/clock",
                "/etc/rc.d/rc.local",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// A tracing filter such as `info` or `nhn=debug,info`; `NHN_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// The facility as the appliance sees it: how VMs boot on hypervisors and when a silent
/// hypervisor counts as unreachable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Facility {
    /// Base URL the hypervisors' agents fetch VM kernels and initrds from (this appliance's
    /// HTTP listener as the hypervisors reach it). Default: `[boot] http_base`, else
    /// `http://<[http] listen>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_url: Option<String>,
    /// Kernel and initrd (under `[boot] dir`) that VMs boot directly, until images carry
    /// their own. Default: `[boot] kernel` and `[boot] initrd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_kernel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_initrd: Option<String>,
    /// Kernel command line of VMs; nhn adds the root (`nhn.root=disk`).
    pub vm_cmdline: String,
    /// A hypervisor whose agent has not reported for this long is `unreachable`.
    pub host_dead_secs: u64,
}

impl Default for Facility {
    fn default() -> Self {
        Facility {
            boot_url: None,
            vm_kernel: None,
            vm_initrd: None,
            vm_cmdline: "console=ttyS0 panic=-1".into(),
            host_dead_secs: 30,
        }
    }
}

/// How `nhn agent` runs VMs on its hypervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Agent {
    /// Where the agent's HTTP API listens (the appliance calls it; nothing else should reach it).
    pub listen: SocketAddr,
    /// This hypervisor's machine name in the inventory.
    pub host: String,
    /// The appliance's internal listener (`[api] internal_listen`), for results and reports.
    pub appliance_url: String,
    /// The file holding the credential `nhn agent enroll` printed (mode 0600).
    pub credential_file: PathBuf,
    /// VM state (argv, pid, QMP socket, console log per VM) and cached kernels.
    pub state_dir: PathBuf,
    /// The Open vSwitch bridge VM taps join (its uplink to the edge is a trunk).
    pub bridge: String,
    pub qemu: String,
    /// `auto` (KVM when it works, else TCG), `kvm` or `tcg`.
    pub accel: Accel,
    /// Pinned machine type and CPU model, so that a VM can later migrate between hosts.
    pub machine: String,
    pub cpu: String,
    /// powerOffVm without force: ACPI shutdown, then forced after this long.
    pub shutdown_grace_secs: u64,
    /// How often the agent reports its VMs and free capacity to the appliance.
    pub report_secs: u64,
}

impl Default for Agent {
    fn default() -> Self {
        Agent {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            host: String::new(),
            appliance_url: "http://127.0.0.1:8081/RPC2".into(),
            credential_file: PathBuf::from("/etc/nhn/agent.credential"),
            state_dir: PathBuf::from("/var/lib/nhn-agent"),
            bridge: "br-nhn".into(),
            qemu: "qemu-system-x86_64".into(),
            accel: Accel::Auto,
            machine: "pc-q35-7.2".into(),
            cpu: "qemu64".into(),
            shutdown_grace_secs: 30,
            report_secs: 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Auto,
    Kvm,
    Tcg,
}

/// The switch plane: what the planner adds to every hypervisor port and how the reconciler
/// talks to switches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SwitchPlane {
    /// Run the reconciler in `nhn serve` (false: plan only, never touch a switch).
    pub reconcile: bool,
    /// Extra VLANs tagged on every hypervisor port (e.g. management). The storage networks'
    /// VLANs and each NIC's own (untagged) network come from the inventory and need not be
    /// listed; a VLAN listed here that is a port's native VLAN stays untagged there.
    pub infra_vlans: Vec<u16>,
    /// Seconds between read-backs of each switch (drift repair).
    pub readback_period_secs: u64,
    /// How long an SSH switch's authenticated connection is kept after a batch for the next
    /// one (key exchange costs a switch more CPU than the batch). Longer than the read-back
    /// period keeps one connection per switch open; 0 closes it after every batch (for CLIs
    /// with few vty lines).
    pub ssh_idle_secs: u64,
    /// First retry delay after a failed session, doubled per failure up to `retry_max_ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// TCP connect + SSH handshake + authentication.
    pub connect_timeout_secs: u64,
    /// One command (or one exec batch) may take this long before the session is abandoned.
    pub command_timeout_secs: u64,
    /// Accept and pin the host key of a switch whose key is not in the inventory yet.
    /// Off by default: an unpinned switch is refused.
    pub trust_on_first_use: bool,
    /// Switches (by name) that may use legacy SSH algorithms (SHA-1 and NIST KEX, CBC, hmac-sha1).
    pub legacy_algorithms: Vec<String>,
    /// Read templates from this folder instead of the ones built into the binary.
    pub templates_dir: Option<PathBuf>,
    /// SNMP switches: how long to wait for an answer to one request (milliseconds).
    pub snmp_timeout_ms: u64,
    /// SNMP switches: how many times a request is sent again after a timeout.
    pub snmp_retries: u32,
    /// SNMP switches: the most varbinds nhn puts in one SET PDU (1: one varbind per PDU).
    pub snmp_max_varbinds: usize,
}

impl Default for SwitchPlane {
    fn default() -> Self {
        SwitchPlane {
            reconcile: true,
            infra_vlans: Vec::new(),
            readback_period_secs: 60,
            ssh_idle_secs: 90,
            retry_initial_ms: 500,
            retry_max_ms: 30_000,
            connect_timeout_secs: 10,
            command_timeout_secs: 30,
            trust_on_first_use: false,
            legacy_algorithms: Vec::new(),
            templates_dir: None,
            snmp_timeout_ms: 1000,
            snmp_retries: 2,
            snmp_max_varbinds: 32,
        }
    }
}

/// Bare-metal power drivers (IPMI, Redfish): how long nhn waits for a BMC and how hard it
/// retries. Every power change is polled until the BMC reports the new state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Power {
    /// How long a power change may take, command to observed state (`nhn power --timeout`
    /// overrides it).
    pub timeout_secs: u64,
    /// `off` first asks the OS to shut down (ACPI soft-off, Redfish GracefulShutdown) and
    /// forces the power off if the machine is still on after this many seconds.
    pub soft_off_secs: u64,
    /// First wait between state polls after a command; it grows by half each poll up to
    /// `poll_max_ms`. Every poll is one BMC request, and only one runs per BMC at a time.
    pub poll_initial_ms: u64,
    pub poll_max_ms: u64,
    /// A command or query that fails transiently (no answer, HTTP 409/5xx, a failed
    /// ipmitool run) is sent again this many times, after `retry_initial_ms`, doubling.
    pub retries: u32,
    pub retry_initial_ms: u64,
    /// One BMC request (an ipmitool run, an HTTP request) may take this long.
    pub command_timeout_secs: u64,
    /// The ipmitool program (a name in PATH or a path).
    pub ipmitool: PathBuf,
    /// ipmitool `-N`: seconds before a lost IPMI packet is sent again.
    pub ipmi_retransmit_secs: u32,
    /// ipmitool `-R`: how often a lost IPMI packet is sent again. A dead BMC fails one run
    /// after about `ipmi_retransmit_secs * (ipmi_retransmits + 1)` seconds.
    pub ipmi_retransmits: u32,
}

impl Default for Power {
    fn default() -> Self {
        Power {
            timeout_secs: 120,
            soft_off_secs: 60,
            poll_initial_ms: 250,
            poll_max_ms: 3000,
            retries: 2,
            retry_initial_ms: 500,
            command_timeout_secs: 20,
            ipmitool: PathBuf::from("ipmitool"),
            ipmi_retransmit_secs: 1,
            ipmi_retransmits: 1,
        }
    }
}

/// How nhn logs in to a switch. SSH: `user` and `key_file` or `password`. SNMPv2c:
/// `community`. SNMPv3 (USM authPriv): `user`, `auth_protocol` + `auth_password`,
/// `priv_protocol` + `priv_password`. Every secret may instead be read from a file
/// (`community_file`, `auth_password_file`, `priv_password_file`; one trailing newline is
/// dropped). Secrets are redacted from `Debug` and from `nhn config show`.
///
/// A BMC (a machine's `bmc_credentials`): `user` and `password` or `password_file`; IPMI
/// also takes `ipmi_cipher_suite`, Redfish `ca_file`, `insecure` and `redfish_system`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// SSH login, or SNMPv3 user (USM security name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// OpenSSH private key file (unencrypted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The password in a file (BMCs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// IPMI cipher suite (ipmitool `-C`), always passed: letting ipmitool probe for one
    /// hangs on some BMCs. Default 17 (HMAC-SHA256, AES-CBC-128); 3 (HMAC-SHA1) is what
    /// older BMCs support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipmi_cipher_suite: Option<u8>,
    /// Redfish over HTTPS: the CA (PEM) that signed the BMC's certificate. Without it, the
    /// system's trusted roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Redfish over HTTPS: accept any certificate. Off by default; logged as a warning.
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure: bool,
    /// Redfish: the system to drive (its id under /redfish/v1/Systems/). Default: the
    /// first member of /redfish/v1/Systems.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redfish_system: Option<String>,
    /// SNMPv2c community (write access needed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community_file: Option<PathBuf>,
    /// SNMPv3 authentication: `MD5`, `SHA` (SHA-1), `SHA-224`, `SHA-256`, `SHA-384`, `SHA-512`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_password_file: Option<PathBuf>,
    /// SNMPv3 privacy: `AES` (AES-128), `AES-192-BLUMENTHAL`, `AES-256-BLUMENTHAL`, `DES`, ….
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priv_protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priv_password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priv_password_file: Option<PathBuf>,
}

impl Credential {
    /// A secret given inline or in a file; `name` is its key (`community`), for errors.
    pub fn secret(
        inline: Option<&String>,
        file: Option<&PathBuf>,
        name: &str,
    ) -> Result<Option<String>, String> {
        match (inline, file) {
            (Some(_), Some(_)) => Err(format!("give {name} or {name}_file, not both")),
            (Some(s), None) => Ok(Some(s.clone())),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {name}_file {}: {e}", path.display()))?;
                let text = text.strip_suffix('\n').unwrap_or(&text);
                Ok(Some(text.strip_suffix('\r').unwrap_or(text).to_owned()))
            }
            (None, None) => Ok(None),
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("Credential")
            .field("user", &self.user)
            .field("key_file", &self.key_file)
            .field("password", &redact(&self.password))
            .field("password_file", &self.password_file)
            .field("ipmi_cipher_suite", &self.ipmi_cipher_suite)
            .field("ca_file", &self.ca_file)
            .field("insecure", &self.insecure)
            .field("redfish_system", &self.redfish_system)
            .field("community", &redact(&self.community))
            .field("community_file", &self.community_file)
            .field("auth_protocol", &self.auth_protocol)
            .field("auth_password", &redact(&self.auth_password))
            .field("auth_password_file", &self.auth_password_file)
            .field("priv_protocol", &self.priv_protocol)
            .field("priv_password", &redact(&self.priv_password))
            .field("priv_password_file", &self.priv_password_file)
            .finish()
    }
}

fn is_false(b: &bool) -> bool {
    !b
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

impl Config {
    /// Loads `path`, or the embedded default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })
    }

    /// The effective configuration as TOML (`nhn config show`), passwords redacted.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        for c in shown.credentials.values_mut() {
            for secret in [
                &mut c.password,
                &mut c.community,
                &mut c.auth_password,
                &mut c.priv_password,
            ] {
                if secret.is_some() {
                    *secret = Some("<redacted>".into());
                }
            }
        }
        toml::to_string_pretty(&shown)
            .unwrap_or_else(|e| format!("# cannot render the configuration: {e}\n"))
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("nhn.db")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_embedded_default() {
        let c = Config::parse(Path::new("x.toml"), "").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn unknown_key_names_file_line_and_column() {
        let err = Config::parse(
            Path::new("site.toml"),
            "data_dir = \"/x\"\n[http]\nlisten = \"0.0.0.0:80\"\nlistn = 1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("site.toml:4:1: "), "{err}");
        assert!(err.contains("listn"), "{err}");
    }

    #[test]
    fn passwords_are_redacted_when_shown() {
        let c = Config::parse(
            Path::new("x.toml"),
            "[credentials.lab]\nuser = \"admin\"\npassword = \"s3cret\"\n",
        )
        .unwrap();
        assert!(!c.to_toml().contains("s3cret"));
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(c.credentials["lab"].password.as_deref(), Some("s3cret"));
    }

    #[test]
    fn snmp_secrets_are_redacted_and_may_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("priv");
        std::fs::write(&file, "s3cret-priv\n").unwrap();
        let text = format!(
            "[credentials.v2]\ncommunity = \"s3cret-community\"\n\n[credentials.v3]\nuser = \"nhn\"\nauth_protocol = \"SHA\"\nauth_password = \"s3cret-auth\"\npriv_protocol = \"AES\"\npriv_password_file = \"{}\"\n",
            file.display()
        );
        let c = Config::parse(Path::new("x.toml"), &text).unwrap();
        assert!(!c.to_toml().contains("s3cret"), "{}", c.to_toml());
        assert!(!format!("{c:?}").contains("s3cret"));
        let v3 = &c.credentials["v3"];
        assert_eq!(
            Credential::secret(
                v3.priv_password.as_ref(),
                v3.priv_password_file.as_ref(),
                "priv_password"
            ),
            Ok(Some("s3cret-priv".into()))
        );
        let both = Credential::secret(Some(&"a".into()), Some(&file), "community").unwrap_err();
        assert_eq!(both, "give community or community_file, not both");
        let missing = dir.path().join("nope");
        let e = Credential::secret(None, Some(&missing), "community").unwrap_err();
        assert!(e.starts_with("cannot read community_file "), "{e}");
    }

    #[test]
    fn bmc_credentials_take_tls_and_cipher_settings_and_hide_the_password() {
        let text = "[credentials.bmc]\nuser = \"admin\"\npassword = \"s3cret-bmc\"\nipmi_cipher_suite = 3\nca_file = \"/etc/nhn/bmc-ca.pem\"\ninsecure = true\nredfish_system = \"node1\"\n\n[power]\nsoft_off_secs = 5\n";
        let c = Config::parse(Path::new("x.toml"), text).unwrap();
        let bmc = &c.credentials["bmc"];
        assert_eq!(bmc.ipmi_cipher_suite, Some(3));
        assert!(bmc.insecure);
        assert_eq!(bmc.redfish_system.as_deref(), Some("node1"));
        assert_eq!(c.power.soft_off_secs, 5);
        assert_eq!(c.power.timeout_secs, Power::default().timeout_secs);
        assert!(!c.to_toml().contains("s3cret"), "{}", c.to_toml());
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(
            Config::parse(Path::new("-"), &c.to_toml()).unwrap().power,
            c.power
        );
        let err = Config::parse(Path::new("x.toml"), "[power]\nsoft_of_secs = 5\n").unwrap_err();
        assert!(err.to_string().contains("soft_of_secs"), "{err}");
    }

    #[test]
    fn rendered_default_parses_back_to_itself() {
        let c = Config::default();
        assert_eq!(Config::parse(Path::new("-"), &c.to_toml()).unwrap(), c);
    }
}
