//! Physical machines boot through the switches nhn programs, powered by their BMCs: in the seed
//! lab (tests/support/switchlab.rs), Hypervisor-2 and Hypervisor-3 are diskless QEMU guests
//! whose NIC is cabled to their edge port (swp3). nhn plans that port with the boot network
//! (service, VLAN 20) untagged and the storage network (VLAN 10) tagged; the appliance sits
//! behind Core-Switch-A on both networks. `nhn power pxe|on|off` (requests that the running
//! `nhn serve` carries out and records) drives Hypervisor-2's BMC over
//! IPMI (pyghmi's BMC, through ipmitool) and Hypervisor-3's over Redfish (sushy-tools' fake
//! driver); each BMC's "power" is the guest's QEMU, which PXE boots from nhn (DHCP and HTTP on
//! the native VLAN), joins the storage VLAN in nhn's initrd (`nhn.storage=`), logs into its
//! iSCSI root through the tagged VLAN and switch_roots into it.

mod support;

use std::path::Path;
use std::time::Duration;

use support::bmc::{bmc_python, support_file};
use support::cli::Nhn;
use support::kernel::{boot_dir, busybox_root, lab_with_kernel, stop_tgtd, tgtd_targets};
use support::switchlab::SeedLab;
use support::wait_until;

const IPMI_BMC: &str = "10.99.0.50";
const REDFISH_BMC: &str = "10.99.0.51";
const PASSWORD: &str = "lab-Bmc-pw1";

/// A root filesystem whose init prints a marker and stays up (so that power-off is what stops it).
fn marker_root(dir: &Path, name: &str) -> std::path::PathBuf {
    let init = format!(
        "#!/bin/sh\nmount -t proc proc /proc\necho \"ROOTFS-MARKER {name}: root=$(grep ' / ' /proc/mounts)\"\n\
         while true; do sleep 1000; done\n"
    );
    busybox_root(dir, name, &["sh", "mount", "grep", "sleep"], &init, "32M")
}

