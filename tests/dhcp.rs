//! The DHCP server against real clients in network namespaces: busybox udhcpc, ISC dhclient
//! and dhcrelay, plus hostile packets. Each test builds its own namespaces and removes them.

mod support;

use std::time::Duration;

use support::cli::{Nhn, data};
use support::{Lab, Netns, Proc, lab_or_skip, wait_until};

const KNOWN_MAC: &str = "52:54:00:96:00:11";
const ROOT_PATH: &str = "iscsi:10.96.0.1::3260:1:iqn.2026-11.test.nhn:vol-server-1";

const CONFIG: &str = r#"
[http]
listen = "10.96.0.1:8080"

[dhcp]
interfaces = ["eth0"]

[[dhcp.subnets]]
subnet = "10.96.0.0/24"
pool_first = "10.96.0.100"
pool_last = "10.96.0.150"
router = "10.96.0.1"
dns = ["10.96.0.1"]
domain = "boot.test"

[[dhcp.subnets]]
subnet = "10.97.0.0/24"
pool_first = "10.97.0.50"
pool_last = "10.97.0.60"
router = "10.97.0.1"
"#;

/// The appliance's data dir: the boot site imported, and Server-1's boot volume.
fn appliance() -> Nhn {
    Nhn::with_boot_site("Server-1")
}

/// Server namespace with eth0 = 10.96.0.1/24 and a client namespace cabled to it.
fn segment(lab: &Lab) -> (Netns<'_>, Netns<'_>) {
    let srv = lab.netns("srv");
    let cli = lab.netns("cli");
    lab.veth((&srv, "eth0"), (&cli, "eth0"));
    srv.addr("eth0", "10.96.0.1/24");
    (srv, cli)
}

fn set_mac(ns: &Netns, ifname: &str, mac: &str) {
    ns.ip(&["link", "set", ifname, "down"]);
    ns.ip(&["link", "set", ifname, "address", mac]);
    ns.ip(&["link", "set", ifname, "up"]);
}

/// Runs busybox udhcpc once in `ns`; returns the environment its script saw on "bound".
fn udhcpc(lab: &Lab, ns: &Netns, ifname: &str) -> Option<String> {
    let out = lab.dir().join(format!("udhcpc-{}-{ifname}.env", ns.name()));
    let script = lab.dir().join("udhcpc.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n[ \"$1\" = bound ] && env > \"$UDHCPC_OUT\"\nexit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let status = ns
        .cmd("busybox")
        .args([
            "udhcpc", "-i", ifname, "-f", "-q", "-n", "-t", "4", "-T", "1", "-O", "rootpath", "-O",
            "203", "-s",
        ])
        .arg(&script)
        .env("UDHCPC_OUT", &out)
        .output()
        .unwrap();
    status
        .status
        .success()
        .then(|| std::fs::read_to_string(&out).unwrap_or_default())
}

fn env_value<'a>(env: &'a str, key: &str) -> Option<&'a str> {
    env.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

fn serve(lab: &Lab, srv: &Netns, nhn: &Nhn) -> Proc {
    nhn.serve_in(lab, srv, CONFIG, "10.96.0.1:8080")
}

#[test]
fn udhcpc_gets_the_reservation_root_path_and_initiator() {
    let Some(lab) = lab_or_skip(
        "udhcpc_gets_the_reservation_root_path_and_initiator",
        &["busybox", "curl"],
    ) else {
        return;
    };
    let nhn = appliance();
    let (srv, cli) = segment(&lab);
    let _server = serve(&lab, &srv, &nhn);
    set_mac(&cli, "eth0", KNOWN_MAC);
    let env = udhcpc(&lab, &cli, "eth0").expect("udhcpc got no lease");
    assert_eq!(env_value(&env, "ip"), Some("10.96.0.11"), "{env}");
    assert_eq!(env_value(&env, "subnet"), Some("255.255.255.0"), "{env}");
    assert_eq!(env_value(&env, "router"), Some("10.96.0.1"), "{env}");
    assert_eq!(env_value(&env, "dns"), Some("10.96.0.1"), "{env}");
    assert_eq!(env_value(&env, "hostname"), Some("Server-1"), "{env}");
    assert_eq!(env_value(&env, "rootpath"), Some(ROOT_PATH), "{env}");
    assert_eq!(env_value(&env, "siaddr"), Some("10.96.0.1"), "{env}");
    assert_eq!(env_value(&env, "serverid"), Some("10.96.0.1"), "{env}");
    // busybox shows options it has no name for as hex.
    let iqn_hex: String = "iqn.2026-11.test.nhn:server-1"
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(env_value(&env, "opt203"), Some(iqn_hex.as_str()), "{env}");
}

