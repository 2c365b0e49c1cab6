//! The switch plane against real switches: the seed topology as Open vSwitch bridges in
//! namespaces behind sshd (tests/support/switchlab.rs), `nhn serve` in the management
//! namespace driving them over SSH, one edge through an IOS-like CLI on a PTY; and the same
//! with Edge-Switch-3 behind net-snmp's snmpd (Q-BRIDGE-MIB, SNMPv2c or SNMPv3 authPriv).

mod support;

use std::time::{Duration, Instant};

use nhn::switch::vlans::VlanSet;
use support::cli::Nhn;
use support::switchlab::{
    Persona, SeedLab, V3_AUTH, V3_PRIV, snmp_v2c_credential, snmp_v3_credential,
    with_bare_metal_server,
};
use support::{Lab, Proc, in_netns, lab_or_skip, wait_until};

const TOOLS: &[&str] = &[
    "ping",
    "ovs-vswitchd",
    "/usr/sbin/sshd",
    "ssh-keygen",
    "ethtool",
    "ss",
    "curl",
    "/usr/bin/python3",
];

/// [`TOOLS`] and net-snmp's agent, for the labs with an SNMP switch.
const SNMP_TOOLS: &[&str] = &[
    "ping",
    "ovs-vswitchd",
    "/usr/sbin/sshd",
    "/usr/sbin/snmpd",
    "ssh-keygen",
    "ethtool",
    "ss",
    "curl",
    "/usr/bin/python3",
];

/// [`SNMP_TOOLS`] and tcpdump, for the lab that looks at frames.
const FRAME_TOOLS: &[&str] = &[
    "ping",
    "tcpdump",
    "ovs-vswitchd",
    "/usr/sbin/sshd",
    "/usr/sbin/snmpd",
    "ssh-keygen",
    "ethtool",
    "ss",
    "curl",
    "/usr/bin/python3",
];

/// The lab, the appliance's data dir, and `nhn serve` running in the management namespace.
struct Rig<'lab> {
    sl: SeedLab<'lab>,
    nhn: Nhn,
    serve: Option<Proc>,
}

impl<'lab> Rig<'lab> {
    fn new(lab: &'lab Lab, personas: &[(&str, Persona)], mac_table: u32, readback: u64) -> Self {
        Self::with_site(lab, personas, mac_table, readback, |s| s)
    }

    /// Like `new`, with the generated site file passed through `edit` before the import.
    fn with_site(
        lab: &'lab Lab,
        personas: &[(&str, Persona)],
        mac_table: u32,
        readback: u64,
        edit: impl FnOnce(String) -> String,
    ) -> Self {
        Self::build(lab, personas, mac_table, readback, edit, |_| {})
    }

    /// Like `with_site`, with `prepare` run on the lab before nhn starts.
    fn build(
        lab: &'lab Lab,
        personas: &[(&str, Persona)],
        mac_table: u32,
        readback: u64,
        edit: impl FnOnce(String) -> String,
        prepare: impl FnOnce(&mut SeedLab<'lab>),
    ) -> Self {
        let nhn = Nhn::new();
        let mut sl = SeedLab::build(lab, &nhn.dir().join("lab"), personas, mac_table);
        prepare(&mut sl);
        let site = nhn.dir().join("site.toml");
        std::fs::write(&site, edit(sl.site_file())).expect("write the site file");
        std::fs::write(nhn.dir().join("nhn.toml"), sl.config(readback)).expect("write the config");
        nhn.ok(&["inventory", "import", site.to_str().expect("utf-8")]);
        let mut rig = Rig {
            sl,
            nhn,
            serve: None,
        };
        rig.start();
        rig
    }

    fn start(&mut self) {
        let dir = self.nhn.dir().display().to_string();
        let cfg = self.nhn.dir().join("nhn.toml").display().to_string();
        let bin = env!("CARGO_BIN_EXE_nhn");
        self.serve = Some(
            self.sl
                .mgmt
                .spawn("nhn", &[bin, "--data-dir", &dir, "--config", &cfg, "serve"]),
        );
    }

    fn kill9(&mut self) {
        if let Some(p) = self.serve.take() {
            p.kill();
        }
    }

    /// Restarts `nhn serve` (kill -9) with the lab's configuration and `snmp` as the SNMP
    /// credential: how an operator fixes (or breaks) a credential.
    fn restart_with_snmp_credential(&mut self, snmp: &str) {
        self.kill9();
        std::fs::write(
            self.nhn.dir().join("nhn.toml"),
            self.sl.config_with(60, snmp),
        )
        .expect("write the config");
        self.start();
    }

    /// Waits until `switch`'s last error contains `text`; panics with it otherwise.
    fn wait_error(&self, switch: &str, text: &str) -> String {
        let mut last = None;
        let ok = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            last = self.status(switch, "last_error");
            last.as_deref().is_some_and(|e| e.contains(text))
        });
        assert!(ok, "{switch}: no error with {text:?}; last error {last:?}");
        last.unwrap_or_default()
    }

    fn nhn(&self, args: &[&str]) -> String {
        let mut full = vec!["--config", "nhn.toml"];
        full.extend_from_slice(args);
        let out = self
            .nhn
            .command(&full)
            .current_dir(self.nhn.dir())
            .output()
            .expect("run nhn");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "nhn {args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.nhn.dir().join("nhn.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open nhn.db")
    }

    /// Differences between the plan and what the switches' OVS really carry, plus pending
    /// intents; empty when converged.
    fn divergence(&self) -> Vec<String> {
        self.divergence_except(&[])
    }

    /// [`Rig::divergence`] ignoring the switches in `skip`.
    fn divergence_except(&self, skip: &[&str]) -> Vec<String> {
        let conn = self.db();
        let planned =
            match nhn::switch::plan_inventory(&nhn::inventory::Tx::new(&conn), &VlanSet::new()) {
                Ok(p) => p,
                Err(e) => return vec![format!("plan failed: {e}")],
            };
        let mut out = Vec::new();
        for (switch, ports) in &planned.desired.ports {
            if skip.contains(&switch.as_str()) {
                continue;
            }
            let real = self.sl.port_plans(switch);
            for (port, want) in ports {
                match real.get(port) {
                    Some(have) if want.satisfied_by(have) => {}
                    Some(have) => out.push(format!("{switch}:{port} plan {want} switch {have}")),
                    None => out.push(format!("{switch}:{port} plan {want}, not on the switch")),
                }
            }
        }
        for (switch, n) in pending_by_switch(&conn) {
            if n != 0 && !skip.contains(&switch.as_str()) {
                out.push(format!("{switch}: {n} intents pending"));
            }
        }
        out
    }

    /// A column of `switch_status` for `switch`.
    fn status(&self, switch: &str, column: &str) -> Option<String> {
        self.db()
            .query_row(
                &format!(
                    "SELECT st.{column} FROM switch_status st JOIN switches s ON s.id = st.switch_id WHERE s.name = ?1"
                ),
                [switch],
                |r| r.get(0),
            )
            .ok()
            .flatten()
    }

    fn pending(&self, switch: &str) -> i64 {
        pending_by_switch(&self.db())
            .into_iter()
            .find(|(s, _)| s == switch)
            .map_or(0, |(_, n)| n)
    }

    fn wait_converged(&self, what: &str) -> Duration {
        let t0 = Instant::now();
        let mut last = Vec::new();
        let ok = wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
            last = self.divergence();
            last.is_empty()
        });
        if !ok {
            let show = self.nhn(&["switch", "show"]);
            let log = self.serve.as_ref().map(Proc::log).unwrap_or_default();
            panic!("{what}: not converged after 60 s: {last:?}\n{show}\n--- nhn log ---\n{log}");
        }
        t0.elapsed()
    }

    fn place(&mut self, vm: &str, vlan: u16, host: Option<&str>, ip: &str) -> String {
        let v = vlan.to_string();
        let mut args = vec!["vm", "place", vm, "--network", &v];
        if let Some(h) = host {
            args.extend(["--host", h]);
        }
        let out = self.nhn(&args);
        let placed_on = out
            .trim()
            .rsplit(' ')
            .next()
            .expect("placed … on HOST")
            .to_owned();
        self.sl.start_vm(vm, &placed_on, vlan, ip);
        placed_on
    }
}

