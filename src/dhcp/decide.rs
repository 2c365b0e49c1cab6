//! The DHCP decision, as a pure function: given what the inventory says ([`Snapshot`]), the
//! dynamic leases as they stand ([`Leases`]) and one request, what do we answer, to whom, and
//! what lease change does the answer imply? No sockets, no clock, no database: the socket layer
//! (`service.rs`) calls [`decide`], applies the [`LeaseChange`], persists it and sends.
//!
//! Behaviour follows RFC 2131 (states, reply addressing), RFC 2132 (options), RFC 3046 (relay
//! agent information is echoed), RFC 4578 (client architecture) and RFC 4173 (iSCSI root-path).
//! The root-path goes to every client **except iPXE**: iPXE would SAN-boot a root-path before
//! running its script, and a bad target stops the boot before our initrd runs. iPXE gets
//! `no-pxedhcp` instead (its option 175.176): nhn is the only boot server, so iPXE need not wait
//! 2 s after the first offer for a ProxyDHCP server that does not exist.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use dhcproto::v4::{
    self, DhcpOption, Message, MessageType, Opcode, OptionCode, UnknownOption,
    relay::RelayAgentInformation, relay::RelayInfo,
};

use crate::net::{Ipv4Net, Mac};

/// How long an offered address stays reserved for the client it was offered to.
pub const OFFER_HOLD_SECS: i64 = 60;
/// How long a declined address stays out of the pool (RFC 2131 §3.1.5: it is in use elsewhere).
pub const DECLINE_HOLD_SECS: i64 = 600;
/// DHCP option 203: the iSCSI initiator name (the convention iSCSI boot firmware and initrds use).
pub const OPTION_INITIATOR: u8 = 203;
/// iPXE's encapsulated options (175) with `no-pxedhcp` (176) set: iPXE requests the offered
/// address at once instead of waiting `DHCP_DISC_PROXY_TIMEOUT_SEC` (2 s, ~3 s with its
/// retransmit timer) for ProxyDHCP offers.
pub const OPTION_IPXE_ENCAP: u8 = 175;
pub const IPXE_NO_PXEDHCP: [u8; 3] = [176, 1, 1];

/// A subnet the server answers for (from the configuration).
#[derive(Debug, Clone, PartialEq)]
pub struct Subnet {
    pub net: Ipv4Net,
    /// Dynamic pool for unknown MACs, inclusive.
    pub pool: Option<(Ipv4Addr, Ipv4Addr)>,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub lease_secs: u32,
}

/// iSCSI boot parameters of a machine or VM whose boot volume is known.
#[derive(Debug, Clone, PartialEq)]
pub struct IscsiBoot {
    /// RFC 4173: `iscsi:<server>:<protocol>:<port>:<lun>:<target>`.
    pub root_path: String,
    pub initiator: String,
}

/// A NIC the inventory knows, with its reserved address.
#[derive(Debug, Clone, PartialEq)]
pub struct Static {
    pub ip: Ipv4Addr,
    pub net: Ipv4Net,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub hostname: String,
    pub boot: Option<IscsiBoot>,
}

/// Where PXE clients get their boot programs.
#[derive(Debug, Clone, PartialEq)]
pub struct BootFiles {
    pub bios: String,
    pub efi: String,
    /// `Some(base)`: iPXE gets `<base>/boot/<mac>.ipxe`. `None`: built from the server address and
    /// `http_port`.
    pub http_base: Option<String>,
    pub http_port: u16,
}

/// Everything the inventory and configuration say, as the DHCP server needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub statics: HashMap<Mac, Static>,
    /// Every MAC the inventory has a NIC for; others are "discovered" when they get a lease.
    pub known: HashSet<Mac>,
    pub subnets: Vec<Subnet>,
    pub boot: BootFiles,
    pub static_lease_secs: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    Offered,
    Bound,
    Released,
    Declined,
}

/// A dynamic lease: one per address.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub mac: Mac,
    pub ip: Ipv4Addr,
    pub state: LeaseState,
    pub expires: i64,
    pub hostname: String,
}

/// The dynamic leases, indexed both ways. Only [`Leases::apply`] changes it.
#[derive(Debug, Default, Clone)]
pub struct Leases {
    by_ip: HashMap<Ipv4Addr, Lease>,
    by_mac: HashMap<Mac, Ipv4Addr>,
    /// Where the next free-address search starts, per pool start.
    cursor: HashMap<Ipv4Addr, u32>,
}

