//! Diskless boot end to end: `nhn initrd build`, a boot volume exported by nhn's tgt driver,
//! and a QEMU machine without a disk that PXE boots through nhn's DHCP and HTTP into nhn's
//! initrd, logs into its iSCSI LUN and switch_roots into it. Also the failure path: a target
//! that refuses the initiator is named on the console, with no kernel panic loop.
//!
//! The kernel is Debian's, fetched (not installed) by tests/fetch-kernel.sh, which
//! tests/run.sh runs before the tests.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::cli::{Nhn, data};
use support::kernel::{boot_dir, busybox_root, lab_with_kernel, stop_tgtd, tgtd_targets};
use support::{Lab, Netns, Proc, wait_until};

const MAC: &str = "52:54:00:96:00:01";

/// A tiny root filesystem: static busybox and an init that prints a marker and powers off.
fn make_lun(dir: &Path) -> PathBuf {
    let tree = dir.join("lun-tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/hello"), "hello from the iSCSI root\n").unwrap();
    busybox_root(
        dir,
        "lun",
        &["sh", "mount", "cat", "grep", "echo", "poweroff"],
        "#!/bin/sh\nmount -t proc proc /proc\necho \"ROOTFS-MARKER: root=$(grep ' / ' /proc/mounts)\"\ncat /etc/hello\npoweroff -f\n",
        "64M",
    )
}

/// The appliance's data dir: boot site, kernel + nhn initrd in the boot dir, Server-2's volume.
fn appliance(root: &Path, kver: &str) -> Nhn {
    let nhn = Nhn::new();
    nhn.ok(&[
        "inventory",
        "import",
        data().join("boot-site.toml").to_str().unwrap(),
    ]);
    let (_, out) = boot_dir(&nhn, root, kver);
    assert!(out.contains("iscsi_tcp.ko"), "{out}");
    let vol = nhn.ok(&[
        "volume",
        "create",
        "--machine",
        "Server-2",
        "--size-gb",
        "1",
    ]);
    assert!(
        vol.contains("target iqn.2026-11.test.nhn:vol-server-2"),
        "{vol}"
    );
    nhn
}

/// A namespace with bridge br0 (10.96.0.1/24) and tap0 for the guest; tgtd on the portal.
fn network<'a>(lab: &'a Lab, ctl: u16) -> (Netns<'a>, Proc) {
    let srv = lab.netns("srv");
    srv.ip(&["link", "add", "br0", "type", "bridge"]);
    srv.addr("br0", "10.96.0.1/24");
    srv.ip(&["link", "set", "br0", "up"]);
    srv.ip(&["tuntap", "add", "dev", "tap0", "mode", "tap"]);
    srv.enslave("tap0", "br0");
    srv.ip(&["link", "set", "tap0", "up"]);
    let ctl = ctl.to_string();
    let tgtd = srv.spawn(
        "tgtd",
        &[
            "tgtd",
            "-f",
            "--iscsi",
            "portal=10.96.0.1:3260",
            "--control-port",
            &ctl,
        ],
    );
    let up = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        srv.try_run(&[
            "tgtadm", "-C", &ctl, "--lld", "iscsi", "--op", "show", "--mode", "target",
        ])
        .status
        .success()
    });
    assert!(up, "tgtd did not start: {}", tgtd.log());
    (srv, tgtd)
}

/// `boot` adds lines to the [boot] table (e.g. a kernel command line); `storage` adds tables.
fn config(nhn: &Nhn, boot: &str, storage: &str) -> String {
    format!(
        "[http]\nlisten = \"10.96.0.1:8080\"\n[dhcp]\ninterfaces = [\"br0\"]\n\
         [[dhcp.subnets]]\nsubnet = \"10.96.0.0/24\"\npool_first = \"10.96.0.100\"\npool_last = \"10.96.0.150\"\n\
         [boot]\ndir = \"{}\"\n{boot}{storage}",
        nhn.dir().join("boot").display()
    )
}

#[derive(Clone, Copy, PartialEq)]
enum Firmware {
    Bios,
    Uefi,
}

