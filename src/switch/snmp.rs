//! The SNMP switch driver: VLANs through the Q-BRIDGE-MIB (RFC 4363) over SNMPv2c or SNMPv3
//! USM (authPriv), with async-snmp.
//!
//! - **Read-back.** Four walks: `dot1dBasePortIfIndex` (bridge port → ifIndex) and IF-MIB
//!   `ifName` (ifIndex → name) give the port names, so that nothing about the switch's
//!   numbering is assumed; `dot1qVlanStaticTable` (EgressPorts, UntaggedPorts, RowStatus per
//!   VLAN) and `dot1qPvid` give the ports' VLANs, turned into the planner's [`SwitchState`].
//! - **Apply.** The batch's changes become PortList bitmaps computed from a read-back taken in
//!   the same session, so that ports the batch does not name keep exactly what they had:
//!   `RowStatus = createAndGo` (+ name) for new VLANs, one `EgressPorts` per VLAN touched (every
//!   port change of that VLAN in one varbind, adds before removes: make before break),
//!   `UntaggedPorts` narrowed first where an untagged member leaves, `RowStatus = destroy` for
//!   VLANs that the batch left on no port. The varbinds go in as few SET PDUs as
//!   `[switch] snmp_max_varbinds` allows, in order, then the switch is walked again to confirm.
//!   Agents apply a SET varbind by varbind without rollback, so a refused PDU can leave part
//!   of the batch done; the next session starts from a fresh read-back and finishes it.
//!   A port's native (or access) VLAN is its bit in that VLAN's `UntaggedPorts` plus its
//!   `dot1qPvid`; the new untagged VLAN and the PVID are set before the old untagged
//!   membership is cleared, so the port always has one (agents that allow a single untagged
//!   VLAN per port move it in one step). Q-BRIDGE has no port mode: a port whose only VLAN is
//!   untagged reads back as an access port, which satisfies a planned trunk with only a
//!   native VLAN.
//! - **Errors.** Timeouts (with the v2c hint that agents drop unknown communities silently),
//!   SNMPv3 reports (wrong password, unknown user), and error-status answers (`wrongValue`,
//!   `noAccess`, `notWritable`, `authorizationError`, …) become [`SnmpError`]s naming the
//!   object, the VLAN and ports, and what to check. A port the plan names that the switch does
//!   not have is refused before anything is sent. Communities and passwords are never logged
//!   nor printed ([`SnmpAuth`]'s `Debug` redacts them).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use async_snmp::{
    Auth, AuthProtocol, Client, ErrorStatus, Oid, PrivProtocol, Retry, UdpHandle, UsmConfig, Value,
    VarBind,
};

use super::plan::PortPlan;
use super::readback::SwitchState;
use super::templates::{PortChange, PortSteps, vlan_name};
use super::vlans::{MAX_VLAN, Vlan, VlanSet};

/// BRIDGE-MIB `dot1dBasePortIfIndex`.
const BASE_PORT_IFINDEX: &[u32] = &[1, 3, 6, 1, 2, 1, 17, 1, 4, 1, 2];
/// IF-MIB `ifName`.
const IF_NAME: &[u32] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1];
/// Q-BRIDGE-MIB `dot1qVlanStaticEntry`; columns below.
const STATIC_ENTRY: &[u32] = &[1, 3, 6, 1, 2, 1, 17, 7, 1, 4, 3, 1];
const COL_NAME: u32 = 2;
const COL_EGRESS: u32 = 3;
const COL_UNTAGGED: u32 = 5;
const COL_ROW_STATUS: u32 = 6;
/// Q-BRIDGE-MIB `dot1qPvid`.
const PVID: &[u32] = &[1, 3, 6, 1, 2, 1, 17, 7, 1, 4, 5, 1, 1];

/// RowStatus values (SNMPv2-TC).
const ACTIVE: i32 = 1;
const CREATE_AND_GO: i32 = 4;
const DESTROY: i32 = 6;

/// How nhn authenticates to one switch's agent.
#[derive(Clone, PartialEq)]
pub enum SnmpAuth {
    V2c {
        community: String,
    },
    /// USM authPriv.
    V3 {
        user: String,
        auth_protocol: AuthProtocol,
        auth_password: String,
        priv_protocol: PrivProtocol,
        priv_password: String,
    },
}

impl SnmpAuth {
    /// `v2c` or `v3 authPriv (SHA/AES, user U)`, for the operator; never a secret.
    pub fn describe(&self) -> String {
        match self {
            SnmpAuth::V2c { .. } => "v2c".to_owned(),
            SnmpAuth::V3 {
                user,
                auth_protocol,
                priv_protocol,
                ..
            } => format!("v3 authPriv ({auth_protocol}/{priv_protocol}, user {user})"),
        }
    }
}

impl fmt::Debug for SnmpAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnmpAuth::V2c { .. } => f
                .debug_struct("V2c")
                .field("community", &"<redacted>")
                .finish(),
            SnmpAuth::V3 {
                user,
                auth_protocol,
                priv_protocol,
                ..
            } => f
                .debug_struct("V3")
                .field("user", user)
                .field("auth_protocol", auth_protocol)
                .field("auth_password", &"<redacted>")
                .field("priv_protocol", priv_protocol)
                .field("priv_password", &"<redacted>")
                .finish(),
        }
    }
}

