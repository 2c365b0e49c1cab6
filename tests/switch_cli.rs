//! `nhn vm place/move/remove` and `nhn switch plan` on the seed site, through the real binary:
//! the seed slides' sequence, explanations, refusals.

mod support;

use support::cli::{Nhn, examples};
use support::switchlab::with_bare_metal_server;

fn seeded() -> Nhn {
    let nhn = Nhn::new();
    let seed = examples().join("seed-site.toml");
    nhn.ok(&["inventory", "import", seed.to_str().expect("utf-8 path")]);
    nhn
}

#[test]
fn seed_sequence_places_the_second_vlan100_vm_next_to_the_first() {
    let nhn = seeded();
    let out = nhn.ok(&[
        "vm",
        "place",
        "VM1-1",
        "--network",
        "100",
        "--host",
        "Hypervisor-1",
    ]);
    assert_eq!(out, "placed VM1-1 on Hypervisor-1\n");
    nhn.ok(&[
        "vm",
        "place",
        "VM3-2",
        "--network",
        "200",
        "--host",
        "Hypervisor-3",
    ]);
    let out = nhn.ok(&["vm", "place", "VM1-2", "--network", "100", "--explain"]);
    assert!(out.starts_with("placed VM1-2 on Hypervisor-1\n"), "{out}");
    assert!(
        out.contains("* Hypervisor-1: host already carries its VLANs, adds 1 MACs to its edge"),
        "{out}"
    );
    assert!(
        out.contains("  Hypervisor-2: edge needs new VLANs"),
        "{out}"
    );
}

#[test]
fn switch_plan_says_which_vm_on_which_host_needs_which_vlan_on_which_port() {
    let nhn = seeded();
    nhn.ok(&[
        "vm",
        "place",
        "VM1-1",
        "--network",
        "100",
        "--host",
        "Hypervisor-1",
    ]);
    nhn.ok(&[
        "vm",
        "place",
        "VM2-1",
        "--network",
        "100",
        "--host",
        "Hypervisor-2",
    ]);
    let out = nhn.ok(&["switch", "plan"]);
    assert!(
        out.contains("+ Edge-Switch-2:swp3 VLAN 100: VM2-1 on Hypervisor-2 needs it"),
        "{out}"
    );
    assert!(
        out.contains("+ Edge-Switch-1:swp1 VLAN 100: uplink of Edge-Switch-1, whose hosts need it: VM1-1 on Hypervisor-1"),
        "{out}"
    );
    assert!(
        out.contains("+ Core-Switch-B:swp4 VLAN 100: core ports carry every allocated VLAN"),
        "{out}"
    );
    assert!(!out.contains("Edge-Switch-3:swp3 VLAN 100"), "{out}");
    // VLANs 10 (3 hypervisor NICs), 20 (3 boot NICs) and 100 (2 VMs).
    assert!(out.contains("Edge-Switch-2: 8 MACs (budget 64)"), "{out}");
}

#[test]
fn switch_plan_prints_each_machine_port_with_its_untagged_vlan_and_why() {
    let nhn = Nhn::new();
    let seed = std::fs::read_to_string(examples().join("seed-site.toml")).expect("read the seed");
    let site = nhn.dir().join("site.toml");
    std::fs::write(&site, with_bare_metal_server(&seed)).expect("write the site");
    nhn.ok(&["inventory", "import", site.to_str().expect("utf-8 path")]);
    nhn.ok(&[
        "vm",
        "place",
        "VM1-1",
        "--network",
        "100",
        "--host",
        "Hypervisor-1",
    ]);
    let out = nhn.ok(&["switch", "plan"]);
    for line in [
        // Hypervisors: the boot NIC's network untagged, storage and their VMs tagged.
        "  Edge-Switch-1:swp3  native 20 + 10,100\n",
        "  Edge-Switch-2:swp3  native 20 + 10\n",
        // The bare-metal server: an access port on its network.
        "  Edge-Switch-2:swp4  access 20\n",
        // Uplinks carry the machine networks tagged.
        "  Edge-Switch-2:swp1  10,20\n",
        "+ Edge-Switch-1:swp3 VLAN 20 untagged: Hypervisor-1 eth0 is on network service untagged (boot NIC: PXE)",
        "+ Edge-Switch-1:swp3 VLAN 10: storage network, tagged to every hypervisor (Hypervisor-1)",
        "= Edge-Switch-2:swp4 access VLAN 20: bare-metal Server-1 eth0 is on network service (boot NIC: PXE)",
        "+ Edge-Switch-2:swp1 VLAN 20: uplink of Edge-Switch-2, whose hosts need it: network of Hypervisor-2 eth0",
    ] {
        assert!(out.contains(line), "{line:?} not in:\n{out}");
    }
    // Server-1's NIC is one more MAC in VLAN 20 (4 boot NICs, 3 hypervisor storage NICs).
    assert!(out.contains("Edge-Switch-2: 7 MACs (budget 64)"), "{out}");
}