/// Boots the guest and waits for one of `done` on its console; returns the console text.
fn boot_guest(
    lab: &Lab,
    srv: &Netns,
    fw: Firmware,
    done: &[&str],
    timeout: Duration,
) -> (String, Duration) {
    let serial = lab.dir().join("serial.log");
    let mut qemu = srv.cmd("qemu-system-x86_64");
    qemu.args([
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-m",
        "512",
        "-nographic",
        "-vga",
        "none",
        "-monitor",
        "none",
        "-no-reboot",
    ])
    .arg("-serial")
    .arg(format!("file:{}", serial.display()))
    .args(["-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no"]);
    match fw {
        Firmware::Bios => {
            qemu.args([
                "-boot",
                "n",
                "-device",
                &format!("virtio-net-pci,netdev=n0,mac={MAC}"),
            ]);
        }
        Firmware::Uefi => {
            let vars = lab.dir().join("ovmf_vars.fd");
            std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars).unwrap();
            qemu.args([
                "-drive",
                "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
            ])
            .arg("-drive")
            .arg(format!("if=pflash,format=raw,file={}", vars.display()))
            .args([
                "-device",
                &format!("virtio-net-pci,netdev=n0,mac={MAC},bootindex=1"),
            ]);
        }
    }
    let started = Instant::now();
    let guest = lab.spawn("qemu", qemu);
    let log = || std::fs::read_to_string(&serial).unwrap_or_default();
    wait_until(timeout, Duration::from_millis(200), || {
        let l = log();
        done.iter().any(|d| l.contains(d)) || guest.try_wait().is_some()
    });
    let took = started.elapsed();
    // Let a powering-off guest finish printing, then make sure it is gone.
    let _ = guest.wait_timeout(Duration::from_secs(5));
    guest.kill();
    (log(), took)
}

#[test]
fn a_diskless_machine_boots_from_pxe_onto_its_iscsi_root() {
    let Some((lab, root, kver)) =
        lab_with_kernel("a_diskless_machine_boots_from_pxe_onto_its_iscsi_root")
    else {
        return;
    };
    diskless_boot(&lab, &root, &kver, Firmware::Bios, 1000, "", false);
}

#[test]
fn a_uefi_machine_boots_the_same_way_with_chap_from_a_one_time_token() {
    let Some((lab, root, kver)) =
        lab_with_kernel("a_uefi_machine_boots_the_same_way_with_chap_from_a_one_time_token")
    else {
        return;
    };
    assert!(
        Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd").exists(),
        "install ovmf (tests/run.sh does)"
    );
    // And the root found by its filesystem label rather than by LUN.
    diskless_boot(
        &lab,
        &root,
        &kver,
        Firmware::Uefi,
        21000,
        "cmdline = \"console=ttyS0 nhn.rootdev=LABEL=nhnroot\"\n",
        true,
    );
}

