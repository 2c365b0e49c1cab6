//! Operating-system images (`nhn image import`): a root filesystem archive (tar.zst, tar.gz or
//! tar.xz) becomes a catalogue entry customers can `restoreImage` onto DISK1.
//!
//! One pass over the archive ([`archive::scan`]) keeps a copy under the data dir with its
//! SHA-256, refuses entries that climb out of the root (`..`), sums what the filesystem needs,
//! and takes out the image's kernels and module trees. Then the image's own kernel gets an nhn
//! initrd built from its own modules (`crate::initrd`), so a machine boots the image's kernel
//! with matching modules. Everything is assembled in a staging directory and renamed into
//! `<data_dir>/images/<image id>/` only when complete: a failed import leaves nothing behind.

pub mod archive;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use archive::Compression;

/// What the operator says about an image.
#[derive(Debug, Clone)]
pub struct Describe {
    pub name: String,
    pub os: String,
    pub os_version: String,
    pub architecture: String,
    pub min_disk_gb: u32,
    pub description: String,
}

/// The tools the per-image initrd is built with (as `nhn initrd build` takes them).
#[derive(Debug, Clone)]
pub struct InitrdTools {
    pub busybox: PathBuf,
    pub iscsistart: PathBuf,
    pub install: crate::initrd::InstallTools,
    pub modules: Vec<String>,
}

/// An imported image's files and facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub public_id: String,
    /// The image's directory: `rootfs.tar.*`, `vmlinuz`, `initrd.img`.
    pub dir: PathBuf,
    /// The archive, relative to the data dir (as the inventory stores it).
    pub archive: String,
    pub sha256: String,
    pub archive_bytes: u64,
    pub unpacked_bytes: u64,
    pub kernel_version: String,
    pub initrd_bytes: u64,
    pub initrd_modules: usize,
    /// SHA-256 of `vmlinuz` and `initrd.img` (hypervisors verify their copies by them).
    pub kernel_sha256: String,
    pub initrd_sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a tar.zst, tar.gz or tar.xz archive (its first bytes are none of theirs)")]
    UnknownFormat(PathBuf),
    #[error("the archive is corrupt or truncated: {0}")]
    Corrupt(String),
    #[error("the archive holds {0:?}, a path that climbs out of the root with `..`; refusing it")]
    UnsafePath(String),
    #[error(
        "the archive has no kernel with its modules: it needs boot/vmlinuz-<kver> and lib/modules/<kver>/modules.dep for the same <kver> (kernels found: {kernels}; module trees found: {modules})"
    )]
    NoKernel { kernels: String, modules: String },
    #[error(
        "the image unpacks to {unpacked_mb} MB, which needs a disk of at least {need_gb} GB; --min-disk-gb {min_disk_gb} is too small"
    )]
    TooSmall {
        unpacked_mb: u64,
        need_gb: u64,
        min_disk_gb: u32,
    },
    #[error("building the image's initrd: {0}")]
    Initrd(#[from] crate::initrd::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error of an I/O step on `path` (for `map_err`).
fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_owned();
    move |source| Error::Io { path, source }
}

/// Where the images live under the data dir.
pub fn images_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("images")
}

/// The files of an imported image that the appliance serves (`/images/<id>/<file>`):
/// hypervisors fetch the kernel and initrd for a VM's boot and the archive for an install.
pub fn served_file(data_dir: &Path, id: &str, file: &str) -> Option<PathBuf> {
    let id_ok = id.starts_with("img-")
        && id.len() <= 80
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !id.contains("..");
    let servable = ["vmlinuz", "initrd.img"].contains(&file)
        || [Compression::Zstd, Compression::Gzip, Compression::Xz]
            .iter()
            .any(|c| c.file_name() == file);
    (id_ok && servable).then(|| images_dir(data_dir).join(id).join(file))
}

/// The two families of file layouts the Init* methods write (configure mode finds the real
/// one in the image's `/etc/os-release`; this is the catalogue's promise, from its `os`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `/etc/sysconfig/network-scripts/ifcfg-ethN`, `/etc/sysconfig/iptables`.
    RedHat,
    /// `/etc/network/interfaces`, `/etc/iptables/rules.v4`.
    Debian,
}

