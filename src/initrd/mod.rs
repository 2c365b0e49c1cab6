//! `nhn initrd build`: the switchroot initrd as a reproducible newc cpio archive.
//!
//! Contents: static busybox with its applet links; `iscsistart` (the iSCSI root) and the tools
//! of the install mode (GNU tar, e2fsprogs' mke2fs with the host's `/etc/mke2fs.conf`, zstd and
//! xz: busybox's tar has no xattrs, its mke2fs no ext4), each with the shared libraries
//! `ldd` names, and replacing busybox's applet of the same name; the requested kernel modules
//! plus their dependency closure from `modules.dep` (in a load order: dependencies first); and
//! the scripts of `initrd/` (embedded in the binary at compile time, so a deployed appliance
//! needs no checkout). Every initrd carries every mode (`nhn.mode=boot|install`). Entries are
//! sorted, owned by root, stamped with `SOURCE_DATE_EPOCH` (or 0) and numbered in order; the gzip
//! header carries no time or name: the same inputs give the same bytes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The modules a virtio/e1000 machine needs for an iSCSI root on ext4, and a VM for its
/// virtio DISK1.
pub const DEFAULT_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_net",
    "virtio_blk",
    "8021q",
    "e1000",
    "iscsi_tcp",
    "sd_mod",
    "ext4",
    "crc32c_generic",
];

const INIT: &str = include_str!("../../initrd/init");
/// The scripts under /lib/nhn: the shared helpers, one per boot mode, the DHCP client's hook.
const SCRIPTS: &[(&str, &str, u32)] = &[
    (
        "common.sh",
        include_str!("../../initrd/lib/common.sh"),
        0o644,
    ),
    (
        "mode-boot.sh",
        include_str!("../../initrd/lib/mode-boot.sh"),
        0o644,
    ),
    (
        "mode-install.sh",
        include_str!("../../initrd/lib/mode-install.sh"),
        0o644,
    ),
    (
        "mode-configure.sh",
        include_str!("../../initrd/lib/mode-configure.sh"),
        0o644,
    ),
    (
        "udhcpc.script",
        include_str!("../../initrd/lib/udhcpc.script"),
        0o755,
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compress {
    Gzip,
    Zstd,
}

/// What to build.
#[derive(Debug, Clone)]
pub struct Options {
    pub kernel_version: String,
    /// The folder holding `<kernel_version>/modules.dep` (usually `/lib/modules`).
    pub modules_dir: PathBuf,
    pub modules: Vec<String>,
    pub compress: Compress,
    pub busybox: PathBuf,
    pub iscsistart: PathBuf,
    pub install: InstallTools,
    /// Timestamp of every entry (`SOURCE_DATE_EPOCH`).
    pub mtime: u32,
}

/// mke2fs's configuration (ext4's feature defaults), packed when the host has it.
const MKE2FS_CONF: &str = "/etc/mke2fs.conf";

/// The host tools the install mode (`initrd/lib/mode-install.sh`) runs, as Debian installs
/// them; the CLI commands that build initrds take them as options.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct InstallTools {
    /// GNU tar for the install mode (unpacks an image with owners, modes and xattrs; Debian: tar).
    #[arg(long, value_name = "FILE", default_value = "/bin/tar")]
    pub tar: PathBuf,
    /// mke2fs for the install mode (makes DISK1's ext4; Debian: e2fsprogs).
    #[arg(long, value_name = "FILE", default_value = "/sbin/mke2fs")]
    pub mke2fs: PathBuf,
    /// zstd for the install mode (unpacks .tar.zst images; Debian: zstd).
    #[arg(long, value_name = "FILE", default_value = "/usr/bin/zstd")]
    pub zstd: PathBuf,
    /// xz for the install mode (unpacks .tar.xz images; Debian: xz-utils).
    #[arg(long, value_name = "FILE", default_value = "/usr/bin/xz")]
    pub xz: PathBuf,
}

/// One install-mode tool: where it comes from and goes, and how to tell it from busybox's.
struct Tool<'a> {
    what: &'static str,
    path: &'a Path,
    dest: &'static str,
    fix: &'static str,
    /// The flag that makes it print its version, and a word of that text busybox's applet of
    /// the same name would not print (None: busybox has no such applet worth confusing).
    version: Option<(&'static str, &'static str)>,
}

