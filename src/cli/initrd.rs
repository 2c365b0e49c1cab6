//! `nhn initrd`: builds the initrd that diskless machines and VMs boot with (`nhn::initrd`
//! packs it; this file picks the inputs, shows progress and writes the file atomically).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;

use nhn::config::Config;

#[derive(Subcommand)]
pub enum InitrdCmd {
    /// Build a reproducible initrd: the same inputs give byte-identical output.
    ///
    /// Packs static busybox, iscsistart and the install mode's tools (GNU tar, mke2fs with
    /// /etc/mke2fs.conf, zstd, xz) with their libraries, the named kernel modules plus their
    /// dependencies (from modules.dep) and nhn's init scripts (modes boot and install) into a
    /// newc cpio archive.
    /// The default output is the boot directory's initrd, which iPXE fetches over HTTP.
    Build {
        /// Kernel release the modules come from (default: the running kernel, `uname -r`).
        #[arg(long, value_name = "KVER")]
        kernel_version: Option<String>,
        /// Folder holding <KVER>/modules.dep.
        #[arg(long, value_name = "DIR", default_value = "/lib/modules")]
        modules_dir: PathBuf,
        /// Kernel modules to include (their dependencies come along).
        #[arg(long, value_delimiter = ',', default_values_t = nhn::initrd::DEFAULT_MODULES.iter().map(|s| s.to_string()))]
        modules: Vec<String>,
        #[arg(long, value_enum, default_value = "gzip")]
        compress: nhn::initrd::Compress,
        /// Output file (default: <boot.dir>/<boot.initrd> from the configuration).
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
        /// The static busybox to pack.
        #[arg(long, value_name = "FILE", default_value = "/bin/busybox")]
        busybox: PathBuf,
        /// The iscsistart to pack (open-iscsi).
        #[arg(long, value_name = "FILE", default_value = "/sbin/iscsistart")]
        iscsistart: PathBuf,
        #[command(flatten)]
        install: nhn::initrd::InstallTools,
    },
}

pub fn run(cmd: InitrdCmd, config: &Config) -> Result<()> {
    let InitrdCmd::Build {
        kernel_version,
        modules_dir,
        modules,
        compress,
        out,
        busybox,
        iscsistart,
        install,
    } = cmd;
    let kernel_version = match kernel_version {
        Some(k) => k,
        None => String::from_utf8(
            std::process::Command::new("uname")
                .arg("-r")
                .output()?
                .stdout,
        )?
        .trim()
        .to_owned(),
    };
    let mtime = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let out = out.unwrap_or_else(|| config.boot.dir.join(&config.boot.initrd));
    let options = nhn::initrd::Options {
        kernel_version,
        modules_dir,
        modules,
        compress,
        busybox,
        iscsistart,
        install,
        mtime,
    };
    build(&options, &out)
}

fn build(options: &nhn::initrd::Options, out: &Path) -> Result<()> {
    let bar = super::progress_bar(0, "{bar:30} {pos}/{len} {msg}");
    let built = nhn::initrd::build(options, &mut |done, total, what| {
        bar.set_length(total);
        bar.set_position(done);
        bar.set_message(what.to_owned());
    })?;
    bar.finish_and_clear();
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = out.with_extension("partial");
    std::fs::write(&tmp, &built.bytes)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "{}: {} bytes, {} entries, kernel {}, modules: {}",
        out.display(),
        built.bytes.len(),
        built.entries,
        options.kernel_version,
        built.modules.join(" ")
    );
    if !built.builtin.is_empty() {
        println!(
            "built into the kernel (nothing to pack): {}",
            built.builtin.join(" ")
        );
    }
    Ok(())
}
