//! IPv6 router advertisements (RFC 4861) on the DHCP interfaces, so that a booting iPXE
//! finishes its IPv6 autoconfiguration at once instead of soliciting a router that never
//! answers (Debian's iPXE waits about 13 s, at every boot, before it runs its script).
//!
//! iPXE ends IPv6 configuration on the first router advertisement it hears while it solicits;
//! only the managed/other flags would make it go on (to DHCPv6, which nhn does not serve). So
//! the advertisement is the smallest RFC 4861 allows: no flags, no prefix (no address for
//! anyone), **router lifetime 0** (no default route for anyone), hop limit, reachable time and
//! retransmit timer unspecified, and the source link-layer address option. To the other hosts
//! on the segment it says "a node at this link-local address exists and is not your router";
//! they change nothing.
//!
//! Timing follows RFC 4861 §6.2.4 and §6.2.6: three unsolicited advertisements at start, 16 s
//! apart (one that cannot go out yet, while the link-local address is tentative, is retried
//! 3 s later), then one every [`MIN_INTERVAL`]..[`MAX_INTERVAL`] (random); a solicitation is
//! answered after a random 0–500 ms, by unicast to the soliciting host (RFC 7772's
//! recommendation, and free of the 3 s limit between multicast advertisements), or to all
//! nodes when it came from the unspecified address. Solicitations are checked as §6.1.1 says (hop limit 255, code 0,
//! well-formed options) before they count.
//!
//! One thread per interface, like the DHCP workers; the socket work is in `socket`.

use std::net::Ipv6Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::socket;

/// ICMPv6 types (RFC 4861 §4.1, §4.2).
const ROUTER_SOLICITATION: u8 = 133;
const ROUTER_ADVERTISEMENT: u8 = 134;
/// Source link-layer address option (RFC 4861 §4.6.1).
const OPT_SOURCE_LL: u8 = 1;
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// RFC 4861 §6.2.1 / §10 limits. MaxRtrAdvInterval may be 4..1800 s; MinRtrAdvInterval
/// defaults to a third of it.
pub const MAX_INTERVAL: Duration = Duration::from_secs(200);
pub const MIN_INTERVAL: Duration = Duration::from_secs(66);
const MAX_INITIAL_ADVERTISEMENTS: u32 = 3;
const MAX_INITIAL_INTERVAL: Duration = Duration::from_secs(16);
const MIN_DELAY_BETWEEN_RAS: Duration = Duration::from_secs(3);
const MAX_RA_DELAY: Duration = Duration::from_millis(500);
/// Unicast answers waiting at once; beyond this, one multicast answers them all.
const MAX_PENDING_UNICAST: usize = 64;

/// The router advertisement nhn sends from an interface with Ethernet address `mac`
/// (checksum left 0: the kernel computes it for raw ICMPv6 sockets).
pub fn advertisement(mac: [u8; 6]) -> [u8; 24] {
    let mut ra = [0u8; 24];
    ra[0] = ROUTER_ADVERTISEMENT;
    // [1] code 0, [2..4] checksum, [4] cur hop limit 0 (unspecified), [5] flags: no M, no O,
    // [6..8] router lifetime 0 (not a default router), [8..12] reachable time and
    // [12..16] retransmit timer unspecified.
    ra[16] = OPT_SOURCE_LL;
    ra[17] = 1; // length in units of 8 bytes
    ra[18..24].copy_from_slice(&mac);
    ra
}

/// Checks a received router solicitation as RFC 4861 §6.1.1 asks (the kernel has checked the
/// ICMPv6 checksum). `Err` names the reason it is dropped.
pub fn check_solicitation(
    msg: &[u8],
    from: Ipv6Addr,
    hop_limit: Option<u8>,
) -> Result<(), &'static str> {
    if hop_limit != Some(255) {
        return Err("hop_limit");
    }
    if msg.len() < 8 || msg[0] != ROUTER_SOLICITATION || msg[1] != 0 {
        return Err("malformed");
    }
    let mut opts = &msg[8..];
    while !opts.is_empty() {
        let len = opts.get(1).map_or(0, |&l| usize::from(l) * 8);
        if len == 0 || len > opts.len() {
            return Err("malformed");
        }
        if opts[0] == OPT_SOURCE_LL && from.is_unspecified() {
            return Err("malformed");
        }
        opts = &opts[len..];
    }
    Ok(())
}