#[test]
fn dhclient_gets_the_reservation_and_root_path() {
    let Some(lab) = lab_or_skip(
        "dhclient_gets_the_reservation_and_root_path",
        &["dhclient", "curl"],
    ) else {
        return;
    };
    let nhn = appliance();
    let (srv, cli) = segment(&lab);
    let _server = serve(&lab, &srv, &nhn);
    set_mac(&cli, "eth0", KNOWN_MAC);
    let conf = lab.dir().join("dhclient.conf");
    std::fs::write(
        &conf,
        "option iscsi-initiator code 203 = text;\n\
         request subnet-mask, broadcast-address, routers, domain-name-servers, host-name, root-path, iscsi-initiator;\n",
    )
    .unwrap();
    let out = lab.dir().join("dhclient.env");
    let script = lab.dir().join("dhclient.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$reason\" = BOUND ] && env > {}\nexit 0\n",
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let d = lab.dir().display().to_string();
    let client = cli.spawn(
        "dhclient",
        &[
            "dhclient",
            "-4",
            "-d",
            "-1",
            "-cf",
            &format!("{d}/dhclient.conf"),
            "-sf",
            &format!("{d}/dhclient.sh"),
            "-lf",
            &format!("{d}/dhclient.leases"),
            "-pf",
            &format!("{d}/dhclient.pid"),
            "eth0",
        ],
    );
    let bound = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        out.exists()
    });
    client.terminate();
    assert!(bound, "dhclient got no lease; its log:\n{}", client.log());
    let env = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        env_value(&env, "new_ip_address"),
        Some("10.96.0.11"),
        "{env}"
    );
    assert_eq!(env_value(&env, "new_routers"), Some("10.96.0.1"), "{env}");
    assert_eq!(env_value(&env, "new_host_name"), Some("Server-1"), "{env}");
    assert_eq!(env_value(&env, "new_root_path"), Some(ROOT_PATH), "{env}");
    assert_eq!(
        env_value(&env, "new_iscsi_initiator"),
        Some("iqn.2026-11.test.nhn:server-1"),
        "{env}"
    );
}

#[test]
fn unknown_mac_gets_a_pool_address_and_appears_as_discovered() {
    let Some(lab) = lab_or_skip(
        "unknown_mac_gets_a_pool_address_and_appears_as_discovered",
        &["busybox", "curl"],
    ) else {
        return;
    };
    let nhn = appliance();
    let (srv, cli) = segment(&lab);
    let _server = serve(&lab, &srv, &nhn);
    set_mac(&cli, "eth0", "52:54:00:aa:bb:01");
    let env = udhcpc(&lab, &cli, "eth0").expect("udhcpc got no lease");
    assert_eq!(env_value(&env, "ip"), Some("10.96.0.100"), "{env}");
    assert_eq!(env_value(&env, "domain"), Some("boot.test"), "{env}");
    assert_eq!(
        env_value(&env, "rootpath"),
        None,
        "no boot volume, no root-path: {env}"
    );
    let leases = nhn.ok(&["lease", "list"]);
    assert!(
        leases.contains("10.96.0.100")
            && leases.contains("52:54:00:aa:bb:01")
            && leases.contains("bound"),
        "{leases}"
    );
    let show = nhn.ok(&["inventory", "show"]);
    assert!(show.contains("1 discovered"), "{show}");
    // The same client asking again keeps its address.
    assert_eq!(
        env_value(&udhcpc(&lab, &cli, "eth0").unwrap(), "ip"),
        Some("10.96.0.100")
    );
}