impl Leases {
    pub fn get_ip(&self, ip: Ipv4Addr) -> Option<&Lease> {
        self.by_ip.get(&ip)
    }

    /// The lease a MAC holds or last held (not a declined one).
    pub fn of_mac(&self, mac: &Mac) -> Option<&Lease> {
        self.by_mac.get(mac).and_then(|ip| self.by_ip.get(ip))
    }

    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Lease> {
        self.by_ip.values()
    }

    /// Loads a lease from the database at start-up.
    pub fn insert(&mut self, lease: Lease) {
        if lease.state != LeaseState::Declined {
            self.by_mac.insert(lease.mac, lease.ip);
        }
        self.by_ip.insert(lease.ip, lease);
    }

    pub fn apply(&mut self, change: &LeaseChange) {
        match change {
            LeaseChange::Offer {
                mac,
                ip,
                until,
                hostname,
            }
            | LeaseChange::Bind {
                mac,
                ip,
                until,
                hostname,
                ..
            } => {
                let state = if matches!(change, LeaseChange::Offer { .. }) {
                    LeaseState::Offered
                } else {
                    LeaseState::Bound
                };
                // The MAC moves: its old address (if another) becomes free.
                if let Some(old) = self.by_mac.insert(*mac, *ip)
                    && old != *ip
                    && let Some(l) = self.by_ip.get_mut(&old)
                {
                    l.state = LeaseState::Released;
                }
                if let Some(prev) = self.by_ip.get(ip)
                    && prev.mac != *mac
                    && self.by_mac.get(&prev.mac) == Some(ip)
                {
                    self.by_mac.remove(&prev.mac);
                }
                self.by_ip.insert(
                    *ip,
                    Lease {
                        mac: *mac,
                        ip: *ip,
                        state,
                        expires: *until,
                        hostname: hostname.clone(),
                    },
                );
                let next = u32::from(*ip).wrapping_add(1);
                for (start, cur) in self.cursor.iter_mut() {
                    if u32::from(*start) <= u32::from(*ip) {
                        *cur = (*cur).max(next);
                    }
                }
            }
            LeaseChange::Release { ip, .. } => {
                if let Some(l) = self.by_ip.get_mut(ip) {
                    l.state = LeaseState::Released;
                }
            }
            LeaseChange::Decline { mac, ip, until } => {
                if self.by_mac.get(mac) == Some(ip) {
                    self.by_mac.remove(mac);
                }
                self.by_ip.insert(
                    *ip,
                    Lease {
                        mac: *mac,
                        ip: *ip,
                        state: LeaseState::Declined,
                        expires: *until,
                        hostname: String::new(),
                    },
                );
            }
        }
    }

    /// Is `ip` free for `mac` at `now`?
    fn free_for(&self, ip: Ipv4Addr, mac: &Mac, now: i64) -> bool {
        match self.by_ip.get(&ip) {
            None => true,
            Some(l) if l.mac == *mac => l.state != LeaseState::Declined || l.expires <= now,
            Some(l) => match l.state {
                LeaseState::Released => true,
                LeaseState::Offered | LeaseState::Bound | LeaseState::Declined => l.expires <= now,
            },
        }
    }

    /// A free pool address for `mac`: never-used addresses first (from the cursor on), then
    /// released or expired ones. `None` when the pool is exhausted.
    fn allocate(&self, pool: (Ipv4Addr, Ipv4Addr), mac: &Mac, now: i64) -> Option<Ipv4Addr> {
        let (first, last) = (u32::from(pool.0), u32::from(pool.1));
        if first > last {
            return None;
        }
        let size = u64::from(last - first) + 1;
        let start = self
            .cursor
            .get(&pool.0)
            .copied()
            .filter(|c| (first..=last).contains(c))
            .unwrap_or(first);
        let nth = |i: u64| Ipv4Addr::from(first + ((u64::from(start - first) + i) % size) as u32);
        (0..size)
            .map(nth)
            .find(|ip| !self.by_ip.contains_key(ip))
            .or_else(|| (0..size).map(nth).find(|ip| self.free_for(*ip, mac, now)))
    }

    /// Registers a pool so that allocation cursors start at its beginning.
    pub fn add_pool(&mut self, first: Ipv4Addr) {
        self.cursor.entry(first).or_insert(u32::from(first));
    }
}