impl InstallTools {
    /// The tools, in a fixed order.
    fn list(&self) -> [Tool<'_>; 4] {
        [
            Tool {
                what: "GNU tar",
                path: &self.tar,
                dest: "bin/tar",
                fix: "install tar",
                version: Some(("--version", "GNU tar")),
            },
            Tool {
                what: "mke2fs",
                path: &self.mke2fs,
                dest: "sbin/mke2fs",
                fix: "install e2fsprogs",
                version: Some(("-V", "EXT2FS Library")),
            },
            Tool {
                what: "zstd",
                path: &self.zstd,
                dest: "usr/bin/zstd",
                fix: "install zstd",
                version: None,
            },
            Tool {
                what: "xz",
                path: &self.xz,
                dest: "usr/bin/xz",
                fix: "install xz-utils",
                version: None,
            },
        ]
    }
}

/// Refuses a missing tool, or busybox's tar or mke2fs in place of the real one (the install
/// would fail only inside the machine: busybox's tar has no xattrs, its mke2fs no ext4).
fn check_tool(t: &Tool) -> Result<()> {
    if !t.path.exists() {
        return Err(Error::Missing {
            what: t.what,
            path: t.path.to_owned(),
            fix: t.fix,
        });
    }
    let Some((flag, word)) = t.version else {
        return Ok(());
    };
    let out = Command::new(t.path)
        .arg(flag)
        .output()
        .map_err(|e| Error::Tool {
            tool: t.path.display().to_string(),
            detail: e.to_string(),
        })?;
    let text = [out.stdout, out.stderr].concat();
    if String::from_utf8_lossy(&text).contains(word) {
        Ok(())
    } else {
        Err(Error::NotTheTool {
            what: t.what,
            path: t.path.to_owned(),
            fix: t.fix,
        })
    }
}

/// Why an initrd could not be built; each says what to install or fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} not found at {path}: {fix}")]
    Missing {
        what: &'static str,
        path: PathBuf,
        fix: &'static str,
    },
    #[error("{path} is not {what} (busybox's lacks what the install mode needs): {fix}")]
    NotTheTool {
        what: &'static str,
        path: PathBuf,
        fix: &'static str,
    },
    #[error(
        "{path} is dynamically linked; the initrd needs a static busybox: install busybox-static"
    )]
    DynamicBusybox { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "kernel module {name:?} is neither in {dep} nor built into {kver}; check --modules, --kernel-version and --modules-dir"
    )]
    UnknownModule {
        name: String,
        dep: PathBuf,
        kver: String,
    },
    #[error("cannot run {tool}: {detail}")]
    Tool { tool: String, detail: String },
    #[error("{path} is larger than 4 GiB, too large for a newc archive entry")]
    TooLarge { path: PathBuf },
    #[error("writing the archive: {0}")]
    Write(#[from] io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One archive entry.
#[derive(Debug, Clone)]
enum Node {
    Dir,
    File { data: Vec<u8>, mode: u32 },
    Symlink(String),
    CharDev(u32, u32),
}

/// What went into the archive (for the CLI's summary and the tests).
#[derive(Debug, Default)]
pub struct Built {
    pub bytes: Vec<u8>,
    pub entries: usize,
    /// Module files in load order.
    pub modules: Vec<String>,
    /// Requested modules the kernel has built in (nothing to load).
    pub builtin: Vec<String>,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

/// A module's name from its file name: `kernel/fs/ext4/ext4.ko(.xz)` → `ext4`; `-` counts as `_`.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// Modules to include, dependencies first, and the requested ones that are built in.
pub fn module_closure(
    dir: &Path,
    kver: &str,
    wanted: &[String],
) -> Result<(Vec<String>, Vec<String>)> {
    let base = dir.join(kver);
    let dep_path = base.join("modules.dep");
    let dep = String::from_utf8_lossy(&read(&dep_path)?).into_owned();
    let builtin: HashSet<String> = std::fs::read_to_string(base.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .map(module_name)
        .collect();
    let mut table: HashMap<String, (String, Vec<String>)> = HashMap::new();
    for line in dep.lines() {
        let Some((module, deps)) = line.split_once(':') else {
            continue;
        };
        table.insert(
            module_name(module),
            (
                module.to_owned(),
                deps.split_whitespace().map(str::to_owned).collect(),
            ),
        );
    }
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    let mut built_in = Vec::new();
    for name in wanted {
        let key = name.replace('-', "_");
        let Some((path, deps)) = table.get(&key) else {
            if builtin.contains(&key) {
                built_in.push(name.clone());
                continue;
            }
            return Err(Error::UnknownModule {
                name: name.clone(),
                dep: dep_path,
                kver: kver.to_owned(),
            });
        };
        // modules.dep lists the whole closure, deepest dependencies last: load them in reverse.
        for p in deps.iter().rev().chain(std::iter::once(path)) {
            if seen.insert(p.clone()) {
                order.push(p.clone());
            }
        }
    }
    Ok((order, built_in))
}

/// Shared libraries a dynamic executable needs, as `ldd` resolves them.
fn shared_libraries(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .map_err(|e| Error::Tool {
            tool: "ldd".into(),
            detail: format!("{e} (install libc-bin)"),
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with('/'))
                .map(PathBuf::from)
        })
        .collect())
}

fn is_static(bin: &Path) -> Result<bool> {
    Ok(shared_libraries(bin)?.is_empty())
}

/// Packs the executable `src` as `dest` with the shared libraries it needs (at their host
/// paths, where its dynamic loader looks). A busybox applet link of the same name elsewhere in
/// PATH goes, so that PATH lookups find this one (busybox's own sh still prefers its applets:
/// the scripts call these tools by path).
fn add_executable(tree: &mut BTreeMap<String, Node>, dest: &str, src: &Path) -> Result<()> {
    let name = dest.rsplit('/').next().unwrap_or(dest);
    tree.retain(|path, node| {
        !(matches!(node, Node::Symlink(t) if t == "/bin/busybox")
            && path.rsplit('/').next() == Some(name))
    });
    add_file(tree, dest, read(src)?, 0o755);
    for lib in shared_libraries(src)? {
        let data = read(&lib)?;
        let name = lib.to_string_lossy().trim_start_matches('/').to_owned();
        add_file(tree, &name, data, 0o755);
    }
    Ok(())
}

fn add_dirs(tree: &mut BTreeMap<String, Node>, path: &str) {
    let mut acc = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if !acc.is_empty() {
            acc.push('/');
        }
        acc.push_str(part);
        tree.entry(acc.clone()).or_insert(Node::Dir);
    }
}