fn pending_by_switch(conn: &rusqlite::Connection) -> Vec<(String, i64)> {
    let Ok(mut st) = conn.prepare(
        "SELECT s.name, COUNT(i.id) FROM switches s
         LEFT JOIN switch_intents i ON i.switch_id = s.id AND i.state = 'pending' GROUP BY s.name",
    ) else {
        return vec![("?".into(), -1)];
    };
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect())
        .unwrap_or_else(|_| vec![("?".into(), -1)])
}

/// Pings until answered (ARP and MAC learning may take a moment), at most `secs`.
fn reaches(lab: &SeedLab, from: &str, to: &str, secs: u64) -> bool {
    let ip = lab.vms[to].ip.clone();
    wait_until(
        Duration::from_secs(secs),
        Duration::from_millis(100),
        || lab.vms[from].ns.ping(&ip),
    )
}

#[test]
fn seed_sequence_vlans_follow_the_inventory_on_real_switches() {
    seed_sequence(
        "seed_sequence_vlans_follow_the_inventory_on_real_switches",
        Persona::Ovs,
    );
}

#[test]
fn seed_sequence_with_edge_switch_3_over_snmp_v2c() {
    seed_sequence(
        "seed_sequence_with_edge_switch_3_over_snmp_v2c",
        Persona::SnmpV2c,
    );
}

#[test]
fn seed_sequence_with_edge_switch_3_over_snmp_v3_authpriv() {
    seed_sequence(
        "seed_sequence_with_edge_switch_3_over_snmp_v3_authpriv",
        Persona::SnmpV3,
    );
}