/// The seed site with Hypervisor-2 on IPMI and Hypervisor-3 on Redfish (the seed gives each
/// hypervisor's boot NIC a storage address).
fn site(seed: &str) -> String {
    let mut out = String::new();
    let mut machine = String::new();
    for line in seed.lines() {
        if let Some(name) = line
            .strip_prefix("name = \"")
            .and_then(|r| r.strip_suffix('"'))
        {
            machine = name.to_owned();
        }
        let line = match (machine.as_str(), line) {
            ("Hypervisor-2", l) if l.starts_with("bmc_address") => {
                format!("bmc_address = \"{IPMI_BMC}:623\"")
            }
            ("Hypervisor-3", l) if l.starts_with("power_driver") => {
                "power_driver = \"redfish\"".to_owned()
            }
            ("Hypervisor-3", l) if l.starts_with("bmc_address") => {
                format!("bmc_address = \"http://{REDFISH_BMC}:8000\"")
            }
            (_, l) => l.to_owned(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The QEMU command line a BMC powers: the guest of hypervisor `n`, network boot only when the
/// BMC's one-time boot device says so (`$BMC_BOOTDEV`: network for IPMI, Pxe for Redfish).
/// `csum=off`: with checksum offload the guest's TCP (iSCSI) crosses OVS's userspace datapath
/// with bad checksums (TESTBED.md §4).
fn guest_cmd(hv_ns: &str, serial: &Path, mac: &str) -> String {
    format!(
        "B=c; case \"$BMC_BOOTDEV\" in network|Pxe) B=n ;; esac; \
         exec ip netns exec {hv_ns} qemu-system-x86_64 -accel tcg -cpu max -m 512 -display none -vga none \
         -monitor none -no-reboot -serial file:{} -boot $B \
         -netdev tap,id=n0,ifname=pxe0,script=no,downscript=no -device virtio-net-pci,netdev=n0,mac={mac},csum=off",
        serial.display()
    )
}

/// A guest's QEMU runs with NIC `mac`.
fn qemu_running(mac: &str) -> bool {
    support::qemu_processes(&format!("mac={mac}")) > 0
}

#[test]
fn diskless_hypervisors_powered_by_their_bmcs_pxe_boot_through_the_programmed_switches() {
    let test =
        "diskless_hypervisors_powered_by_their_bmcs_pxe_boot_through_the_programmed_switches";
    let Some((lab, kroot, kver)) = lab_with_kernel(test) else {
        return;
    };
    let Some(python) = bmc_python(test) else {
        return;
    };
    let nhn = Nhn::new();
    let sl = SeedLab::build(&lab, &nhn.dir().join("lab"), &[], 64);
    let mgmt = &sl.mgmt;

    // The appliance behind Core-Switch-A: one leg on the service network (VLAN 20), one on the
    // storage network (VLAN 10). These two core ports are the site's own cabling, set by hand.
    let csa = &sl.switches["Core-Switch-A"];
    lab.veth((mgmt, "svc0"), (&csa.ns, "app20"));
    lab.veth((mgmt, "sto0"), (&csa.ns, "app10"));
    csa.ovs.vsctl(&[
        "add-port", "br0", "app20", "tag=20", "--", "add-port", "br0", "app10", "tag=10",
    ]);
    mgmt.addr("svc0", "10.20.0.1/24");
    mgmt.addr("sto0", "10.10.0.1/24");
    mgmt.tx_offload_off("svc0");
    mgmt.tx_offload_off("sto0");

    // The guests' NICs go straight onto their edge port (a plain bridge passes tags as they are).
    for i in [2, 3] {
        let (ns, ovs) = &sl.hypervisors[&format!("Hypervisor-{i}")];
        ovs.vsctl(&["del-port", "br0", "up0"]);
        ns.ip(&["link", "add", "pxebr", "type", "bridge"]);
        ns.ip(&["link", "set", "up0", "master", "pxebr"]);
        ns.ip(&["tuntap", "add", "pxe0", "mode", "tap"]);
        ns.ip(&["link", "set", "pxe0", "master", "pxebr"]);
        for dev in ["pxebr", "pxe0"] {
            ns.ip(&["link", "set", dev, "up"]);
        }
    }

    // The BMCs, on the management network.
    let bmc = lab.netns("bmc");
    lab.veth((&bmc, "eth0"), (mgmt, "m-bmc"));
    mgmt.enslave("m-bmc", "mbr");
    bmc.addr("eth0", &format!("{IPMI_BMC}/24"));
    bmc.addr("eth0", &format!("{REDFISH_BMC}/24"));

    std::fs::write(nhn.dir().join("site.toml"), site(&sl.site_file())).unwrap();
    nhn.ok(&[
        "inventory",
        "import",
        nhn.dir().join("site.toml").to_str().unwrap(),
    ]);
    let (boot, built) = boot_dir(&nhn, &kroot, &kver);
    assert!(built.contains("8021q.ko"), "{built}");
    for i in [2, 3] {
        let name = format!("Hypervisor-{i}");
        nhn.ok(&["volume", "create", "--machine", &name, "--size-gb", "1"]);
        let backing: String = rusqlite::Connection::open(nhn.dir().join("nhn.db"))
            .unwrap()
            .query_row(
                "SELECT v.backing FROM volumes v JOIN machines m ON m.id = v.machine_id WHERE m.name = ?1",
                [&name],
                |r| r.get(0),
            )
            .unwrap();
        // The volume holds a root filesystem before nhn exports it (nhn keeps existing data).
        let backing = nhn.dir().join(backing);
        std::fs::create_dir_all(backing.parent().unwrap()).unwrap();
        std::fs::copy(marker_root(lab.dir(), &name), backing).unwrap();
    }

    let ctl = 11000 + (std::process::id() % 9000) as u16 + 3;
    let tgtd = mgmt.spawn(
        "tgtd",
        &[
            "tgtd",
            "-f",
            "--iscsi",
            "portal=10.10.0.1:3260",
            "--control-port",
            &ctl.to_string(),
        ],
    );
    let config = sl.config(60).replace(
        "listen = \"127.0.0.1:18080\"",
        "listen = \"10.20.0.1:8080\"",
    ) + &format!(
        "\n[dhcp]\ninterfaces = [\"svc0\"]\n[[dhcp.subnets]]\nsubnet = \"10.20.0.0/24\"\nrouter = \"10.20.0.1\"\n\
             [boot]\ndir = \"{}\"\ncmdline = \"console=ttyS0\"\n\
             [storage]\ndriver = \"tgt\"\ntgt_control_port = {ctl}\n\
             [power]\ntimeout_secs = 30\nsoft_off_secs = 2\npoll_initial_ms = 100\npoll_max_ms = 500\n\
             [credentials.bmc]\nuser = \"admin\"\npassword = \"{PASSWORD}\"\nipmi_cipher_suite = 3\n",
        boot.display()
    );
    let serve = nhn.serve_in(&lab, mgmt, &config, "10.20.0.1:8080");

    // nhn programs the hypervisors' edge ports: service untagged, storage tagged.
    for edge in ["Edge-Switch-2", "Edge-Switch-3"] {
        let ovs = &sl.switches[edge].ovs;
        let mut got = String::new();
        let ok = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
            got = ovs.vsctl(&["--columns=vlan_mode,tag,trunks", "list", "port", "swp3"]);
            got.contains("native-untagged") && got.contains(": 20") && got.contains("10")
        });
        assert!(
            ok,
            "{edge} swp3 is not native 20 + tagged 10:\n{got}\n{}",
            serve.log()
        );
    }
    let exported = wait_until(Duration::from_secs(15), Duration::from_millis(200), || {
        let show = tgtd_targets(mgmt, ctl);
        show.contains("hypervisor-2") && show.contains("hypervisor-3")
    });
    assert!(
        exported,
        "the boot volumes are not exported: {}",
        serve.log()
    );

    // The BMCs: their power is each guest's QEMU.
    let (hv2, hv3) = (
        sl.hypervisors["Hypervisor-2"].0.name().to_owned(),
        sl.hypervisors["Hypervisor-3"].0.name().to_owned(),
    );
    let serial2 = lab.dir().join("hv2-serial.log");
    let serial3 = lab.dir().join("hv3-serial.log");
    let ipmi = bmc.spawn(
        "fakebmc",
        &[
            python.to_str().unwrap(),
            &support_file("fakebmc.py"),
            "--address",
            IPMI_BMC,
            "--port",
            "623",
            "--user",
            "admin",
            "--password",
            PASSWORD,
            "--grace",
            "5",
            "--cmd",
            &guest_cmd(&hv2, &serial2, "52:54:00:00:01:02"),
        ],
    );
    let mut redfish = bmc.cmd(python.to_str().unwrap());
    redfish
        .arg(support_file("redfish_emu.py"))
        .args([
            "--address",
            REDFISH_BMC,
            "--port",
            "8000",
            "--user",
            "admin",
            "--password",
            PASSWORD,
        ])
        .args(["--cmd", &guest_cmd(&hv3, &serial3, "52:54:00:00:01:03")])
        .arg("--state-dir")
        .arg(lab.dir().join("redfish-state"));
    let redfish = lab.spawn("bmc-redfish", redfish);
    let up = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        ipmi.log().contains("LISTEN") && redfish.log().contains("Running on")
    });
    assert!(up, "BMCs did not start:\n{}\n{}", ipmi.log(), redfish.log());

    let power = |args: &[&str]| {
        let out = mgmt
            .cmd(env!("CARGO_BIN_EXE_nhn"))
            .arg("--data-dir")
            .arg(nhn.dir())
            .arg("--config")
            .arg(nhn.dir().join("nhn.toml"))
            .arg("power")
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "nhn power {args:?}: {text}");
        text
    };
    // One-time network boot, then power on; both succeed only once the BMC shows the change.
    for host in ["Hypervisor-2", "Hypervisor-3"] {
        power(&["pxe", host]);
        power(&["on", host]);
    }
    let console = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let booted = wait_until(Duration::from_secs(240), Duration::from_millis(500), || {
        [&serial2, &serial3].iter().all(|s| {
            let c = console(s);
            c.contains("ROOTFS-MARKER") || c.contains("STEP FAILED") || c.contains("Kernel panic")
        })
    });
    let (c2, c3) = (console(&serial2), console(&serial3));
    if !booted {
        let (hv2ns, _) = &sl.hypervisors["Hypervisor-2"];
        eprintln!("hv2 links:\n{}", hv2ns.ip(&["-s", "link"]));
        eprintln!("mgmt svc0:\n{}", mgmt.ip(&["-s", "link", "show", "svc0"]));
        for sw in ["Edge-Switch-2", "Core-Switch-A"] {
            let o = &sl.switches[sw].ovs;
            eprintln!(
                "{sw} ports:\n{}",
                o.vsctl(&["--columns=name,vlan_mode,tag,trunks", "list", "port"])
            );
            eprintln!("{sw} fdb:\n{}", o.appctl(&["fdb/show", "br0"]));
        }
    }
    assert!(
        booted,
        "no marker:\n--- Hypervisor-2\n{c2}\n--- Hypervisor-3\n{c3}\n--- IPMI BMC\n{}\n--- Redfish BMC\n{}\n--- QEMU running: {} {}\n{}",
        ipmi.log(),
        redfish.log(),
        qemu_running("52:54:00:00:01:02"),
        qemu_running("52:54:00:00:01:03"),
        serve.log()
    );
    for (name, ip, c) in [
        ("Hypervisor-2", "10.10.0.12", &c2),
        ("Hypervisor-3", "10.10.0.13", &c3),
    ] {
        assert!(
            c.contains(&format!("ROOTFS-MARKER {name}: root=/dev/sda / ext4")),
            "{name} did not switch_root into its iSCSI root:\n{c}"
        );
        assert!(
            c.contains(&format!("storage VLAN 10: {ip}/24 on eth0.10")),
            "{c}"
        );
    }
    assert!(qemu_running("52:54:00:00:01:02") && qemu_running("52:54:00:00:01:03"));

    // Power off stops them (graceful, then forced after [power] soft_off_secs).
    for host in ["Hypervisor-2", "Hypervisor-3"] {
        power(&["off", host]);
        assert!(power(&["status", host]).contains("off"));
    }
    let gone = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        !qemu_running("52:54:00:00:01:02") && !qemu_running("52:54:00:00:01:03")
    });
    assert!(gone, "a guest still runs after nhn power off");
    // Each change was a request the appliance carried out.
    let done: i64 = nhn
        .db()
        .query_row(
            "SELECT COUNT(*) FROM requests WHERE resource_type = 'machine' AND status = 'succeeded'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(done, 6, "pxe, on and off for two machines");

    stop_tgtd(mgmt, ctl, &tgtd);
}
