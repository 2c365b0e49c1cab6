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

/// The image's init: says which image booted, shows the files the Init* methods write (each
/// line prefixed with its file; modes and owners as `stat` sees them; contents by SHA-256 where
/// bytes matter), and stays up.
const INIT: &str = r#"#!/bin/sh
mount -t proc proc /proc
echo "IMAGE-BOOTED $(cat /etc/nhn-marker)"
grep ' / ' /etc/fstab | sed 's/^/FSTAB /'
for f in /etc/network/interfaces /etc/sysconfig/network-scripts/ifcfg-eth0 /etc/hostname     /etc/resolv.conf /etc/iptables/rules.v4 /etc/sysconfig/iptables /etc/ssh/sshd_config     /root/.ssh/authorized_keys /etc/shadow /etc/hosts /etc/sysconfig/network; do
    [ -f "$f" ] || continue
    echo "STAT $f $(stat -c '%a %u %g' "$f")"
    echo "SUM $f $(sha256sum "$f" | cut -d' ' -f1)"
    sed "s|^|LINE $f |" "$f"
done
echo "STAT /root/.ssh $(stat -c '%a %u %g' /root/.ssh 2>/dev/null)"
echo CONFIG-END
while true; do sleep 1000; done
"#;

const APPLETS: &[(&str, &str)] = &[
    ("lib", "/usr/lib"),
    ("bin/sh", "busybox"),
    ("bin/mount", "busybox"),
    ("bin/cat", "busybox"),
    ("bin/grep", "busybox"),
    ("bin/sed", "busybox"),
    ("bin/sleep", "busybox"),
    ("bin/stat", "busybox"),
    ("bin/cut", "busybox"),
    ("bin/sha256sum", "busybox"),
];

/// A small real image: busybox, the test kernel and its modules, the users a system has, an
/// sshd_config, `os_release`, and `extra` files.
fn image(
    dir: &std::path::Path,
    name: &str,
    (kroot, kver): (&std::path::Path, &str),
    os_release: &str,
    extra: &[(&str, &str)],
) -> std::path::PathBuf {
    let mut files: Vec<(String, Vec<u8>)> = rootfs(kroot, kver)
        .into_iter()
        .filter(|(n, _)| n != "etc/os-release")
        .collect();
    let base = [
        ("sbin/init", INIT),
        ("etc/os-release", os_release),
        ("etc/nhn-marker", name),
        (
            "etc/fstab",
            "/dev/sda1 / ext4 defaults 0 1\ntmpfs /tmp tmpfs defaults 0 0\n",
        ),
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n",
        ),
        (
            "etc/shadow",
            "root:*:19000:0:99999:7:::\nsshd:*:19000:0:99999:7:::\n",
        ),
        ("etc/group", "root:x:0:\nshadow:x:42:\nnogroup:x:65534:\n"),
        (
            "etc/ssh/sshd_config",
            "#PermitRootLogin prohibit-password\nPort 22\nUsePAM yes\n",
        ),
        ("etc/hosts", "127.0.0.1 localhost\n"),
        ("root/.profile", ""),
        ("dev/.keep", ""),
        ("proc/.keep", ""),
        ("sys/.keep", ""),
    ];
    for (n, data) in base.iter().chain(extra) {
        files.push(((*n).to_owned(), data.as_bytes().to_vec()));
    }
    let archive = dir.join(format!("{name}.tar.zst"));
    pack(&archive, Pack::Zstd, &files, APPLETS);
    archive
}

fn import(rig: &Rig<'_>, archive: &std::path::Path, name: &str, os: &str) {
    rig.nhn.ok(&[
        "image",
        "import",
        archive.to_str().unwrap(),
        "--name",
        name,
        "--os",
        os,
        "--os-version",
        "1",
        "--arch",
        "x86_64",
        "--min-disk-gb",
        "1",
    ]);
}

