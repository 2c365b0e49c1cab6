//! The TFTP server against real clients in network namespaces: tftp-hpa, curl and atftp
//! (windowsize), plus a raw client for the tsize probe and hostile datagrams.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::cli::Nhn;
use support::{Lab, Netns, Proc, lab_or_skip};

/// Deterministic pseudo-random bytes (no two blocks alike, so misordered blocks show).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

struct Setup<'a> {
    nhn: Nhn,
    cli: Netns<'a>,
    srv: Netns<'a>,
    server: Proc,
}

fn setup(lab: &Lab) -> Setup<'_> {
    let nhn = Nhn::new();
    let boot = nhn.dir().join("boot");
    std::fs::create_dir_all(boot.join("sub")).unwrap();
    std::fs::write(boot.join("small.bin"), pattern(1000, 1)).unwrap();
    std::fs::write(boot.join("exact.bin"), pattern(4096, 2)).unwrap(); // a multiple of 512 and 1024
    std::fs::write(boot.join("big.bin"), pattern(5 << 20, 3)).unwrap();
    std::fs::write(boot.join("sub/file.txt"), b"line one\nline two\n").unwrap();
    std::fs::write(nhn.dir().join("secret"), b"outside the root").unwrap();
    std::os::unix::fs::symlink(nhn.dir().join("secret"), boot.join("escape")).unwrap();
    let srv = lab.netns("srv");
    let cli = lab.netns("cli");
    lab.veth((&srv, "eth0"), (&cli, "eth0"));
    srv.addr("eth0", "10.96.0.1/24");
    cli.addr("eth0", "10.96.0.2/24");
    let config = format!(
        "[http]\nlisten = \"10.96.0.1:8080\"\n[tftp]\nlisten = [\"10.96.0.1:69\"]\nretries = 3\n[boot]\ndir = \"{}\"\n",
        boot.display()
    );
    let server = nhn.serve_in(lab, &srv, &config, "10.96.0.1:8080");
    Setup {
        nhn,
        cli,
        srv,
        server,
    }
}

fn same_file(got: &Path, want: &Path) {
    let (a, b) = (std::fs::read(got).unwrap(), std::fs::read(want).unwrap());
    assert_eq!(
        a.len(),
        b.len(),
        "{} has {} bytes, want {}",
        got.display(),
        a.len(),
        b.len()
    );
    assert!(a == b, "{} differs from {}", got.display(), want.display());
}

#[test]
fn tftp_hpa_fetches_files_byte_for_byte() {
    let Some(lab) = lab_or_skip("tftp_hpa_fetches_files_byte_for_byte", &["tftp", "curl"]) else {
        return;
    };
    let s = setup(&lab);
    for name in ["small.bin", "exact.bin", "big.bin", "/sub/file.txt"] {
        let out = lab.dir().join(format!(
            "hpa-{}",
            name.trim_start_matches('/').replace('/', "_")
        ));
        s.cli.run(&[
            "tftp",
            "-m",
            "binary",
            "10.96.0.1",
            "-c",
            "get",
            name,
            out.to_str().unwrap(),
        ]);
        same_file(
            &out,
            &s.nhn.dir().join("boot").join(name.trim_start_matches('/')),
        );
    }
}

#[test]
fn curl_negotiates_blksize_and_tsize() {
    let Some(lab) = lab_or_skip("curl_negotiates_blksize_and_tsize", &["curl"]) else {
        return;
    };
    let s = setup(&lab);
    for blksize in ["512", "1468", "8192"] {
        let out = lab.dir().join(format!("curl-{blksize}"));
        s.cli.run(&[
            "curl",
            "-sS",
            "--tftp-blksize",
            blksize,
            "-o",
            out.to_str().unwrap(),
            "tftp://10.96.0.1/big.bin",
        ]);
        same_file(&out, &s.nhn.dir().join("boot/big.bin"));
    }
    // Backslashes, as PXELINUX and Windows clients send them.
    let out = lab.dir().join("curl-backslash");
    s.cli.run(&[
        "curl",
        "-sS",
        "--path-as-is",
        "-o",
        out.to_str().unwrap(),
        "tftp://10.96.0.1/sub\\file.txt",
    ]);
    same_file(&out, &s.nhn.dir().join("boot/sub/file.txt"));
}