#[test]
fn move_and_remove_change_only_the_inventory_and_are_audited() {
    let nhn = seeded();
    nhn.ok(&[
        "vm",
        "place",
        "VM1-1",
        "--network",
        "100",
        "--host",
        "Hypervisor-1",
    ]);
    // No switch ever reports VLAN 100 (nothing serves), so the move stays half done.
    let err = nhn.fails(&[
        "vm",
        "move",
        "VM1-1",
        "--host",
        "Hypervisor-3",
        "--wait-secs",
        "1",
    ]);
    assert!(err.contains("stays on both hosts"), "{err}");
    let out = nhn.ok(&["switch", "plan"]);
    assert!(
        out.contains("+ Edge-Switch-3:swp3 VLAN 100: VM1-1 on Hypervisor-3"),
        "{out}"
    );
    assert!(
        out.contains("+ Edge-Switch-1:swp3 VLAN 100: VM1-1 on Hypervisor-1"),
        "{out}"
    );
    assert_eq!(
        nhn.ok(&["vm", "move", "VM1-1", "--finish"]),
        "moved VM1-1 to Hypervisor-3\n"
    );
    let out = nhn.ok(&["switch", "plan"]);
    assert!(!out.contains("Edge-Switch-1:swp3 VLAN 100"), "{out}");
    assert_eq!(
        nhn.ok(&["vm", "remove", "VM1-1"]),
        "removed VM1-1 (was on Hypervisor-3)\n"
    );
    let db = rusqlite::Connection::open(nhn.dir().join("nhn.db")).expect("open nhn.db");
    let actions: Vec<String> = db
        .prepare("SELECT action FROM audit WHERE action LIKE 'vm.%' ORDER BY id")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("read audit");
    assert_eq!(
        actions,
        ["vm.place", "vm.move.begin", "vm.move.finish", "vm.remove"]
    );
}

#[test]
fn impossible_requests_are_refused_with_the_reason_and_change_nothing() {
    let nhn = seeded();
    nhn.ok(&["vm", "place", "VM1-1", "--network", "100"]);
    let before = nhn.events();
    let err = nhn.fails(&["vm", "place", "VM1-1", "--network", "100"]);
    assert!(err.contains("VM1-1 already exists"), "{err}");
    let err = nhn.fails(&[
        "vm",
        "place",
        "Big",
        "--network",
        "100",
        "--type",
        "V160",
        "--host",
        "Nope",
    ]);
    assert!(err.contains("unknown hypervisor \"Nope\""), "{err}");
    let err = nhn.fails(&[
        "vm",
        "move",
        "VM1-1",
        "--host",
        "Hypervisor-9",
        "--wait-secs",
        "0",
    ]);
    assert!(
        err.contains("cannot move VM VM1-1 to Hypervisor-9"),
        "{err}"
    );
    let err = nhn.fails(&["vm", "remove", "ghost"]);
    assert!(err.contains("not found: VM \"ghost\""), "{err}");
    assert_eq!(
        nhn.events(),
        before,
        "a refused command wrote to the inventory"
    );
}

#[test]
fn vm_move_goes_through_the_running_appliance() {
    let nhn = seeded();
    let place = ["vm", "place", "VM1-1", "--network", "100", "--host"];
    nhn.ok(&[&place[..], &["Hypervisor-1"]].concat());
    // No reconciler: nothing ever confirms the destination's VLANs.
    let config = nhn.dir().join("nhn.toml");
    std::fs::write(&config, "[switch]\nreconcile = false\n").expect("write nhn.toml");
    let config = config.to_str().expect("utf-8 path");
    let serve = nhn.serve_on_loopback(&["--config", config]);
    let err = nhn.fails(&[
        "--config",
        config,
        "vm",
        "move",
        "VM1-1",
        "--host",
        "Hypervisor-3",
        "--no-finish",
        "--wait-secs",
        "1",
    ]);
    assert!(err.contains("stays on both hosts"), "{err}");
    assert_eq!(
        nhn.ok(&["--config", config, "vm", "move", "VM1-1", "--finish"]),
        "moved VM1-1 to Hypervisor-3\n"
    );
    let (status, log) = serve.terminate_with_log();
    assert!(status.success(), "{status}:\n{log}");
    let db = nhn.db();
    let rows: Vec<(String, String, String, String)> = db
        .prepare(
            "SELECT method, status, result, error_message FROM requests
             WHERE resource_type = 'vm' AND resource_id = 'VM1-1' ORDER BY rowid",
        )
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect()
        })
        .expect("read requests");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1.as_str()),
        ("moveVm", "failed")
    );
    assert!(rows[0].3.contains("stays on both hosts"), "{rows:?}");
    assert_eq!(
        (rows[1].0.as_str(), rows[1].1.as_str()),
        ("finishVmMove", "succeeded")
    );
    assert!(rows[1].2.contains("Hypervisor-3"), "{rows:?}");
    // The appliance's engine ran both, not the command.
    let actors: Vec<(String, String)> = db
        .prepare("SELECT action, actor FROM audit WHERE action LIKE '%Vm%.result' ORDER BY id")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .expect("read audit");
    assert_eq!(
        actors,
        [
            ("moveVm.result".to_owned(), "engine".to_owned()),
            ("finishVmMove.result".to_owned(), "engine".to_owned())
        ]
    );
    // The VM kept its power state.
    let state: String = db
        .query_row("SELECT state FROM vms WHERE name = 'VM1-1'", [], |r| {
            r.get(0)
        })
        .expect("read the VM");
    assert_eq!(state, "running");
}