/// A lease change implied by an answer. `Bind`, `Release` and `Decline` are persisted before
/// the answer is sent (an ACKed lease survives a crash); `Offer` lives in memory only.
#[derive(Debug, Clone, PartialEq)]
pub enum LeaseChange {
    Offer {
        mac: Mac,
        ip: Ipv4Addr,
        until: i64,
        hostname: String,
    },
    Bind {
        mac: Mac,
        ip: Ipv4Addr,
        until: i64,
        hostname: String,
        client_id: Option<Vec<u8>>,
        giaddr: Option<Ipv4Addr>,
        circuit_id: Option<Vec<u8>>,
        remote_id: Option<Vec<u8>>,
    },
    Release {
        mac: Mac,
        ip: Ipv4Addr,
    },
    Decline {
        mac: Mac,
        ip: Ipv4Addr,
        until: i64,
    },
}

impl LeaseChange {
    /// Must this change be durable before the answer goes out?
    pub fn is_durable(&self) -> bool {
        !matches!(self, LeaseChange::Offer { .. })
    }
}

/// Where an answer goes (RFC 2131 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// To the relay agent, port 67.
    Relay(Ipv4Addr),
    /// To the client's configured address, port 68.
    Unicast(Ipv4Addr),
    /// To a client without an address: unicast to `ip` at `mac` (needs an ARP entry), port 68.
    UnicastNoArp(Ipv4Addr, Mac),
    /// 255.255.255.255:68 on the receiving interface.
    Broadcast,
}

/// The receiving side of a request: which of our addresses it reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receiver {
    /// Our address on the receiving interface (the server identifier).
    pub server: Ipv4Addr,
}

/// The outcome of one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Reply {
        msg: Box<Message>,
        dest: Dest,
        change: Option<LeaseChange>,
        /// The MAC is unknown to the inventory (it should appear as "discovered").
        discovered: bool,
    },
    /// A change without an answer (RELEASE, DECLINE).
    Silent {
        change: LeaseChange,
        discovered: bool,
    },
    /// Nothing to do; the reason is counted.
    Drop(&'static str),
}

/// Which boot program a client needs, from options 60, 77 and 93.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// iPXE itself (user-class "iPXE"): gets the URL of its script.
    Ipxe,
    /// PXE firmware, legacy BIOS.
    PxeBios,
    /// PXE firmware, UEFI x64 (arch 7 or 9).
    PxeEfi,
    /// Anything else (an OS's DHCP client, our initrd's udhcpc).
    Plain,
}

pub fn classify(msg: &Message) -> ClientKind {
    let opts = msg.opts();
    if let Some(DhcpOption::UserClass(uc)) = opts.get(OptionCode::UserClass) {
        // iPXE sends the bare string; RFC 3004 clients send length-prefixed instances.
        if uc.as_slice() == b"iPXE" || uc.windows(4).any(|w| w == b"iPXE") {
            return ClientKind::Ipxe;
        }
    }
    let pxe = matches!(opts.get(OptionCode::ClassIdentifier), Some(DhcpOption::ClassIdentifier(v)) if v.starts_with(b"PXEClient"));
    match opts.get(OptionCode::ClientSystemArchitecture) {
        Some(DhcpOption::ClientSystemArchitecture(a)) if a.0 == 7 || a.0 == 9 => ClientKind::PxeEfi,
        Some(DhcpOption::ClientSystemArchitecture(_)) => ClientKind::PxeBios,
        _ if pxe => ClientKind::PxeBios,
        _ => ClientKind::Plain,
    }
}

/// The client's MAC, if the hardware address is Ethernet.
pub fn client_mac(msg: &Message) -> Option<Mac> {
    // Check hlen before chaddr(): dhcproto slices chaddr by hlen and panics past 16.
    if msg.hlen() != 6 {
        return None;
    }
    let ch = msg.chaddr();
    Some(Mac([ch[0], ch[1], ch[2], ch[3], ch[4], ch[5]]))
}

fn requested_ip(msg: &Message) -> Option<Ipv4Addr> {
    match msg.opts().get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => None,
    }
}

fn server_id(msg: &Message) -> Option<Ipv4Addr> {
    match msg.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    }
}

fn hostname(msg: &Message) -> String {
    match msg.opts().get(OptionCode::Hostname) {
        Some(DhcpOption::Hostname(h)) => h
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(63)
            .collect(),
        _ => String::new(),
    }
}

