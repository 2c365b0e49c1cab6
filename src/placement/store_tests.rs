//! `placement::store` against an in-memory store holding the seed site (3 hypervisors of 32
//! vCPUs behind Edge-Switch-1..3): where VMs land, what is refused, and what the switch plan
//! makes of it. Tables of cases; the pure ranking has its own tests in `placement`.

use super::store::{PlaceArgs, place, place_for_start, remove_vm};
use crate::inventory::networks::Networks;
use crate::inventory::vms::{NewVm, Vms};
use crate::inventory::{Tx, site};
use crate::switch::vlans::VlanSet;

fn args(name: &str, vlans: &[&str], host: Option<&str>, vm_type: &str) -> PlaceArgs {
    PlaceArgs {
        name: name.into(),
        networks: vlans.iter().map(|v| (*v).to_owned()).collect(),
        host: host.map(str::to_owned),
        vm_type: vm_type.into(),
    }
}

/// The planned VLANs of each hypervisor's edge port (`Edge-Switch-1:swp3` ...).
fn host_ports(tx: &Tx<'_>) -> Vec<String> {
    let planned = crate::switch::plan_inventory(tx, &VlanSet::new()).expect("plan");
    (1..=3)
        .map(|n| {
            let edge = format!("Edge-Switch-{n}");
            format!("{edge}:swp3 {}", planned.desired.ports[&edge]["swp3"])
        })
        .collect()
}

#[test]
fn vms_of_one_vlan_are_packed_onto_the_host_that_carries_it() {
    let mem = site::seeded();
    let tx = mem.tx();
    let none = VlanSet::new();
    for (name, vlans, host, lands) in [
        ("VM1-1", &["100"][..], Some("Hypervisor-1"), "Hypervisor-1"),
        ("VM3-2", &["200"], Some("Hypervisor-3"), "Hypervisor-3"),
        // No host asked: the one already carrying the VLAN.
        ("VM1-2", &["100"], None, "Hypervisor-1"),
        ("VM3-3", &["200"], None, "Hypervisor-3"),
        (
            "VM-both",
            &["100", "200"],
            Some("Hypervisor-2"),
            "Hypervisor-2",
        ),
    ] {
        let choice = place(&tx, &args(name, vlans, host, "V10"), &none).expect(name);
        assert_eq!(choice.host, lands, "{name}: {:?}", choice.explain());
    }
    assert_eq!(
        host_ports(&tx),
        [
            "Edge-Switch-1:swp3 native 20 + 10,100",
            "Edge-Switch-2:swp3 native 20 + 10,100,200",
            "Edge-Switch-3:swp3 native 20 + 10,200",
        ]
    );
    // Removing the last VM of a VLAN on a host prunes the VLAN from its port.
    assert_eq!(
        remove_vm(&tx, "VM-both").unwrap().as_deref(),
        Some("Hypervisor-2")
    );
    assert_eq!(host_ports(&tx)[1], "Edge-Switch-2:swp3 native 20 + 10");
    assert!(remove_vm(&tx, "VM-both").is_err(), "removed twice");
}

#[test]
fn impossible_placements_are_refused_with_the_reason() {
    let mem = site::seeded();
    let tx = mem.tx();
    let none = VlanSet::new();
    place(
        &tx,
        &args("VM1-1", &["100"], Some("Hypervisor-1"), "V10"),
        &none,
    )
    .unwrap();
    // Two V160 (16 vCPUs each) fill Hypervisor-2's 32.
    for name in ["Big-1", "Big-2"] {
        place(
            &tx,
            &args(name, &["300"], Some("Hypervisor-2"), "V160"),
            &none,
        )
        .unwrap();
    }
    for (a, says) in [
        (args("VM1-1", &["100"], None, "V10"), "VM1-1 already exists"),
        (args("VM9", &[], None, "V10"), "give at least one --network"),
        (
            args("VM9", &["100"], Some("Nope"), "V10"),
            "unknown hypervisor \"Nope\"",
        ),
        (args("VM9", &["100"], None, "V7"), "V7"),
        (args("VM9", &["5000"], None, "V10"), "5000"),
        (
            args("Big-3", &["300"], Some("Hypervisor-2"), "V160"),
            "Hypervisor-2",
        ),
    ] {
        let err = place(&tx, &a, &none).expect_err(&a.name).to_string();
        assert!(err.contains(says), "{}: {err}", a.name);
    }
}

#[test]
fn a_stopped_api_vm_is_placed_at_power_on_next_to_its_vlan() {
    let mem = site::seeded();
    let tx = mem.tx();
    let none = VlanSet::new();
    place(
        &tx,
        &args("VM3-1", &["150"], Some("Hypervisor-3"), "V10"),
        &none,
    )
    .unwrap();
    let (net, _) = tx
        .network_by_ref("vlan-150")
        .unwrap()
        .expect("vlan-150 was created");
    tx.insert_vm(
        &NewVm {
            public_id: "vm-0000abcd",
            customer: 1,
            vm_type: "V20",
            architecture: "x86_64",
            comment: "",
        },
        0,
    )
    .unwrap();
    let id = tx.vm_id_by_name("vm-0000abcd").unwrap().unwrap();
    tx.add_nic(id, "NET1", "02:00:00:00:ab:cd", net).unwrap();
    let choice = place_for_start(&tx, id, &none).unwrap().expect("a host");
    assert_eq!(choice.host, "Hypervisor-3", "{:?}", choice.explain());
    assert_eq!(
        tx.host_of_vm("vm-0000abcd").unwrap(),
        Some(Some("Hypervisor-3".into()))
    );
}
