//! Site files: the TOML description of the physical world (switches, cabling, machines and
//! their NICs, VLAN and IP pools, iSCSI portals, images, customers and quotas).
//!
//! `nhn inventory import` parses a site file ([`parse`]), checks it as a whole ([`validate`]),
//! compares it with what the inventory holds and applies only the differences in one
//! transaction ([`store::import`]); `nhn inventory export` writes the inventory back in the
//! same format ([`store::export`]), canonically ordered, so export → import → export is
//! byte-identical. Every error names the file, the line and the object.

pub mod repository;
pub mod store;
mod validate;

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::net::{Ipv4Net, Mac};

pub use validate::validate;

/// A whole site file. Field order is the order of sections in an exported file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteFile {
    pub site: SiteInfo,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub iscsi_portals: Vec<At<Portal>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vlan_pools: Vec<At<VlanPool>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<At<Network>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_pools: Vec<At<IpPool>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub switches: Vec<At<Switch>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<At<Link>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub machines: Vec<At<Machine>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vm_types: Vec<At<VmType>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<At<Image>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub customers: Vec<At<Customer>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteInfo {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

/// An iSCSI portal of the storage network; volumes become targets `<iqn_prefix>:<volume>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Portal {
    pub name: String,
    pub address: Ipv4Addr,
    #[serde(default = "default_iscsi_port")]
    pub port: u16,
    pub iqn_prefix: String,
}

fn default_iscsi_port() -> u16 {
    3260
}

/// VLAN ids handed to customer networks (L2EX/L3EX).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VlanPool {
    pub name: String,
    pub first: u16,
    pub last: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkRole {
    Storage,
    Management,
    Provisioning,
    Service,
}

/// An infrastructure network (storage, management, provisioning, service).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub name: String,
    pub role: NetworkRole,
    pub vlan: u16,
    pub subnet: Ipv4Net,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolKind {
    /// The operator's shared routed segment; addresses are handed out one by one.
    L3SH,
    /// A supernet carved into customer prefixes.
    L3EX,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpPool {
    pub name: String,
    pub kind: PoolKind,
    pub prefix: Ipv4Net,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    /// L3SH: the shared segment's VLAN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// L3SH: the assignable range (defaults to the whole prefix minus network, gateway, broadcast).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Ipv4Addr>,
    /// L3EX: the size of a customer prefix when the API call does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_prefix_length: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SwitchRole {
    Core,
    Edge,
}

pub use crate::model::DriverKind;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Switch {
    pub name: String,
    pub role: SwitchRole,
    pub driver: DriverKind,
    /// Template set under `switch-templates/` (e.g. `openvswitch`, `cisco-ios`).
    pub os: String,
    /// Management address, `host` or `host:port`.
    pub address: String,
    /// Name of a credential in the appliance config; never the secret itself.
    pub credentials: String,
    /// Pinned SSH host key (`SHA256:…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
    /// MAC table budget of an edge switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_macs: Option<u32>,
    pub ports: Vec<String>,
}

/// A port on a switch, written `Switch-Name:port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortRef {
    pub switch: String,
    pub port: String,
}

impl TryFrom<String> for PortRef {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.rsplit_once(':') {
            Some((sw, port)) if !sw.is_empty() && !port.is_empty() => Ok(PortRef {
                switch: sw.to_owned(),
                port: port.to_owned(),
            }),
            _ => Err(format!(
                "invalid port reference {s:?}: expected \"Switch-Name:port\""
            )),
        }
    }
}

impl From<PortRef> for String {
    fn from(p: PortRef) -> String {
        p.to_string()
    }
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.switch, self.port)
    }
}

/// A cable between two switch ports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub a: PortRef,
    pub b: PortRef,
}

