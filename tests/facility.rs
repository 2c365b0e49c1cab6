//! The facility end to end, in the seed lab (tests/support/facility.rs): `nhn serve` in the
//! management namespace with tgtd, the five switches behind sshd, and an `nhn agent` in each
//! hypervisor namespace running real QEMU guests (TCG, direct kernel boot of nhn's initrd onto
//! DISK1 through QEMU's iSCSI initiator), all driven through the HaaS API from Python's stock
//! xmlrpc.client.
//!
//! One lab for every case (guests under TCG are slow): the seed scenario first, then the
//! crashes and the bad input against the same appliance and agents.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::facility::{Rig, agent_ip, alive, guest_root, host_number};
use support::kernel::{lab_with_kernel, stop_tgtd};
use support::wait_until;

#[test]
fn the_seed_scenario_runs_vms_on_hypervisors_and_the_vlans_follow() {
    let test = "the_seed_scenario_runs_vms_on_hypervisors_and_the_vlans_follow";
    let Some((lab, kroot, kver)) = lab_with_kernel(test) else {
        return;
    };
    let mut rig = Rig::build(&lab, &kroot, &kver, 1);
    // One V10 (1 vCPU) per hypervisor: placement must spread the VMs over the edges.
    // Customer A: two VMs on one L2EX network; customer B: one VM on its own network. All three
    // on one IP subnet, so only the VLANs keep B apart.
    let ids: serde_json::Value = serde_json::from_str(rig.api(&["prepare"]).trim()).unwrap();
    let vm = |c: &str, i: usize| ids[c]["vms"][i]["vmId"].as_str().unwrap().to_owned();
    let (a1, a2, b1) = (vm("acme", 0), vm("acme", 1), vm("globex", 0));
    let guests = [
        (&a1, "10.100.0.11", "10.100.0.12", "10.100.0.21"),
        (&a2, "10.100.0.12", "10.100.0.11", "10.100.0.21"),
        (&b1, "10.100.0.21", "10.100.0.11", "10.100.0.12"),
    ];
    // The images issue installs images with restoreImage; until then the test writes each
    // VM's root filesystem onto its DISK1 itself and records the image as installed.
    for (vm, ip, peer, bad) in guests {
        // B's guest gives up on A quickly: it must not reach it.
        let tries = if vm == &b1 { 5 } else { 120 };
        rig.install_root(vm, &guest_root(rig.nhn.dir(), vm, ip, peer, bad, tries));
    }

    rig.api(&["power_on", "acme", &a1, &a2]);
    rig.api(&["power_on", "globex", &b1]);
    let mut host_of = BTreeMap::new();
    for vm in [&a1, &a2, &b1] {
        let (state, host, _) = rig.vm_row(vm);
        assert_eq!(state, "running", "{vm}");
        host_of.insert(vm.clone(), host_number(&host.expect("placed")));
    }
    let hosts: std::collections::BTreeSet<_> = host_of.values().collect();
    assert_eq!(
        hosts.len(),
        3,
        "one VM per hypervisor (one vCPU each): {host_of:?}"
    );

    // Each NIC is a tap tagged with its network's VLAN and capped at the VM type's bandwidth
    // (V10: 100 Mbit/s); each disk goes through QEMU's initiator with the target's CHAP account,
    // whose secret reaches QEMU in a file, never on its command line.
    let key: [u8; 32] = std::fs::read(rig.nhn.dir().join("api-secret"))
        .unwrap()
        .try_into()
        .unwrap();
    for vm in [&a1, &a2, &b1] {
        let h = host_of[vm];
        let (_, ovs) = &rig.sl.hypervisors[&format!("Hypervisor-{h}")];
        let tap = nhn::agent::ovs::tap_name(vm, "NET1");
        let rate = ovs.vsctl(&["get", "interface", &tap, "ingress_policing_rate"]);
        assert_eq!(rate.trim(), "100000", "{vm}: {tap}");
        let tag = ovs.vsctl(&["get", "port", &tap, "tag"]);
        assert_ne!(tag.trim(), "[]", "{vm}: {tap} is untagged");
        let pid = rig.qemu_pid(h, vm).unwrap();
        let argv = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap())
            .replace('\0', " ");
        let target: String = rig
            .db()
            .query_row(
                "SELECT vol.target_iqn FROM volumes vol JOIN vms v ON v.id = vol.vm_id WHERE v.public_id = ?1",
                [vm],
                |r| r.get(0),
            )
            .unwrap();
        let chap = nhn::storage::chap_for(&key, &target);
        assert!(
            argv.contains(&format!("user={}", chap.user)) && argv.contains("password-secret="),
            "{argv}"
        );
        assert!(
            !argv.contains(&chap.secret),
            "the CHAP secret is on QEMU's command line"
        );
    }

    // The operator sees them: the status page lists each VM with its hypervisor, /metrics
    // counts VMs by state and agents by state.
    let get = |path: &str| {
        let url = format!(
            "http://{}:{}{path}",
            support::facility::APPLIANCE,
            rig.url_port()
        );
        String::from_utf8_lossy(&rig.sl.mgmt.try_run(&["curl", "-sf", &url]).stdout).into_owned()
    };
    let page = get("/");
    for vm in [&a1, &a2, &b1] {
        let host = format!("Hypervisor-{}", host_of[vm]);
        assert!(
            page.contains(&format!("<td>{vm}</td>")) && page.contains(&host),
            "{page}"
        );
    }
    let metrics = get("/metrics");
    assert!(
        metrics.contains("nhn_vms{state=\"running\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("nhn_hypervisor_agents{state=\"up\"} 3"),
        "{metrics}"
    );

    // A's VMs reach each other across edge -> core -> edge on their VLAN; B reaches neither.
    rig.wait_console(host_of[&a1], &a1, "G2 PING-OK", 150);
    rig.wait_console(host_of[&a2], &a2, "G2 PING-OK", 150);
    let b = rig.wait_console(host_of[&b1], &b1, "G9 DONE", 150);
    assert!(
        b.contains("G2 PING-FAILED") || !b.contains("G2 PING-OK"),
        "B reached A:\n{b}"
    );
    assert!(
        b.contains("G4 ISOLATION-OK"),
        "B reached A's other VM:\n{b}"
    );
    let a = rig.wait_console(host_of[&a1], &a1, "G9 DONE", 60);
    assert!(a.contains("G4 ISOLATION-OK"), "A reached B:\n{a}");

    // An edge with no VM of A's VLAN does not carry it (read back from its OVS).
    let vlan_a: i64 = rig
        .db()
        .query_row(
            "SELECT vlan FROM networks WHERE public_id = ?1",
            [ids["acme"]["networkId"].as_str().unwrap()],
            |r| r.get(0),
        )
        .unwrap();
    let edge_b = format!("Edge-Switch-{}", host_of[&b1]);
    let edge_a = format!("Edge-Switch-{}", host_of[&a1]);
    let trunks_b = rig.trunks(&edge_b, "swp3");
    assert!(
        !trunks_b.contains(&vlan_a.to_string()),
        "{edge_b} swp3 carries VLAN {vlan_a}: {trunks_b}"
    );
    assert!(rig.trunks(&edge_a, "swp3").contains(&vlan_a.to_string()));

    // kill -9 the agent while its VM runs: the VM keeps running and is re-adopted.
    let h1 = host_of[&a1];
    let pid = rig.qemu_pid(h1, &a1).expect("QEMU pid");
    rig.agents.remove(&h1).unwrap().kill();
    assert!(alive(pid), "the VM died with its agent");
    rig.start_agent(h1);
    let log = rig.agents[&h1].log();
    let adopted = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        rig.agents[&h1].log().contains("re-adopted a running VM")
    });
    assert!(adopted, "{log}");
    assert_eq!(rig.qemu_pid(h1, &a1), Some(pid));

    // powerOffVm stops A's VMs; once no VM needs A's VLAN, it leaves both edges. A2's agent is
    // killed (-9) in the middle of its power-off (the guest ignores ACPI, so the agent is
    // waiting out its grace period): after its restart the request completes, once.
    rig.api(&["power_off", "acme", &a1]);
    assert!(!alive(pid), "QEMU still runs after powerOffVm");
    let h2 = host_of[&a2];
    let rid = rig.api(&["stop", "acme", &a2]).trim().to_owned();
    let accepted = wait_until(Duration::from_secs(20), Duration::from_millis(20), || {
        rig.agents[&h2]
            .log()
            .contains(&format!("request accepted request_id={rid}"))
    });
    assert!(accepted, "{}", rig.agents[&h2].log());
    rig.agents.remove(&h2).unwrap().kill();
    rig.start_agent(h2);
    rig.api(&["wait", "acme", &rid]);
    assert_eq!(rig.qemu_count(&a2), 0, "{a2} still runs");
    let results: i64 = rig
        .db()
        .query_row(
            "SELECT COUNT(*) FROM audit WHERE action = 'powerOffVm.result' AND object = ?1",
            [&a2],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(results, 1, "{a2}'s power-off applied once");
    let pruned = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        !rig.trunks(&edge_a, "swp3").contains(&vlan_a.to_string())
    });
    assert!(
        pruned,
        "{edge_a} swp3 still carries VLAN {vlan_a}: {}",
        rig.trunks(&edge_a, "swp3")
    );

    // A QEMU the agent did not start is reported, never killed.
    let (hv1, _) = &rig.sl.hypervisors[&format!("Hypervisor-{h1}")];
    let stray_pid = rig.nhn.dir().join("stray.pid");
    hv1.run(&[
        "qemu-system-x86_64",
        "-machine",
        "none",
        "-nodefaults",
        "-display",
        "none",
        "-S",
        "-name",
        "stray-vm",
        "-daemonize",
        "-pidfile",
        stray_pid.to_str().unwrap(),
    ]);
    let stray: u32 = std::fs::read_to_string(&stray_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let config = rig.nhn.dir().join("nhn.toml");
    let show = |h: usize| {
        rig.nhn.ok(&[
            "--config",
            config.to_str().unwrap(),
            "host",
            "show",
            &format!("Hypervisor-{h}"),
        ])
    };
    let reported = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        show(h1).contains(&format!(
            "unknown QEMU process (left alone): pid {stray} stray-vm"
        ))
    });
    assert!(reported, "{}", show(h1));
    std::thread::sleep(Duration::from_secs(2));
    assert!(alive(stray), "the agent killed a QEMU it did not start");
    unsafe { libc::kill(stray as i32, libc::SIGKILL) };

    // kill -9 of the appliance in the middle of a power-on: after the restart the request
    // completes exactly once (one QEMU, one result).
    let rid = rig.api(&["start", "acme", &a1]).trim().to_owned();
    rig.kill9_serve();
    rig.start_serve();
    rig.api(&["wait", "acme", &rid]);
    assert_eq!(rig.qemu_count(&a1), 1, "one QEMU for {a1}");
    let results: i64 = rig
        .db()
        .query_row(
            "SELECT COUNT(*) FROM audit WHERE action = 'powerOnVm.result' AND object = ?1",
            [&a1],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        results, 2,
        "{a1} was powered on twice in all, each applied once"
    );

    // resetVm restarts the guest in the same QEMU: its init runs a second time.
    let hb = host_of[&b1];
    let bpid = rig.qemu_pid(hb, &b1).expect("B's QEMU pid");
    rig.api(&["reset", "globex", &b1]);
    assert_eq!(rig.qemu_pid(hb, &b1), Some(bpid));
    assert_eq!(rig.vm_row(&b1).0, "running");
    let rebooted = wait_until(Duration::from_secs(60), Duration::from_millis(250), || {
        rig.console(hb, &b1).matches("G1 NET-UP").count() == 2
    });
    assert!(rebooted, "{}", rig.console(hb, &b1));

    // A VM whose QEMU is killed from outside becomes `error`, with the reason.
    unsafe { libc::kill(bpid as i32, libc::SIGKILL) };
    let errored = wait_until(Duration::from_secs(15), Duration::from_millis(200), || {
        rig.vm_row(&b1).0 == "error"
    });
    let (state, _, reason) = rig.vm_row(&b1);
    assert!(errored, "{b1} is {state}");
    assert!(reason.contains("exited"), "{reason}");

    // Bad input: an unsigned dispatch gets 401 and nothing runs; a result signed with another
    // host's credential is refused; an unknown request id is refused.
    let code = rig.sl.mgmt.try_run(&[
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"requestId":"00000000-00000000","vm":"vm-x","command":{"kind":"reset"}}"#,
        &format!("http://{}:8090/v1/requests", agent_ip(1)),
    ]);
    assert_eq!(String::from_utf8_lossy(&code.stdout), "401");
    let rid: String = rig
        .db()
        .query_row(
            "SELECT r.id FROM requests r JOIN machines m ON m.id = r.host_id
             WHERE m.name = ?1 AND r.method = 'powerOnVm'",
            [format!("Hypervisor-{}", host_of[&a2])],
            |r| r.get(0),
        )
        .unwrap();
    let other = (1..=3).find(|i| *i != host_of[&a2]).unwrap();
    let script = format!(
        "import xmlrpc.client,sys\np=xmlrpc.client.ServerProxy('{}')\n\
         for rid in ['{rid}', 'ffffffff-ffffffff']:\n  try:\n    p.reportRequestResult('{}', rid, 'failed', {{}})\n    print('ACCEPTED', rid)\n  except xmlrpc.client.Fault as f:\n    print('FAULT', f.faultCode, f.faultString)\n",
        rig.internal, rig.credentials[&other]
    );
    let out = rig.sl.mgmt.run(&["python3", "-c", &script]);
    assert!(!out.contains("ACCEPTED"), "{out}");
    assert!(out.contains("was not dispatched to"), "{out}");
    assert!(out.contains("unknown request id"), "{out}");

    // A stopped agent makes its host unreachable within [facility] host_dead_secs.
    rig.agents.remove(&hb).unwrap().terminate();
    let unreachable = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        rig.db()
            .query_row(
                "SELECT a.state FROM agents a JOIN machines m ON m.id = a.machine_id WHERE m.name = ?1",
                [format!("Hypervisor-{hb}")],
                |r| r.get::<_, String>(0),
            )
            .unwrap()
            == "unreachable"
    });
    assert!(unreachable, "Hypervisor-{hb} still counts as up");
    let hosts = rig.nhn.ok(&[
        "--config",
        rig.nhn.dir().join("nhn.toml").to_str().unwrap(),
        "host",
        "list",
    ]);
    assert!(hosts.contains("unreachable"), "{hosts}");

    stop_tgtd(&rig.sl.mgmt, rig.tgt_ctl, &rig.tgtd);
}