#[test]
fn acked_leases_survive_kill_9() {
    let Some(lab) = lab_or_skip("acked_leases_survive_kill_9", &["busybox", "curl"]) else {
        return;
    };
    let nhn = appliance();
    let (srv, cli) = segment(&lab);
    let server = serve(&lab, &srv, &nhn);
    set_mac(&cli, "eth0", "52:54:00:aa:bb:02");
    assert_eq!(
        env_value(&udhcpc(&lab, &cli, "eth0").unwrap(), "ip"),
        Some("10.96.0.100")
    );
    server.kill();
    assert!(nhn.ok(&["lease", "list"]).contains("10.96.0.100"));
    let _again = serve(&lab, &srv, &nhn);
    // Another client must not get the address the first one holds.
    set_mac(&cli, "eth0", "52:54:00:aa:bb:03");
    assert_eq!(
        env_value(&udhcpc(&lab, &cli, "eth0").unwrap(), "ip"),
        Some("10.96.0.101")
    );
}

#[test]
fn relayed_request_gets_an_address_from_the_relay_subnet() {
    let Some(lab) = lab_or_skip(
        "relayed_request_gets_an_address_from_the_relay_subnet",
        &["busybox", "dhcrelay", "curl"],
    ) else {
        return;
    };
    let nhn = appliance();
    let srv = lab.netns("srv");
    let router = lab.netns("rtr");
    let cli = lab.netns("cli");
    lab.veth((&srv, "eth0"), (&router, "up0"));
    lab.veth((&router, "down0"), (&cli, "eth0"));
    srv.addr("eth0", "10.96.0.1/24");
    router.addr("up0", "10.96.0.254/24");
    router.addr("down0", "10.97.0.1/24");
    srv.ip(&["route", "add", "10.97.0.0/24", "via", "10.96.0.254"]);
    router.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    let _server = serve(&lab, &srv, &nhn);
    let relay = router.spawn(
        "dhcrelay",
        &[
            "dhcrelay",
            "-4",
            "-d",
            "-a",
            "-id",
            "down0",
            "-iu",
            "up0",
            "10.96.0.1",
        ],
    );
    let env = udhcpc(&lab, &cli, "eth0");
    let env =
        env.unwrap_or_else(|| panic!("no lease through the relay; relay log:\n{}", relay.log()));
    assert_eq!(env_value(&env, "ip"), Some("10.97.0.50"), "{env}");
    assert_eq!(env_value(&env, "router"), Some("10.97.0.1"), "{env}");
    let leases = nhn.ok(&["lease", "list"]);
    assert!(
        leases.contains("10.97.0.50") && leases.contains("via 10.97.0.1"),
        "{leases}"
    );
}

#[test]
fn no_answer_on_an_interface_the_config_does_not_name() {
    let Some(lab) = lab_or_skip(
        "no_answer_on_an_interface_the_config_does_not_name",
        &["busybox", "curl"],
    ) else {
        return;
    };
    let nhn = appliance();
    let (srv, cli) = segment(&lab);
    // A second segment on eth1, inside a configured subnet but not a configured interface.
    let other = lab.netns("other");
    lab.veth((&srv, "eth1"), (&other, "eth0"));
    srv.addr("eth1", "10.97.0.1/24");
    let server = serve(&lab, &srv, &nhn);
    set_mac(&other, "eth0", "52:54:00:aa:bb:04");
    assert_eq!(udhcpc(&lab, &other, "eth0"), None, "nhn answered on eth1");
    // The configured interface still works.
    set_mac(&cli, "eth0", "52:54:00:aa:bb:05");
    assert!(udhcpc(&lab, &cli, "eth0").is_some(), "{}", server.log());
}