/// When to send what: the pure schedule of one interface's advertisements. `jitter(lo, hi)`
/// returns a random duration in `lo..=hi` (fixed in tests).
pub struct Planner {
    next_periodic: Instant,
    initial_left: u32,
    last_multicast: Option<Instant>,
    /// Solicited answers: when, and to whom ([`ALL_NODES`] for a multicast one).
    replies: Vec<(Instant, Ipv6Addr)>,
}

/// Why an advertisement goes out (the label of `nhn_ipv6_ra_sent_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Periodic,
    Solicited,
}

impl Planner {
    /// A schedule whose first unsolicited advertisement is due at `now`.
    pub fn new(now: Instant) -> Planner {
        Planner {
            next_periodic: now,
            initial_left: MAX_INITIAL_ADVERTISEMENTS,
            last_multicast: None,
            replies: Vec::new(),
        }
    }

    /// A valid solicitation from `from` arrived at `now`.
    pub fn solicited(
        &mut self,
        now: Instant,
        from: Ipv6Addr,
        jitter: &mut impl FnMut(Duration, Duration) -> Duration,
    ) {
        let unicast = self
            .replies
            .iter()
            .filter(|(_, to)| *to != ALL_NODES)
            .count();
        let to = if from.is_unspecified() || unicast >= MAX_PENDING_UNICAST {
            ALL_NODES
        } else {
            from
        };
        // One answer per destination, timed from the first solicitation (§6.2.6).
        if self.replies.iter().any(|(_, t)| *t == to) {
            return;
        }
        let mut at = now + jitter(Duration::ZERO, MAX_RA_DELAY);
        if to == ALL_NODES
            && let Some(last) = self.last_multicast
        {
            at = at.max(last + MIN_DELAY_BETWEEN_RAS);
        }
        self.replies.push((at, to));
    }

    /// The advertisements due at `now`, each with its destination; advances the schedule.
    pub fn due(
        &mut self,
        now: Instant,
        jitter: &mut impl FnMut(Duration, Duration) -> Duration,
    ) -> Vec<(Ipv6Addr, Reason)> {
        let mut out = Vec::new();
        let periodic = now >= self.next_periodic
            && self
                .last_multicast
                .is_none_or(|l| now >= l + MIN_DELAY_BETWEEN_RAS);
        if periodic {
            out.push((ALL_NODES, Reason::Periodic));
            let mut interval = jitter(MIN_INTERVAL, MAX_INTERVAL);
            self.initial_left = self.initial_left.saturating_sub(1);
            if self.initial_left > 0 {
                interval = interval.min(MAX_INITIAL_INTERVAL);
            }
            self.next_periodic = now + interval;
            self.last_multicast = Some(now);
            // That multicast answers every pending multicast solicitation too.
            self.replies.retain(|(_, to)| *to != ALL_NODES);
        }
        let mut i = 0;
        while i < self.replies.len() {
            if self.replies[i].0 <= now {
                let (_, to) = self.replies.swap_remove(i);
                if to == ALL_NODES {
                    self.last_multicast = Some(now);
                }
                out.push((to, Reason::Solicited));
            } else {
                i += 1;
            }
        }
        out
    }

    /// The periodic advertisement `due` just returned could not be sent (the link-local
    /// address is still tentative, or missing): try again as soon as the 3 s spacing allows,
    /// without using up one of the initial advertisements.
    pub fn periodic_unsent(&mut self, now: Instant) {
        self.next_periodic = now;
        self.initial_left = (self.initial_left + 1).min(MAX_INITIAL_ADVERTISEMENTS);
    }

    /// The next moment something may be due.
    pub fn next_wakeup(&self) -> Instant {
        let periodic = match self.last_multicast {
            Some(l) => self.next_periodic.max(l + MIN_DELAY_BETWEEN_RAS),
            None => self.next_periodic,
        };
        self.replies
            .iter()
            .map(|(at, _)| *at)
            .fold(periodic, Instant::min)
    }
}