fn add_file(tree: &mut BTreeMap<String, Node>, path: &str, data: Vec<u8>, mode: u32) {
    if let Some((dir, _)) = path.rsplit_once('/') {
        add_dirs(tree, dir);
    }
    tree.insert(path.to_owned(), Node::File { data, mode });
}

/// Builds the archive in memory. `progress(done, total, what)` reports each step.
pub fn build(o: &Options, progress: &mut dyn FnMut(u64, u64, &str)) -> Result<Built> {
    let total = 6;
    progress(0, total, "checking tools");
    if !o.busybox.exists() {
        return Err(Error::Missing {
            what: "busybox",
            path: o.busybox.clone(),
            fix: "install busybox-static",
        });
    }
    if !is_static(&o.busybox)? {
        return Err(Error::DynamicBusybox {
            path: o.busybox.clone(),
        });
    }
    if !o.iscsistart.exists() {
        return Err(Error::Missing {
            what: "iscsistart",
            path: o.iscsistart.clone(),
            fix: "install open-iscsi",
        });
    }
    for tool in o.install.list() {
        check_tool(&tool)?;
    }
    let (modules, builtin) = module_closure(&o.modules_dir, &o.kernel_version, &o.modules)?;

    let mut tree: BTreeMap<String, Node> = BTreeMap::new();
    for d in [
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "newroot",
        "etc/nhn",
        "lib/modules",
        "usr/bin",
        "usr/sbin",
        "sbin",
    ] {
        add_dirs(&mut tree, d);
    }
    tree.insert("dev/console".into(), Node::CharDev(5, 1));

    progress(1, total, "busybox");
    add_file(&mut tree, "bin/busybox", read(&o.busybox)?, 0o755);
    let list = Command::new(&o.busybox)
        .arg("--list-full")
        .output()
        .map_err(|e| Error::Tool {
            tool: o.busybox.display().to_string(),
            detail: e.to_string(),
        })?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim().trim_start_matches('/');
        if applet.is_empty() || applet == "bin/busybox" || applet.contains("..") {
            continue;
        }
        if let Some((dir, _)) = applet.rsplit_once('/') {
            add_dirs(&mut tree, dir);
        }
        tree.entry(applet.to_owned())
            .or_insert(Node::Symlink("/bin/busybox".into()));
    }

    progress(2, total, "iscsistart and its libraries");
    add_executable(&mut tree, "sbin/iscsistart", &o.iscsistart)?;

    progress(3, total, "install tools and their libraries");
    for tool in o.install.list() {
        add_executable(&mut tree, tool.dest, tool.path)?;
    }
    if Path::new(MKE2FS_CONF).exists() {
        add_file(
            &mut tree,
            MKE2FS_CONF.trim_start_matches('/'),
            read(Path::new(MKE2FS_CONF))?,
            0o644,
        );
    }

    progress(4, total, "kernel modules");
    let base = o.modules_dir.join(&o.kernel_version);
    let mut names = Vec::new();
    for m in &modules {
        let file = m.rsplit('/').next().unwrap_or(m).to_owned();
        add_file(
            &mut tree,
            &format!("lib/modules/{file}"),
            read(&base.join(m))?,
            0o644,
        );
        names.push(file);
    }
    add_file(
        &mut tree,
        "etc/nhn/modules.order",
        format!("{}\n", names.join("\n")).into_bytes(),
        0o644,
    );

    progress(5, total, "scripts");
    add_file(&mut tree, "init", INIT.as_bytes().to_vec(), 0o755);
    for (name, text, mode) in SCRIPTS {
        add_file(
            &mut tree,
            &format!("lib/nhn/{name}"),
            text.as_bytes().to_vec(),
            *mode,
        );
    }

    let mut cpio = Vec::new();
    for (ino, (name, node)) in tree.iter().enumerate() {
        let b = cpio::newc::Builder::new(name)
            .ino(ino as u32 + 1)
            .uid(0)
            .gid(0)
            .mtime(o.mtime)
            .nlink(if matches!(node, Node::Dir) { 2 } else { 1 });
        match node {
            Node::Dir => b.mode(0o040755).write(&mut cpio, 0).finish()?,
            Node::File { data, mode } => {
                let size = u32::try_from(data.len()).map_err(|_| Error::TooLarge {
                    path: PathBuf::from(name),
                })?;
                let mut w = b.mode(0o100000 | mode).write(&mut cpio, size);
                w.write_all(data)?;
                w.finish()?
            }
            Node::Symlink(target) => {
                let mut w = b.mode(0o120777).write(&mut cpio, target.len() as u32);
                w.write_all(target.as_bytes())?;
                w.finish()?
            }
            Node::CharDev(major, minor) => b
                .mode(0o020600)
                .rdev_major(*major)
                .rdev_minor(*minor)
                .write(&mut cpio, 0)
                .finish()?,
        };
    }
    cpio::newc::trailer(&mut cpio)?;

    progress(6, total, "compressing");
    let bytes = match o.compress {
        Compress::Gzip => {
            let mut gz = flate2::GzBuilder::new()
                .mtime(0)
                .operating_system(3)
                .write(Vec::new(), flate2::Compression::default());
            gz.write_all(&cpio)?;
            gz.finish()?
        }
        Compress::Zstd => zstd::encode_all(&cpio[..], 12)?,
    };
    Ok(Built {
        bytes,
        entries: tree.len(),
        modules: names,
        builtin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_kernel() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let k = d.path().join("6.1.0-test");
        std::fs::create_dir_all(k.join("kernel/net")).unwrap();
        std::fs::write(
            k.join("modules.dep"),
            "kernel/drivers/net/virtio_net.ko: kernel/net/core/net_failover.ko kernel/net/core/failover.ko\n\
             kernel/net/core/net_failover.ko: kernel/net/core/failover.ko\n\
             kernel/net/core/failover.ko:\n\
             kernel/drivers/scsi/iscsi_tcp.ko: kernel/drivers/scsi/libiscsi_tcp.ko kernel/drivers/scsi/libiscsi.ko kernel/drivers/scsi/scsi_transport_iscsi.ko\n",
        )
        .unwrap();
        std::fs::write(
            k.join("modules.builtin"),
            "kernel/crypto/crc32c_generic.ko\n",
        )
        .unwrap();
        d
    }

    #[test]
    fn closure_puts_dependencies_first_once() {
        let d = fake_kernel();
        let wanted = vec![
            "virtio-net".to_owned(),
            "iscsi_tcp".to_owned(),
            "crc32c_generic".to_owned(),
        ];
        let (order, builtin) = module_closure(d.path(), "6.1.0-test", &wanted).unwrap();
        assert_eq!(
            order,
            vec![
                "kernel/net/core/failover.ko",
                "kernel/net/core/net_failover.ko",
                "kernel/drivers/net/virtio_net.ko",
                "kernel/drivers/scsi/scsi_transport_iscsi.ko",
                "kernel/drivers/scsi/libiscsi.ko",
                "kernel/drivers/scsi/libiscsi_tcp.ko",
                "kernel/drivers/scsi/iscsi_tcp.ko",
            ]
        );
        assert_eq!(builtin, vec!["crc32c_generic"]);
    }

    #[test]
    fn an_unknown_module_is_named_in_the_error() {
        let d = fake_kernel();
        let err = module_closure(d.path(), "6.1.0-test", &["nosuchmod".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"nosuchmod\"") && err.contains("modules.dep"),
            "{err}"
        );
    }

    #[test]
    fn module_names_normalize_dashes_and_compression_suffixes() {
        assert_eq!(
            module_name("kernel/arch/x86/events/intel/intel-uncore.ko.xz"),
            "intel_uncore"
        );
        assert_eq!(module_name("ext4.ko"), "ext4");
    }
}
