//! Tests of the network-namespace lab in `tests/support` itself: links, switches, VLAN
//! isolation and, above all, that a dropped lab leaves nothing behind.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{Netns, lab_or_skip, wait_until};

/// Pings until answered (the first echo may race ARP/MAC learning), at most 10 s.
fn pings(from: &Netns, ip: &str) -> bool {
    wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        from.ping(ip)
    })
}

fn netns_listed(name: &str) -> bool {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("running ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

/// True while `pid` exists in any state other than zombie.
fn running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) S ...": the state follows the last ')'.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    state != Some("Z")
}

/// True once `pid` is gone from /proc: ended and reaped.
fn reaped(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn veth_between_namespaces_carries_ping() {
    let Some(lab) = lab_or_skip("veth_between_namespaces_carries_ping", &["ping"]) else {
        return;
    };
    let (a, b) = (lab.netns("a"), lab.netns("b"));
    lab.veth((&a, "eth0"), (&b, "eth0"));
    a.addr("eth0", "10.0.0.1/24");
    b.addr("eth0", "10.0.0.2/24");
    assert!(pings(&a, "10.0.0.2"), "a cannot ping b over the veth");
}

#[test]
fn linux_bridge_joins_namespaces() {
    let Some(lab) = lab_or_skip("linux_bridge_joins_namespaces", &["ping"]) else {
        return;
    };
    let sw = lab.netns("sw");
    lab.bridge(&sw, "br0");
    let hosts: Vec<Netns> = (1..=2).map(|i| lab.netns(&format!("h{i}"))).collect();
    for (i, h) in hosts.iter().enumerate() {
        let port = format!("p{}", i + 1);
        lab.veth((&sw, &port), (h, "eth0"));
        sw.enslave(&port, "br0");
        h.addr("eth0", &format!("10.0.1.{}/24", i + 1));
    }
    assert!(
        pings(&hosts[0], "10.0.1.2"),
        "h1 cannot ping h2 across the bridge"
    );
}

#[test]
fn ovs_access_ports_isolate_vlans() {
    let Some(lab) = lab_or_skip("ovs_access_ports_isolate_vlans", &["ping", "ovs-vswitchd"]) else {
        return;
    };
    let sw = lab.netns("sw");
    let ovs = lab.ovs(&sw);
    ovs.add_bridge("br0");
    // One IP subnet for both VLANs: only the switch separates them.
    let hosts: Vec<Netns> = [100, 100, 200, 200]
        .iter()
        .enumerate()
        .map(|(i, &vlan)| {
            let (h, port) = (lab.netns(&format!("h{}", i + 1)), format!("p{}", i + 1));
            lab.veth((&sw, &port), (&h, "eth0"));
            ovs.add_access_port("br0", &port, vlan);
            h.addr("eth0", &format!("192.168.50.{}/24", i + 1));
            h
        })
        .collect();
    assert!(pings(&hosts[0], "192.168.50.2"), "h1 -> h2 (both VLAN 100)");
    assert!(pings(&hosts[2], "192.168.50.4"), "h3 -> h4 (both VLAN 200)");
    assert!(
        !hosts[0].ping("192.168.50.3"),
        "h1 (VLAN 100) reached h3 (VLAN 200)"
    );
}

#[test]
fn ovs_trunk_carries_tagged_vlans_between_switches() {
    let test = "ovs_trunk_carries_tagged_vlans_between_switches";
    let Some(lab) = lab_or_skip(test, &["ping", "ovs-vswitchd"]) else {
        return;
    };
    let (sw1, sw2) = (lab.netns("sw1"), lab.netns("sw2"));
    let (ovs1, ovs2) = (lab.ovs(&sw1), lab.ovs(&sw2));
    lab.veth((&sw1, "trunk"), (&sw2, "trunk"));
    let mut hosts = Vec::new();
    for (n, (sw, ovs)) in [(&sw1, &ovs1), (&sw2, &ovs2)].into_iter().enumerate() {
        ovs.add_bridge("br0");
        ovs.add_trunk_port("br0", "trunk", &[100, 200]);
        for vlan in [100, 200] {
            let (h, port) = (lab.netns(&format!("s{}v{vlan}", n + 1)), format!("v{vlan}"));
            lab.veth((sw, &port), (&h, "eth0"));
            ovs.add_access_port("br0", &port, vlan);
            h.addr("eth0", &format!("192.168.60.{}{}/24", n + 1, vlan / 100));
            hosts.push(h);
        }
    }
    // hosts: s1v100 .11, s1v200 .12, s2v100 .21, s2v200 .22
    assert!(
        pings(&hosts[0], "192.168.60.21"),
        "VLAN 100 across the trunk"
    );
    assert!(
        pings(&hosts[1], "192.168.60.22"),
        "VLAN 200 across the trunk"
    );
    assert!(
        !hosts[0].ping("192.168.60.22"),
        "VLAN 100 reached VLAN 200 across the trunk"
    );
    // sw2 learned sw1's VLAN 100 host on the trunk port, tagged 100.
    let fdb = ovs2.appctl(&["fdb/show", "br0"]);
    let trunk_port = ovs2.vsctl(&["get", "interface", "trunk", "ofport"]);
    assert!(
        fdb.lines()
            .any(|l| l.split_whitespace().take(2).eq([trunk_port.trim(), "100"])),
        "no VLAN 100 MAC on the trunk (ofport {trunk_port}) in:\n{fdb}"
    );
    // Pruning VLAN 200 from the trunk cuts it (once OVS has revalidated its cached flows),
    // VLAN 100 keeps working.
    ovs1.vsctl(&["set", "port", "trunk", "trunks=100"]);
    let cut = wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
        !hosts[1].ping("192.168.60.22")
    });
    assert!(cut, "VLAN 200 still crosses a trunk=100");
    assert!(
        pings(&hosts[0], "192.168.60.21"),
        "VLAN 100 lost after pruning 200"
    );
}