fn random_jitter(lo: Duration, hi: Duration) -> Duration {
    let (lo, hi) = (lo.as_millis() as u64, hi.as_millis() as u64);
    Duration::from_millis(rand::random_range(lo..=hi))
}

/// Starts an advertiser thread on each of `interfaces` that can have one; on an interface
/// without IPv6 it logs a warning that says what it costs and what to do, and skips it.
pub fn start(interfaces: &[String], stop: &Arc<AtomicBool>) -> Vec<JoinHandle<()>> {
    let mut threads = Vec::new();
    for name in interfaces {
        if socket::ipv6_disabled(name) {
            tracing::warn!(
                interface = %name,
                "IPv6 is disabled on {name} (net.ipv6.conf.{name}.disable_ipv6 = 1, or no IPv6 in \
                 the kernel): no router advertisements there, so iPXE waits ~13 s for IPv6 \
                 autoconfiguration at every boot. Enable IPv6 on {name}, or set [dhcp] ipv6_ra = \
                 false if a router of yours advertises on this segment"
            );
            continue;
        }
        let opened = socket::ipv6_link(name).and_then(|link| {
            let sock = socket::open_icmpv6(name, link.index, ROUTER_SOLICITATION)?;
            Ok((link, sock))
        });
        let (link, sock) = match opened {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(
                    interface = %name, error = %e,
                    "cannot send IPv6 router advertisements on {name}; iPXE will wait ~13 s for \
                     IPv6 autoconfiguration at every boot"
                );
                continue;
            }
        };
        if link.link_local.is_none() {
            tracing::warn!(
                interface = %name,
                "{name} has no IPv6 link-local address yet (no carrier, or addr_gen_mode none); \
                 router advertisements start once it has one"
            );
        }
        tracing::info!(interface = %name, "IPv6 router advertisements on (router lifetime 0)");
        let (name, stop) = (name.clone(), stop.clone());
        match thread::Builder::new()
            .name(format!("ra-{name}"))
            .spawn(move || advertise(&name, &sock, &stop))
        {
            Ok(t) => threads.push(t),
            Err(e) => tracing::warn!(error = %e, "cannot start the router advertiser thread"),
        }
    }
    threads
}