#[test]
fn malformed_packets_are_counted_and_dropped_while_clients_are_served() {
    let Some(lab) = lab_or_skip(
        "malformed_packets_are_counted_and_dropped_while_clients_are_served",
        &["busybox", "curl", "python3"],
    ) else {
        return;
    };
    let nhn = appliance();
    let (srv, cli) = segment(&lab);
    let server = serve(&lab, &srv, &nhn);
    cli.addr("eth0", "10.96.0.99/24");
    let sent = cli.run(&["python3", "-c", MALFORMED_CORPUS, "10.96.0.1"]);
    let sent: usize = sent.trim().parse().unwrap();
    assert!(sent >= 12);
    cli.ip(&["addr", "flush", "dev", "eth0"]);
    set_mac(&cli, "eth0", KNOWN_MAC);
    let env = udhcpc(&lab, &cli, "eth0")
        .unwrap_or_else(|| panic!("no lease after the corpus; log:\n{}", server.log()));
    assert_eq!(env_value(&env, "ip"), Some("10.96.0.11"));
    assert!(server.try_wait().is_none(), "nhn died");
    let metrics = srv.run(&["curl", "-sf", "http://10.96.0.1:8080/metrics"]);
    let drops = |reason: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("nhn_dhcp_dropped_total{{reason=\"{reason}\"}} "))
            })
            .map_or(0.0, |v| v.parse().unwrap())
    };
    // Every hostile datagram that could not be answered is accounted for under a reason.
    for reason in [
        "malformed",
        "not_ethernet",
        "not_a_request",
        "unsupported_message_type",
        "no_message_type",
    ] {
        assert!(
            drops(reason) >= 1.0,
            "no drop counted as {reason}:\n{metrics}"
        );
    }
    let total: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("nhn_dhcp_dropped_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(
        total >= 9.0,
        "only {total} of {sent} hostile packets dropped:\n{metrics}"
    );
}

/// Sends hostile DHCP datagrams to the server given as argv[1]; prints how many it sent.
const MALFORMED_CORPUS: &str = r#"
import os, socket, struct, sys
srv = (sys.argv[1], 67)
def header(op=1, hlen=6, cookie=b"\x63\x82\x53\x63"):
    return struct.pack("!BBBBIHHIIII", op, 1, hlen, 0, 0x1234, 0, 0x8000, 0, 0, 0, 0) + b"\x52\x54\x00\x96\x00\x11" + b"\0" * 10 + b"\0" * 192 + cookie
corpus = [
    b"",                                             # empty
    b"\x01",                                         # one byte
    header()[:200],                                  # truncated header
    header(cookie=b"XXXX") + b"\x35\x01\x01\xff",    # bad magic cookie
    header() + b"\x35\x05\x01",                      # option longer than the packet
    header() + b"\x35\x01\x01\x0c\xff" + b"A" * 10,  # hostname claims 255 bytes
    header() + b"\x34\x01\x03\x35\x01\x01\xff",      # option overload pointing at file/sname (a loop)
    header() + b"\x35\x01\xc8\xff",                  # unknown message type 200
    header(op=2) + b"\x35\x01\x02\xff",              # a BOOTREPLY sent to the server
    header(hlen=16) + b"\x35\x01\x01\xff",           # not Ethernet
    header() + b"\xff",                              # no message type at all
    header() + bytes(range(256)) * 5,                # 1280 bytes of option soup
    os.urandom(1400),                                # noise
    header() + b"\x37\xff" + b"\x01" * 255,          # huge parameter request list
]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for p in corpus:
    s.sendto(p, srv)
print(len(corpus))
"#;