impl Layout {
    /// The layout of an image whose `os` is `os` (case and spaces ignored), if Init* knows it.
    pub fn for_os(os: &str) -> Option<Layout> {
        let os: String = os
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        match os.as_str() {
            "centos" | "redhat" | "rhel" | "rocky" | "rockylinux" | "almalinux" | "fedora"
            | "oraclelinux" => Some(Layout::RedHat),
            "debian" | "ubuntu" => Some(Layout::Debian),
            _ => None,
        }
    }
}

/// The public id of the image named `name`.
pub fn public_id(name: &str) -> String {
    format!("img-{name}")
}

/// The smallest disk (GB) a root filesystem of `unpacked` bytes fits on: ext4's metadata
/// and reserved blocks take about a tenth.
fn disk_needed_gb(unpacked: u64) -> u64 {
    (unpacked + unpacked / 10).div_ceil(1 << 30).max(1)
}

/// Imports `file` as image `what.name` into `data_dir`; `progress(done, total, step)` counts
/// the archive's bytes, then names the initrd's steps.
pub fn import(
    data_dir: &Path,
    file: &Path,
    what: &Describe,
    tools: &InitrdTools,
    progress: &mut dyn FnMut(u64, u64, &str),
) -> Result<Imported> {
    let mut head = [0u8; 6];
    let mut f = fs::File::open(file).map_err(io_err(file))?;
    let total = f.metadata().map_err(io_err(file))?.len();
    let n = f.read(&mut head).map_err(io_err(file))?;
    let compression =
        Compression::sniff(&head[..n]).ok_or_else(|| Error::UnknownFormat(file.to_owned()))?;
    let root = images_dir(data_dir);
    fs::create_dir_all(&root).map_err(io_err(&root))?;
    let staging = staging_dir(&root)?;
    let source = Source {
        file,
        compression,
        total,
    };
    let result = assemble(&staging, &source, what, tools, data_dir, progress);
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

/// A fresh staging directory under `root` (`.import-…`), on the same filesystem as the
/// images so the final rename is atomic.
fn staging_dir(root: &Path) -> Result<PathBuf> {
    for _ in 0..16 {
        let dir = root.join(format!(".import-{:08x}", rand::random::<u32>()));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(Error::Io { path: dir, source }),
        }
    }
    Err(Error::Io {
        path: root.to_owned(),
        source: std::io::Error::other("cannot create a staging directory"),
    })
}

/// The archive being imported: its path, compression and size.
struct Source<'a> {
    file: &'a Path,
    compression: Compression,
    total: u64,
}