fn advertise(name: &str, sock: &std::net::UdpSocket, stop: &AtomicBool) {
    let mut planner = Planner::new(Instant::now());
    let mut buf = [0u8; 1500];
    let mut missing_warned = false;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        for (to, reason) in planner.due(now, &mut random_jitter) {
            if !send(name, sock, to, reason, &mut missing_warned) && reason == Reason::Periodic {
                planner.periodic_unsent(now);
            }
        }
        let wait = planner
            .next_wakeup()
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(1), Duration::from_millis(250));
        if let Err(e) = sock.set_read_timeout(Some(wait)) {
            tracing::warn!(interface = %name, error = %e, "router advertiser: set timeout");
        }
        match socket::recv_icmpv6(sock, &mut buf) {
            Ok(Some(got)) => match check_solicitation(&buf[..got.len], got.from, got.hop_limit) {
                Ok(()) => {
                    metrics::counter!("nhn_ipv6_rs_received_total").increment(1);
                    tracing::debug!(interface = %name, from = %got.from, "router solicitation");
                    planner.solicited(Instant::now(), got.from, &mut random_jitter);
                }
                Err(reason) => {
                    metrics::counter!("nhn_ipv6_rs_dropped_total", "reason" => reason).increment(1);
                }
            },
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(interface = %name, error = %e, "router advertiser: receive failed");
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Sends one advertisement from the interface's current link-local address (looked up each
/// time: it appears with carrier and changes with the MAC). False if it could not.
fn send(
    name: &str,
    sock: &std::net::UdpSocket,
    to: Ipv6Addr,
    reason: Reason,
    warned: &mut bool,
) -> bool {
    let link = match socket::ipv6_link(name) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(interface = %name, error = %e, "router advertiser: interface lookup");
            return false;
        }
    };
    let Some(source) = link.link_local else {
        if !std::mem::replace(warned, true) {
            tracing::warn!(
                interface = %name,
                "no IPv6 link-local address on {name}: router advertisements wait for one"
            );
        }
        return false;
    };
    *warned = false;
    match socket::send_icmpv6(sock, &advertisement(link.mac), source, to, link.index) {
        Ok(()) => {
            let label = match reason {
                Reason::Periodic => "periodic",
                Reason::Solicited => "solicited",
            };
            metrics::counter!("nhn_ipv6_ra_sent_total", "reason" => label).increment(1);
            tracing::debug!(interface = %name, %to, %source, reason = label, "router advertisement sent");
            true
        }
        // A tentative link-local (duplicate address detection, ~1 s after carrier) cannot
        // send yet (EINVAL).
        Err(e) => {
            tracing::debug!(interface = %name, error = %e, %to, "router advertisement not sent");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x5054, 0xff, 0xfe96, 1);

    fn hi(_: Duration, hi: Duration) -> Duration {
        hi
    }
    fn lo(lo: Duration, _: Duration) -> Duration {
        lo
    }

    #[test]
    fn the_advertisement_is_the_minimum_with_router_lifetime_zero() {
        let ra = advertisement([0x52, 0x54, 0, 0x96, 0, 1]);
        assert_eq!(ra[0], 134);
        assert_eq!(ra[1], 0, "code");
        assert_eq!(
            ra[5], 0,
            "no managed/other flags: iPXE would wait for DHCPv6"
        );
        assert_eq!(
            &ra[6..8],
            &[0, 0],
            "router lifetime 0: nobody's default router"
        );
        assert_eq!(&ra[4..5], &[0], "hop limit unspecified");
        assert_eq!(&ra[8..16], &[0; 8], "reachable/retransmit unspecified");
        assert_eq!(
            &ra[16..],
            &[1, 1, 0x52, 0x54, 0, 0x96, 0, 1],
            "source link-layer only"
        );
    }

    #[test]
    fn solicitations_are_checked_as_rfc_4861_says() {
        let rs = [133, 0, 0, 0, 0, 0, 0, 0];
        let with_sll = [133, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0x52, 0x54, 0, 0x96, 0, 1];
        assert_eq!(check_solicitation(&rs, HOST, Some(255)), Ok(()));
        assert_eq!(check_solicitation(&with_sll, HOST, Some(255)), Ok(()));
        assert_eq!(
            check_solicitation(&rs, Ipv6Addr::UNSPECIFIED, Some(255)),
            Ok(())
        );
        // Routed from elsewhere, or hop limit unknown.
        assert_eq!(check_solicitation(&rs, HOST, Some(64)), Err("hop_limit"));
        assert_eq!(check_solicitation(&rs, HOST, None), Err("hop_limit"));
        // Short, wrong type or code, zero-length or overlong option.
        assert_eq!(
            check_solicitation(&rs[..7], HOST, Some(255)),
            Err("malformed")
        );
        let mut bad = rs;
        bad[1] = 1;
        assert_eq!(check_solicitation(&bad, HOST, Some(255)), Err("malformed"));
        bad = rs;
        bad[0] = 134;
        assert_eq!(check_solicitation(&bad, HOST, Some(255)), Err("malformed"));
        let mut zero = with_sll;
        zero[9] = 0;
        assert_eq!(check_solicitation(&zero, HOST, Some(255)), Err("malformed"));
        let mut long = with_sll;
        long[9] = 2;
        assert_eq!(check_solicitation(&long, HOST, Some(255)), Err("malformed"));
        assert_eq!(
            check_solicitation(&with_sll[..12], HOST, Some(255)),
            Err("malformed")
        );
        // The unspecified source must not carry a link-layer address.
        assert_eq!(
            check_solicitation(&with_sll, Ipv6Addr::UNSPECIFIED, Some(255)),
            Err("malformed")
        );
    }

    #[test]
    fn three_initial_advertisements_16_s_apart_then_the_periodic_interval() {
        let t0 = Instant::now();
        let mut p = Planner::new(t0);
        let mut sent = Vec::new();
        let mut t = t0;
        while t < t0 + Duration::from_secs(1000) {
            if !p.due(t, &mut hi).is_empty() {
                sent.push((t - t0).as_secs());
            }
            assert!(p.next_wakeup() > t);
            t = p.next_wakeup();
        }
        assert_eq!(sent, [0, 16, 32, 232, 432, 632, 832]);
        let mut p = Planner::new(t0);
        p.due(t0, &mut lo);
        for _ in 0..2 {
            let t = p.next_wakeup();
            p.due(t, &mut lo);
        }
        assert_eq!(p.next_wakeup() - t0, Duration::from_secs(16 * 2 + 66));
    }

    #[test]
    fn an_unsent_periodic_advertisement_is_retried_3_s_later_and_still_counts_as_initial() {
        let t0 = Instant::now();
        let mut p = Planner::new(t0);
        assert_eq!(p.due(t0, &mut hi), [(ALL_NODES, Reason::Periodic)]);
        p.periodic_unsent(t0);
        assert_eq!(p.next_wakeup(), t0 + MIN_DELAY_BETWEEN_RAS);
        let t1 = t0 + MIN_DELAY_BETWEEN_RAS;
        assert_eq!(p.due(t1, &mut hi), [(ALL_NODES, Reason::Periodic)]);
        // Three initial advertisements still follow, 16 s apart, from the first one sent.
        assert_eq!(p.next_wakeup(), t1 + MAX_INITIAL_INTERVAL);
        p.due(t1 + MAX_INITIAL_INTERVAL, &mut hi);
        assert_eq!(p.next_wakeup(), t1 + MAX_INITIAL_INTERVAL * 2);
        p.due(t1 + MAX_INITIAL_INTERVAL * 2, &mut hi);
        assert_eq!(
            p.next_wakeup(),
            t1 + MAX_INITIAL_INTERVAL * 2 + MAX_INTERVAL
        );
    }

    #[test]
    fn a_solicitation_is_answered_within_half_a_second_by_unicast_once() {
        let t0 = Instant::now();
        let mut p = Planner::new(t0);
        assert_eq!(p.due(t0, &mut hi), [(ALL_NODES, Reason::Periodic)]);
        let t1 = t0 + Duration::from_secs(1);
        p.solicited(t1, HOST, &mut hi);
        // A retransmitted solicitation does not double the answer or push it back.
        p.solicited(t1 + Duration::from_millis(300), HOST, &mut hi);
        assert_eq!(p.next_wakeup(), t1 + MAX_RA_DELAY);
        assert!(p.due(t1 + Duration::from_millis(499), &mut hi).is_empty());
        // Unicast: not held back by the 3 s between multicasts.
        assert_eq!(
            p.due(t1 + MAX_RA_DELAY, &mut hi),
            [(HOST, Reason::Solicited)]
        );
        assert!(p.due(t1 + Duration::from_secs(2), &mut hi).is_empty());
    }

    #[test]
    fn a_multicast_answer_keeps_3_s_from_the_last_multicast() {
        let t0 = Instant::now();
        let mut p = Planner::new(t0);
        p.due(t0, &mut lo);
        p.solicited(t0 + Duration::from_secs(1), Ipv6Addr::UNSPECIFIED, &mut lo);
        assert_eq!(p.next_wakeup(), t0 + MIN_DELAY_BETWEEN_RAS);
        assert!(p.due(t0 + Duration::from_secs(2), &mut lo).is_empty());
        assert_eq!(
            p.due(t0 + MIN_DELAY_BETWEEN_RAS, &mut lo),
            [(ALL_NODES, Reason::Solicited)]
        );
    }

    #[test]
    fn a_solicitation_flood_falls_back_to_one_multicast() {
        let t0 = Instant::now();
        let mut p = Planner::new(t0);
        p.due(t0, &mut lo);
        let t1 = t0 + Duration::from_secs(5);
        for i in 0..1000u16 {
            p.solicited(t1, Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 1, i), &mut hi);
        }
        let out = p.due(t1 + MAX_RA_DELAY, &mut hi);
        assert_eq!(out.len(), MAX_PENDING_UNICAST + 1);
        assert_eq!(out.iter().filter(|(to, _)| *to == ALL_NODES).count(), 1);
    }
}