/// Everything needed to talk to one switch.
#[derive(Debug, Clone)]
pub struct SnmpTarget {
    /// `host` or `host:port` (161 by default).
    pub address: String,
    pub auth: SnmpAuth,
    /// Per request; a request is sent `1 + retries` times before it times out.
    pub timeout: Duration,
    pub retries: u32,
    /// Most varbinds in one SET PDU (at least 1).
    pub max_varbinds: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnmpError {
    #[error("SNMP credentials: {0}")]
    Config(String),
    #[error(
        "no answer from the SNMP agent at {address} ({tries} tries of {timeout_ms} ms): the agent is down or unreachable{hint}"
    )]
    Timeout {
        address: String,
        tries: u32,
        timeout_ms: u64,
        hint: &'static str,
    },
    #[error("SNMPv3 authentication failed at {address} for user {user:?}: {detail}")]
    Auth {
        address: String,
        user: String,
        detail: String,
    },
    #[error("the switch refused {what} ({object}): {status}, {hint}")]
    Refused {
        what: String,
        object: String,
        status: String,
        hint: &'static str,
    },
    #[error("port {port} is not a bridge port of the switch (it has: {known}); nothing was sent")]
    UnknownPort { port: String, known: String },
    #[error("unexpected answer from the switch: {0}")]
    Protocol(String),
    #[error("SNMP request to {address} failed: {message}")]
    Other { address: String, message: String },
}

/// The Q-BRIDGE view of a switch as walked: what [`SwitchState`] is computed from, and what
/// PortLists are computed from when applying.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tables {
    /// Bridge port number → port name (ifName of its ifIndex).
    pub ports: BTreeMap<u32, String>,
    /// Rows of dot1qVlanStaticTable.
    pub vlans: BTreeMap<Vlan, VlanRow>,
    /// dot1qPvid per bridge port (0: none).
    pub pvid: BTreeMap<u32, u32>,
    /// Length of the switch's PortLists (octets), at least enough for its highest port.
    pub octets: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VlanRow {
    pub egress: BTreeSet<u32>,
    pub untagged: BTreeSet<u32>,
    pub active: bool,
}

/// A PortList (MSB of the first octet is port 1) → its port numbers.
pub fn portlist_decode(bytes: &[u8]) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    for (i, b) in bytes.iter().enumerate() {
        for bit in 0..8 {
            if b & (0x80 >> bit) != 0 {
                out.insert(i as u32 * 8 + bit + 1);
            }
        }
    }
    out
}

/// Port numbers → a PortList of `octets` octets (more if a port needs them).
pub fn portlist_encode(ports: &BTreeSet<u32>, octets: usize) -> Vec<u8> {
    let need = ports.last().map_or(0, |p| (*p as usize).div_ceil(8));
    let mut out = vec![0u8; octets.max(need)];
    for p in ports.iter().filter(|p| **p > 0) {
        let i = (*p - 1) as usize;
        out[i / 8] |= 0x80 >> (i % 8);
    }
    out
}

impl Tables {
    /// The planner's view: per named port, the VLANs it carries; the VLAN it is an untagged
    /// member of is its native VLAN (the PVID's, if it is untagged in several), and a port
    /// whose only VLAN is untagged is an access port. A PVID alone (a tagged member) is not a
    /// native VLAN: frames would leave tagged.
    pub fn state(&self) -> SwitchState {
        let mut st = SwitchState::default();
        for (num, name) in &self.ports {
            let mut vlans = VlanSet::new();
            let mut untagged = Vec::new();
            for (v, row) in &self.vlans {
                if row.egress.contains(num) {
                    vlans.insert(*v);
                    if row.untagged.contains(num) {
                        untagged.push(*v);
                    }
                }
            }
            let pvid = self.pvid.get(num).and_then(|p| Vlan::try_from(*p).ok());
            let native = pvid
                .filter(|p| untagged.contains(p))
                .or_else(|| untagged.first().copied());
            let plan = match native {
                Some(n) if vlans.len() == 1 => PortPlan::access(n),
                _ => PortPlan::trunk(native, vlans),
            };
            st.ports.insert(name.clone(), plan);
        }
        st.vlans = self
            .vlans
            .iter()
            .filter(|(_, r)| r.active)
            .map(|(v, _)| *v)
            .collect();
        st
    }

