//! `nhn vm place/move/remove` and `nhn switch plan` on the seed site, through the real binary:
//! the seed slides' sequence, explanations, refusals.

mod support;

use support::cli::{Nhn, examples};

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
    assert!(out.contains("Edge-Switch-2: 2 MACs (budget 64)"), "{out}");
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
    assert!(!out.contains("Edge-Switch-1:swp3"), "{out}");
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