/// The seed's slides on the lab: Edge-Switch-2 through the IOS-like CLI, Edge-Switch-3 as
/// `es3` says (SSH to OVS, or snmpd), the rest SSH to OVS.
fn seed_sequence(test: &str, es3: Persona) {
    let tools = if es3.is_snmp() { SNMP_TOOLS } else { TOOLS };
    let Some(lab) = lab_or_skip(test, tools) else {
        return;
    };
    let mut rig = Rig::new(
        &lab,
        &[("Edge-Switch-2", Persona::Ios), ("Edge-Switch-3", es3)],
        64,
        60,
    );
    // No VMs yet: every edge drops the 100,200 the lab started with and carries only its
    // hypervisor's own networks: `service` (20) untagged, `storage` (10) tagged.
    rig.wait_converged("initial");
    for edge in ["Edge-Switch-1", "Edge-Switch-2", "Edge-Switch-3"] {
        let ports = rig.sl.ports(edge);
        let want = [
            ("swp1", "10,20"),
            ("swp2", "10,20"),
            ("swp3", "native 20 + 10"),
        ];
        let want = want.map(|(p, v)| (p.to_owned(), v.to_owned())).into();
        assert_eq!(ports, want, "{edge}");
    }

    // The slides: VM1-1 on VLAN 100 and VM3-2 on VLAN 200 are up.
    rig.place("VM1-1", 100, Some("Hypervisor-1"), "192.168.50.11");
    rig.place("VM3-2", 200, Some("Hypervisor-3"), "192.168.50.32");
    rig.wait_converged("VM1-1 and VM3-2");
    assert_eq!(rig.sl.ports("Edge-Switch-1")["swp3"], "native 20 + 10,100");
    assert_eq!(rig.sl.ports("Edge-Switch-3")["swp3"], "native 20 + 10,200");
    assert_eq!(rig.sl.ports("Edge-Switch-2")["swp3"], "native 20 + 10");

    // Another VLAN 100 VM goes next to VM1-1, not to Hypervisor-2.
    let host = rig.place("VM1-2", 100, None, "192.168.50.12");
    assert_eq!(host, "Hypervisor-1");
    rig.wait_converged("VM1-2");
    assert_eq!(rig.sl.ports("Edge-Switch-2")["swp3"], "native 20 + 10");

    // Forcing VM2-1 onto VLAN 100 on Hypervisor-2 adds VLAN 100 to Edge-Switch-2 only.
    let before: Vec<_> = [
        "Edge-Switch-1",
        "Edge-Switch-3",
        "Core-Switch-A",
        "Core-Switch-B",
    ]
    .iter()
    .map(|s| rig.sl.ports(s))
    .collect();
    rig.place("VM2-1", 100, Some("Hypervisor-2"), "192.168.50.21");
    rig.wait_converged("VM2-1");
    let after: Vec<_> = [
        "Edge-Switch-1",
        "Edge-Switch-3",
        "Core-Switch-A",
        "Core-Switch-B",
    ]
    .iter()
    .map(|s| rig.sl.ports(s))
    .collect();
    assert_eq!(before, after, "switches other than Edge-Switch-2 changed");
    let es2 = rig.sl.ports("Edge-Switch-2");
    assert_eq!(
        (es2["swp1"].as_str(), es2["swp3"].as_str()),
        ("10,20,100", "native 20 + 10,100"),
        "{es2:?}"
    );
    // Edges carry only what their hosts need.
    assert!(
        !rig.sl
            .ports("Edge-Switch-1")
            .values()
            .any(|v| v.contains("200"))
    );
    assert!(
        !rig.sl
            .ports("Edge-Switch-3")
            .values()
            .any(|v| v.contains("100"))
    );

    // Same VLAN across edges through Core-Switch-A; other VLAN on the same subnet cut off.
    assert!(
        reaches(&rig.sl, "VM1-1", "VM2-1", 15),
        "VM1-1 cannot reach VM2-1"
    );
    assert!(
        reaches(&rig.sl, "VM2-1", "VM1-2", 15),
        "VM2-1 cannot reach VM1-2"
    );
    assert!(
        reaches(&rig.sl, "VM1-1", "VM1-2", 15),
        "VM1-1 cannot reach VM1-2"
    );
    assert!(
        !reaches(&rig.sl, "VM3-2", "VM1-1", 3),
        "VLAN 200 reached VLAN 100"
    );
    assert!(
        !reaches(&rig.sl, "VM3-2", "VM2-1", 3),
        "VLAN 200 reached VLAN 100"
    );

    // VLAN 100 arrives on Edge-Switch-3 too: reachable through it, still isolated from 200.
    rig.place("VM3-1", 100, Some("Hypervisor-3"), "192.168.50.31");
    rig.wait_converged("VM3-1");
    assert_eq!(
        rig.sl.ports("Edge-Switch-3")["swp3"],
        "native 20 + 10,100,200"
    );
    assert!(
        reaches(&rig.sl, "VM3-1", "VM1-1", 15),
        "VM3-1 cannot reach VM1-1"
    );
    assert!(
        !reaches(&rig.sl, "VM3-2", "VM3-1", 3),
        "VLAN 200 reached VLAN 100"
    );

    // The operator's views.
    let show = rig.nhn(&["switch", "show"]);
    assert!(
        show.contains("Edge-Switch-2  edge cisco-ios 10.99.0.22  ok  0 queued intents"),
        "{show}"
    );
    let metrics = rig
        .sl
        .mgmt
        .run(&["curl", "-sf", "http://127.0.0.1:18080/metrics"]);
    assert!(
        metrics.contains("nhn_switch_up{switch=\"Edge-Switch-2\"} 1"),
        "{metrics}"
    );
    // Every step after the first reused Edge-Switch-1's connection (`[switch] ssh_idle_secs`).
    let connections = |kind: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("nhn_switch_ssh_connections_total{")
                    && l.contains("switch=\"Edge-Switch-1\"")
                    && l.contains(&format!("kind=\"{kind}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let (new, reused) = (connections("new"), connections("reused"));
    assert!(
        new >= 1 && reused > new,
        "Edge-Switch-1: {new} new, {reused} reused connections\n{metrics}"
    );
    let page = rig.sl.mgmt.run(&["curl", "-sf", "http://127.0.0.1:18080/"]);
    assert!(page.contains("<h2>Switch plane</h2>"), "{page}");
    if es3.is_snmp() {
        let driver = if es3 == Persona::SnmpV3 {
            "driver: snmp v3 authPriv (SHA/AES, user nhnadmin), credentials \"lab-snmp\""
        } else {
            "driver: snmp v2c, credentials \"lab-snmp\""
        };
        assert!(
            show.contains("Edge-Switch-3  edge openvswitch 10.99.0.23  ok  0 queued intents")
                && show.contains(driver),
            "{show}"
        );
        // It really went over SNMP: VLAN 200 created and put on swp1 and swp3 by SETs.
        let log = rig.sl.qbridge_log("Edge-Switch-3");
        assert!(
            log.contains("set .1.3.6.1.2.1.17.7.1.4.3.1.6.200 integer 4 -> DONE")
                && log.contains("set .1.3.6.1.2.1.17.7.1.4.3.1.3.200 octet")
                && log.contains("set .1.3.6.1.2.1.17.7.1.4.3.1.6.100 integer 6 -> DONE"),
            "{log}"
        );
        assert!(rig.sl.cli_log("Edge-Switch-3").is_empty());
        // Secrets appear neither in the log nor in what the operator sees.
        let out = rig.serve.as_ref().map(Proc::log).unwrap_or_default();
        for secret in [V3_AUTH, V3_PRIV, "\"private\"", "community = "] {
            assert!(!out.contains(secret), "{secret} in the log:\n{out}");
            assert!(!show.contains(secret), "{secret} in switch show:\n{show}");
        }
    }
    rig.kill9();
}

/// Issue 14 part 3 on real switches: each hypervisor's edge port carries its boot network
/// (`service`, VLAN 20) untagged and `storage` (VLAN 10) tagged, whichever driver programs
/// it — SSH to OVS (Edge-Switch-1), the IOS-like CLI (Edge-Switch-2), SNMP (Edge-Switch-3) —
/// and bare-metal Server-1's port on Edge-Switch-2 becomes an access port. Read back from the
/// switches' OVS, then proven with frames: untagged from a hypervisor's own NIC, tagged on
/// the uplink, untagged again at the server.
#[test]
fn machine_ports_carry_their_boot_network_untagged_whatever_the_driver() {
    let Some(lab) = lab_or_skip(
        "machine_ports_carry_their_boot_network_untagged_whatever_the_driver",
        FRAME_TOOLS,
    ) else {
        return;
    };
    let mut rig = Rig::build(
        &lab,
        &[
            ("Edge-Switch-2", Persona::Ios),
            ("Edge-Switch-3", Persona::SnmpV2c),
        ],
        64,
        60,
        |site| with_bare_metal_server(&site),
        |sl| {
            sl.start_server("server1", "Edge-Switch-2", "swp4", "10.20.0.101");
            sl.start_host_nic("hv1nic", "Hypervisor-1", "10.20.0.11");
            sl.start_host_nic("hv3nic", "Hypervisor-3", "10.20.0.13");
        },
    );
    rig.place("VM1-1", 100, Some("Hypervisor-1"), "192.168.50.11");
    rig.place("VM2-1", 100, Some("Hypervisor-2"), "192.168.50.21");
    rig.wait_converged("machine ports");
    let es1 = rig.sl.ports("Edge-Switch-1");
    let es2 = rig.sl.ports("Edge-Switch-2");
    let es3 = rig.sl.ports("Edge-Switch-3");
    assert_eq!(es1["swp3"], "native 20 + 10,100", "over SSH to OVS");
    assert_eq!(es2["swp3"], "native 20 + 10,100", "over the IOS CLI");
    assert_eq!(es3["swp3"], "native 20 + 10", "over SNMP");
    assert_eq!(es2["swp4"], "access 20", "the bare-metal server's port");
    assert_eq!(
        es1["swp1"], "10,20,100",
        "the uplink carries the service VLAN tagged"
    );
    // OVS's own columns say the same: the service VLAN leaves the hypervisor port untagged.
    let raw = rig.sl.switches["Edge-Switch-1"].ovs.vsctl(&[
        "--format=csv",
        "--data=bare",
        "--no-headings",
        "--columns=vlan_mode,tag,trunks",
        "list",
        "Port",
        "swp3",
    ]);
    assert_eq!(raw.trim(), "native-untagged,20,10 100");
    let raw = rig.sl.switches["Edge-Switch-2"].ovs.vsctl(&[
        "--format=csv",
        "--data=bare",
        "--no-headings",
        "--columns=vlan_mode,tag",
        "list",
        "Port",
        "swp4",
    ]);
    assert_eq!(raw.trim(), "access,20");
    // How each driver said it.
    let ios = rig.sl.cli_log("Edge-Switch-2");
    assert!(
        ios.contains("switchport trunk native vlan 20")
            && ios.contains("switchport access vlan 20"),
        "{ios}"
    );
    let snmp = rig.sl.qbridge_log("Edge-Switch-3");
    assert!(
        snmp.contains("set .1.3.6.1.2.1.17.7.1.4.5.1.1.3 "),
        "no dot1qPvid.3 SET:\n{snmp}"
    );

    // Frames: Hypervisor-1's own NIC sends untagged; the edge puts it in VLAN 20, the uplink
    // carries it tagged, and Server-1 (access port) and Hypervisor-3 (native VLAN set over
    // SNMP) answer untagged.
    let capture = |port: &str, filter: &str| {
        let p = rig.sl.switches["Edge-Switch-1"].ns.spawn(
            &format!("tcpdump-{port}"),
            &["tcpdump", "-e", "-n", "-l", "-i", port, "-c", "2", filter],
        );
        let listening = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            p.log().contains("listening on")
        });
        assert!(listening, "tcpdump on {port}: {}", p.log());
        p
    };
    let uplink = capture("swp1", "vlan 20 and icmp");
    let host_port = capture("swp3", "icmp");
    assert!(
        reaches(&rig.sl, "hv1nic", "server1", 15),
        "Hypervisor-1's untagged NIC cannot reach the bare-metal server"
    );
    assert!(
        reaches(&rig.sl, "hv1nic", "hv3nic", 15),
        "Hypervisor-1's untagged NIC cannot reach Hypervisor-3's"
    );
    for (p, what) in [(&uplink, "uplink swp1"), (&host_port, "host port swp3")] {
        assert!(
            p.wait_timeout(Duration::from_secs(10)).is_some(),
            "tcpdump on {what} saw too few frames:\n{}",
            p.log()
        );
    }
    let up = uplink.log();
    assert!(up.contains("vlan 20") && up.contains("10.20.0.11"), "{up}");
    let host = host_port.log();
    assert!(
        host.contains("10.20.0.11") && !host.contains("vlan"),
        "{host}"
    );
    // The VM VLAN stays apart from the untagged service network.
    assert!(!rig.sl.vms["VM1-1"].ns.ping("10.20.0.101"));
    assert!(reaches(&rig.sl, "VM1-1", "VM2-1", 15));
    rig.kill9();
}