#[test]
fn enrolling_a_discovered_machine_takes_effect_without_a_restart() {
    let Some(lab) = lab_or_skip(
        "enrolling_a_discovered_machine_takes_effect_without_a_restart",
        &["busybox", "curl"],
    ) else {
        return;
    };
    let nhn = appliance();
    let (srv, cli) = segment(&lab);
    let server = serve(&lab, &srv, &nhn);
    set_mac(&cli, "eth0", "52:54:00:96:00:31");
    assert_eq!(
        env_value(&udhcpc(&lab, &cli, "eth0").unwrap(), "ip"),
        Some("10.96.0.100")
    );
    assert!(nhn.ok(&["inventory", "show"]).contains("1 discovered"));
    // The operator names it in the site file and imports, while nhn serves.
    let site = nhn.dir().join("enrolled.toml");
    let text = std::fs::read_to_string(data().join("boot-site.toml")).unwrap()
        + "\n[[machines]]\nname = \"Server-3\"\nkind = \"bare-metal\"\n\n[[machines.nics]]\ndevice = \"eth0\"\n\
           mac = \"52:54:00:96:00:31\"\nnetwork = \"provisioning\"\nip = \"10.96.0.31\"\n";
    std::fs::write(&site, text).unwrap();
    nhn.ok(&["inventory", "import", site.to_str().unwrap()]);
    assert!(nhn.ok(&["inventory", "show"]).contains("0 discovered"));
    let enrolled = support::wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        udhcpc(&lab, &cli, "eth0").is_some_and(|env| env_value(&env, "ip") == Some("10.96.0.31"))
    });
    assert!(
        enrolled,
        "the static answer did not follow the import; log:\n{}",
        server.log()
    );
}

/// Waits until `ifname` in `ns` has a usable (no longer tentative) IPv6 link-local address
/// and returns it.
fn link_local(ns: &Netns, ifname: &str) -> String {
    let mut addr = None;
    let ready = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let out = ns.ip(&["-6", "-o", "addr", "show", "dev", ifname, "scope", "link"]);
        addr = out
            .lines()
            .find(|l| !l.contains("tentative"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|a| a.split('/').next())
            .map(String::from);
        addr.is_some()
    });
    assert!(
        ready,
        "{ifname} in {} got no IPv6 link-local address",
        ns.name()
    );
    addr.unwrap()
}

/// tcpdump of ICMPv6 router solicitations and advertisements on `ifname`, started and ready.
fn capture_ndp(ns: &Netns, ifname: &str) -> Proc {
    let filter = "icmp6 and (ip6[40] == 133 or ip6[40] == 134)";
    let dump = ns.spawn(
        "tcpdump",
        &["tcpdump", "-i", ifname, "-n", "-l", "-vv", filter],
    );
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || dump
            .log()
            .contains("listening on")),
        "tcpdump did not start: {}",
        dump.log()
    );
    dump
}

/// Stops a [`capture_ndp`]; returns the solicitations and advertisements it saw, and its log.
fn ndp_seen(dump: &Proc) -> (usize, usize, String) {
    dump.terminate();
    dump.wait_timeout(Duration::from_secs(5));
    let log = dump.log();
    let count = |what: &str| log.matches(what).count();
    (
        count("router solicitation"),
        count("router advertisement"),
        log,
    )
}

/// Sends one router solicitation on `ifname` (from its link-local address, hop limit 255) and
/// prints the first router advertisement that arrives within `secs` as
/// `RA <source> <hop limit> <flags> <router lifetime> <option types>`, or `NONE`.
const RS_PROBE: &str = r#"
import select, socket, struct, sys, time
ifname, secs = sys.argv[1], float(sys.argv[2])
idx = socket.if_nametoindex(ifname)
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, idx)
s.sendto(bytes([133, 0, 0, 0, 0, 0, 0, 0]), ("ff02::2", 0, 0, idx))
t0 = time.monotonic()
deadline = t0 + secs
while time.monotonic() < deadline:
    if not select.select([s], [], [], deadline - time.monotonic())[0]:
        break
    data, anc, _, src = s.recvmsg(1500, socket.CMSG_SPACE(4))
    if len(data) < 16 or data[0] != 134:
        continue
    hops = [struct.unpack("i", d[:4])[0] for l, t, d in anc if t == socket.IPV6_HOPLIMIT]
    opts, o = [], 16
    while o + 2 <= len(data) and data[o + 1]:
        opts.append(str(data[o]))
        o += data[o + 1] * 8
    lifetime = struct.unpack("!H", data[6:8])[0]
    print("RA", src[0].split("%")[0], hops[0] if hops else -1, data[5], lifetime,
          ",".join(opts), "%.2f" % (time.monotonic() - t0))
    sys.exit(0)