impl Link {
    /// The link with its ends in a canonical order, for comparisons.
    pub fn normalized(&self) -> (PortRef, PortRef) {
        if self.a <= self.b {
            (self.a.clone(), self.b.clone())
        } else {
            (self.b.clone(), self.a.clone())
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MachineKind {
    Hypervisor,
    BareMetal,
    Appliance,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerDriver {
    #[default]
    None,
    Agent,
    Ipmi,
    Redfish,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    pub name: String,
    pub kind: MachineKind,
    /// Slot capacity of a hypervisor.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub vcpus: u32,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub memory_mb: u32,
    #[serde(default, skip_serializing_if = "is_default")]
    pub power_driver: PowerDriver,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bmc_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bmc_credentials: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiator_iqn: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nics: Vec<At<Nic>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nic {
    pub device: String,
    pub mac: Mac,
    /// The edge switch port this NIC is cabled to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortRef>,
    /// Infrastructure network the NIC's address belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    /// The machine PXE boots through this NIC.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub boot: bool,
    /// Its address on the storage network, whose VLAN its port carries tagged: a diskless
    /// machine's initrd reaches its iSCSI target through it (`nhn.storage=` on its command line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_ip: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmType {
    pub name: String,
    pub vcpus: u32,
    pub memory_mb: u32,
    pub bandwidth_mbps: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    pub name: String,
    pub os: String,
    pub os_version: String,
    pub architecture: String,
    pub min_disk_gb: u32,
    #[serde(default = "yes")]
    pub init_supported: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub archive: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub quota: Quota,
}

/// Per-customer resource limits (HAAS-API.md §3.2, layer 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quota {
    pub vms: u32,
    pub vcpu: u32,
    pub memory_mb: u32,
    pub volumes: u32,
    pub volume_gb: u32,
    pub networks_l2ex: u32,
    pub networks_l3ex: u32,
    pub networks_l3sh: u32,
    pub l3sh_addresses: u32,
    pub pending_requests: u32,
}

impl Default for Quota {
    fn default() -> Self {
        Quota {
            vms: 20,
            vcpu: 64,
            memory_mb: 131_072,
            volumes: 40,
            volume_gb: 6000,
            networks_l2ex: 10,
            networks_l3ex: 5,
            networks_l3sh: 1,
            l3sh_addresses: 16,
            pending_requests: 50,
        }
    }
}

fn yes() -> bool {
    true
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// A value with the byte range it came from in the site file (for error messages). Derefs to
/// the value; equality ignores the position, so a parsed file compares equal to an export.
#[derive(Debug, Clone)]
pub struct At<T> {
    span: std::ops::Range<usize>,
    value: T,
}

impl<T> At<T> {
    /// A value that did not come from a file (exports, tests).
    pub fn new(value: T) -> Self {
        At { span: 0..0, value }
    }

    /// A value located at `span` of its source.
    pub fn located(span: std::ops::Range<usize>, value: T) -> Self {
        At { span, value }
    }

    pub fn span(&self) -> std::ops::Range<usize> {
        self.span.clone()
    }
}

impl<T> std::ops::Deref for At<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> std::ops::DerefMut for At<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: PartialEq> PartialEq for At<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T: Serialize> Serialize for At<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for At<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = toml::Spanned::<T>::deserialize(d)?;
        Ok(At {
            span: s.span(),
            value: s.into_inner(),
        })
    }
}

/// One problem in a site file, located as precisely as the file allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteError {
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The offending object, e.g. `switch "Edge-Switch-1"` (empty for syntax errors).
    pub object: String,
    pub message: String,
}

/// All problems found in one site file; displayed one per line as `file:line: object: message`.
#[derive(Debug, Clone)]
pub struct SiteErrors {
    pub file: String,
    pub errors: Vec<SiteError>,
}

impl fmt::Display for SiteErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        writeln!(
            f,
            "{}: {n} problem{} found; nothing was imported",
            self.file,
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            write!(f, "  {}", self.file)?;
            if let Some(line) = e.line {
                write!(f, ":{line}")?;
                if let Some(col) = e.column {
                    write!(f, ":{col}")?;
                }
            }
            if e.object.is_empty() {
                writeln!(f, ": {}", e.message)?;
            } else {
                writeln!(f, ": {}: {}", e.object, e.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for SiteErrors {}

/// An in-memory store holding `examples/seed-site.toml` (2 core and 3 edge switches, 3
/// hypervisors, customers acme and globex): the fixture of the unit tests that need a site.
#[cfg(test)]
pub fn seeded() -> crate::inventory::Memory {
    let mem = crate::inventory::Memory::new();
    let text = include_str!("../../../examples/seed-site.toml");
    let parsed = parse("seed-site.toml", text).expect("the seed site parses");
    store::import(&mem.tx(), &parsed).expect("the seed site imports");
    mem
}

/// Parses a site file. Syntax errors, unknown keys and malformed values (MACs, prefixes,
/// addresses) are reported with line and column.
pub fn parse(file: &str, text: &str) -> Result<SiteFile, SiteErrors> {
    toml::from_str::<SiteFile>(text).map_err(|e| {
        let (line, column) = match e.span() {
            Some(span) => {
                let (l, c) = crate::util::line_col(text, span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        SiteErrors {
            file: file.to_owned(),
            errors: vec![SiteError {
                line,
                column,
                object: String::new(),
                message: e.message().trim().to_owned(),
            }],
        }
    })
}

/// Renders a site model as TOML (the export format).
pub fn to_toml(site: &SiteFile) -> Result<String, toml::ser::Error> {
    toml::to_string(site)
}
