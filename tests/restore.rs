//! restoreImage end to end, in the facility lab (tests/support/facility.rs): `nhn image import`
//! of a small real image (busybox, the Debian kernel tests/fetch-kernel.sh fetches and its
//! modules), then restoreImage from Python's stock xmlrpc.client. The VM boots the image's own
//! kernel and initrd in install mode on a hypervisor (TCG), with the archive as a read-only
//! disk; the initrd makes the filesystem, checks the archive's SHA-256 while unpacking it and
//! reports. Then powerOnVm boots the installed system.
//!
//! One lab for every case (guests under TCG are slow): an install with a kill -9 of the
//! appliance in the middle, the boot of what it installed, and an install from a damaged
//! archive.

mod support;

use std::time::Duration;

use support::facility::{Rig, host_number, tail};
use support::image::{Pack, pack, rootfs, sha256};
use support::kernel::lab_with_kernel;
use support::wait_until;

/// The image's init: says which image booted, shows its root line of fstab, stays up.
const INIT: &str = "#!/bin/sh\nmount -t proc proc /proc\n\
    echo \"IMAGE-BOOTED $(cat /etc/nhn-marker)\"\n\
    grep ' / ' /etc/fstab | sed 's/^/FSTAB /'\n\
    while true; do sleep 1000; done\n";

const APPLETS: &[(&str, &str)] = &[
    ("lib", "/usr/lib"),
    ("bin/sh", "busybox"),
    ("bin/mount", "busybox"),
    ("bin/cat", "busybox"),
    ("bin/grep", "busybox"),
    ("bin/sed", "busybox"),
    ("bin/sleep", "busybox"),
];

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Whichever hypervisor ran `vm`'s last boot (its console log is kept there).
fn console_host(rig: &Rig<'_>, vm: &str) -> usize {
    (1..=3)
        .find(|h| !rig.console(*h, vm).is_empty())
        .unwrap_or_else(|| panic!("no hypervisor has a console log of {vm}"))
}