/// An Init* call through the API, polled until it ended: its RequestInfo (or its fault).
fn init(
    rig: &Rig<'_>,
    key: &str,
    vm: &str,
    method: &str,
    args: serde_json::Value,
) -> serde_json::Value {
    json(&rig.api(&["init", key, vm, method, &args.to_string()]))
}

/// Boots `vm` and returns its console once the image's init has shown its files, then stops it.
fn boot_and_read(rig: &Rig<'_>, key: &str, vm: &str, marker: &str) -> String {
    rig.api(&["power_on", key, vm]);
    let (_, host, _) = rig.vm_row(vm);
    let host = host_number(&host.expect("placed"));
    let console = rig.wait_console(host, vm, "CONFIG-END", 120);
    assert!(
        console.contains(&format!("IMAGE-BOOTED {marker}")),
        "{}",
        tail(&console, 30)
    );
    rig.api(&["off", key, vm]);
    console
}

/// The lines the image's init printed for `file`, and its `stat`.
fn file_lines(console: &str, file: &str) -> (Vec<String>, String) {
    let boot = console.rsplit("IMAGE-BOOTED").next().unwrap_or_default();
    let lines = boot
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("LINE {file} ")).map(str::to_owned))
        .collect();
    let stat = boot
        .lines()
        .find_map(|l| l.strip_prefix(&format!("STAT {file} ")).map(str::to_owned))
        .unwrap_or_default();
    (lines, stat)
}