fn relay_info(msg: &Message) -> Option<&RelayAgentInformation> {
    match msg.opts().get(OptionCode::RelayAgentInformation) {
        Some(DhcpOption::RelayAgentInformation(r)) => Some(r),
        _ => None,
    }
}

fn relay_bytes(r: Option<&RelayAgentInformation>, circuit: bool) -> Option<Vec<u8>> {
    let r = r?;
    let code = if circuit {
        v4::relay::RelayCode::AgentCircuitId
    } else {
        v4::relay::RelayCode::AgentRemoteId
    };
    match r.get(code) {
        Some(RelayInfo::AgentCircuitId(v)) | Some(RelayInfo::AgentRemoteId(v)) => Some(v.clone()),
        _ => None,
    }
}

/// The subnet a request belongs to: the relay's (giaddr), else the receiving interface's.
fn subnet_of<'a>(snap: &'a Snapshot, msg: &Message, rx: &Receiver) -> Option<&'a Subnet> {
    let anchor = if msg.giaddr().is_unspecified() {
        rx.server
    } else {
        msg.giaddr()
    };
    snap.subnets.iter().find(|s| s.net.contains(anchor))
}

/// What we tell the client about its address: static reservation or dynamic lease.
struct Binding<'a> {
    ip: Ipv4Addr,
    net: Ipv4Net,
    router: Option<Ipv4Addr>,
    dns: &'a [Ipv4Addr],
    domain: Option<&'a str>,
    hostname: &'a str,
    lease_secs: u32,
    boot: Option<&'a IscsiBoot>,
}

