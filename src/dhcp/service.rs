//! The running DHCP server: one worker thread per configured interface (blocking socket, no
//! async overhead on the packet path), a persister thread that writes lease changes in batches
//! (group commit) and sends each ACK only after its lease is committed, a task that
//! rebuilds the snapshot when the inventory changes, and (unless `[dhcp] ipv6_ra = false`) a
//! router advertiser thread per interface ([`super::ra`]).
//!
//! Packet path: recvmsg → parse → per-MAC flood limit → [`decide`] (pure) → apply the lease
//! change in memory → send now (OFFER, NAK, static ACK) or hand to the persister (dynamic ACK,
//! RELEASE, DECLINE). Malformed packets are counted and dropped; nothing on this path can
//! panic on input or wait for the database.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use dhcproto::v4::MessageType;

use super::decide::{
    self, Decision, Dest, Lease, LeaseChange, LeaseState, Leases, Receiver as Rx, Snapshot,
};
use super::socket::{self, CLIENT_PORT, Interface, SERVER_PORT};
use super::{ra, snapshot};
use crate::config::Config;
use crate::inventory::leases::{LeaseStore, LeaseWrite};
use crate::inventory::{self, Inventory, Tx};
use crate::model::EventKind;
use crate::net::Mac;
use crate::util::unix_now;

/// How long the persister waits for more lease changes before committing a batch.
const GROUP_COMMIT_LINGER: Duration = Duration::from_millis(2);

/// A lease change waiting to be committed, with the answer to send once it is.
struct Pending {
    change: LeaseChange,
    discovered: bool,
    reply: Option<(Vec<u8>, Dest, usize)>,
}

struct Shared {
    snapshot: RwLock<Arc<Snapshot>>,
    leases: Mutex<Leases>,
    limiter: Mutex<FloodLimit>,
    sockets: Vec<(Interface, Arc<UdpSocket>)>,
    stop: Arc<AtomicBool>,
}