fn diskless_boot(
    lab: &Lab,
    root: &Path,
    kver: &str,
    fw: Firmware,
    port_base: u16,
    boot_config: &str,
    chap: bool,
) {
    let nhn = appliance(root, kver);
    // The volume holds a root filesystem before nhn exports it (nhn keeps existing data).
    let lun = make_lun(lab.dir());
    std::fs::create_dir_all(nhn.dir().join("volumes")).unwrap();
    std::fs::copy(&lun, nhn.dir().join("volumes/vol-server-2.img")).unwrap();

    let ctl = port_base + (std::process::id() % 9000) as u16;
    let (srv, tgtd) = network(lab, ctl);
    let server = nhn.serve_in(
        lab,
        &srv,
        &config(
            &nhn,
            boot_config,
            &format!("[storage]\ndriver = \"tgt\"\ntgt_control_port = {ctl}\nchap = {chap}\n"),
        ),
        "10.96.0.1:8080",
    );
    // With CHAP, the target's account: its secret is derived from the appliance secret.
    let account = chap.then(|| {
        let key: [u8; 32] = std::fs::read(nhn.dir().join("api-secret"))
            .expect("the appliance secret")
            .try_into()
            .expect("32 bytes");
        nhn::storage::chap_for(&key, "iqn.2026-11.test.nhn:vol-server-2")
    });
    // nhn's reconciler exports the volume with an ACL for Server-2's initiator.
    let exported = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let show = tgtd_targets(&srv, ctl);
        show.contains("iqn.2026-11.test.nhn:vol-server-2")
            && show.contains("iqn.2026-11.test.nhn:initiator:server-2")
            && account.as_ref().is_none_or(|a| show.contains(&a.user))
    });
    assert!(
        exported,
        "nhn did not export the volume; log:\n{}",
        server.log()
    );

    let (console, took) = boot_guest(
        lab,
        &srv,
        fw,
        &["ROOTFS-MARKER", "STEP FAILED", "Kernel panic"],
        Duration::from_secs(180),
    );
    stop_tgtd(&srv, ctl, &tgtd);
    assert!(
        console.contains("ROOTFS-MARKER: root=/dev/sda / ext4"),
        "no switch_root into the iSCSI root; console:\n{console}\nnhn log:\n{}",
        server.log()
    );
    assert!(console.contains("hello from the iSCSI root"), "{console}");
    let disk = if boot_config.contains("LABEL=") {
        "root disk /dev/sda (LABEL=nhnroot)"
    } else {
        "root disk /dev/sda (SCSI"
    };
    assert!(
        console.contains(disk),
        "missing {disk:?} on the console:\n{console}"
    );
    for step in [
        "step: DHCP",
        "step: iSCSI login",
        "iSCSI login ok",
        "root disk /dev/sda",
        "switch_root to /sbin/init",
    ] {
        assert!(
            console.contains(step),
            "missing {step:?} on the console:\n{console}"
        );
    }
    assert!(!console.contains("Kernel panic"), "{console}");
    if let Some(a) = &account {
        assert!(
            console.contains(&format!("boot secrets fetched (CHAP user {})", a.user)),
            "{console}"
        );
        let log = server.log();
        assert!(
            !console.contains(&a.secret) && !log.contains(&a.secret),
            "the CHAP secret leaked"
        );
        // The URL on the kernel command line was spent: replayed from the machine's own address
        // it is gone, from any other address forbidden.
        let url = console
            .split_whitespace()
            .find_map(|w| w.strip_prefix("nhn.secrets="))
            .expect("nhn.secrets= on the kernel command line")
            .to_owned();
        srv.addr("br0", "10.96.0.21/24");
        let status = |from: &str| {
            srv.run(&[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--interface",
                from,
                &url,
            ])
        };
        assert_eq!(
            status("10.96.0.21").trim(),
            "410",
            "a spent token was honoured"
        );
        assert_eq!(status("10.96.0.1").trim(), "403");
    }
    eprintln!(
        "QEMU start to ROOTFS-MARKER (TCG, {}): {took:?}",
        if fw == Firmware::Bios { "BIOS" } else { "UEFI" }
    );
}

#[test]
fn a_target_that_refuses_the_initiator_is_named_on_the_console() {
    let Some((lab, root, kver)) =
        lab_with_kernel("a_target_that_refuses_the_initiator_is_named_on_the_console")
    else {
        return;
    };
    let nhn = appliance(&root, &kver);
    let lun = make_lun(lab.dir());
    let ctl = 11000 + (std::process::id() % 9000) as u16;
    let (srv, tgtd) = network(&lab, ctl);
    // A target set up by hand whose ACL admits another initiator only.
    let t = |args: &[&str]| {
        let mut all = vec!["tgtadm", "-C"];
        let c = ctl.to_string();
        all.push(&c);
        all.extend_from_slice(&["--lld", "iscsi"]);
        all.extend_from_slice(args);
        srv.run(&all);
    };
    t(&[
        "--op",
        "new",
        "--mode",
        "target",
        "--tid",
        "1",
        "-T",
        "iqn.2026-11.test.nhn:vol-server-2",
    ]);
    t(&[
        "--op",
        "new",
        "--mode",
        "logicalunit",
        "--tid",
        "1",
        "--lun",
        "1",
        "-b",
        lun.to_str().unwrap(),
    ]);
    t(&[
        "--op",
        "bind",
        "--mode",
        "target",
        "--tid",
        "1",
        "-Q",
        "iqn.2026-11.test.nhn:someone-else",
    ]);
    let server = nhn.serve_in(&lab, &srv, &config(&nhn, "", ""), "10.96.0.1:8080");

    let (console, _) = boot_guest(
        &lab,
        &srv,
        Firmware::Bios,
        &["STEP FAILED", "ROOTFS-MARKER", "Kernel panic"],
        Duration::from_secs(150),
    );
    stop_tgtd(&srv, ctl, &tgtd);
    assert!(
        console.contains("STEP FAILED: iSCSI login"),
        "the failing step is not named; console:\n{console}\nnhn log:\n{}",
        server.log()
    );
    assert!(
        console.contains("an ACL refuses iqn.2026-11.test.nhn:initiator:server-2"),
        "{console}"
    );
    assert!(
        !console.contains("ROOTFS-MARKER") && !console.contains("Kernel panic"),
        "{console}"
    );
}