/// Decides the answer to one request. `now` is Unix seconds.
pub fn decide(
    snap: &Snapshot,
    leases: &Leases,
    msg: &Message,
    rx: &Receiver,
    now: i64,
) -> Decision {
    if msg.opcode() != Opcode::BootRequest {
        return Decision::Drop("not_a_request");
    }
    let Some(mac) = client_mac(msg) else {
        return Decision::Drop("not_ethernet");
    };
    let Some(kind) = msg.opts().msg_type() else {
        return Decision::Drop("no_message_type");
    };
    let stat = snap.statics.get(&mac);
    let subnet = subnet_of(snap, msg, rx);
    let discovered = !snap.known.contains(&mac);
    match kind {
        MessageType::Discover => {
            if let Some(s) = stat {
                return reply(
                    snap,
                    msg,
                    rx,
                    MessageType::Offer,
                    &static_binding(snap, s),
                    None,
                    false,
                );
            }
            let Some(subnet) = subnet else {
                return Decision::Drop("no_subnet");
            };
            let Some(pool) = subnet.pool else {
                return Decision::Drop("unknown_mac_no_pool");
            };
            // Same address again if the client had one (and it is still ours to give).
            let previous = leases
                .of_mac(&mac)
                .map(|l| l.ip)
                .filter(|ip| in_pool(pool, *ip) && leases.free_for(*ip, &mac, now));
            let wanted = requested_ip(msg)
                .filter(|ip| in_pool(pool, *ip) && leases.free_for(*ip, &mac, now));
            let Some(ip) = previous
                .or(wanted)
                .or_else(|| leases.allocate(pool, &mac, now))
            else {
                return Decision::Drop("pool_exhausted");
            };
            let host = hostname(msg);
            let change = LeaseChange::Offer {
                mac,
                ip,
                until: now + OFFER_HOLD_SECS,
                hostname: host.clone(),
            };
            reply(
                snap,
                msg,
                rx,
                MessageType::Offer,
                &dynamic_binding(subnet, ip, &host),
                Some(change),
                discovered,
            )
        }
        MessageType::Request => {
            let selecting = server_id(msg);
            if let Some(sid) = selecting
                && sid != rx.server
            {
                // The client chose another server: forget our offer.
                return match leases.of_mac(&mac) {
                    Some(l) if l.state == LeaseState::Offered => Decision::Silent {
                        change: LeaseChange::Release { mac, ip: l.ip },
                        discovered,
                    },
                    _ => Decision::Drop("other_server"),
                };
            }
            let ciaddr = msg.ciaddr();
            let asked = requested_ip(msg).or((!ciaddr.is_unspecified()).then_some(ciaddr));
            let Some(asked) = asked else {
                return Decision::Drop("request_without_address");
            };
            if let Some(s) = stat {
                return if asked == s.ip {
                    reply(
                        snap,
                        msg,
                        rx,
                        MessageType::Ack,
                        &static_binding(snap, s),
                        None,
                        false,
                    )
                } else {
                    nak(
                        msg,
                        rx,
                        "requested address is not this machine's reservation",
                    )
                };
            }
            let Some(subnet) = subnet else {
                return Decision::Drop("no_subnet");
            };
            if !subnet.net.contains(asked) {
                return nak(msg, rx, "requested address is not on this network");
            }
            let ours = leases
                .of_mac(&mac)
                .filter(|l| l.ip == asked && l.state != LeaseState::Declined);
            let acceptable = match ours {
                Some(l) => l.state != LeaseState::Released || leases.free_for(asked, &mac, now),
                // INIT-REBOOT or SELECTING without a record: only an address we may still give.
                None if selecting.is_some() => false,
                None => {
                    return if subnet.pool.is_some_and(|p| in_pool(p, asked))
                        && leases.free_for(asked, &mac, now)
                    {
                        bind(snap, msg, rx, subnet, mac, asked, now, discovered)
                    } else if leases.get_ip(asked).is_some() {
                        nak(msg, rx, "requested address is leased to another client")
                    } else {
                        // RFC 2131 §4.3.2: no record of this client → remain silent.
                        Decision::Drop("no_record")
                    };
                }
            };
            if acceptable {
                bind(snap, msg, rx, subnet, mac, asked, now, discovered)
            } else {
                nak(
                    msg,
                    rx,
                    "requested address is not offered to or leased by this client",
                )
            }
        }
        MessageType::Release => match leases.of_mac(&mac) {
            Some(l) if l.ip == msg.ciaddr() && l.state == LeaseState::Bound => Decision::Silent {
                change: LeaseChange::Release { mac, ip: l.ip },
                discovered,
            },
            _ => Decision::Drop("release_unknown"),
        },
        MessageType::Decline => match requested_ip(msg) {
            Some(ip) if stat.is_none() && leases.of_mac(&mac).is_some_and(|l| l.ip == ip) => {
                Decision::Silent {
                    change: LeaseChange::Decline {
                        mac,
                        ip,
                        until: now + DECLINE_HOLD_SECS,
                    },
                    discovered,
                }
            }
            _ => Decision::Drop("decline_unknown"),
        },
        MessageType::Inform => {
            let ciaddr = msg.ciaddr();
            if ciaddr.is_unspecified() {
                return Decision::Drop("inform_without_ciaddr");
            }
            let binding = match (stat, subnet) {
                (Some(s), _) => static_binding(snap, s),
                (None, Some(subnet)) => dynamic_binding(subnet, ciaddr, ""),
                (None, None) => return Decision::Drop("no_subnet"),
            };
            reply(snap, msg, rx, MessageType::Ack, &binding, None, false)
        }
        _ => Decision::Drop("unsupported_message_type"),
    }
}

fn in_pool(pool: (Ipv4Addr, Ipv4Addr), ip: Ipv4Addr) -> bool {
    (u32::from(pool.0)..=u32::from(pool.1)).contains(&u32::from(ip))
}

fn static_binding<'a>(snap: &Snapshot, s: &'a Static) -> Binding<'a> {
    Binding {
        ip: s.ip,
        net: s.net,
        router: s.router,
        dns: &s.dns,
        domain: None,
        hostname: &s.hostname,
        lease_secs: snap.static_lease_secs,
        boot: s.boot.as_ref(),
    }
}

fn dynamic_binding<'a>(subnet: &'a Subnet, ip: Ipv4Addr, hostname: &'a str) -> Binding<'a> {
    Binding {
        ip,
        net: subnet.net,
        router: subnet.router,
        dns: &subnet.dns,
        domain: subnet.domain.as_deref(),
        hostname,
        lease_secs: subnet.lease_secs,
        boot: None,
    }
}