    fn port_number(&self, name: &str) -> Result<u32, SnmpError> {
        self.ports
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(num, _)| *num)
            .ok_or_else(|| SnmpError::UnknownPort {
                port: name.to_owned(),
                known: self.ports.values().cloned().collect::<Vec<_>>().join(" "),
            })
    }

    fn names(&self, ports: &BTreeSet<u32>) -> String {
        if ports.is_empty() {
            return "no ports".to_owned();
        }
        ports
            .iter()
            .map(|p| {
                self.ports
                    .get(p)
                    .cloned()
                    .unwrap_or_else(|| format!("#{p}"))
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One varbind of a SET batch with what it means, for error messages.
#[derive(Debug, Clone, PartialEq)]
pub struct SetVarbind {
    pub oid: Oid,
    pub value: Value,
    pub what: String,
}

fn oid_of(prefix: &[u32], suffix: &[u32]) -> Oid {
    Oid::from_slice(&[prefix, suffix].concat())
}

/// The varbinds of one batch, in the order they must be applied. Errors (before anything is
/// sent) if a change names a port the switch does not have.
///
/// Each port named by a change goes through the same steps as with a CLI
/// ([`PortSteps`]); its bits in every VLAN's EgressPorts and UntaggedPorts, and its PVID, are
/// set from the result; the other ports' bits stay as read. Order (make before break): create
/// new VLANs; VLANs that gain egress ports (an untagged member leaving first: UntaggedPorts
/// must stay a subset); VLANs that gain untagged ports; PVIDs; then VLANs that lose untagged
/// ports, VLANs that lose egress ports, and VLANs left on no port are destroyed.
pub fn batch_varbinds(
    tables: &Tables,
    changes: &[PortChange],
) -> Result<Vec<SetVarbind>, SnmpError> {
    let mut by_port: BTreeMap<u32, (String, Vec<&PortChange>)> = BTreeMap::new();
    for c in changes {
        let num = tables.port_number(&c.port)?;
        by_port
            .entry(num)
            .or_insert_with(|| (c.port.clone(), Vec::new()))
            .1
            .push(c);
    }
    let state = tables.state();
    let mut egress: BTreeMap<Vlan, BTreeSet<u32>> = tables
        .vlans
        .iter()
        .map(|(v, r)| (*v, r.egress.clone()))
        .collect();
    let mut untagged: BTreeMap<Vlan, BTreeSet<u32>> = tables
        .vlans
        .iter()
        .map(|(v, r)| (*v, r.untagged.clone()))
        .collect();
    let mut pvids: Vec<(u32, Vlan)> = Vec::new();
    for (num, (name, cs)) in &by_port {
        let before = state.ports.get(name).cloned().unwrap_or_default();
        let Some(steps) = PortSteps::new(&before, cs.iter().copied()) else {
            continue;
        };
        let after = &steps.after;
        let touched: BTreeSet<Vlan> = egress
            .keys()
            .copied()
            .chain(after.carried().iter())
            .collect();
        for v in touched {
            let e = egress.entry(v).or_default();
            let u = untagged.entry(v).or_default();
            if after.contains(v) {
                e.insert(*num);
            } else {
                e.remove(num);
            }
            if after.native == Some(v) {
                u.insert(*num);
            } else {
                u.remove(num);
            }
        }
        if let Some(n) = after.native
            && tables.pvid.get(num) != Some(&u32::from(n))
        {
            pvids.push((*num, n));
        }
    }
    let old_e = |v: &Vlan| {
        tables
            .vlans
            .get(v)
            .map(|r| r.egress.clone())
            .unwrap_or_default()
    };
    let old_u = |v: &Vlan| {
        tables
            .vlans
            .get(v)
            .map(|r| r.untagged.clone())
            .unwrap_or_default()
    };
    let grows_e: Vec<Vlan> = egress
        .iter()
        .filter(|(v, e)| !e.is_subset(&old_e(v)))
        .map(|(v, _)| *v)
        .collect();
    let grows_u: Vec<Vlan> = untagged
        .iter()
        .filter(|(v, u)| !u.is_subset(&old_u(v)))
        .map(|(v, _)| *v)
        .collect();
    let octets = tables.octets;
    let mut out = Vec::new();
    // The untagged list as sent so far (or as read).
    let mut sent_u: BTreeMap<Vlan, BTreeSet<u32>> = BTreeMap::new();
    let mut set_untagged = |out: &mut Vec<SetVarbind>, v: Vlan, ports: BTreeSet<u32>| {
        let cur = sent_u.entry(v).or_insert_with(|| old_u(&v));
        if *cur != ports {
            out.push(SetVarbind {
                oid: oid_of(STATIC_ENTRY, &[COL_UNTAGGED, u32::from(v)]),
                value: Value::OctetString(portlist_encode(&ports, octets).into()),
                what: format!("VLAN {v} untagged ports = {}", tables.names(&ports)),
            });
            *cur = ports;
        }
    };
    let egress_vb = |v: Vlan, ports: &BTreeSet<u32>| SetVarbind {
        oid: oid_of(STATIC_ENTRY, &[COL_EGRESS, u32::from(v)]),
        value: Value::OctetString(portlist_encode(ports, octets).into()),
        what: format!("VLAN {v} egress ports = {}", tables.names(ports)),
    };
    // Make: new VLANs, every VLAN that gains a port (its removes ride along), new untagged
    // members, PVIDs.
    let created: BTreeSet<Vlan> = grows_e
        .iter()
        .chain(&grows_u)
        .filter(|v| !tables.vlans.contains_key(v))
        .copied()
        .collect();
    for v in created {
        out.push(SetVarbind {
            oid: oid_of(STATIC_ENTRY, &[COL_ROW_STATUS, u32::from(v)]),
            value: Value::Integer(CREATE_AND_GO),
            what: format!("create VLAN {v}"),
        });
        out.push(SetVarbind {
            oid: oid_of(STATIC_ENTRY, &[COL_NAME, u32::from(v)]),
            value: Value::OctetString(vlan_name(v).into_bytes().into()),
            what: format!("name VLAN {v} {}", vlan_name(v)),
        });
    }
    for v in &grows_e {
        let new = &egress[v];
        let old = old_u(v);
        if !old.is_subset(new) {
            set_untagged(&mut out, *v, old.intersection(new).copied().collect());
        }
        out.push(egress_vb(*v, new));
    }
    for v in &grows_u {
        set_untagged(&mut out, *v, untagged[v].clone());
    }
    for (num, v) in &pvids {
        out.push(SetVarbind {
            oid: oid_of(PVID, &[*num]),
            value: Value::Gauge32(u32::from(*v)),
            what: format!(
                "PVID of {} = {v}",
                tables.names(&[*num].into_iter().collect())
            ),
        });
    }
    // Break: untagged members that leave (before their egress goes), VLANs that only lose
    // ports, VLANs left on no port.
    for (v, u) in &untagged {
        if *u != old_u(v) && !grows_u.contains(v) {
            set_untagged(&mut out, *v, u.clone());
        }
    }
    let mut destroy = Vec::new();
    for (v, e) in &egress {
        if *e == old_e(v) || grows_e.contains(v) {
            continue;
        }
        let active = tables.vlans.get(v).is_some_and(|r| r.active);
        if e.is_empty() && *v != 1 && active {
            destroy.push(*v);
        } else {
            out.push(egress_vb(*v, e));
        }
    }
    // A VLAN left on no port leaves the switch's database, as with the CLI drivers.
    for v in destroy {
        out.push(SetVarbind {
            oid: oid_of(STATIC_ENTRY, &[COL_ROW_STATUS, u32::from(v)]),
            value: Value::Integer(DESTROY),
            what: format!("destroy VLAN {v} (on no port any more)"),
        });
    }
    Ok(out)
}

/// What an error-status means for a Q-BRIDGE write, for the operator.
pub fn status_hint(status: ErrorStatus) -> &'static str {
    match status {
        ErrorStatus::WrongValue => {
            "the switch does not accept this value (a port in the PortList it does not have, or a VLAN id it does not support?)"
        }
        ErrorStatus::InconsistentValue => {
            "the value conflicts with the switch's current state (the row exists already, or the port allows one untagged VLAN)"
        }
        ErrorStatus::NoAccess => {
            "the credentials may not write this object (a read-only community, or a view without it)"
        }
        ErrorStatus::NotWritable => {
            "the agent cannot write this object (no writable Q-BRIDGE-MIB; some switches need a vendor MIB)"
        }
        ErrorStatus::AuthorizationError => {
            "the community or user is not authorized to write (read-only community, or VACM)"
        }
        ErrorStatus::NoCreation => "the agent cannot create this row or instance",
        ErrorStatus::InconsistentName => "the row does not exist (created meanwhile or destroyed?)",
        ErrorStatus::WrongType | ErrorStatus::WrongLength | ErrorStatus::WrongEncoding => {
            "the agent expects another type or length for this object"
        }
        ErrorStatus::ResourceUnavailable => "the switch is out of resources (VLAN table full?)",
        ErrorStatus::CommitFailed | ErrorStatus::UndoFailed => {
            "the switch failed to apply it; part of the PDU may be applied (the next read-back shows)"
        }
        ErrorStatus::TooBig => "the PDU is too big: lower [switch] snmp_max_varbinds",
        ErrorStatus::NoSuchName | ErrorStatus::BadValue | ErrorStatus::ReadOnly => {
            "the agent refused the object (SNMPv1-style error)"
        }
        _ => "see the switch's log",
    }
}

/// The MIB name of an OID nhn uses, with its index (`dot1qVlanStaticEgressPorts.300`).
pub fn object_name(oid: &Oid) -> String {
    let arcs = oid.arcs();
    let named: [(&[u32], &str); 4] = [
        (BASE_PORT_IFINDEX, "dot1dBasePortIfIndex"),
        (IF_NAME, "ifName"),
        (PVID, "dot1qPvid"),
        (STATIC_ENTRY, ""),
    ];
    for (prefix, name) in named {
        let Some(rest) = arcs.strip_prefix(prefix) else {
            continue;
        };
        let (name, rest) = if prefix == STATIC_ENTRY {
            let col = match rest.first() {
                Some(2) => "dot1qVlanStaticName",
                Some(3) => "dot1qVlanStaticEgressPorts",
                Some(4) => "dot1qVlanForbiddenEgressPorts",
                Some(5) => "dot1qVlanStaticUntaggedPorts",
                Some(6) => "dot1qVlanStaticRowStatus",
                _ => break,
            };
            (col, &rest[1..])
        } else {
            (name, rest)
        };
        let idx: Vec<String> = rest.iter().map(u32::to_string).collect();
        return format!("{name}.{}", idx.join("."));
    }
    oid.to_string()
}

/// A connection (UDP "session") to one switch's agent.
pub struct SnmpDriver {
    target: SnmpTarget,
    client: Client<UdpHandle>,
    /// This session's last walk: apply computes PortLists from it.
    last: Option<Tables>,
}

impl SnmpDriver {
    /// Sets up the client; nothing is sent until the first request.
    pub async fn connect(target: &SnmpTarget) -> Result<SnmpDriver, SnmpError> {
        let auth = match &target.auth {
            SnmpAuth::V2c { community } => Auth::v2c(community.as_str()),
            SnmpAuth::V3 {
                user,
                auth_protocol,
                auth_password,
                priv_protocol,
                priv_password,
            } => Auth::Usm(
                UsmConfig::new(user.clone().into_bytes())
                    .auth_priv(*auth_protocol, auth_password, *priv_protocol, priv_password)
                    .map_err(|e| SnmpError::Config(format!("user {user:?}: {e}")))?,
            ),
        };
        let retry = Retry::fixed(target.retries, Duration::ZERO)
            .map_err(|e| SnmpError::Config(format!("retries: {e}")))?;
        let client = Client::builder(target.address.as_str(), auth)
            .request_timeout(target.timeout)
            .retry(retry)
            .max_oids_per_request(target.max_varbinds.max(1))
            .connect()
            .await
            .map_err(|e| lib_error(target, &e, false, None))?;
        Ok(SnmpDriver {
            target: target.clone(),
            client,
            last: None,
        })
    }

    /// Datagrams the agent sent that matched one of our requests so far.
    fn answers(&self) -> u64 {
        self.client.stats().correlated_datagrams
    }

    fn error(&self, e: &async_snmp::Error, answers: u64, pdu: Option<&[SetVarbind]>) -> SnmpError {
        lib_error(&self.target, e, self.answers() > answers, pdu)
    }

    async fn walk(&self, prefix: &[u32]) -> Result<Vec<VarBind>, SnmpError> {
        let answers = self.answers();
        let stream = self
            .client
            .walk(Oid::from_slice(prefix))
            .map_err(|e| self.error(&e, answers, None))?;
        stream
            .collect()
            .await
            .map_err(|e| self.error(&e, answers, None))
    }

    /// Walks the four tables.
    pub async fn tables(&self) -> Result<Tables, SnmpError> {
        let mut ifindex = BTreeMap::new();
        for vb in self.walk(BASE_PORT_IFINDEX).await? {
            let port = index(&vb, BASE_PORT_IFINDEX)?;
            let i = vb.value.as_i32().ok_or_else(|| unexpected(&vb))?;
            ifindex.insert(port, i as u32);
        }
        let mut names = BTreeMap::new();
        for vb in self.walk(IF_NAME).await? {
            let i = index(&vb, IF_NAME)?;
            let name = vb.value.as_bytes().ok_or_else(|| unexpected(&vb))?;
            names.insert(i, String::from_utf8_lossy(name).into_owned());
        }
        let mut t = Tables::default();
        for (port, i) in ifindex {
            if let Some(name) = names.get(&i) {
                t.ports.insert(port, name.clone());
            }
        }
        let mut octets = t
            .ports
            .keys()
            .last()
            .map_or(1, |p| (*p as usize).div_ceil(8));
        for vb in self.walk(STATIC_ENTRY).await? {
            let rest = vb.oid.arcs().strip_prefix(STATIC_ENTRY).unwrap_or_default();
            let &[col, vid] = rest else {
                return Err(unexpected(&vb));
            };
            let v = Vlan::try_from(vid)
                .ok()
                .filter(|v| (1..=MAX_VLAN).contains(v))
                .ok_or_else(|| unexpected(&vb))?;
            let row = t.vlans.entry(v).or_default();
            match col {
                COL_EGRESS | COL_UNTAGGED => {
                    let bytes = vb.value.as_bytes().ok_or_else(|| unexpected(&vb))?;
                    octets = octets.max(bytes.len());
                    let ports = portlist_decode(bytes);
                    if col == COL_EGRESS {
                        row.egress = ports;
                    } else {
                        row.untagged = ports;
                    }
                }
                COL_ROW_STATUS => row.active = vb.value.as_i32() == Some(ACTIVE),
                _ => {}
            }
        }
        t.octets = octets;
        for vb in self.walk(PVID).await? {
            let port = index(&vb, PVID)?;
            let v = vb.value.as_u32().ok_or_else(|| unexpected(&vb))?;
            t.pvid.insert(port, v);
        }
        Ok(t)
    }

    /// Reads the switch back into the planner's structure.
    pub async fn read_back(&mut self) -> Result<SwitchState, SnmpError> {
        let t = self.tables().await?;
        let st = t.state();
        self.last = Some(t);
        Ok(st)
    }

    /// Applies `changes` (PortLists from this session's read-back, taken now if there is
    /// none), then walks the switch again and returns what it reports.
    pub async fn apply(&mut self, changes: &[PortChange]) -> Result<SwitchState, SnmpError> {
        let tables = match self.last.take() {
            Some(t) => t,
            None => self.tables().await?,
        };
        let varbinds = batch_varbinds(&tables, changes)?;
        for pdu in varbinds.chunks(self.target.max_varbinds.max(1)) {
            let vbs: Vec<(Oid, Value)> = pdu
                .iter()
                .map(|v| (v.oid.clone(), v.value.clone()))
                .collect();
            let answers = self.answers();
            self.client
                .set_many(&vbs)
                .await
                .map_err(|e| self.error(&e, answers, Some(pdu)))?;
        }
        self.read_back().await
    }
}

fn index(vb: &VarBind, prefix: &[u32]) -> Result<u32, SnmpError> {
    match vb.oid.arcs().strip_prefix(prefix) {
        Some(&[i]) => Ok(i),
        _ => Err(unexpected(vb)),
    }
}

fn unexpected(vb: &VarBind) -> SnmpError {
    SnmpError::Protocol(format!("{} = {:?}", object_name(&vb.oid), vb.value))
}

/// Maps an async-snmp error to a per-switch error; `answered`: the agent sent datagrams that
/// matched the request (yet it timed out: none authenticated); `pdu`: the SET being sent.
fn lib_error(
    t: &SnmpTarget,
    e: &async_snmp::Error,
    answered: bool,
    pdu: Option<&[SetVarbind]>,
) -> SnmpError {
    use async_snmp::Error as E;
    use async_snmp::v3::ReportStatus as R;
    let user = match &t.auth {
        SnmpAuth::V3 { user, .. } => user.clone(),
        SnmpAuth::V2c { .. } => String::new(),
    };
    let auth = |detail: &str| SnmpError::Auth {
        address: t.address.clone(),
        user: user.clone(),
        detail: detail.to_owned(),
    };
    match e.exchange_source() {
        // An agent reports a wrong digest or an unknown user without authentication (it
        // cannot do otherwise), so async-snmp rightly ignores those reports and times out.
        E::Timeout { .. } if answered && matches!(t.auth, SnmpAuth::V3 { .. }) => auth(
            "the agent answers, but not one answer authenticates: wrong user or authentication password (its usmStatsWrongDigests/usmStatsUnknownUserNames reports are unauthenticated, so they are not trusted)",
        ),
        E::Timeout { retries, .. } => SnmpError::Timeout {
            address: t.address.clone(),
            tries: retries + 1,
            timeout_ms: t.timeout.as_millis() as u64,
            hint: match t.auth {
                SnmpAuth::V2c { .. } => {
                    ", or the community is wrong (agents drop requests with an unknown community without answering)"
                }
                SnmpAuth::V3 { .. } => "",
            },
        },
        E::Auth { .. } => auth("the agent's answer does not authenticate (wrong auth password?)"),
        E::Report { status, .. } => match status.as_ref() {
            R::WrongDigest { .. } => auth("wrong authentication password (usmStatsWrongDigests)"),
            R::UnknownUserName { .. } => auth("unknown user (usmStatsUnknownUserNames)"),
            R::DecryptionError { .. } => auth("wrong privacy password (usmStatsDecryptionErrors)"),
            R::UnsupportedSecurityLevel { .. } => {
                auth("the user does not support authPriv (usmStatsUnsupportedSecLevels)")
            }
            other => auth(&other.to_string()),
        },
        E::Snmp {
            status, index, oid, ..
        } => {
            let vb = pdu.and_then(|p| p.get((*index as usize).checked_sub(1)?));
            let (what, object) = match (vb, oid) {
                (Some(vb), _) => (vb.what.clone(), object_name(&vb.oid)),
                (None, Some(oid)) => ("a request".to_owned(), object_name(oid)),
                (None, None) => ("a request".to_owned(), "no object named".to_owned()),
            };
            SnmpError::Refused {
                what,
                object,
                status: status_name(*status),
                hint: status_hint(*status),
            }
        }
        other => SnmpError::Other {
            address: t.address.clone(),
            message: other.to_string(),
        },
    }
}

/// The RFC 3416 name of an error-status (`wrongValue`).
fn status_name(s: ErrorStatus) -> String {
    let name = match s {
        ErrorStatus::TooBig => "tooBig",
        ErrorStatus::NoSuchName => "noSuchName",
        ErrorStatus::BadValue => "badValue",
        ErrorStatus::ReadOnly => "readOnly",
        ErrorStatus::GenErr => "genErr",
        ErrorStatus::NoAccess => "noAccess",
        ErrorStatus::WrongType => "wrongType",
        ErrorStatus::WrongLength => "wrongLength",
        ErrorStatus::WrongEncoding => "wrongEncoding",
        ErrorStatus::WrongValue => "wrongValue",
        ErrorStatus::NoCreation => "noCreation",
        ErrorStatus::InconsistentValue => "inconsistentValue",
        ErrorStatus::ResourceUnavailable => "resourceUnavailable",
        ErrorStatus::CommitFailed => "commitFailed",
        ErrorStatus::UndoFailed => "undoFailed",
        ErrorStatus::AuthorizationError => "authorizationError",
        ErrorStatus::NotWritable => "notWritable",
        ErrorStatus::InconsistentName => "inconsistentName",
        other => return format!("error-status {}", other.as_i32()),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::switch::plan::{Action, Mode};

    fn tables() -> Tables {
        let set = |p: &[u32]| p.iter().copied().collect::<BTreeSet<u32>>();
        Tables {
            ports: [(1, "swp1"), (2, "swp2"), (3, "swp3"), (10, "swp10")]
                .into_iter()
                .map(|(n, s)| (n, s.to_owned()))
                .collect(),
            vlans: [
                (
                    1,
                    VlanRow {
                        egress: set(&[10]),
                        untagged: set(&[10]),
                        active: true,
                    },
                ),
                (
                    100,
                    VlanRow {
                        egress: set(&[1, 2, 3]),
                        untagged: set(&[]),
                        active: true,
                    },
                ),
                (
                    200,
                    VlanRow {
                        egress: set(&[1, 3]),
                        untagged: set(&[3]),
                        active: true,
                    },
                ),
            ]
            .into_iter()
            .collect(),
            pvid: [(1, 100), (2, 0), (3, 200)].into_iter().collect(),
            octets: 2,
        }
    }

    fn change(port: &str, action: Action, vlan: Vlan) -> PortChange {
        PortChange {
            port: port.into(),
            action,
            vlan,
        }
    }

    #[test]
    fn portlists_are_msb_first_and_round_trip() {
        let ports: BTreeSet<u32> = [1, 3, 8, 9, 16].into_iter().collect();
        let bytes = portlist_encode(&ports, 2);
        assert_eq!(bytes, [0b1010_0001, 0b1000_0001]);
        assert_eq!(portlist_decode(&bytes), ports);
        // Padded to the switch's length, grown if a port needs it.
        assert_eq!(
            portlist_encode(&[1].into_iter().collect(), 4),
            [0x80, 0, 0, 0]
        );
        assert_eq!(
            portlist_encode(&[17].into_iter().collect(), 1),
            [0, 0, 0x80]
        );
        assert_eq!(portlist_decode(&[0xE0]), [1, 2, 3].into_iter().collect());
    }

    #[test]
    fn tables_become_the_planners_structure() {
        let st = tables().state();
        let show: Vec<String> = st.ports.iter().map(|(p, s)| format!("{p}={s}")).collect();
        assert_eq!(
            show,
            [
                // A PVID alone (100 is a tagged member) is not a native VLAN.
                "swp1=100,200",
                "swp10=access 1",
                "swp2=100",
                // Native: the VLAN the port is an untagged member of.
                "swp3=native 200 + 100",
            ]
        );
        assert_eq!(st.ports["swp10"].mode, Mode::Access);
        assert_eq!(st.vlans.to_string(), "1,100,200");
    }

    fn what(vbs: &[SetVarbind]) -> Vec<&str> {
        vbs.iter().map(|v| v.what.as_str()).collect()
    }

    #[test]
    fn a_batch_sets_one_bitmap_per_vlan_from_the_readback_and_orders_make_before_break() {
        let t = tables();
        let vbs = batch_varbinds(
            &t,
            &[
                change("swp2", Action::Add, 200),
                change("swp3", Action::Add, 300),
                change("swp1", Action::Add, 300),
                change("swp2", Action::Remove, 100),
                change("swp3", Action::ClearNative, 200),
                change("swp1", Action::Remove, 200),
            ],
        )
        .unwrap();
        let text: Vec<String> = vbs
            .iter()
            .map(|v| format!("{} {:?}", object_name(&v.oid), v.value))
            .collect();
        assert_eq!(
            what(&vbs),
            [
                "create VLAN 300",
                "name VLAN 300 VLAN0300",
                // 200 gains swp2 and loses swp1 and swp3 (untagged) in one egress varbind.
                "VLAN 200 untagged ports = no ports",
                "VLAN 200 egress ports = swp2",
                "VLAN 300 egress ports = swp1,swp3",
                // 100 only loses swp2; swp1 and swp3 keep it: other ports are not disturbed.
                "VLAN 100 egress ports = swp1,swp3",
            ],
            "{text:?}"
        );
        assert_eq!(
            vbs[4].value,
            Value::OctetString(vec![0b1010_0000, 0].into())
        );
        assert_eq!(object_name(&vbs[0].oid), "dot1qVlanStaticRowStatus.300");
        assert_eq!(vbs[0].value, Value::Integer(4));
    }

    #[test]
    fn a_native_vlan_is_untagged_and_pvid_before_the_old_one_leaves() {
        let t = tables();
        // swp2 (tagged 100) gets the service VLAN 20 untagged: a new VLAN.
        let vbs = batch_varbinds(&t, &[change("swp2", Action::Native, 20)]).unwrap();
        assert_eq!(
            what(&vbs),
            [
                "create VLAN 20",
                "name VLAN 20 VLAN0020",
                "VLAN 20 egress ports = swp2",
                "VLAN 20 untagged ports = swp2",
                "PVID of swp2 = 20",
            ]
        );
        assert_eq!(object_name(&vbs[4].oid), "dot1qPvid.2");
        assert_eq!(vbs[4].value, Value::Gauge32(20));
        assert_eq!(
            vbs[3].value,
            Value::OctetString(vec![0b0100_0000, 0].into())
        );
        // swp3 (native 200, tagged 100): 100 becomes native, 200 leaves after.
        let vbs = batch_varbinds(&t, &[change("swp3", Action::Native, 100)]).unwrap();
        assert_eq!(
            what(&vbs),
            [
                "VLAN 100 untagged ports = swp3",
                "PVID of swp3 = 100",
                "VLAN 200 untagged ports = no ports",
                "VLAN 200 egress ports = swp1",
            ]
        );
    }

    #[test]
    fn an_access_port_is_untagged_in_one_vlan_and_leaves_the_others_last() {
        let t = tables();
        let vbs = batch_varbinds(&t, &[change("swp1", Action::Access, 300)]).unwrap();
        assert_eq!(
            what(&vbs),
            [
                "create VLAN 300",
                "name VLAN 300 VLAN0300",
                "VLAN 300 egress ports = swp1",
                "VLAN 300 untagged ports = swp1",
                "PVID of swp1 = 300",
                "VLAN 100 egress ports = swp2,swp3",
                "VLAN 200 egress ports = swp3",
            ]
        );
        // An access port already in the VLAN sends nothing.
        assert!(
            batch_varbinds(&t, &[change("swp10", Action::Access, 1)])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_vlan_left_on_no_port_is_destroyed_and_untagged_members_leave_first() {
        let t = tables();
        let vbs = batch_varbinds(
            &t,
            &[
                change("swp1", Action::Remove, 100),
                change("swp2", Action::Remove, 100),
                change("swp3", Action::Remove, 100),
                change("swp3", Action::ClearNative, 200),
            ],
        )
        .unwrap();
        assert_eq!(
            what(&vbs),
            [
                "VLAN 200 untagged ports = no ports",
                "VLAN 200 egress ports = swp1",
                "destroy VLAN 100 (on no port any more)",
            ]
        );
        assert_eq!(vbs[2].value, Value::Integer(6));
        // VLAN 1 is never destroyed: swp10 (access 1) cleared leaves it on no port.
        let vbs = batch_varbinds(&t, &[change("swp10", Action::ClearNative, 1)]).unwrap();
        assert_eq!(
            what(&vbs),
            [
                "VLAN 1 untagged ports = no ports",
                "VLAN 1 egress ports = no ports"
            ]
        );
    }

    #[test]
    fn changes_already_true_send_nothing_and_an_unknown_port_sends_nothing() {
        let t = tables();
        let none = batch_varbinds(
            &t,
            &[
                change("swp1", Action::Add, 100),
                change("swp2", Action::Remove, 200),
            ],
        )
        .unwrap();
        assert!(none.is_empty(), "{none:?}");
        let e = batch_varbinds(
            &t,
            &[
                change("swp1", Action::Add, 300),
                change("swp9", Action::Add, 300),
            ],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "port swp9 is not a bridge port of the switch (it has: swp1 swp2 swp3 swp10); nothing was sent"
        );
    }

    #[test]
    fn error_statuses_name_the_object_and_say_what_to_check() {
        let oid = oid_of(STATIC_ENTRY, &[COL_EGRESS, 300]);
        assert_eq!(object_name(&oid), "dot1qVlanStaticEgressPorts.300");
        assert_eq!(object_name(&oid_of(PVID, &[3])), "dot1qPvid.3");
        assert_eq!(object_name(&Oid::from_slice(&[1, 3, 6, 1])), "1.3.6.1");
        assert_eq!(status_name(ErrorStatus::WrongValue), "wrongValue");
        assert!(status_hint(ErrorStatus::NoAccess).contains("read-only community"));
        assert!(status_hint(ErrorStatus::NotWritable).contains("cannot write"));
        assert!(status_hint(ErrorStatus::AuthorizationError).contains("not authorized"));
        assert!(status_hint(ErrorStatus::InconsistentValue).contains("conflicts"));
    }

    #[test]
    fn secrets_are_redacted() {
        let auth = SnmpAuth::V3 {
            user: "nhnadmin".into(),
            auth_protocol: AuthProtocol::Sha1,
            auth_password: "secret-auth-1".into(),
            priv_protocol: PrivProtocol::Aes128,
            priv_password: "secret-priv-1".into(),
        };
        let text = format!("{auth:?} {}", auth.describe());
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("nhnadmin"), "{text}");
        let v2 = SnmpAuth::V2c {
            community: "s3cret".into(),
        };
        assert!(!format!("{v2:?} {}", v2.describe()).contains("s3cret"));
    }
}