#[test]
fn ios_cli_errors_are_detected_and_reported() {
    let Some(lab) = lab_or_skip("ios_cli_errors_are_detected_and_reported", TOOLS) else {
        return;
    };
    let nhn = Nhn::new();
    let sl = SeedLab::build(
        &lab,
        &nhn.dir().join("lab"),
        &[("Edge-Switch-2", Persona::Ios)],
        64,
    );
    let templates = nhn::switch::templates::Templates::builtin().expect("built-in templates");
    let meta = templates.get("cisco-ios").expect("cisco-ios").meta.clone();
    let key = sl.client_key.clone();
    let target = move |pinned: &str| nhn::switch::ssh::Target {
        switch: "Edge-Switch-2".into(),
        address: "10.99.0.22".into(),
        user: "root".into(),
        auth: nhn::switch::ssh::Auth::KeyFile(key.clone()),
        pinned: Some(pinned.to_owned()),
        trust_on_first_use: false,
        legacy_algorithms: false,
        connect_timeout: Duration::from_secs(5),
        command_timeout: Duration::from_secs(10),
    };
    let fp = sl.switches["Edge-Switch-2"].fingerprint.clone();
    // The driver runs where the switches are reachable: in the management namespace.
    let result = in_netns(sl.mgmt.name(), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut s = nhn::switch::ssh::Session::connect(&target(&fp), &meta)
                .await
                .map_err(|e| e.to_string())?;
            let ok = s
                .run(&[
                    "configure terminal".into(),
                    "interface swp3".into(),
                    "end".into(),
                ])
                .await
                .map_err(|e| e.to_string())?;
            let bad = s
                .run(&["configure terminal".into(), "interface swp9".into()])
                .await;
            s.close().await;
            let wrong = nhn::switch::ssh::Session::connect(
                &target("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
                &meta,
            )
            .await;
            Ok::<_, String>((
                ok,
                bad.err().map(|e| e.to_string()),
                wrong.err().map(|e| e.to_string()),
            ))
        })
    });
    let (ok, bad, wrong) = result.expect("IOS session");
    assert!(ok.contains("Edge-Switch-2(config-if)#"), "{ok}");
    let bad = bad.expect("a bad interface must fail");
    assert!(
        bad.contains("the switch rejected \"interface swp9\"")
            && bad.contains("% Invalid input detected"),
        "{bad}"
    );
    let wrong = wrong.expect("a wrong host key must be refused");
    assert!(
        wrong.contains("host key mismatch") && wrong.contains("nothing was sent"),
        "{wrong}"
    );
    // Nothing reached the CLI from the refused connection: the log holds only the good session.
    let log = sl.cli_log("Edge-Switch-2");
    assert!(log.contains("interface swp9"), "{log}");
    assert_eq!(log.matches("configure terminal").count(), 2, "{log}");
}