#[allow(clippy::too_many_arguments)]
fn bind(
    snap: &Snapshot,
    msg: &Message,
    rx: &Receiver,
    subnet: &Subnet,
    mac: Mac,
    ip: Ipv4Addr,
    now: i64,
    discovered: bool,
) -> Decision {
    let host = hostname(msg);
    let relay = relay_info(msg);
    let client_id = match msg.opts().get(OptionCode::ClientIdentifier) {
        Some(DhcpOption::ClientIdentifier(id)) => Some(id.clone()),
        _ => None,
    };
    let change = LeaseChange::Bind {
        mac,
        ip,
        until: now + i64::from(subnet.lease_secs),
        hostname: host.clone(),
        client_id,
        giaddr: (!msg.giaddr().is_unspecified()).then_some(msg.giaddr()),
        circuit_id: relay_bytes(relay, true),
        remote_id: relay_bytes(relay, false),
    };
    reply(
        snap,
        msg,
        rx,
        MessageType::Ack,
        &dynamic_binding(subnet, ip, &host),
        Some(change),
        discovered,
    )
}

fn nak(msg: &Message, rx: &Receiver, why: &str) -> Decision {
    let mut out = base_reply(msg, rx, MessageType::Nak);
    out.opts_mut().insert(DhcpOption::Message(why.to_owned()));
    // RFC 2131 §4.1: a NAK goes to the relay, else is broadcast.
    let dest = if msg.giaddr().is_unspecified() {
        Dest::Broadcast
    } else {
        Dest::Relay(msg.giaddr())
    };
    Decision::Reply {
        msg: Box::new(out),
        dest,
        change: None,
        discovered: false,
    }
}

fn base_reply(msg: &Message, rx: &Receiver, kind: MessageType) -> Message {
    let mut out = Message::default();
    out.set_opcode(Opcode::BootReply)
        .set_htype(msg.htype())
        .set_xid(msg.xid())
        .set_flags(msg.flags())
        .set_giaddr(msg.giaddr())
        .set_chaddr(msg.chaddr());
    let opts = out.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::ServerIdentifier(rx.server));
    if let Some(r) = relay_info(msg) {
        opts.insert(DhcpOption::RelayAgentInformation(r.clone()));
    }
    out
}

fn reply(
    snap: &Snapshot,
    msg: &Message,
    rx: &Receiver,
    kind: MessageType,
    b: &Binding<'_>,
    change: Option<LeaseChange>,
    discovered: bool,
) -> Decision {
    let inform = msg.opts().msg_type() == Some(MessageType::Inform);
    let mut out = base_reply(msg, rx, kind);
    if inform {
        out.set_ciaddr(msg.ciaddr());
    } else {
        out.set_yiaddr(b.ip).set_ciaddr(msg.ciaddr());
    }
    out.set_siaddr(rx.server);
    let client = classify(msg);
    let mac = client_mac(msg).unwrap_or(Mac([0; 6]));
    let boot_file = match client {
        ClientKind::Ipxe => Some(script_url(&snap.boot, rx.server, &mac)),
        ClientKind::PxeBios => Some(snap.boot.bios.clone()),
        ClientKind::PxeEfi => Some(snap.boot.efi.clone()),
        ClientKind::Plain => None,
    };
    if let Some(file) = &boot_file
        && file.len() < 128
    {
        out.set_fname_str(file);
    }
    let opts = out.opts_mut();
    if !inform {
        opts.insert(DhcpOption::AddressLeaseTime(b.lease_secs));
        opts.insert(DhcpOption::Renewal(b.lease_secs / 2));
        opts.insert(DhcpOption::Rebinding(b.lease_secs / 8 * 7));
    }
    opts.insert(DhcpOption::SubnetMask(b.net.netmask()));
    opts.insert(DhcpOption::BroadcastAddr(b.net.broadcast()));
    if let Some(r) = b.router {
        opts.insert(DhcpOption::Router(vec![r]));
    }
    if !b.dns.is_empty() {
        opts.insert(DhcpOption::DomainNameServer(b.dns.to_vec()));
    }
    if let Some(d) = b.domain {
        opts.insert(DhcpOption::DomainName(d.to_owned()));
    }
    if !b.hostname.is_empty() {
        opts.insert(DhcpOption::Hostname(b.hostname.to_owned()));
    }
    if let Some(file) = boot_file {
        opts.insert(DhcpOption::BootfileName(file.into_bytes()));
    }
    if client == ClientKind::Ipxe {
        opts.insert(DhcpOption::Unknown(UnknownOption::new(
            OptionCode::Unknown(OPTION_IPXE_ENCAP),
            IPXE_NO_PXEDHCP.to_vec(),
        )));
    } else if let Some(boot) = b.boot {
        opts.insert(DhcpOption::RootPath(boot.root_path.clone()));
        opts.insert(DhcpOption::Unknown(UnknownOption::new(
            OptionCode::Unknown(OPTION_INITIATOR),
            boot.initiator.as_bytes().to_vec(),
        )));
    }
    let dest = destination(msg, b.ip, inform);
    Decision::Reply {
        msg: Box::new(out),
        dest,
        change,
        discovered,
    }
}