fn assemble(
    staging: &Path,
    &Source {
        file,
        compression,
        total,
    }: &Source<'_>,
    what: &Describe,
    tools: &InitrdTools,
    data_dir: &Path,
    progress: &mut dyn FnMut(u64, u64, &str),
) -> Result<Imported> {
    let extracted = staging.join("extracted");
    let kept = staging.join(compression.file_name());
    let scanned = archive::scan(file, compression, &kept, &extracted, &mut |done| {
        progress(done, total, "reading the archive")
    })?;
    // The newest kernel that has its modules.
    let kernel_version = scanned
        .kernels
        .iter()
        .rev()
        .find(|k| {
            extracted
                .join("lib/modules")
                .join(k)
                .join("modules.dep")
                .is_file()
        })
        .cloned()
        .ok_or_else(|| {
            let list = |s: &std::collections::BTreeSet<String>| {
                if s.is_empty() {
                    "none".to_owned()
                } else {
                    s.iter().cloned().collect::<Vec<_>>().join(", ")
                }
            };
            Error::NoKernel {
                kernels: list(&scanned.kernels),
                modules: list(&scanned.module_trees),
            }
        })?;
    let need_gb = disk_needed_gb(scanned.unpacked_bytes);
    if need_gb > u64::from(what.min_disk_gb) {
        return Err(Error::TooSmall {
            unpacked_mb: scanned.unpacked_bytes.div_ceil(1 << 20),
            need_gb,
            min_disk_gb: what.min_disk_gb,
        });
    }
    let built = crate::initrd::build(
        &crate::initrd::Options {
            kernel_version: kernel_version.clone(),
            modules_dir: extracted.join("lib/modules"),
            modules: tools.modules.clone(),
            compress: crate::initrd::Compress::Gzip,
            busybox: tools.busybox.clone(),
            iscsistart: tools.iscsistart.clone(),
            install: tools.install.clone(),
            mtime: 0,
        },
        // The archive is read: the bar stays full while the initrd's steps are named.
        &mut |_, _, step| progress(total, total, step),
    )?;
    let initrd = staging.join("initrd.img");
    fs::write(&initrd, &built.bytes).map_err(io_err(&initrd))?;
    let kernel = extracted
        .join("boot")
        .join(format!("vmlinuz-{kernel_version}"));
    let vmlinuz = staging.join("vmlinuz");
    fs::rename(&kernel, &vmlinuz).map_err(io_err(&kernel))?;
    let kernel_sha256 = sha256_hex(&fs::read(&vmlinuz).map_err(io_err(&vmlinuz))?);
    // The modules are in the initrd now; the rest of the root stays in the archive.
    fs::remove_dir_all(&extracted).map_err(io_err(&extracted))?;
    let public_id = public_id(&what.name);
    let dir = images_dir(data_dir).join(&public_id);
    fs::rename(staging, &dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source: if source.kind() == std::io::ErrorKind::DirectoryNotEmpty
            || source.kind() == std::io::ErrorKind::AlreadyExists
        {
            std::io::Error::other(
                "an image of that name already has files here; `nhn image remove` it first",
            )
        } else {
            source
        },
    })?;
    Ok(Imported {
        archive: format!("images/{public_id}/{}", compression.file_name()),
        public_id,
        dir,
        sha256: scanned.sha256,
        archive_bytes: scanned.archive_bytes,
        unpacked_bytes: scanned.unpacked_bytes,
        kernel_version,
        initrd_bytes: built.bytes.len() as u64,
        initrd_modules: built.modules.len(),
        kernel_sha256,
        initrd_sha256: sha256_hex(&built.bytes),
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    crate::sign::hex(&sha2::Sha256::digest(bytes))
}

/// Deletes an image's files (after its catalogue entry is gone).
pub fn remove_files(data_dir: &Path, public_id: &str) -> std::io::Result<()> {
    let dir = images_dir(data_dir).join(public_id);
    match fs::remove_dir_all(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_layouts_follow_the_os_family() {
        assert_eq!(Layout::for_os("CentOS"), Some(Layout::RedHat));
        assert_eq!(Layout::for_os("Red Hat"), Some(Layout::RedHat));
        assert_eq!(Layout::for_os("Rocky Linux"), Some(Layout::RedHat));
        assert_eq!(Layout::for_os("debian"), Some(Layout::Debian));
        assert_eq!(Layout::for_os("Ubuntu"), Some(Layout::Debian));
        assert_eq!(Layout::for_os("Windows"), None);
    }

    #[test]
    fn only_an_images_own_files_are_served() {
        let d = Path::new("/data");
        assert_eq!(
            served_file(d, "img-deb12", "vmlinuz"),
            Some(PathBuf::from("/data/images/img-deb12/vmlinuz"))
        );
        assert!(served_file(d, "img-deb12", "rootfs.tar.zst").is_some());
        for (id, file) in [
            ("img-deb12", "../../nhn.db"),
            ("img-..", "vmlinuz"),
            ("../img-x", "vmlinuz"),
            ("img-a/b", "vmlinuz"),
            ("deb12", "vmlinuz"),
            ("img-deb12", "extracted"),
        ] {
            assert_eq!(served_file(d, id, file), None, "{id}/{file}");
        }
    }

    #[test]
    fn the_disk_needed_leaves_room_for_the_filesystem() {
        for (unpacked, gb) in [
            (0, 1),
            (500 << 20, 1),
            (1000 << 20, 2),
            (27 << 30, 30),
            (28 << 30, 31),
        ] {
            assert_eq!(disk_needed_gb(unpacked), gb, "{unpacked}");
        }
    }
}