#[test]
fn a_killed_sshd_delays_only_its_switch_and_the_batch_is_retried_when_it_is_back() {
    let Some(lab) = lab_or_skip(
        "a_killed_sshd_delays_only_its_switch_and_the_batch_is_retried_when_it_is_back",
        TOOLS,
    ) else {
        return;
    };
    let mut rig = Rig::new(&lab, &[], 64, 60);
    rig.wait_converged("initial");
    rig.sl.slow("Edge-Switch-1", true);
    rig.place("VM1-1", 100, Some("Hypervisor-1"), "192.168.50.11");
    rig.place("VM2-1", 100, Some("Hypervisor-2"), "192.168.50.21");
    // Kill Edge-Switch-1's sshd while its batch is in flight.
    let arrived = wait_until(Duration::from_secs(30), Duration::from_millis(20), || {
        rig.sl
            .cli_log("Edge-Switch-1")
            .contains("set port swp3 vlan_mode=native-untagged tag=20 trunks=10,100")
    });
    assert!(arrived, "the batch never reached Edge-Switch-1");
    rig.sl.kill_sshd("Edge-Switch-1");
    rig.sl.slow("Edge-Switch-1", false);
    // The others converge meanwhile.
    let others = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        rig.divergence_except(&["Edge-Switch-1"]).is_empty()
    });
    assert!(others, "{:?}", rig.divergence_except(&["Edge-Switch-1"]));
    // Whether or not the switch got to run the batch before its sshd died, nhn never saw it
    // succeed: the intents stay pending until a session confirms them.
    eprintln!(
        "Edge-Switch-1 swp3 after the kill: {}",
        rig.sl.ports("Edge-Switch-1")["swp3"]
    );
    assert!(rig.pending("Edge-Switch-1") > 0);
    let failed = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        rig.status("Edge-Switch-1", "last_error").is_some()
    });
    assert!(failed, "no error recorded for Edge-Switch-1");
    rig.sl.restart_sshd("Edge-Switch-1");
    let took = rig.wait_converged("after sshd restart");
    eprintln!("Edge-Switch-1 converged {took:?} after its sshd came back");
    assert!(reaches(&rig.sl, "VM1-1", "VM2-1", 15));
    rig.kill9();
}

#[test]
fn intents_queued_when_nhn_is_killed_are_applied_exactly_once_after_restart() {
    let Some(lab) = lab_or_skip(
        "intents_queued_when_nhn_is_killed_are_applied_exactly_once_after_restart",
        TOOLS,
    ) else {
        return;
    };
    let mut rig = Rig::new(&lab, &[], 64, 60);
    rig.wait_converged("initial");
    rig.sl.kill_sshd("Edge-Switch-1");
    rig.place("VM1-1", 100, Some("Hypervisor-1"), "192.168.50.11");
    let queued = wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        rig.pending("Edge-Switch-1") == 3 && rig.status("Edge-Switch-1", "last_error").is_some()
    });
    assert!(queued, "Edge-Switch-1's intents were not queued");
    rig.kill9();
    rig.sl.restart_sshd("Edge-Switch-1");
    rig.start();
    rig.wait_converged("after restart");
    let conn = rig.db();
    let mut st = conn
        .prepare(
            "SELECT i.port, i.state, COUNT(*) FROM switch_intents i JOIN switches s ON s.id = i.switch_id
             WHERE s.name = 'Edge-Switch-1' AND i.vlan = 100 AND i.action = 'add' GROUP BY i.port, i.state",
        )
        .expect("query intents");
    let rows: Vec<(String, String, i64)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .and_then(|r| r.collect())
        .expect("read intents");
    assert_eq!(
        rows,
        [
            ("swp1".into(), "applied".into(), 1),
            ("swp2".into(), "applied".into(), 1),
            ("swp3".into(), "applied".into(), 1)
        ]
    );
    // Every ovs-vsctl command nhn sent (one batch is one transaction of `--`-joined commands).
    let log = rig.sl.cli_log("Edge-Switch-1");
    let sent = log
        .split(['\n', ';'])
        .flat_map(|l| l.split(" -- "))
        .map(|c| {
            c.trim()
                .trim_start_matches("ovs-vsctl --format=csv --data=bare --no-headings ")
                .trim()
        })
        .filter(|c| *c == "set port swp3 vlan_mode=native-untagged tag=20 trunks=10,100")
        .count();
    assert_eq!(sent, 1, "{log}");
    rig.kill9();
}

