//! What the boot tests boot: the Debian kernel (fetched, not installed, by
//! tests/fetch-kernel.sh), busybox root filesystems, and tgtd to export them.

use std::path::{Path, PathBuf};

use super::{Lab, Netns, Proc, lab_or_skip};

/// The fetched kernel: (root of the unpacked package, release), or why it is missing.
pub fn kernel() -> Result<(PathBuf, String), String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-kernel");
    let kver = std::fs::read_to_string(dir.join("kernel-release")).map_err(|_| {
        format!(
            "no kernel in {}: run tests/fetch-kernel.sh (tests/run.sh does)",
            dir.display()
        )
    })?;
    let kver = kver.trim().to_owned();
    let root = dir.join("root");
    if !root.join("boot").join(format!("vmlinuz-{kver}")).exists() {
        return Err(format!(
            "{} has no vmlinuz-{kver}: rerun tests/fetch-kernel.sh",
            root.display()
        ));
    }
    Ok((root, kver))
}

/// Like `lab_or_skip`, plus the fetched kernel (a missing kernel fails under CI): the boot
/// tests' tools (QEMU, tgt, an iSCSI initiator).
pub fn lab_with_kernel(test: &str) -> Option<(Lab, PathBuf, String)> {
    lab_with_kernel_and(
        test,
        &[
            "qemu-system-x86_64",
            "tgtd",
            "tgtadm",
            "mke2fs",
            "busybox",
            "curl",
            "iscsistart",
        ],
    )
}

/// Like `lab_or_skip` with `tools`, plus the fetched kernel (a missing kernel fails under CI).
pub fn lab_with_kernel_and(test: &str, tools: &[&str]) -> Option<(Lab, PathBuf, String)> {
    let lab = lab_or_skip(test, tools)?;
    match kernel() {
        Ok((root, kver)) => Some((lab, root, kver)),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("{test}: {why}"),
        Err(why) => {
            eprintln!("SKIP {test}: {why}");
            None
        }
    }
}

/// A root filesystem image `<dir>/<name>.img` (ext4, `size` as mke2fs takes it, label
/// `nhnroot`): static busybox with `applets`, and `init` as /sbin/init.
pub fn busybox_root(dir: &Path, name: &str, applets: &[&str], init: &str, size: &str) -> PathBuf {
    let tree = busybox_tree(dir, name, applets, init);
    let img = dir.join(format!("{name}.img"));
    let ok = std::process::Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-L", "nhnroot", "-d"])
        .arg(&tree)
        .arg(&img)
        .arg(size)
        .output()
        .expect("run mke2fs")
        .status
        .success();
    assert!(ok, "mke2fs failed");
    img
}

/// A root tree `<dir>/<name>-tree`: static busybox with `applets`, and `init` as /sbin/init.
pub fn busybox_tree(dir: &Path, name: &str, applets: &[&str], init: &str) -> PathBuf {
    let tree = dir.join(format!("{name}-tree"));
    for d in ["bin", "sbin", "proc", "sys", "dev", "etc"] {
        std::fs::create_dir_all(tree.join(d)).expect("make the root tree");
    }
    std::fs::copy("/bin/busybox", tree.join("bin/busybox")).expect("copy busybox");
    for applet in applets {
        std::os::unix::fs::symlink("busybox", tree.join("bin").join(applet)).expect("link applet");
    }
    std::fs::write(tree.join("sbin/init"), init).expect("write init");
    std::fs::set_permissions(
        tree.join("sbin/init"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod init");
    tree
}

/// What tgtd (control port `ctl`) exports, as `tgtadm --op show --mode target` prints it.
pub fn tgtd_targets(ns: &Netns, ctl: u16) -> String {
    let out = ns.try_run(&[
        "tgtadm",
        "-C",
        &ctl.to_string(),
        "--lld",
        "iscsi",
        "--op",
        "show",
        "--mode",
        "target",
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// tgtd ignores SIGTERM: empty it and shut it down through its control port.
pub fn stop_tgtd(ns: &Netns, ctl: u16, tgtd: &Proc) {
    let ctl = ctl.to_string();
    let _ = ns.try_run(&["tgtadm", "-C", &ctl, "--op", "delete", "--mode", "system"]);
    if tgtd
        .wait_timeout(std::time::Duration::from_secs(2))
        .is_none()
    {
        tgtd.kill();
    }
}

/// `<nhn data dir>/boot` with the fetched kernel as `vmlinuz` and `nhn initrd build`'s initrd
/// for it as `initrd.img`; returns the directory and what the build printed.
pub fn boot_dir(nhn: &super::cli::Nhn, kroot: &Path, kver: &str) -> (PathBuf, String) {
    let boot = nhn.dir().join("boot");
    std::fs::create_dir_all(&boot).expect("make the boot dir");
    std::fs::copy(
        kroot.join("boot").join(format!("vmlinuz-{kver}")),
        boot.join("vmlinuz"),
    )
    .expect("copy the kernel");
    let out = nhn.ok(&[
        "initrd",
        "build",
        "--kernel-version",
        kver,
        "--modules-dir",
        kroot.join("lib/modules").to_str().expect("utf-8 path"),
        "--out",
        boot.join("initrd.img").to_str().expect("utf-8 path"),
    ]);
    (boot, out)
}