#[test]
fn atftp_with_windowsize_gets_identical_bytes() {
    let Some(lab) = lab_or_skip(
        "atftp_with_windowsize_gets_identical_bytes",
        &["atftp", "curl"],
    ) else {
        return;
    };
    let s = setup(&lab);
    for (win, blk) in [("4", "1468"), ("16", "1468"), ("64", "512")] {
        let out = lab.dir().join(format!("atftp-{win}-{blk}"));
        s.cli.run(&[
            "atftp",
            "--option",
            &format!("windowsize {win}"),
            "--option",
            &format!("blksize {blk}"),
            "--option",
            "tsize 0",
            "-g",
            "-r",
            "big.bin",
            "-l",
            out.to_str().unwrap(),
            "10.96.0.1",
        ]);
        same_file(&out, &s.nhn.dir().join("boot/big.bin"));
    }
}

#[test]
fn traversal_and_writes_are_refused() {
    let Some(lab) = lab_or_skip("traversal_and_writes_are_refused", &["curl", "tftp"]) else {
        return;
    };
    let s = setup(&lab);
    // curl's exit code names the TFTP error: 68 "file not found", 69 "access violation".
    for (path, code) in [
        ("../secret", 69),
        ("sub/../../secret", 69),
        ("escape", 69),
        ("..\\secret", 69),
        ("etc/passwd", 68),
        ("/etc/passwd", 68),
    ] {
        let out = s.cli.try_run(&[
            "curl",
            "-sS",
            "--path-as-is",
            "-o",
            "/dev/null",
            &format!("tftp://10.96.0.1/{path}"),
        ]);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let put = s.cli.try_run(&[
        "tftp",
        "-m",
        "binary",
        "10.96.0.1",
        "-c",
        "put",
        "/etc/hostname",
        "x",
    ]);
    let said =
        String::from_utf8_lossy(&put.stdout).to_string() + &String::from_utf8_lossy(&put.stderr);
    assert!(said.contains("read-only"), "{said}");
}

/// A raw client (python) for what the stock clients cannot do on purpose.
const RAW: &str = r#"
import socket, struct, sys, time
srv = (sys.argv[1], 69)
what = sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
if what == "probe":
    # RRQ with tsize=0, read the OACK, answer ERROR 8 (what firmware does to learn a size).
    s.sendto(b"\x00\x01big.bin\x00octet\x00tsize\x000\x00blksize\x001468\x00", srv)
    oack, peer = s.recvfrom(1500)
    assert oack[:2] == b"\x00\x06", oack
    s.sendto(b"\x00\x05\x00\x08tsize probe\x00", peer)
    late = 0
    end = time.time() + 3.5
    while time.time() < end:
        try:
            s.recvfrom(1500); late += 1
        except socket.timeout:
            pass
    print(oack.split(b"\x00")[2].decode(), late)
elif what == "silent":
    # Take block 1, never acknowledge: count how often the server sends it, and for how long.
    s.sendto(b"\x00\x01small.bin\x00octet\x00", srv)
    start = time.time(); got = 0; last = start
    while time.time() < start + 8:
        try:
            pkt, _ = s.recvfrom(1500)
            if pkt[:4] == b"\x00\x03\x00\x01":
                got += 1; last = time.time()
        except socket.timeout:
            pass
    print(got, round(last - start, 1))
elif what == "garbage":
    for p in [b"", b"\x00", b"\x00\x09junk", b"\x00\x01noterm", b"\x00\x01f\x00mail\x00", b"\x00\x01f\x00octet\x00blksize\x00",
              b"\x00\x04\x00\x01", b"\x00\x05\x00\x00oops\x00", b"\x00\x03\x00\x01data", b"\xff" * 600,
              b"\x00\x01" + b"A" * 1400 + b"\x00octet\x00"]:
        s.sendto(p, srv)
    print("sent")
"#;

#[test]
fn a_tsize_probe_ends_the_transfer_without_retransmissions() {
    let Some(lab) = lab_or_skip(
        "a_tsize_probe_ends_the_transfer_without_retransmissions",
        &["python3", "curl"],
    ) else {
        return;
    };
    let s = setup(&lab);
    let out = s.cli.run(&["python3", "-c", RAW, "10.96.0.1", "probe"]);
    let mut it = out.split_whitespace();
    assert_eq!(
        it.next(),
        Some((5 << 20).to_string().as_str()),
        "tsize in the OACK: {out}"
    );
    assert_eq!(
        it.next(),
        Some("0"),
        "the server kept sending after the client's ERROR: {out}"
    );
}

#[test]
fn an_unresponsive_client_gets_a_bounded_number_of_retransmissions() {
    let Some(lab) = lab_or_skip(
        "an_unresponsive_client_gets_a_bounded_number_of_retransmissions",
        &["python3", "curl"],
    ) else {
        return;
    };
    let s = setup(&lab);
    let out = s.cli.run(&["python3", "-c", RAW, "10.96.0.1", "silent"]);
    let mut it = out.split_whitespace();
    // retries = 3 in the test config: the first send and 3 retransmissions, a second apart.
    assert_eq!(
        it.next(),
        Some("4"),
        "block 1 sent a different number of times: {out}"
    );
    let last: f64 = it.next().unwrap().parse().unwrap();
    assert!(
        (2.5..5.0).contains(&last),
        "retransmissions spread over {last} s: {out}"
    );
}

#[test]
fn hostile_datagrams_leave_the_server_serving() {
    let Some(lab) = lab_or_skip(
        "hostile_datagrams_leave_the_server_serving",
        &["python3", "curl"],
    ) else {
        return;
    };
    let s = setup(&lab);
    s.cli.run(&["python3", "-c", RAW, "10.96.0.1", "garbage"]);
    let out = lab.dir().join("after-garbage");
    s.cli.run(&[
        "curl",
        "-sS",
        "-o",
        out.to_str().unwrap(),
        "tftp://10.96.0.1/small.bin",
    ]);
    same_file(&out, &s.nhn.dir().join("boot/small.bin"));
    assert!(s.server.try_wait().is_none());
    let metrics = s.srv.run(&["curl", "-sf", "http://10.96.0.1:8080/metrics"]);
    assert!(
        metrics.contains("nhn_tftp_errors_total{reason=\"malformed\"}"),
        "{metrics}"
    );
}

#[test]
fn concurrent_fetches_all_complete_intact() {
    let Some(lab) = lab_or_skip("concurrent_fetches_all_complete_intact", &["curl"]) else {
        return;
    };
    let s = setup(&lab);
    let started = Instant::now();
    let clients: Vec<_> = (0..20)
        .map(|i| {
            let out = lab.dir().join(format!("par-{i}"));
            let mut c = s.cli.cmd("curl");
            c.args([
                "-sS",
                "--tftp-blksize",
                "1468",
                "-o",
                out.to_str().unwrap(),
                "tftp://10.96.0.1/big.bin",
            ]);
            (out, c.spawn().unwrap())
        })
        .collect();
    for (out, mut child) in clients {
        assert!(child.wait().unwrap().success());
        same_file(&out, &s.nhn.dir().join("boot/big.bin"));
    }
    eprintln!("20 x 5 MiB in {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(120));
}

#[test]
fn block_numbers_roll_over_past_65535() {
    let Some(lab) = lab_or_skip("block_numbers_roll_over_past_65535", &["atftp", "curl"]) else {
        return;
    };
    let s = setup(&lab);
    // 70,000 blocks of 512 bytes: block numbers wrap to 0 and go on.
    let big = s.nhn.dir().join("boot/huge.bin");
    std::fs::write(&big, pattern(70_000 * 512 + 100, 4)).unwrap();
    let out = lab.dir().join("huge");
    s.cli.run(&[
        "atftp",
        "--option",
        "windowsize 32",
        "--option",
        "blksize 512",
        "-g",
        "-r",
        "huge.bin",
        "-l",
        out.to_str().unwrap(),
        "10.96.0.1",
    ]);
    same_file(&out, &big);
}

#[test]
fn install_ipxe_copies_the_boot_programs_into_the_boot_dir() {
    let nhn = Nhn::new();
    let from = nhn.dir().join("ipxe-package");
    std::fs::create_dir_all(&from).unwrap();
    for f in ["undionly.kpxe", "ipxe.efi", "snponly.efi"] {
        std::fs::write(from.join(f), f.as_bytes()).unwrap();
    }
    let cfg = nhn.dir().join("nhn.toml");
    std::fs::write(
        &cfg,
        format!(
            "[boot]\ndir = \"{}\"\n",
            nhn.dir().join("bootdir").display()
        ),
    )
    .unwrap();
    nhn.ok(&[
        "--config",
        cfg.to_str().unwrap(),
        "boot",
        "install-ipxe",
        "--from",
        from.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(nhn.dir().join("bootdir/snponly.efi")).unwrap(),
        b"snponly.efi"
    );
    std::fs::remove_file(from.join("ipxe.efi")).unwrap();
    let err = nhn.fails(&[
        "--config",
        cfg.to_str().unwrap(),
        "boot",
        "install-ipxe",
        "--from",
        from.to_str().unwrap(),
    ]);
    assert!(err.contains("apt-get install ipxe"), "{err}");
}