#[test]
fn drift_is_repaired_within_a_readback_period_and_a_wrong_host_key_is_refused() {
    let Some(lab) = lab_or_skip(
        "drift_is_repaired_within_a_readback_period_and_a_wrong_host_key_is_refused",
        TOOLS,
    ) else {
        return;
    };
    let period = 2;
    let mut wrong = String::new();
    let mut rig = Rig::with_site(&lab, &[], 64, period, |site| {
        // Edge-Switch-3's pin is replaced by another switch's key.
        let lines: Vec<&str> = site.lines().collect();
        let es3 = lines
            .iter()
            .position(|l| *l == "name = \"Edge-Switch-3\"")
            .expect("es3");
        let es1 = lines
            .iter()
            .position(|l| *l == "name = \"Edge-Switch-1\"")
            .expect("es1");
        let key = |from: usize| {
            lines[from..]
                .iter()
                .find(|l| l.starts_with("host_key = "))
                .expect("a host_key line")
                .to_string()
        };
        wrong = key(es1);
        site.replacen(&key(es3), &wrong, 1)
    });
    assert!(!wrong.is_empty());
    let ok = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        rig.divergence_except(&["Edge-Switch-3"]).is_empty()
    });
    assert!(ok, "{:?}", rig.divergence_except(&["Edge-Switch-3"]));
    let refused = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        rig.status("Edge-Switch-3", "last_error")
            .is_some_and(|e| e.contains("host key mismatch"))
    });
    assert!(refused, "{:?}", rig.status("Edge-Switch-3", "last_error"));
    assert_eq!(
        rig.sl.cli_log("Edge-Switch-3"),
        "",
        "something was sent to Edge-Switch-3"
    );
    assert_eq!(
        rig.sl.ports("Edge-Switch-3")["swp3"],
        "100,200",
        "Edge-Switch-3 was changed"
    );
    let show = rig.nhn(&["switch", "show"]);
    assert!(
        show.contains("Edge-Switch-3  edge openvswitch 10.99.0.23  failing"),
        "{show}"
    );

    // A hand change on Edge-Switch-1 is undone by the next read-back.
    rig.sl.switches["Edge-Switch-1"]
        .ovs
        .vsctl(&["set", "port", "swp3", "trunks=100,200,300"]);
    let t0 = Instant::now();
    let repaired = wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
        rig.sl.ports("Edge-Switch-1")["swp3"] == "native 20 + 10"
    });
    let took = t0.elapsed();
    assert!(repaired, "drift on Edge-Switch-1 not repaired");
    eprintln!("drift repaired in {took:?} (read-back period {period} s)");
    assert!(
        took < Duration::from_secs(period + 3),
        "repair took {took:?}"
    );
    rig.kill9();
}

#[test]
fn a_moved_vm_gets_its_vlan_at_the_destination_before_the_source_loses_it() {
    let Some(lab) = lab_or_skip(
        "a_moved_vm_gets_its_vlan_at_the_destination_before_the_source_loses_it",
        TOOLS,
    ) else {
        return;
    };
    let mut rig = Rig::new(&lab, &[], 64, 60);
    rig.place("VM1-1", 100, Some("Hypervisor-1"), "192.168.50.11");
    rig.place("VM3-1", 100, Some("Hypervisor-3"), "192.168.50.31");
    rig.wait_converged("before the move");
    assert!(reaches(&rig.sl, "VM3-1", "VM1-1", 15));
    // 50 pings a second from VM3-1 to VM1-1 for the whole move.
    let pinger = rig.sl.vms["VM3-1"].ns.spawn(
        "ping",
        &["ping", "-i", "0.02", "-w", "12", "-q", "192.168.50.11"],
    );
    let t0 = Instant::now();
    let out = rig.nhn(&[
        "vm",
        "move",
        "VM1-1",
        "--host",
        "Hypervisor-2",
        "--no-finish",
    ]);
    assert!(out.contains("destination ready"), "{out}");
    let prepared = t0.elapsed();
    // Make: the destination path carries VLAN 100 while the source still does.
    assert_eq!(rig.sl.ports("Edge-Switch-2")["swp3"], "native 20 + 10,100");
    assert_eq!(rig.sl.ports("Edge-Switch-2")["swp1"], "10,20,100");
    assert_eq!(rig.sl.ports("Edge-Switch-1")["swp3"], "native 20 + 10,100");
    // The hypervisors move the VM, which then speaks from its new place.
    rig.sl.move_vm("VM1-1", "Hypervisor-1", "Hypervisor-2", 100);
    assert!(reaches(&rig.sl, "VM1-1", "VM3-1", 5));
    // Break: only now does the source lose the VLAN.
    rig.nhn(&["vm", "move", "VM1-1", "--finish"]);
    rig.wait_converged("after the move");
    assert_eq!(rig.sl.ports("Edge-Switch-1")["swp3"], "native 20 + 10");
    assert!(reaches(&rig.sl, "VM3-1", "VM1-1", 5));
    let status = pinger.wait_timeout(Duration::from_secs(20));
    assert!(status.is_some(), "ping did not finish");
    let log = pinger.log();
    let summary = log
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary in {log}"))
        .to_owned();
    let num = |word: &str| -> f64 {
        summary
            .split(", ")
            .find(|p| p.contains(word))
            .and_then(|p| p.split_whitespace().next())
            .and_then(|n| n.trim_end_matches('%').parse().ok())
            .unwrap_or(f64::NAN)
    };
    let (sent, got) = (num("transmitted"), num("received"));
    eprintln!(
        "VM move: destination prepared in {prepared:?}; ping during the move: {summary} \
         ({} lost of {sent}, at 20 ms per echo about {} ms without connectivity)",
        sent - got,
        (sent - got) * 20.0
    );
    assert!(got > 0.0 && got / sent > 0.9, "too much loss: {summary}");
    rig.kill9();
}

