//! The Debian kernel the boot tests run (fetched, not installed, by tests/fetch-kernel.sh).

use std::path::{Path, PathBuf};

use super::{Lab, lab_or_skip};

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

/// Like `lab_or_skip`, plus the fetched kernel (a missing kernel fails under CI).
pub fn lab_with_kernel(test: &str) -> Option<(Lab, PathBuf, String)> {
    let lab = lab_or_skip(
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
    )?;
    match kernel() {
        Ok((root, kver)) => Some((lab, root, kver)),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("{test}: {why}"),
        Err(why) => {
            eprintln!("SKIP {test}: {why}");
            None
        }
    }
}