#[test]
fn tcp_crosses_ovs_with_tx_offload_off() {
    let test = "tcp_crosses_ovs_with_tx_offload_off";
    let tools = ["curl", "ethtool", "/usr/bin/python3", "ovs-vswitchd"];
    let Some(lab) = lab_or_skip(test, &tools) else {
        return;
    };
    let sw = lab.netns("sw");
    let ovs = lab.ovs(&sw);
    ovs.add_bridge("br0");
    let (server, client) = (lab.netns("srv"), lab.netns("cli"));
    for (i, h) in [&server, &client].into_iter().enumerate() {
        let port = format!("p{i}");
        lab.veth((&sw, &port), (h, "eth0"));
        ovs.add_access_port("br0", &port, 100);
        h.addr("eth0", &format!("192.168.70.{}/24", i + 1));
        h.tx_offload_off("eth0");
    }
    let root = lab.dir().join("www");
    std::fs::create_dir(&root).expect("creating the web root");
    let body = "x".repeat(200_000);
    std::fs::write(root.join("blob"), &body).expect("writing the test file");
    let root = root.to_str().expect("utf-8 lab dir");
    let http = server.spawn(
        "http",
        &[
            "/usr/bin/python3",
            "-m",
            "http.server",
            "--bind",
            "192.168.70.1",
            "--directory",
            root,
            "8080",
        ],
    );
    let url = "http://192.168.70.1:8080/blob";
    let fetched = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        client
            .try_run(&["curl", "-sf", "--max-time", "5", "-o", "/dev/null", url])
            .status
            .success()
    });
    assert!(fetched, "curl never got {url}; server log:\n{}", http.log());
    let got = client.run(&["curl", "-sf", "--max-time", "5", url]);
    assert!(
        got == body,
        "body differs: {} of {} bytes",
        got.len(),
        body.len()
    );
}

#[test]
fn lab_cleanup_removes_namespaces_and_processes() {
    let test = "lab_cleanup_removes_namespaces_and_processes";
    let Some(lab) = lab_or_skip(test, &["sleep", "sh"]) else {
        return;
    };
    let ns = lab.netns("a");
    let name = ns.name().to_string();
    let sleeper = ns.spawn("sleep", &["sleep", "1000"]);
    // A daemon the lab did not start itself: only the namespace sweep can find it.
    let orphan: u32 = ns
        .run(&["sh", "-c", "sleep 1000 >/dev/null 2>&1 & echo $!"])
        .trim()
        .parse()
        .expect("orphan pid");
    let dir = lab.dir().to_path_buf();
    assert!(netns_listed(&name) && running(sleeper.pid()) && running(orphan));
    drop(lab);
    assert!(!netns_listed(&name), "netns {name} survived the lab");
    assert!(reaped(sleeper.pid()), "sleep not killed and reaped");
    assert!(!running(orphan), "orphan sleep {orphan} still running");
    assert!(!dir.exists(), "{} survived the lab", dir.display());
}

#[test]
fn lab_cleanup_stops_ovs() {
    let Some(lab) = lab_or_skip("lab_cleanup_stops_ovs", &["ovs-vswitchd"]) else {
        return;
    };
    let sw = lab.netns("sw");
    let ovs = lab.ovs(&sw);
    ovs.add_bridge("br0");
    let pids: Vec<u32> = ovs.daemons().iter().map(|p| p.pid()).collect();
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|&p| running(p)));
    let name = sw.name().to_string();
    drop(lab);
    for pid in pids {
        assert!(reaped(pid), "OVS daemon {pid} not reaped");
    }
    assert!(!netns_listed(&name), "netns {name} survived the lab");
}

#[test]
fn lab_cleanup_runs_on_panic() {
    let Some(lab) = lab_or_skip("lab_cleanup_runs_on_panic", &["sleep"]) else {
        return;
    };
    let mut seen = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let ns = lab.netns("a");
        let sleeper = ns.spawn("sleep", &["sleep", "1000"]);
        seen = Some((
            ns.name().to_string(),
            sleeper.pid(),
            lab.dir().to_path_buf(),
        ));
        let _lab = lab; // dropped while unwinding
        panic!("deliberate panic inside a lab");
    }));
    assert!(result.is_err(), "the closure should have panicked");
    let (name, pid, dir) = seen.expect("the lab was set up before the panic");
    assert!(!netns_listed(&name), "netns {name} survived a panic");
    assert!(reaped(pid), "sleep {pid} survived a panic");
    assert!(!dir.exists(), "{} survived a panic", dir.display());
}