/// MACs an edge's OVS has learned (`ovs-appctl fdb/show br0`, minus the header).
fn learned_macs(sl: &SeedLab, switch: &str) -> usize {
    learned(sl, switch).len()
}

/// The VLAN of every MAC an edge's OVS has learned (`port VLAN MAC age` lines).
fn learned(sl: &SeedLab, switch: &str) -> Vec<u16> {
    let out = sl.switches[switch].ovs.appctl(&["fdb/show", "br0"]);
    out.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect()
}

#[test]
fn a_full_mac_budget_sends_vms_elsewhere_and_edges_stay_within_it() {
    let Some(lab) = lab_or_skip(
        "a_full_mac_budget_sends_vms_elsewhere_and_edges_stay_within_it",
        TOOLS,
    ) else {
        return;
    };
    // Edge-Switch-1 may hold 9 MACs: the 3 hypervisors' own in each of `storage` and
    // `service` (the lab's hypervisors send none) and 3 VM MACs (its OVS table holds 10, the
    // smallest OVS allows).
    let mut rig = Rig::with_site(&lab, &[], 10, 60, |site| {
        let at = site
            .find("name = \"Edge-Switch-1\"")
            .expect("Edge-Switch-1");
        let (head, tail) = site.split_at(at);
        format!(
            "{head}{}",
            tail.replacen("max_macs = 64", "max_macs = 9", 1)
        )
    });
    for (vm, ip) in [("VM1-1", "11"), ("VM1-2", "12"), ("VM1-3", "13")] {
        let host = rig.place(vm, 100, None, &format!("192.168.50.{ip}"));
        assert_eq!(host, "Hypervisor-1", "{vm}");
    }
    // A fourth VLAN 100 MAC would overflow Edge-Switch-1 wherever the VM goes: refused.
    let refused = rig
        .nhn
        .command(&[
            "--config",
            "nhn.toml",
            "vm",
            "place",
            "VM1-4",
            "--network",
            "100",
        ])
        .current_dir(rig.nhn.dir())
        .output()
        .expect("run nhn");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "VM1-4 was placed");
    assert!(
        err.contains("Edge-Switch-1 would hold 10 MACs, over its budget of 9"),
        "{err}"
    );
    // A VM of another VLAN is placed away from the full edge.
    let host = rig.place("VM2-9", 300, None, "192.168.50.29");
    assert_eq!(host, "Hypervisor-2");
    rig.wait_converged("budgeted placement");
    // Traffic in VLAN 100, then count what the edges learned.
    assert!(reaches(&rig.sl, "VM1-1", "VM1-2", 15));
    assert!(reaches(&rig.sl, "VM1-3", "VM1-1", 15));
    // ARP for an absent address: broadcasts from every VM cross Edge-Switch-1.
    for vm in ["VM1-1", "VM1-2", "VM1-3", "VM2-9"] {
        assert!(!rig.sl.vms[vm].ns.ping("192.168.50.250"));
    }
    let conn = rig.db();
    for edge in ["Edge-Switch-1", "Edge-Switch-2", "Edge-Switch-3"] {
        let budget: i64 = conn
            .query_row(
                "SELECT max_macs FROM switches WHERE name = ?1",
                [edge],
                |r| r.get(0),
            )
            .expect("budget");
        let learned = learned_macs(&rig.sl, edge);
        eprintln!("{edge}: {learned} MACs learned, budget {budget}");
        assert!(learned as i64 <= budget, "{edge}: {learned} > {budget}");
    }
    // The three VMs in VLAN 100; the rest are the hypervisors' own bridges, which now reach
    // the edges untagged on their boot network (VLAN 20): counted in the budget.
    let vlans = learned(&rig.sl, "Edge-Switch-1");
    assert_eq!(vlans.iter().filter(|v| **v == 100).count(), 3, "{vlans:?}");
    assert!(vlans.iter().all(|v| [20, 100].contains(v)), "{vlans:?}");
    rig.kill9();
}