/// Handle on the running server; [`Running::stop`] ends it.
pub struct Running {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    refresher: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops the workers and the persister (which commits what it holds) and waits for them.
    pub fn stop(self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.refresher.abort();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn lease_state(s: &str) -> LeaseState {
    match s {
        "bound" => LeaseState::Bound,
        "declined" => LeaseState::Declined,
        _ => LeaseState::Released,
    }
}

fn load_leases(tx: &Tx<'_>) -> inventory::Result<Vec<Lease>> {
    Ok(tx
        .leases()?
        .into_iter()
        .filter_map(|l| {
            Some(Lease {
                mac: l.mac.parse().ok()?,
                ip: l.address.parse().ok()?,
                state: lease_state(&l.state),
                expires: l.expires_at,
                hostname: l.hostname,
            })
        })
        .collect())
}

/// Starts DHCP on the configured interfaces; `Ok(None)` when none is configured (DHCP off).
pub async fn start(config: &Config, inventory: Inventory) -> Result<Option<Running>> {
    if config.dhcp.interfaces.is_empty() {
        tracing::info!("DHCP is off: no [dhcp] interfaces configured");
        return Ok(None);
    }
    let subnets = snapshot::subnets(config)?;
    let mut leases = Leases::default();
    for s in &subnets {
        if let Some((first, _)) = s.pool {
            leases.add_pool(first);
        }
    }
    for l in inventory.read(load_leases).await? {
        leases.insert(l);
    }
    let snap = {
        let (config, subnets) = (config.clone(), subnets.clone());
        inventory
            .read(move |c| snapshot::build(c, &config, subnets))
            .await?
    };
    let mut sockets = Vec::new();
    for name in &config.dhcp.interfaces {
        let iface = socket::interface(name)?;
        let sock = socket::open(&iface, SERVER_PORT).with_context(|| format!("DHCP on {name}"))?;
        tracing::info!(interface = %name, addrs = ?iface.addrs, "DHCP listening");
        sockets.push((iface, Arc::new(sock)));
    }
    metrics::gauge!("nhn_dhcp_leases").set(leases.len() as f64);
    let shared = Arc::new(Shared {
        snapshot: RwLock::new(Arc::new(snap)),
        leases: Mutex::new(leases),
        limiter: Mutex::new(FloodLimit::new(
            config.dhcp.per_mac_rate,
            config.dhcp.per_mac_burst,
        )),
        sockets,
        stop: Arc::new(AtomicBool::new(false)),
    });
    let (tx, rx) = mpsc::channel::<Pending>();
    let mut threads = Vec::new();
    for idx in 0..shared.sockets.len() {
        let (shared, tx) = (shared.clone(), tx.clone());
        threads.push(
            thread::Builder::new()
                .name(format!("dhcp-{}", shared.sockets[idx].0.name))
                .spawn(move || worker(&shared, idx, &tx))?,
        );
    }
    drop(tx);
    if config.dhcp.ipv6_ra {
        threads.extend(ra::start(&config.dhcp.interfaces, &shared.stop));
    } else {
        tracing::info!("IPv6 router advertisements off ([dhcp] ipv6_ra = false)");
    }
    {
        let (shared, inventory) = (shared.clone(), inventory.clone());
        threads.push(
            thread::Builder::new()
                .name("dhcp-persist".into())
                .spawn(move || persister(&shared, &inventory, rx))?,
        );
    }
    let refresher = tokio::spawn(refresh(shared.clone(), inventory, config.clone(), subnets));
    Ok(Some(Running {
        shared,
        threads,
        refresher,
    }))
}

/// Rebuilds the snapshot after inventory changes (debounced; our own lease batches ignored).
async fn refresh(
    shared: Arc<Shared>,
    inventory: Inventory,
    config: Config,
    subnets: Vec<decide::Subnet>,
) {
    let mut events = inventory.subscribe();
    loop {
        match events.recv().await {
            // Our own writes: lease batches, and discovered machines (already in `recorded`).
            Ok(ev) if matches!(ev.kind, EventKind::Leases | EventKind::Discovered) => continue,
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
        // Let a burst of changes (a site import) settle into one rebuild.
        tokio::time::sleep(Duration::from_millis(200)).await;
        while events.try_recv().is_ok() {}
        let (c, s) = (config.clone(), subnets.clone());
        match inventory
            .read(move |conn| snapshot::build(conn, &c, s))
            .await
        {
            Ok(snap) => {
                if let Ok(mut cur) = shared.snapshot.write() {
                    *cur = Arc::new(snap);
                }
                tracing::debug!("DHCP snapshot rebuilt");
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot rebuild the DHCP snapshot; answering from the previous one")
            }
        }
    }
}

fn drop_packet(reason: &'static str) {
    metrics::counter!("nhn_dhcp_dropped_total", "reason" => reason).increment(1);
}

fn type_label(t: Option<MessageType>) -> &'static str {
    match t {
        Some(MessageType::Discover) => "discover",
        Some(MessageType::Offer) => "offer",
        Some(MessageType::Request) => "request",
        Some(MessageType::Decline) => "decline",
        Some(MessageType::Ack) => "ack",
        Some(MessageType::Nak) => "nak",
        Some(MessageType::Release) => "release",
        Some(MessageType::Inform) => "inform",
        _ => "other",
    }
}

/// Per-MAC token buckets: a client may send `rate` packets a second and save up `burst`.
struct FloodLimit {
    rate: f64,
    burst: f64,
    buckets: HashMap<Mac, (f64, Instant)>,
}

impl FloodLimit {
    fn new(rate: u32, burst: u32) -> Self {
        FloodLimit {
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
        }
    }

    fn allow(&mut self, mac: Mac, now: Instant) -> bool {
        if self.buckets.len() > 100_000 {
            // Forget idle clients rather than grow without bound under a spoofed-MAC flood.
            self.buckets
                .retain(|_, (_, at)| now.duration_since(*at) < Duration::from_secs(10));
        }
        let (tokens, at) = self.buckets.entry(mac).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn worker(shared: &Shared, idx: usize, persist: &Sender<Pending>) {
    let (iface, sock) = &shared.sockets[idx];
    let mut buf = vec![0u8; 4096];
    while !shared.stop.load(Ordering::Relaxed) {
        let got = match socket::recv(sock, &mut buf) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(interface = %iface.name, error = %e, "DHCP receive failed");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        // A bug on one packet must not stop the server: count it and go on.
        let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handle(shared, idx, persist, &buf[..got.len], &got)
        }));
        if handled.is_err() {
            drop_packet("internal_error");
        }
    }
}

fn handle(
    shared: &Shared,
    idx: usize,
    persist: &Sender<Pending>,
    packet: &[u8],
    got: &socket::Received,
) {
    let iface = &shared.sockets[idx].0;
    let Some(msg) = decide::parse(packet) else {
        tracing::trace!(from = %got.from, len = got.len, "malformed DHCP packet dropped");
        drop_packet("malformed");
        return;
    };
    metrics::counter!("nhn_dhcp_received_total", "type" => type_label(msg.opts().msg_type()))
        .increment(1);
    let Some(mac) = decide::client_mac(&msg) else {
        drop_packet("not_ethernet");
        return;
    };
    if !shared
        .limiter
        .lock()
        .is_ok_and(|mut l| l.allow(mac, Instant::now()))
    {
        drop_packet("rate_limited");
        return;
    }
    // The server identifier: the address the request reached, if it is one of ours.
    let server = got
        .local
        .filter(|l| iface.addrs.iter().any(|(a, _)| a == l))
        .unwrap_or(iface.addrs[0].0);
    let snap = match shared.snapshot.read() {
        Ok(s) => s.clone(),
        Err(_) => return,
    };
    let decision = {
        let Ok(mut leases) = shared.leases.lock() else {
            return;
        };
        let d = decide::decide(&snap, &leases, &msg, &Rx { server }, unix_now());
        match &d {
            Decision::Reply {
                change: Some(c), ..
            }
            | Decision::Silent { change: c, .. } => leases.apply(c),
            _ => {}
        }
        d
    };
    match decision {
        Decision::Drop(reason) => drop_packet(reason),
        Decision::Silent { change, discovered } => {
            let _ = persist.send(Pending {
                change,
                discovered,
                reply: None,
            });
        }
        Decision::Reply {
            msg: out,
            dest,
            change,
            discovered,
        } => {
            let Some(bytes) = decide::encode(&out) else {
                drop_packet("encode_failed");
                return;
            };
            metrics::counter!("nhn_dhcp_sent_total", "type" => type_label(out.opts().msg_type()))
                .increment(1);
            match change {
                Some(change) if change.is_durable() => {
                    let _ = persist.send(Pending {
                        change,
                        discovered,
                        reply: Some((bytes, dest, idx)),
                    });
                }
                _ => send(shared, idx, &bytes, dest),
            }
        }
    }
}

/// Sends an answer per RFC 2131 §4.1; an ARP-less unicast falls back to broadcast.
fn send(shared: &Shared, idx: usize, bytes: &[u8], dest: Dest) {
    let (iface, sock) = &shared.sockets[idx];
    let to = match dest {
        Dest::Relay(ip) => SocketAddrV4::new(ip, SERVER_PORT),
        Dest::Unicast(ip) => SocketAddrV4::new(ip, CLIENT_PORT),
        Dest::Broadcast => SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT),
        Dest::UnicastNoArp(ip, mac) => match socket::set_arp(sock, &iface.name, ip, &mac) {
            Ok(()) => SocketAddrV4::new(ip, CLIENT_PORT),
            Err(_) => SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT),
        },
    };
    if let Err(e) = sock.send_to(bytes, to) {
        metrics::counter!("nhn_dhcp_send_errors_total").increment(1);
        tracing::debug!(%to, error = %e, "DHCP send failed");
    }
}

