//! HTTP boot: per-machine iPXE scripts rendered from the inventory, boot files with Range
//! support, traversal refused — and QEMU's own iPXE ROM booting through nhn's DHCP and HTTP.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::cli::{Nhn, Serving};
use support::{lab_or_skip, wait_until};

/// Imports the boot site and gives Server-2 (52:54:00:96:00:01) a boot volume.
fn appliance() -> Nhn {
    let nhn = Nhn::with_boot_site("Server-2");
    let boot = nhn.dir().join("boot");
    std::fs::create_dir_all(&boot).unwrap();
    std::fs::write(
        boot.join("vmlinuz"),
        (0..100_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    std::fs::write(boot.join("initrd.img"), b"not really an initrd").unwrap();
    std::fs::write(nhn.dir().join("secret"), b"outside").unwrap();
    nhn
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn curl_bytes(args: &[&str]) -> (bool, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5"])
        .args(args)
        .output()
        .unwrap();
    (out.status.success(), out.stdout)
}

fn curl(args: &[&str]) -> (bool, String) {
    let (ok, body) = curl_bytes(args);
    (ok, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn scripts_and_files_are_served_over_http() {
    let nhn = appliance();
    let port = free_port();
    let cfg = nhn.dir().join("nhn.toml");
    std::fs::write(
        &cfg,
        format!("[boot]\ndir = \"{}\"\n", nhn.dir().join("boot").display()),
    )
    .unwrap();
    let server = Serving(
        nhn.command(&[
            "--config",
            cfg.to_str().unwrap(),
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--internal-listen",
            "127.0.0.1:0",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    assert!(wait_until(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || curl(&[&format!("{base}/healthz")]).0
    ));

    let (ok, script) = curl(&["-f", &format!("{base}/boot/52-54-00-96-00-01.ipxe")]);
    assert!(ok, "{script}");
    assert!(script.starts_with("#!ipxe\n"), "{script}");
    assert!(
        script.contains(&format!(
            "kernel {base}/boot/vmlinuz initrd=initrd.img console=ttyS0 BOOTIF=01-52-54-00-96-00-01"
        )),
        "{script}"
    );
    assert!(
        script.contains("nhn.root=iscsi:10.96.0.1::3260:1:iqn.2026-11.test.nhn:vol-server-2"),
        "{script}"
    );
    assert!(
        script.contains(&format!("initrd {base}/boot/initrd.img")),
        "{script}"
    );

    let (_, volumeless) = curl(&[&format!("{base}/boot/52:54:00:96:00:11.ipxe")]);
    assert!(
        volumeless.contains("Server-1") && volumeless.contains("has no boot volume"),
        "{volumeless}"
    );
    let (_, unknown) = curl(&[&format!("{base}/boot/02-00-00-00-00-99.ipxe")]);
    assert!(unknown.contains("not in the inventory"), "{unknown}");

    // Range requests (iPXE and HTTP boot loaders resume with them).
    let (ok, part) = curl_bytes(&["-f", "-r", "1000-1009", &format!("{base}/boot/vmlinuz")]);
    assert!(ok);
    assert_eq!(
        part,
        (1000..1010u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>()
    );
    let (_, whole) = curl(&[
        "-f",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{size_download}",
        &format!("{base}/boot/vmlinuz"),
    ]);
    assert_eq!(whole, "200 100000");

    for bad in [
        "/boot/../secret",
        "/boot/%2e%2e/secret",
        "/boot/..%2fsecret",
        "/boot/nothing",
    ] {
        let (_, code) = curl(&[
            "--path-as-is",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{base}{bad}"),
        ]);
        assert!(code == "403" || code == "404", "{bad} answered {code}");
    }
    assert!(server.terminate().success());
}

/// iPXE's banner when it starts from the NIC ROM, the start and end of its network
/// configuration (DHCP and IPv6 at once), and the first line of nhn's script.
const IPXE_BANNER: &str = "Open Source Network Boot Firmware";
const CONFIGURING: &str = "Configuring (net0";
const CONFIGURED: &str = "net0: 10.96.0.21/255.255.255.0";
const SCRIPT_STARTED: &str = "nhn: booting Server-2";
/// Banner to script: the ROM's fixed 2 s Ctrl-B prompt and the configuration. Without nhn's
/// router advertisement Debian's iPXE adds its IPv6 timeout (~13-16 s) to this.
const SCRIPT_WITHIN: Duration = Duration::from_secs(8);
/// The configuration alone: without no-pxedhcp iPXE waits ~3 s after the first DHCP offer for
/// ProxyDHCP offers; with it, it takes well under a second (TCG).
const CONFIGURED_WITHIN: Duration = Duration::from_secs(2);

#[test]
fn qemu_ipxe_gets_dhcp_and_runs_its_script_without_the_ipv6_wait() {
    let Some(lab) = lab_or_skip(
        "qemu_ipxe_gets_dhcp_and_runs_its_script_without_the_ipv6_wait",
        &["qemu-system-x86_64", "curl"],
    ) else {
        return;
    };
    let nhn = appliance();
    let srv = lab.netns("srv");
    srv.ip(&["link", "add", "br0", "type", "bridge"]);
    srv.addr("br0", "10.96.0.1/24");
    srv.ip(&["link", "set", "br0", "up"]);
    srv.ip(&["tuntap", "add", "dev", "tap0", "mode", "tap"]);
    srv.enslave("tap0", "br0");
    srv.ip(&["link", "set", "tap0", "up"]);
    let config = format!(
        "[http]\nlisten = \"10.96.0.1:8080\"\n[dhcp]\ninterfaces = [\"br0\"]\n\
         [[dhcp.subnets]]\nsubnet = \"10.96.0.0/24\"\npool_first = \"10.96.0.100\"\npool_last = \"10.96.0.150\"\n\
         [boot]\ndir = \"{}\"\n",
        nhn.dir().join("boot").display()
    );
    let server = nhn.serve_in(&lab, &srv, &config, "10.96.0.1:8080");
    let serial = lab.dir().join("serial.log");
    let mut qemu = srv.cmd("qemu-system-x86_64");
    qemu.args([
        "-accel",
        "tcg",
        "-m",
        "256",
        "-nographic",
        "-vga",
        "none",
        "-monitor",
        "none",
        "-no-reboot",
        "-boot",
        "n",
    ])
    .arg("-serial")
    .arg(format!("file:{}", serial.display()))
    .args(["-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no"])
    .args(["-device", "virtio-net-pci,netdev=n0,mac=52:54:00:96:00:01"]);
    let guest = lab.spawn("qemu", qemu);
    let log = || std::fs::read_to_string(&serial).unwrap_or_default();
    // The serial log has no timestamps: note when each line first shows up.
    let mut seen = [None; 4];
    let marks = [IPXE_BANNER, CONFIGURING, CONFIGURED, SCRIPT_STARTED];
    let fetched = wait_until(Duration::from_secs(90), Duration::from_millis(50), || {
        let l = log();
        for (at, mark) in seen.iter_mut().zip(marks) {
            if at.is_none() && l.contains(mark) {
                *at = Some(Instant::now());
            }
        }
        seen[3].is_some() && l.contains("http://10.96.0.1:8080/boot/vmlinuz")
    });
    guest.kill();
    assert!(
        fetched,
        "iPXE did not load its script and kernel; serial log:\n{}\nnhn log:\n{}",
        log(),
        server.log()
    );
    let [
        Some(banner),
        Some(configuring),
        Some(configured),
        Some(script),
    ] = seen
    else {
        panic!("missing {marks:?} in the serial log:\n{}", log());
    };
    let (took, config) = (script - banner, configured - configuring);
    eprintln!("iPXE banner to script: {took:.1?}, of which configuration {config:.1?}");
    let logs = || format!("serial log:\n{}\nnhn log:\n{}", log(), server.log());
    assert!(
        took < SCRIPT_WITHIN,
        "iPXE took {took:.1?} from its banner to the script (the IPv6 wait?); {}",
        logs()
    );
    assert!(
        config < CONFIGURED_WITHIN,
        "iPXE's configuration took {config:.1?} (a ProxyDHCP wait?); {}",
        logs()
    );
    assert!(
        server.log().contains("router advertisement sent"),
        "{}",
        server.log()
    );
    // The guest's firmware went through nhn's DHCP, not a static setup.
    assert!(server.log().contains("DHCP listening"));
    let metrics = srv.run(&["curl", "-sf", "http://10.96.0.1:8080/metrics"]);
    assert!(
        metrics.contains("nhn_dhcp_sent_total{type=\"ack\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("nhn_http_boot_scripts_total{known=\"yes\"} 1"),
        "{metrics}"
    );
}