fn sum_of(console: &str, file: &str) -> String {
    let boot = console.rsplit("IMAGE-BOOTED").next().unwrap_or_default();
    boot.lines()
        .find_map(|l| l.strip_prefix(&format!("SUM {file} ")).map(str::to_owned))
        .unwrap_or_default()
}

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
fn images_are_installed_and_configured_inside_the_vm() {
    let test = "images_are_installed_and_configured_inside_the_vm";
    let Some((lab, kroot, kver)) = lab_with_kernel(test) else {
        return;
    };
    let mut rig = Rig::build(&lab, &kroot, &kver, 1);
    let k = (kroot.as_path(), kver.as_str());
    let debian = image(
        rig.nhn.dir(),
        "tiny",
        k,
        "ID=debian\nVERSION_ID=\"12\"\n",
        &[(
            "etc/network/interfaces",
            "auto lo\niface lo inet loopback\n\nallow-hotplug eth0\niface eth0 inet dhcp\n",
        )],
    );
    let digest = sha256(&debian);
    let size = std::fs::metadata(&debian).unwrap().len();
    import(&rig, &debian, "tiny", "Debian");

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

    // 2. The Init* methods in the Debian layout, each a configure boot; values a shell would
    // interpret land byte for byte. Then powerOnVm boots what was installed and configured:
    // the image's own kernel and init, its root found by the UUID the install wrote.
    let key_line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl o'k$(echo INJ''ECTED)\"`id`";
    let hosts_hex = "3132372e302e302e31206c6f63616c686f73740a2324287265626f6f7429206069646020277127202264220a00ff0a";
    let hosts_bytes: Vec<u8> = (0..hosts_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hosts_hex[i..i + 2], 16).unwrap())
        .collect();
    let hosts_sum: String = sha2::Digest::finalize(
        <sha2::Sha256 as sha2::Digest>::new_with_prefix(&hosts_bytes),
    )
    .iter()
    .map(|b| format!("{b:02x}"))
    .collect();
    let password = "p'a\"s$(reboot)`id`;x \\ y";
    for (method, args) in [
        (
            "setIpAddress",
            serde_json::json!({"device": "NET1", "ipAddress": "10.77.0.5", "prefixLength": 24, "gateway": "10.77.0.1"}),
        ),
        (
            "setNetwork",
            serde_json::json!({"hostname": "tiny-a", "nameservers": ["10.77.0.53"], "searchDomains": ["example.test"]}),
        ),
        ("setPassword", serde_json::json!({"password": password})),
        ("setSshKey", serde_json::json!({"publicKeys": [key_line]})),
        (
            "setSshdConfig",
            serde_json::json!({"permitRootLogin": "without-password", "port": 2222}),
        ),
        (
            "writeFile",
            serde_json::json!({"path": "/etc/hosts", "contentHex": hosts_hex, "mode": 0o640}),
        ),
    ] {
        let info = init(&rig, "acme", &a, method, args);
        assert_eq!(info["status"], "succeeded", "{method}: {info}");
    }
    // A setting the image cannot take fails with the reason; the disk stays as it was.
    let info = init(
        &rig,
        "acme",
        &a,
        "setIptables",
        serde_json::json!({"rules": "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 2222 -j DROP\nCOMMIT\n"}),
    );
    assert_eq!(info["status"], "failed", "{info}");
    assert!(
        info["errorMessage"]
            .as_str()
            .unwrap()
            .contains("no iptables"),
        "{info}"
    );
    let info = init(
        &rig,
        "acme",
        &a,
        "setSshKey",
        serde_json::json!({"user": "nobody", "publicKeys": [key_line]}),
    );
    assert_eq!(info["status"], "failed", "{info}");
    assert!(
        info["errorMessage"]
            .as_str()
            .unwrap()
            .contains("no user nobody"),
        "{info}"
    );
    // writeFile outside the operator's whitelist never reaches the VM.
    let info = init(
        &rig,
        "acme",
        &a,
        "writeFile",
        serde_json::json!({"path": "/etc/passwd", "content": "x"}),
    );
    assert_eq!(info["fault"], 300, "{info}");

    let console = boot_and_read(&rig, "acme", &a, "tiny");
    assert!(
        console.contains(&format!("FSTAB UUID={uuid} / ext4")),
        "fstab's root line is not the new filesystem's UUID:\n{}",
        tail(&console, 40)
    );
    let (interfaces, _) = file_lines(&console, "/etc/network/interfaces");
    assert!(
        interfaces
            .iter()
            .any(|l| l.trim() == "iface eth0 inet static"),
        "{interfaces:?}"
    );
    assert!(
        interfaces
            .iter()
            .any(|l| l.trim() == "address 10.77.0.5/24"),
        "{interfaces:?}"
    );
    assert!(
        interfaces.iter().any(|l| l.trim() == "gateway 10.77.0.1"),
        "{interfaces:?}"
    );
    assert!(
        !interfaces.iter().any(|l| l.contains("inet dhcp")),
        "the old eth0 stanza stayed: {interfaces:?}"
    );
    assert!(
        interfaces
            .iter()
            .any(|l| l.trim() == "iface lo inet loopback"),
        "{interfaces:?}"
    );
    assert_eq!(file_lines(&console, "/etc/hostname").0, ["tiny-a"]);
    assert_eq!(
        file_lines(&console, "/etc/resolv.conf").0,
        ["search example.test ", "nameserver 10.77.0.53"]
    );
    let (shadow, stat) = file_lines(&console, "/etc/shadow");
    assert_eq!(stat, "640 0 42", "/etc/shadow is root:shadow 0640");
    let hash = shadow[0]
        .strip_prefix("root:")
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    // The hash is of the password's exact bytes (quotes, $(), backquotes, a backslash
    // included): crypt(3) through Python's stdlib, the password on stdin.
    let check = std::process::Command::new("python3")
        .args([
            "-W",
            "ignore",
            "-c",
            "import crypt, sys; print(crypt.crypt(sys.stdin.read(), sys.argv[1]))",
            &hash,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(password.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&check.stdout).trim(),
        hash,
        "the hash is of other bytes"
    );
    let (keys, stat) = file_lines(&console, "/root/.ssh/authorized_keys");
    assert_eq!(keys, [key_line], "the key landed byte for byte");
    assert_eq!(stat, "600 0 0");
    assert!(
        console.contains("STAT /root/.ssh 700 0 0"),
        "{}",
        tail(&console, 40)
    );
    let (sshd, _) = file_lines(&console, "/etc/ssh/sshd_config");
    assert_eq!(
        sshd[..2],
        ["Port 2222", "PermitRootLogin without-password"],
        "{sshd:?}"
    );
    assert!(sshd.contains(&"UsePAM yes".to_owned()), "{sshd:?}");
    assert_eq!(
        sum_of(&console, "/etc/hosts"),
        hosts_sum,
        "writeFile's bytes"
    );
    assert_eq!(file_lines(&console, "/etc/hosts").1, "640 0 0");
    // Evaluated by a shell, the key's comment would have printed INJECTED somewhere.
    assert!(!console.contains("INJECTED"), "something ran a value");

    // 3. The Red Hat layout: an image whose os-release says CentOS, with iptables.
    let redhat = image(
        rig.nhn.dir(),
        "tiny-rh",
        k,
        "NAME=\"CentOS Linux\"\nID=\"centos\"\nID_LIKE=\"rhel fedora\"\n",
        &[
            (
                "etc/sysconfig/network-scripts/ifcfg-lo",
                "DEVICE=lo\nONBOOT=yes\n",
            ),
            (
                "etc/sysconfig/network",
                "NETWORKING=yes\nHOSTNAME=localhost\n",
            ),
            ("usr/sbin/iptables-restore", "#!/bin/sh\nexit 0\n"),
        ],
    );
    import(&rig, &redhat, "tiny-rh", "CentOS");
    let c = rig.api(&["disk_vm", "globex"]).trim().to_owned();
    let rid = rig
        .api(&["restore", "globex", &c, "img-tiny-rh"])
        .trim()
        .to_owned();
    let done = json(&rig.api(&["watch", "globex", &rid]));
    assert_eq!(done["info"]["status"], "succeeded", "{done}");
    let rules = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 2222 -j DROP\nCOMMIT\n";
    for (method, args) in [
        (
            "setIpAddress",
            serde_json::json!({"device": "NET1", "ipAddress": "10.78.0.7", "netmask": "255.255.0.0"}),
        ),
        (
            "setPassword",
            serde_json::json!({"passwordHash": "$6$abcdefgh$ZmFrZWhhc2g"}),
        ),
        ("setIptables", serde_json::json!({"rules": rules})),
        ("setNetwork", serde_json::json!({"hostname": "tiny-c"})),
    ] {
        let info = init(&rig, "globex", &c, method, args);
        assert_eq!(info["status"], "succeeded", "{method}: {info}");
    }
    let console = boot_and_read(&rig, "globex", &c, "tiny-rh");
    let (ifcfg, stat) = file_lines(&console, "/etc/sysconfig/network-scripts/ifcfg-eth0");
    assert_eq!(
        ifcfg,
        [
            "DEVICE=eth0",
            "BOOTPROTO=static",
            "ONBOOT=yes",
            "IPADDR=10.78.0.7",
            "PREFIX=16"
        ],
        "{}",
        tail(&console, 40)
    );
    assert_eq!(stat, "644 0 0");
    let (shadow, stat) = file_lines(&console, "/etc/shadow");
    assert!(
        shadow[0].starts_with("root:$6$abcdefgh$ZmFrZWhhc2g:"),
        "{shadow:?}"
    );
    assert_eq!(stat, "0 0 0", "/etc/shadow is root:root 0000 on Red Hat");
    let (iptables, stat) = file_lines(&console, "/etc/sysconfig/iptables");
    assert_eq!(iptables.join("\n") + "\n", rules);
    assert_eq!(stat, "600 0 0");
    let (network, _) = file_lines(&console, "/etc/sysconfig/network");
    assert!(
        network.contains(&"HOSTNAME=tiny-c".to_owned())
            && !network.contains(&"HOSTNAME=localhost".to_owned()),
        "{network:?}"
    );

    // 4. A damaged copy of the archive on the hypervisors: the install boot's SHA-256 check
    // catches it, the request fails with the reason, and the VM is stopped with no image. The
    // agent drops the damaged copy, so the next restoreImage succeeds.
    let mut damaged = std::fs::read(&debian).unwrap();
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