/// Commits lease changes in batches and sends the answers that waited for them.
fn persister(shared: &Shared, inventory: &Inventory, rx: Receiver<Pending>) {
    let mut recorded: HashSet<Mac> = HashSet::new();
    let mut last_gauge = Instant::now();
    loop {
        let first = match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(p) => p,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        // Group commit: gather what arrives within a couple of milliseconds into one
        // transaction. The ACKs wait that long; the disk and the writer thread see one commit
        // for dozens of leases instead of one each.
        // The linger is one sleep, then a drain: waiting on the channel instead would have
        // every worker's send wake this thread (a futex wake and a context switch per lease).
        let mut batch = vec![first];
        std::thread::sleep(GROUP_COMMIT_LINGER);
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let changes: Vec<(LeaseChange, Option<Mac>)> = batch
            .iter()
            .map(|p| {
                let newly = match &p.change {
                    LeaseChange::Bind { mac, .. } if p.discovered && !recorded.contains(mac) => {
                        Some(*mac)
                    }
                    _ => None,
                };
                (p.change.clone(), newly)
            })
            .collect();
        let n = changes.len();
        match inventory.write_blocking(move |c| write_batch(c, &changes)) {
            Ok(new_macs) => {
                recorded.extend(new_macs);
                for p in batch {
                    if let Some((bytes, dest, idx)) = p.reply {
                        send(shared, idx, &bytes, dest);
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, changes = n, "cannot store DHCP leases; their ACKs are not sent (clients retry)")
            }
        }
        if last_gauge.elapsed() > Duration::from_secs(1) {
            last_gauge = Instant::now();
            if let Ok(l) = shared.leases.lock() {
                let bound = l.iter().filter(|l| l.state == LeaseState::Bound).count();
                metrics::gauge!("nhn_dhcp_leases").set(bound as f64);
            }
        }
    }
}

/// One transaction: every lease change of the batch, plus "discovered" machines for MACs the
/// inventory did not know. Returns the MACs recorded as discovered.
fn write_batch(tx: &Tx<'_>, changes: &[(LeaseChange, Option<Mac>)]) -> inventory::Result<Vec<Mac>> {
    let now = unix_now();
    let mut discovered = Vec::new();
    for (change, newly) in changes {
        match change {
            LeaseChange::Bind {
                mac,
                ip,
                until,
                hostname,
                client_id,
                giaddr,
                circuit_id,
                remote_id,
            } => {
                tx.put_lease(&LeaseWrite {
                    address: &ip.to_string(),
                    mac: &mac.to_string(),
                    state: "bound",
                    hostname,
                    client_id: client_id.as_deref(),
                    giaddr: giaddr.map(|g| g.to_string()),
                    circuit_id: circuit_id.as_deref(),
                    remote_id: remote_id.as_deref(),
                    expires_at: *until,
                    at: now,
                })?;
                if let Some(mac) = newly {
                    if let Some(name) = tx.discover(&mac.to_string(), now)? {
                        inventory::record_event(tx, EventKind::Discovered, &name)?;
                    }
                    discovered.push(*mac);
                }
            }
            LeaseChange::Release { ip, .. } => tx.release_lease(&ip.to_string(), now)?,
            LeaseChange::Decline { mac, ip, until } => tx.put_lease(&LeaseWrite {
                address: &ip.to_string(),
                mac: &mac.to_string(),
                state: "declined",
                hostname: "",
                client_id: None,
                giaddr: None,
                circuit_id: None,
                remote_id: None,
                expires_at: *until,
                at: now,
            })?,
            LeaseChange::Offer { .. } => {}
        }
    }
    inventory::record_event(tx, EventKind::Leases, &format!("{} changes", changes.len()))?;
    Ok(discovered)
}

pub use crate::inventory::leases::LeaseRow;

/// Every lease for `nhn lease list`, by address.
pub fn list(tx: &Tx<'_>) -> inventory::Result<Vec<LeaseRow>> {
    let mut out = tx.leases()?;
    out.sort_by_key(|l| {
        l.address
            .parse::<Ipv4Addr>()
            .map(u32::from)
            .unwrap_or(u32::MAX)
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flooding_mac_is_limited_and_others_are_not() {
        let mut l = FloodLimit::new(10, 30);
        let t0 = Instant::now();
        let (noisy, quiet) = (Mac([2, 0, 0, 0, 0, 1]), Mac([2, 0, 0, 0, 0, 2]));
        let passed = (0..100).filter(|_| l.allow(noisy, t0)).count();
        assert_eq!(passed, 30, "the burst");
        assert!(l.allow(quiet, t0), "another client is not affected");
        // A second later, `rate` more.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..100).filter(|_| l.allow(noisy, t1)).count(), 10);
    }
}
