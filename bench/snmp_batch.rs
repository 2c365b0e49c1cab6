//! Benchmark: one VLAN change on 20 ports of one switch, applied and confirmed by nhn's switch
//! drivers, over SSH (exec, `ovs-vsctl` templates) and over SNMP (Q-BRIDGE-MIB, v2c and v3
//! authPriv SHA/AES) against the same Open vSwitch bridge in one namespace, which runs both
//! sshd and net-snmp's snmpd (tests/support/switch/qbridge.py behind it).
//!
//! Each sample is one driver session as the reconciler runs it: connect, read back, apply
//! the 20 changes as one batch, read back to confirm, close. The VLAN is added to the 20
//! ports, then removed again (each a sample), 5 rounds per driver.
//!
//!     sudo cargo bench --bench snmp_batch       (root: namespaces; needs OVS, sshd, snmpd)

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use nhn::switch::driver::{SshDriver, SwitchDriver};
use nhn::switch::plan::Action;
use nhn::switch::snmp::{SnmpAuth, SnmpDriver, SnmpTarget};
use nhn::switch::ssh::{Auth, Session, Target};
use nhn::switch::templates::{PortChange, Templates};
use support::switchlab::{
    Persona, V3_AUTH, V3_PRIV, bridge_with_empty_trunks, ssh_client_key, start_snmpd, start_sshd,
    write_snmpd_conf,
};
use support::{in_netns, lab_or_skip};

const PORTS: u32 = 20;
const ROUNDS: usize = 5;
const IP: &str = "10.99.0.30";
const NAME: &str = "Bench-Switch";

#[derive(Clone, Copy)]
enum Kind {
    Ssh,
    V2c,
    V3,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Ssh => "SSH (openvswitch templates)",
            Kind::V2c => "SNMP v2c",
            Kind::V3 => "SNMP v3 authPriv SHA/AES",
        }
    }
}

fn main() {
    let Some(lab) = lab_or_skip(
        "snmp_batch",
        &[
            "ovs-vswitchd",
            "/usr/sbin/sshd",
            "/usr/sbin/snmpd",
            "ssh-keygen",
            "ss",
            "/usr/bin/python3",
        ],
    ) else {
        return;
    };
    let dir = lab.dir().join("bench");
    let key = ssh_client_key(&dir);
    let mgmt = lab.netns("mgmt");
    lab.bridge(&mgmt, "mbr");
    mgmt.addr("mbr", "10.99.0.1/24");
    let ns = lab.netns("sw");
    lab.veth((&ns, "mgmt0"), (&mgmt, "m-sw"));
    mgmt.enslave("m-sw", "mbr");
    ns.addr("mgmt0", &format!("{IP}/24"));
    let ovs = lab.ovs(&ns);
    let ports: Vec<String> = (1..=PORTS).map(|p| format!("swp{p}")).collect();
    bridge_with_empty_trunks(&ovs, &ports);
    let (_sshd, fingerprint, _) =
        start_sshd(&lab, &ns, &ovs, &dir, "sw", NAME, IP, Persona::Ovs, &key);
    let conf = write_snmpd_conf(&ovs, &dir, NAME, IP);
    let _snmpd = start_snmpd(&ns, &dir, NAME, IP, &conf);

    let ssh = Target {
        switch: NAME.into(),
        address: IP.into(),
        user: "root".into(),
        auth: Auth::KeyFile(key.clone()),
        pinned: Some(fingerprint),
        trust_on_first_use: false,
        legacy_algorithms: false,
        connect_timeout: Duration::from_secs(10),
        command_timeout: Duration::from_secs(30),
    };
    let snmp = |auth: SnmpAuth| SnmpTarget {
        address: IP.into(),
        auth,
        timeout: Duration::from_secs(2),
        retries: 1,
        max_varbinds: 32,
    };
    let v2c = snmp(SnmpAuth::V2c {
        community: "private".into(),
    });
    let v3 = snmp(SnmpAuth::V3 {
        user: "nhnadmin".into(),
        auth_protocol: "SHA".parse().expect("SHA"),
        auth_password: V3_AUTH.into(),
        priv_protocol: "AES".parse().expect("AES"),
        priv_password: V3_PRIV.into(),
    });
    let mgmt_name = mgmt.name().to_owned();
    let results = in_netns(&mgmt_name, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let templates = Templates::builtin().expect("templates");
        rt.block_on(async {
            let mut out = Vec::new();
            for (i, kind) in [Kind::Ssh, Kind::V2c, Kind::V3].into_iter().enumerate() {
                let vlan = 500 + i as u16;
                let mut samples = Vec::new();
                for _ in 0..ROUNDS {
                    for action in [Action::Add, Action::Remove] {
                        let changes: Vec<PortChange> = (1..=PORTS)
                            .map(|p| PortChange {
                                port: format!("swp{p}"),
                                action,
                                vlan,
                            })
                            .collect();
                        let t0 = Instant::now();
                        let after = match kind {
                            Kind::Ssh => {
                                let set = templates.get("openvswitch").expect("openvswitch");
                                let s = Session::connect(&ssh, &set.meta).await.expect("ssh");
                                session(SshDriver::new(s, set, NAME), &changes).await
                            }
                            Kind::V2c => {
                                session(SnmpDriver::connect(&v2c).await.expect("v2c"), &changes)
                                    .await
                            }
                            Kind::V3 => {
                                session(SnmpDriver::connect(&v3).await.expect("v3"), &changes).await
                            }
                        };
                        let took = t0.elapsed();
                        let want = action == Action::Add;
                        assert!(
                            (1..=PORTS)
                                .all(|p| after.ports[&format!("swp{p}")].contains(vlan) == want),
                            "{}: the read-back does not confirm {action:?} VLAN {vlan}",
                            kind.label()
                        );
                        samples.push(took);
                    }
                }
                out.push((kind, samples));
            }
            out
        })
    });
    // The bridge itself agrees (not only the drivers' read-backs).
    let trunks = ovs.vsctl(&[
        "--format=csv",
        "--data=bare",
        "--no-headings",
        "--columns=trunks",
        "list",
        "Port",
    ]);
    assert!(
        !trunks.contains("500") && !trunks.contains("501") && !trunks.contains("502"),
        "{trunks}"
    );

    println!(
        "one VLAN on {PORTS} ports of one Open vSwitch switch, applied and confirmed (connect, read back, batch, read back), {} samples each (add, remove):",
        ROUNDS * 2
    );
    let mut medians = Vec::new();
    for (kind, mut samples) in results {
        samples.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let median = samples[samples.len() / 2];
        println!(
            "  {:<28} median {:7.1} ms   min {:7.1} ms   max {:7.1} ms",
            kind.label(),
            ms(median),
            ms(samples[0]),
            ms(samples[samples.len() - 1])
        );
        medians.push((kind, median));
    }
    let ssh_median = medians[0].1.as_secs_f64();
    for (kind, m) in &medians[1..] {
        println!(
            "ratio SSH / {}: {:.2}x ({})",
            kind.label(),
            ssh_median / m.as_secs_f64(),
            if m.as_secs_f64() < ssh_median {
                "SNMP faster"
            } else {
                "SSH faster"
            }
        );
    }
}

/// One driver session: read back, apply, close; returns the confirming read-back.
async fn session<D: SwitchDriver>(
    mut d: D,
    changes: &[PortChange],
) -> nhn::switch::readback::SwitchState {
    let before = d.read_back().await.expect("read back").expect("a parser");
    let after = d.apply(&before, changes).await.expect("apply");
    d.close().await;
    after
}