#[test]
fn restore_image_installs_inside_the_vm_and_the_vm_boots_it() {
    let test = "restore_image_installs_inside_the_vm_and_the_vm_boots_it";
    let Some((lab, kroot, kver)) = lab_with_kernel(test) else {
        return;
    };
    let mut rig = Rig::build(&lab, &kroot, &kver, 1);

    // The image: a real root filesystem whose fstab names some other root (install mode
    // replaces that line with the new filesystem's UUID).
    let mut files = rootfs(&kroot, &kver);
    for (name, data) in [
        ("sbin/init", INIT),
        ("etc/nhn-marker", "marker-4711"),
        (
            "etc/fstab",
            "/dev/sda1 / ext4 defaults 0 1\ntmpfs /tmp tmpfs defaults 0 0\n",
        ),
        ("dev/.keep", ""),
        ("proc/.keep", ""),
        ("sys/.keep", ""),
    ] {
        files.push((name.to_owned(), data.as_bytes().to_vec()));
    }
    let archive = rig.nhn.dir().join("tiny.tar.zst");
    pack(&archive, Pack::Zstd, &files, APPLETS);
    let digest = sha256(&archive);
    let size = std::fs::metadata(&archive).unwrap().len();
    rig.nhn.ok(&[
        "image",
        "import",
        archive.to_str().unwrap(),
        "--name",
        "tiny",
        "--os",
        "Debian",
        "--os-version",
        "12",
        "--arch",
        "x86_64",
        "--min-disk-gb",
        "1",
    ]);

    // 1. restoreImage, with a kill -9 of the appliance while the install boot runs: the
    // request ends once, succeeded, and its progress was visible while it ran.
    let a = rig.api(&["disk_vm", "acme"]).trim().to_owned();
    let rid = rig
        .api(&["restore", "acme", &a, "img-tiny"])
        .trim()
        .to_owned();
    let booting = wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
        rig.agents
            .values()
            .any(|p| p.log().contains("offline boot started"))
    });
    assert!(
        booting,
        "no offline boot started: {}",
        tail(&rig.serve_log(), 40)
    );
    rig.kill9_serve();
    rig.start_serve();
    let done = json(&rig.api(&["watch", "acme", &rid]));
    let info = &done["info"];
    assert_eq!(info["status"], "succeeded", "{done}");
    assert_eq!(info["result"]["imageId"], "img-tiny", "{done}");
    let uuid = info["result"]["rootUuid"].as_str().unwrap().to_owned();
    assert_eq!(uuid.len(), 36, "{done}");
    let progress = done["progress"].as_array().unwrap();
    assert!(
        !progress.is_empty(),
        "no progress seen while it ran: {done}"
    );
    for p in progress {
        assert_eq!(p["total"].as_f64(), Some(size as f64), "{done}");
        assert!(p["done"].as_f64().unwrap() <= size as f64, "{done}");
    }
    let vm = json(&rig.api(&["vm_info", "acme", &a]));
    assert_eq!(
        (vm["state"].as_str(), vm["imageId"].as_str()),
        (Some("stopped"), Some("img-tiny")),
        "{vm}"
    );
    let results: i64 = rig
        .db()
        .query_row(
            "SELECT COUNT(*) FROM audit WHERE action = 'restoreImage.result' AND object = ?1",
            [&a],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(results, 1, "the install's result applied once");
    // 2. powerOnVm boots what was installed: the image's own kernel and init, its root
    // found by the UUID the install wrote into fstab.
    rig.api(&["power_on", "acme", &a]);
    let (_, host, _) = rig.vm_row(&a);
    let host = host_number(&host.expect("placed"));
    let console = rig.wait_console(host, &a, "IMAGE-BOOTED marker-4711", 120);
    assert!(
        console.contains(&format!("FSTAB UUID={uuid} / ext4")),
        "fstab's root line is not the new filesystem's UUID:\n{}",
        tail(&console, 30)
    );
    rig.api(&["off", "acme", &a]);

    // 3. A damaged copy of the archive on the hypervisors: the install boot's SHA-256 check
    // catches it, the request fails with the reason, and the VM is stopped with no image. The
    // agent drops the damaged copy, so the next restoreImage succeeds.
    let mut damaged = std::fs::read(&archive).unwrap();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x5a;
    for h in 1..=3 {
        let cache = rig.agent_dir(h).join("state/cache");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::write(cache.join(&digest), &damaged).unwrap();
    }
    let b = rig.api(&["disk_vm", "globex"]).trim().to_owned();
    let rid = rig
        .api(&["restore", "globex", &b, "img-tiny"])
        .trim()
        .to_owned();
    let done = json(&rig.api(&["watch", "globex", &rid]));
    let info = &done["info"];
    assert_eq!(info["status"], "failed", "{done}");
    let message = info["errorMessage"].as_str().unwrap().to_lowercase();
    assert!(
        message.contains("sha256") || message.contains("sha-256"),
        "{done}"
    );
    assert!(message.contains("cached copy"), "{done}");
    let vm = json(&rig.api(&["vm_info", "globex", &b]));
    assert_eq!(
        (vm["state"].as_str(), vm["imageId"].as_str()),
        (Some("stopped"), Some("")),
        "{vm}"
    );
    assert_eq!(
        rig.qemu_count(&b),
        0,
        "the failed install's QEMU still runs"
    );
    let failed_on = console_host(&rig, &b);
    for h in 1..=3 {
        let copy = rig.agent_dir(h).join("state/cache").join(&digest);
        if h == failed_on {
            assert!(!copy.exists(), "the agent kept the damaged copy");
        } else {
            // Only one hypervisor's copy is damaged from here on.
            let _ = std::fs::remove_file(copy);
        }
    }
    let rid = rig
        .api(&["restore", "globex", &b, "img-tiny"])
        .trim()
        .to_owned();
    let done = json(&rig.api(&["watch", "globex", &rid]));
    assert_eq!(done["info"]["status"], "succeeded", "{done}");
    // A's image is untouched by B's troubles.
    let vm = json(&rig.api(&["vm_info", "acme", &a]));
    assert_eq!(vm["imageId"], "img-tiny", "{vm}");
}
