//! `nhn initrd build` as an operator runs it: reproducible bytes, the right contents (read back
//! with GNU cpio), and clear errors for a missing module or tool.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::cli::Nhn;

/// The kernel tests/fetch-kernel.sh unpacked, or None (a SKIP; a failure under CI).
fn kernel(test: &str) -> Option<(PathBuf, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-kernel");
    match std::fs::read_to_string(dir.join("kernel-release")) {
        Ok(k) => Some((dir.join("root/lib/modules"), k.trim().to_owned())),
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "{test}: no kernel in {}; tests/run.sh runs tests/fetch-kernel.sh",
                dir.display()
            )
        }
        Err(_) => {
            eprintln!(
                "SKIP {test}: no kernel in {} (run tests/fetch-kernel.sh)",
                dir.display()
            );
            None
        }
    }
}

fn build(
    nhn: &Nhn,
    modules: &Path,
    kver: &str,
    out: &Path,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "initrd",
        "build",
        "--kernel-version",
        kver,
        "--modules-dir",
        modules.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    nhn.command(&args).output().unwrap()
}

#[test]
fn two_builds_are_byte_identical_and_hold_what_the_boot_needs() {
    let Some((modules, kver)) =
        kernel("two_builds_are_byte_identical_and_hold_what_the_boot_needs")
    else {
        return;
    };
    let nhn = Nhn::new();
    let (a, b) = (nhn.dir().join("a.img"), nhn.dir().join("b.img"));
    for out in [&a, &b] {
        let o = build(&nhn, &modules, &kver, out, &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let (x, y) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert!(x == y, "two builds differ");
    assert!(x.len() < 15_000_000, "initrd is {} bytes", x.len());

    let listing = Command::new("sh")
        .arg("-c")
        .arg(format!("zcat {} | cpio -itv 2>/dev/null", a.display()))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    for want in [
        " init\n",
        " bin/busybox\n",
        " sbin/iscsistart\n",
        " lib/modules/iscsi_tcp.ko\n",
        " lib/modules/libiscsi.ko\n",
        " lib/modules/virtio_net.ko\n",
        " lib/modules/ext4.ko\n",
        " lib/modules/jbd2.ko\n",
        " lib/nhn/common.sh\n",
        " lib/nhn/mode-boot.sh\n",
        " lib/nhn/mode-install.sh\n",
        " etc/nhn/modules.order\n",
        // The install mode's tools replace busybox's applets of the same name.
        " bin/tar\n",
        " sbin/mke2fs\n",
        " usr/bin/zstd\n",
        " usr/bin/xz\n",
    ] {
        assert!(listing.contains(want), "{want:?} missing from:\n{listing}");
    }
    assert!(listing.contains("-rwxr-xr-x   1 root     root") && listing.contains(" init\n"));
    assert!(listing.contains("bin/sh -> /bin/busybox"), "{listing}");
    for tool in ["bin/tar", "sbin/mke2fs", "usr/bin/xz"] {
        assert!(
            !listing.contains(&format!(" {tool} -> /bin/busybox")),
            "{tool} is busybox's: {listing}"
        );
    }
    // GNU tar's and zstd's libraries.
    assert!(
        listing.contains("libacl.so.1") && listing.contains("libzstd.so.1"),
        "{listing}"
    );
    // iscsistart's libraries come along (it is dynamically linked on Debian).
    assert!(listing.contains("libc.so.6"), "{listing}");
}

#[test]
fn zstd_builds_and_differs_from_gzip() {
    let Some((modules, kver)) = kernel("zstd_builds_and_differs_from_gzip") else {
        return;
    };
    let nhn = Nhn::new();
    let z = nhn.dir().join("z.img");
    let o = build(&nhn, &modules, &kver, &z, &["--compress", "zstd"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        &std::fs::read(&z).unwrap()[..4],
        &[0x28, 0xb5, 0x2f, 0xfd],
        "not a zstd frame"
    );
}

#[test]
fn a_missing_module_or_tool_fails_with_what_to_do() {
    let Some((modules, kver)) = kernel("a_missing_module_or_tool_fails_with_what_to_do") else {
        return;
    };
    let nhn = Nhn::new();
    let out = nhn.dir().join("x.img");
    let o = build(
        &nhn,
        &modules,
        &kver,
        &out,
        &["--modules", "ext4,no_such_driver"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("kernel module \"no_such_driver\""),
        "{err}"
    );
    assert!(!out.exists(), "a failed build left an output file");
    let o = build(
        &nhn,
        &modules,
        &kver,
        &out,
        &["--busybox", "/nonexistent/busybox"],
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("install busybox-static"));
    let o = build(&nhn, &modules, &kver, &out, &["--busybox", "/bin/ls"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("dynamically linked"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = build(
        &nhn,
        &modules,
        &kver,
        &out,
        &["--iscsistart", "/nonexistent/iscsistart"],
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("install open-iscsi"));
    for (flag, fix) in [
        ("--tar", "install tar"),
        ("--mke2fs", "install e2fsprogs"),
        ("--zstd", "install zstd"),
        ("--xz", "install xz-utils"),
    ] {
        let o = build(&nhn, &modules, &kver, &out, &[flag, "/nonexistent/tool"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains("/nonexistent/tool") && err.contains(fix),
            "{flag}: {err}"
        );
    }
    // busybox's tar and mke2fs would fail only inside the machine: refused at build time.
    for (flag, what) in [("--tar", "GNU tar"), ("--mke2fs", "mke2fs")] {
        let o = build(&nhn, &modules, &kver, &out, &[flag, "/bin/busybox"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(&format!("/bin/busybox is not {what}")),
            "{flag}: {err}"
        );
    }
    assert!(!out.exists(), "a failed build left an output file");
}
