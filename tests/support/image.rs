//! Image archives for the image tests: a small root filesystem (busybox, an os-release, the
//! Debian kernel that tests/fetch-kernel.sh fetches and the modules nhn's initrd needs), packed
//! as tar.zst, tar.gz or tar.xz.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The fetched kernel, or (locally) a skip; under CI a missing kernel fails.
pub fn kernel_or_skip(test: &str) -> Option<(PathBuf, String)> {
    // What the image's initrd packs (nhn initrd build's defaults).
    let tools = [
        "/bin/busybox",
        "/sbin/iscsistart",
        "/bin/tar",
        "/sbin/mke2fs",
        "/usr/bin/zstd",
        "/usr/bin/xz",
    ];
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| !Path::new(t).exists())
        .collect();
    let found = if missing.is_empty() {
        super::kernel::kernel()
    } else {
        Err(format!(
            "missing {missing:?} (busybox-static, open-iscsi, tar, e2fsprogs, zstd, xz-utils)"
        ))
    };
    match found {
        Ok(k) => Some(k),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("{test}: {why}"),
        Err(why) => {
            eprintln!("SKIP {test}: {why}");
            None
        }
    }
}

/// A root filesystem tree as (path in the archive, contents); directories implied.
pub fn rootfs(kroot: &Path, kver: &str) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![
        (
            "etc/os-release".to_owned(),
            b"ID=debian\nVERSION_ID=\"12\"\n".to_vec(),
        ),
        (
            "bin/busybox".to_owned(),
            std::fs::read("/bin/busybox").expect("read busybox"),
        ),
        (
            format!("boot/vmlinuz-{kver}"),
            std::fs::read(kroot.join(format!("boot/vmlinuz-{kver}"))).expect("read the kernel"),
        ),
    ];
    let mods = kroot.join("lib/modules");
    let wanted: Vec<String> = nhn::initrd::DEFAULT_MODULES
        .iter()
        .map(|m| (*m).to_owned())
        .collect();
    let (closure, _) = nhn::initrd::module_closure(&mods, kver, &wanted).expect("closure");
    let base = mods.join(kver);
    let mut names: Vec<String> = std::fs::read_dir(&base)
        .expect("list modules")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.extend(closure);
    for rel in names {
        let data = std::fs::read(base.join(&rel)).expect("read a module file");
        // A merged-/usr image keeps its modules under usr/lib.
        files.push((format!("usr/lib/modules/{kver}/{rel}"), data));
    }
    files
}

#[derive(Clone, Copy)]
pub enum Pack {
    Zstd,
    Gzip,
    Xz,
}

/// Writes `files` (plus any raw `extra` entries) as a compressed tar at `path`.
pub fn pack(path: &Path, how: Pack, files: &[(String, Vec<u8>)], extra: &[(&str, &str)]) {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        // Programs as a root filesystem has them.
        let exec = name.starts_with("bin/") || name.starts_with("sbin/");
        h.set_mode(if exec { 0o755 } else { 0o644 });
        if h.set_path(name).is_err() {
            // A name tar::Builder refuses to write (`..`): straight into the header.
            h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        }
        h.set_cksum();
        tar.append(&h, data.as_slice()).expect("append");
    }
    // Symlinks as a real root has them (absolute targets), and raw names tar::Builder would
    // refuse to write (set directly into the header).
    for (name, target) in extra {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Symlink);
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_link_name(target).expect("link name");
        h.set_cksum();
        tar.append(&h, std::io::empty()).expect("append a link");
    }
    let raw = tar.into_inner().expect("finish tar");
    let bytes = match how {
        Pack::Zstd => zstd::encode_all(raw.as_slice(), 3).expect("zstd"),
        Pack::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&raw).expect("gzip");
            e.finish().expect("gzip")
        }
        Pack::Xz => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(&raw).expect("xz");
            e.finish().expect("xz")
        }
    };
    std::fs::write(path, bytes).expect("write the archive");
}

pub fn sha256(path: &Path) -> String {
    Sha256::digest(std::fs::read(path).expect("read"))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