#[test]
fn snmp_errors_are_reported_per_switch_and_converge_once_fixed() {
    let Some(lab) = lab_or_skip(
        "snmp_errors_are_reported_per_switch_and_converge_once_fixed",
        SNMP_TOOLS,
    ) else {
        return;
    };
    let es3 = "Edge-Switch-3";
    let mut rig = Rig::new(&lab, &[(es3, Persona::SnmpV2c)], 64, 60);
    rig.wait_converged("initial");
    let untouched = rig.sl.ports(es3);

    // A wrong community: the agent does not answer at all.
    rig.restart_with_snmp_credential(&snmp_v2c_credential("wrong"));
    rig.place("VM1-1", 100, Some("Hypervisor-1"), "192.168.50.11");
    rig.place("VM3-2", 200, Some("Hypervisor-3"), "192.168.50.32");
    let e = rig.wait_error(es3, "no answer from the SNMP agent at 10.99.0.23");
    assert!(e.contains("or the community is wrong"), "{e}");
    let others = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        rig.divergence_except(&[es3]).is_empty()
    });
    assert!(others, "{:?}", rig.divergence_except(&[es3]));
    assert!(rig.pending(es3) > 0, "the intents were dropped");
    assert_eq!(rig.sl.ports(es3), untouched);
    let show = rig.nhn(&["switch", "show"]);
    assert!(
        show.contains("Edge-Switch-3  edge openvswitch 10.99.0.23  failing")
            && show.contains("no answer from the SNMP agent"),
        "{show}"
    );
    assert!(!show.contains("wrong\""), "{show}");

    // The read-only community: reads work, the SET is refused with noAccess.
    rig.restart_with_snmp_credential(&snmp_v2c_credential("public"));
    let e = rig.wait_error(es3, "noAccess");
    assert!(
        e.contains("the switch refused") && e.contains("read-only community"),
        "{e}"
    );
    assert_eq!(rig.sl.ports(es3), untouched);

    // SNMPv3 with a wrong authentication password.
    rig.restart_with_snmp_credential(&snmp_v3_credential("not-the-password", V3_PRIV));
    let e = rig.wait_error(es3, "SNMPv3 authentication failed at 10.99.0.23");
    assert!(e.contains("nhnadmin"), "{e}");
    assert!(!e.contains("not-the-password"), "{e}");
    assert!(rig.pending(es3) > 0);
    assert_eq!(rig.sl.ports(es3), untouched);

    // Fixed: the kept intents are applied.
    rig.restart_with_snmp_credential(&snmp_v3_credential(V3_AUTH, V3_PRIV));
    rig.wait_converged("credentials fixed");
    assert_eq!(rig.sl.ports(es3)["swp3"], "native 20 + 10,200");

    // The agent goes away: timeouts, the others go on; back: converged.
    rig.sl.kill_snmpd(es3);
    rig.place("VM3-3", 300, Some("Hypervisor-3"), "192.168.50.33");
    rig.place("VM2-1", 100, Some("Hypervisor-2"), "192.168.50.21");
    rig.wait_error(es3, "no answer from the SNMP agent at 10.99.0.23");
    let others = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        rig.divergence_except(&[es3]).is_empty()
    });
    assert!(others, "{:?}", rig.divergence_except(&[es3]));
    assert!(reaches(&rig.sl, "VM1-1", "VM2-1", 15));
    rig.sl.restart_snmpd(es3);
    rig.wait_converged("agent back");
    assert_eq!(rig.sl.ports(es3)["swp3"], "native 20 + 10,200,300");

    // A port the plan needs is missing on the switch: refused before anything is sent.
    rig.sl.switches[es3].ovs.vsctl(&["del-port", "br0", "swp3"]);
    // Our Q-BRIDGE backend caches its view of OVS for 0.2 s (tests/support/switch/qbridge.py):
    // let that view expire, as a real switch's would at once, before the change is planned.
    std::thread::sleep(Duration::from_millis(500));
    let sets_before = rig.sl.qbridge_log(es3).matches("\nset ").count();
    rig.place("VM3-4", 400, Some("Hypervisor-3"), "192.168.50.34");
    let e = rig.wait_error(es3, "port swp3 is not a bridge port of the switch");
    assert!(e.contains("(it has: swp1 swp2); nothing was sent"), "{e}");
    assert_eq!(
        rig.sl.qbridge_log(es3).matches("\nset ").count(),
        sets_before,
        "something was set on {es3}"
    );
    let show = rig.nhn(&["switch", "show"]);
    assert!(show.contains("port swp3 is not a bridge port"), "{show}");
    // The port is back (empty): the next retry finds it and converges.
    rig.sl.switches[es3].ovs.vsctl(&[
        "add-port",
        "br0",
        "swp3",
        "--",
        "set",
        "port",
        "swp3",
        "vlan_mode=trunk",
        "trunks=4095",
    ]);
    rig.wait_converged("port back");
    assert_eq!(rig.sl.ports(es3)["swp3"], "native 20 + 10,200,300,400");
    rig.kill9();
}

#[test]
fn a_hand_change_on_the_snmp_switch_is_found_by_the_walk_and_repaired() {
    let Some(lab) = lab_or_skip(
        "a_hand_change_on_the_snmp_switch_is_found_by_the_walk_and_repaired",
        SNMP_TOOLS,
    ) else {
        return;
    };
    let period = 2;
    let es3 = "Edge-Switch-3";
    let mut rig = Rig::new(&lab, &[(es3, Persona::SnmpV3)], 64, period);
    rig.place("VM3-2", 200, Some("Hypervisor-3"), "192.168.50.32");
    rig.wait_converged("VM3-2");
    // By hand on the switch: swp3 carries VLAN 300 instead of the storage VLAN 10, and swp1
    // loses every VLAN.
    rig.sl.switches[es3]
        .ovs
        .vsctl(&["set", "port", "swp3", "trunks=200,300"]);
    rig.sl.switches[es3]
        .ovs
        .vsctl(&["set", "port", "swp1", "trunks=4095"]);
    let t0 = Instant::now();
    let repaired = wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
        let p = rig.sl.ports(es3);
        p["swp3"] == "native 20 + 10,200" && p["swp1"] == "10,20,200"
    });
    let took = t0.elapsed();
    assert!(repaired, "drift not repaired: {:?}", rig.sl.ports(es3));
    eprintln!("SNMP drift repaired in {took:?} (read-back period {period} s)");
    assert!(
        took < Duration::from_secs(period + 3),
        "repair took {took:?}"
    );
    rig.wait_converged("after the repair");
    // VLAN 300 was only there by hand: it left the switch's VLAN table too.
    let log = rig.sl.qbridge_log(es3);
    assert!(
        log.contains("set .1.3.6.1.2.1.17.7.1.4.3.1.6.300 integer 6 -> DONE"),
        "{log}"
    );
    rig.kill9();
}