print("NONE")
"#;

fn solicit(ns: &Netns, ifname: &str, secs: &str) -> String {
    ns.run(&["python3", "-c", RS_PROBE, ifname, secs])
        .trim()
        .to_string()
}

#[test]
fn router_advertisements_answer_solicitations_only_on_configured_interfaces() {
    let Some(lab) = lab_or_skip(
        "router_advertisements_answer_solicitations_only_on_configured_interfaces",
        &["curl", "python3", "tcpdump"],
    ) else {
        return;
    };
    let nhn = appliance();
    let (srv, cli) = segment(&lab);
    // A second segment on eth1, not in [dhcp] interfaces.
    let other = lab.netns("other");
    lab.veth((&srv, "eth1"), (&other, "eth0"));
    srv.addr("eth1", "10.97.0.1/24");
    let nhn_ll = link_local(&srv, "eth0");
    link_local(&srv, "eth1");
    link_local(&cli, "eth0");
    link_local(&other, "eth0");
    let dump = capture_ndp(&other, "eth0");
    let server = serve(&lab, &srv, &nhn);

    let ra = solicit(&cli, "eth0", "3");
    let f: Vec<&str> = ra.split_whitespace().collect();
    assert_eq!(f.first(), Some(&"RA"), "{ra}\n{}", server.log());
    assert_eq!(f[1], nhn_ll, "not from nhn's link-local address: {ra}");
    assert_eq!(f[2], "255", "hop limit: {ra}");
    assert_eq!(f[3], "0", "no managed/other flags: {ra}");
    assert_eq!(f[4], "0", "router lifetime must be 0: {ra}");
    assert_eq!(
        f[5], "1",
        "only the source link-layer option, no prefix: {ra}"
    );
    let took: f64 = f[6].parse().unwrap();
    assert!(took < 1.0, "answered after {took} s: {ra}");

    // eth1 hears the solicitation (and the kernel's own) but never an advertisement.
    assert_eq!(
        solicit(&other, "eth0", "3"),
        "NONE",
        "nhn advertised on eth1"
    );
    let (rs, ra, log) = ndp_seen(&dump);
    assert!(rs >= 1, "the capture saw no solicitation at all:\n{log}");
    assert_eq!(ra, 0, "advertisements on an unconfigured interface:\n{log}");
    assert!(server.log().contains("IPv6 router advertisements on"));
}

#[test]
fn ipv6_ra_false_sends_no_router_advertisements() {
    let Some(lab) = lab_or_skip(
        "ipv6_ra_false_sends_no_router_advertisements",
        &["curl", "python3", "tcpdump"],
    ) else {
        return;
    };
    let nhn = appliance();
    let (srv, cli) = segment(&lab);
    link_local(&srv, "eth0");
    link_local(&cli, "eth0");
    let dump = capture_ndp(&cli, "eth0");
    let config = CONFIG.replace("[dhcp]\n", "[dhcp]\nipv6_ra = false\n");
    let server = nhn.serve_in(&lab, &srv, &config, "10.96.0.1:8080");
    assert_eq!(solicit(&cli, "eth0", "4"), "NONE", "{}", server.log());
    let (rs, ra, log) = ndp_seen(&dump);
    assert!(rs >= 1, "the capture saw no solicitation at all:\n{log}");
    assert_eq!(ra, 0, "advertisements with ipv6_ra = false:\n{log}");
    assert!(server.log().contains("router advertisements off"));
    // DHCP itself still answers.
    set_mac(&cli, "eth0", KNOWN_MAC);
    assert!(udhcpc(&lab, &cli, "eth0").is_some(), "{}", server.log());
}