/// The URL of a machine's iPXE script.
pub fn script_url(boot: &BootFiles, server: Ipv4Addr, mac: &Mac) -> String {
    let base = boot
        .http_base
        .clone()
        .unwrap_or_else(|| format!("http://{server}:{}", boot.http_port));
    format!(
        "{}/boot/{}.ipxe",
        base.trim_end_matches('/'),
        mac.to_string().replace(':', "-")
    )
}

/// RFC 2131 §4.1 reply addressing.
fn destination(msg: &Message, yiaddr: Ipv4Addr, inform: bool) -> Dest {
    if !msg.giaddr().is_unspecified() {
        Dest::Relay(msg.giaddr())
    } else if !msg.ciaddr().is_unspecified() {
        Dest::Unicast(msg.ciaddr())
    } else if inform || msg.flags().broadcast() {
        Dest::Broadcast
    } else {
        Dest::UnicastNoArp(yiaddr, client_mac(msg).unwrap_or(Mac([0; 6])))
    }
}

/// Encodes a reply, padded to the 300-byte BOOTP minimum that old PXE ROMs insist on.
pub fn encode(msg: &Message) -> Option<Vec<u8>> {
    use dhcproto::Encodable;
    let mut bytes = msg.to_vec().ok()?;
    if bytes.len() < v4::MIN_PACKET_SIZE {
        bytes.resize(v4::MIN_PACKET_SIZE, 0);
    }
    Some(bytes)
}

/// Decodes a request; `None` for anything that is not a well-formed BOOTP/DHCP packet.
///
/// The options are walked and checked here first, and only those the server uses are handed
/// to dhcproto, each with a length it can decode: dhcproto trusts option lengths (it reads
/// fixed-size fields whatever the length says, and debug-asserts on some), so a hostile length
/// would otherwise desynchronize or panic the decoder.
pub fn parse(bytes: &[u8]) -> Option<Message> {
    use dhcproto::Decodable;
    let clean = sanitize(bytes)?;
    Message::decode(&mut dhcproto::Decoder::new(&clean)).ok()
}

const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];

/// The fixed header, then only the options we use, re-encoded with lengths dhcproto accepts.
fn sanitize(bytes: &[u8]) -> Option<Vec<u8>> {
    // 236 bytes of fixed header, the magic cookie, and hlen that fits chaddr (16 bytes).
    if bytes.len() < 240 || bytes[236..240] != MAGIC_COOKIE || bytes[2] > 16 {
        return None;
    }
    let mut out = bytes[..240].to_vec();
    let mut i = 240;
    while i < bytes.len() {
        let code = bytes[i];
        match code {
            0 => {
                i += 1;
                continue;
            }
            255 => break,
            _ => {}
        }
        let len = usize::from(*bytes.get(i + 1)?);
        let data = bytes.get(i + 2..i + 2 + len)?;
        i += 2 + len;
        let keep: Option<&[u8]> = match code {
            53 if len == 1 => Some(data),
            50 | 54 | 118 | 51 if len == 4 => Some(data),
            57 if len == 2 => Some(data),
            // Client architectures: a list of u16; we use the first.
            93 if len >= 2 => Some(&data[..2]),
            12 | 55 | 60 | 61 | 77 if len >= 1 => Some(data),
            82 if relay_info_ok(data) => Some(data),
            _ => None,
        };
        if let Some(d) = keep {
            out.push(code);
            out.push(d.len() as u8);
            out.extend_from_slice(d);
        }
    }
    out.push(255);
    Some(out)
}

/// Option 82 sub-options: well-formed TLVs, with the fixed sizes dhcproto reads.
fn relay_info_ok(data: &[u8]) -> bool {
    let mut i = 0;
    while i < data.len() {
        let Some(&len) = data.get(i + 1) else {
            return false;
        };
        let len = usize::from(len);
        let fixed = match data[i] {
            4 | 5 | 11 => Some(4),
            10 => Some(1),
            _ => None,
        };
        if fixed.is_some_and(|f| f != len) || i + 2 + len > data.len() {
            return false;
        }
        i += 2 + len;
    }
    true
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
