//! `nhn image`: the OS image catalogue. `import` turns a root filesystem archive into an image
//! customers can restore (`nhn::images` reads it and builds its initrd; this file takes the
//! description from flags or a manifest, shows progress and records the result).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use nhn::config::Config;
use nhn::images::{self, Describe, InitrdTools};
use nhn::inventory::Inventory;
use nhn::inventory::images::{ImageContent, ImageRecord, Images};
use nhn::util::unix_now;

#[derive(Subcommand)]
pub enum ImageCmd {
    /// Import a root filesystem archive (tar.zst, tar.gz or tar.xz) as an image.
    ///
    /// Keeps the archive under the data dir with its SHA-256, takes out the image's kernel
    /// (boot/vmlinuz-<kver>) and builds an nhn initrd from the image's own modules
    /// (lib/modules/<kver>), so machines boot the image's kernel. The description comes from
    /// the flags, or from a manifest beside the archive (NAME.toml for NAME.tar.zst, with
    /// name, os, os_version, architecture, min_disk_gb and description); flags win.
    /// An image the site file declared gets its content; an imported one must be removed
    /// first.
    Import {
        /// The archive.
        file: PathBuf,
        #[arg(long)]
        name: Option<String>,
        /// Operating system, as customers see it (e.g. CentOS, Debian).
        #[arg(long)]
        os: Option<String>,
        #[arg(long)]
        os_version: Option<String>,
        /// x86_64 or i386.
        #[arg(long)]
        arch: Option<String>,
        /// The smallest DISK1 it may be restored onto (checked against its unpacked size).
        #[arg(long, value_name = "GB")]
        min_disk_gb: Option<u32>,
        #[arg(long)]
        description: Option<String>,
        /// The static busybox packed into its initrd.
        #[arg(long, value_name = "FILE", default_value = "/bin/busybox")]
        busybox: PathBuf,
        /// The iscsistart packed into its initrd (open-iscsi).
        #[arg(long, value_name = "FILE", default_value = "/sbin/iscsistart")]
        iscsistart: PathBuf,
        // Boxed: the other variants are small (clippy::large_enum_variant).
        #[command(flatten)]
        install: Box<nhn::initrd::InstallTools>,
    },
    /// List images: id, OS, architecture, minimum disk, kernel, archive size, users.
    List,
    /// Show one image in full: its archive, checksum, kernel and the VMs that hold it.
    Show { image: String },
    /// Remove an image and its files; refused while a VM holds it.
    Remove { image: String },
}

/// A manifest beside the archive: `NAME.toml` for `NAME.tar.zst` (or .tar.gz, .tar.xz).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    name: Option<String>,
    os: Option<String>,
    os_version: Option<String>,
    architecture: Option<String>,
    min_disk_gb: Option<u32>,
    description: Option<String>,
}

fn manifest_path(file: &Path) -> PathBuf {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let stem = [".tar.zst", ".tar.gz", ".tar.xz", ".tzst", ".tgz", ".txz"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .unwrap_or(name);
    file.with_file_name(format!("{stem}.toml"))
}

fn manifest(file: &Path) -> Result<Manifest> {
    let path = manifest_path(file);
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("manifest {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn mb(bytes: u64) -> String {
    format!("{} MB", bytes.div_ceil(1 << 20))
}

pub fn run(cmd: ImageCmd, inv: &Inventory, config: &Config) -> Result<()> {
    match cmd {
        ImageCmd::Import {
            file,
            name,
            os,
            os_version,
            arch,
            min_disk_gb,
            description,
            busybox,
            iscsistart,
            install,
        } => {
            let m = manifest(&file)?;
            let need = |v: Option<String>, what: &str| {
                v.with_context(|| {
                    format!(
                        "give --{what} (or {what} in {})",
                        manifest_path(&file).display()
                    )
                })
            };
            let describe = Describe {
                name: need(name.or(m.name), "name")?,
                os: need(os.or(m.os), "os")?,
                os_version: need(os_version.or(m.os_version), "os-version")?,
                architecture: need(arch.or(m.architecture), "arch")?,
                min_disk_gb: min_disk_gb.or(m.min_disk_gb).context(
                    "give --min-disk-gb (the smallest DISK1 the image may be restored onto)",
                )?,
                description: description.or(m.description).unwrap_or_default(),
            };
            if describe.architecture != "x86_64" && describe.architecture != "i386" {
                bail!("--arch {:?}: use x86_64 or i386", describe.architecture);
            }
            if describe.name.is_empty()
                || !describe
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                bail!(
                    "--name {:?}: use letters, digits, '-', '_' and '.'",
                    describe.name
                );
            }
            let tools = InitrdTools {
                busybox,
                iscsistart,
                install: *install,
                modules: nhn::initrd::DEFAULT_MODULES
                    .iter()
                    .map(|m| (*m).to_owned())
                    .collect(),
            };
            let bar = super::progress_bar(0, "{bar:30} {bytes}/{total_bytes} {msg}");
            let imported = images::import(
                &config.data_dir,
                &file,
                &describe,
                &tools,
                &mut |done, total, what| {
                    bar.set_length(total);
                    bar.set_position(done);
                    bar.set_message(what.to_owned());
                },
            )
            .with_context(|| format!("cannot import {}", file.display()))?;
            bar.finish_and_clear();
            let record = ImageRecord {
                public_id: imported.public_id.clone(),
                name: describe.name.clone(),
                os: describe.os.clone(),
                os_version: describe.os_version.clone(),
                architecture: describe.architecture.clone(),
                min_disk_gb: i64::from(describe.min_disk_gb),
                init_supported: true,
                description: describe.description.clone(),
                created_at: String::new(),
            };
            let content = ImageContent {
                archive: imported.archive.clone(),
                sha256: imported.sha256.clone(),
                kernel_version: imported.kernel_version.clone(),
                archive_bytes: imported.archive_bytes,
                unpacked_bytes: imported.unpacked_bytes,
                kernel_sha256: imported.kernel_sha256.clone(),
                initrd_sha256: imported.initrd_sha256.clone(),
            };
            let recorded = inv.write_blocking(move |tx| {
                tx.add_image(&record, &content, unix_now())?;
                nhn::inventory::record_event(tx, nhn::model::EventKind::Image, &record.public_id)?;
                nhn::inventory::audit(tx, "cli", "image.import", &record.public_id, "ok")
            });
            if let Err(e) = recorded {
                // Not in the catalogue: its files must not stay behind either.
                let _ = images::remove_files(&config.data_dir, &imported.public_id);
                return Err(e).context("cannot record the image");
            }
            println!(
                "imported {} ({} {} {}): kernel {}, archive {} (sha256 {}), unpacks to {}, initrd {} with {} modules",
                imported.public_id,
                describe.os,
                describe.os_version,
                describe.architecture,
                imported.kernel_version,
                mb(imported.archive_bytes),
                imported.sha256,
                mb(imported.unpacked_bytes),
                mb(imported.initrd_bytes),
                imported.initrd_modules
            );
        }
        ImageCmd::List => {
            let list = inv.read_blocking(|tx| tx.image_details())?;
            if list.is_empty() {
                println!("no images (nhn image import FILE adds one)");
            }
            for d in list {
                let i = &d.image;
                let content = if d.content.archive.is_empty() {
                    "not imported".to_owned()
                } else {
                    format!(
                        "kernel {}, {}",
                        d.content.kernel_version,
                        mb(d.content.archive_bytes)
                    )
                };
                println!(
                    "{:<24} {} {} {:<7} >= {} GB  {content}  used by {}",
                    i.public_id,
                    i.os,
                    i.os_version,
                    i.architecture,
                    i.min_disk_gb,
                    d.used_by.len()
                );
            }
        }
        ImageCmd::Show { image } => {
            let list = inv.read_blocking(|tx| tx.image_details())?;
            let Some(d) = list
                .into_iter()
                .find(|d| d.image.public_id == image || d.image.name == image)
            else {
                bail!("no image {image:?}; `nhn image list` shows them");
            };
            let (i, c) = (&d.image, &d.content);
            println!("{} ({})", i.public_id, i.name);
            println!(
                "  {} {} {}, DISK1 of at least {} GB, created {}",
                i.os, i.os_version, i.architecture, i.min_disk_gb, i.created_at
            );
            if !i.description.is_empty() {
                println!("  {}", i.description);
            }
            if c.archive.is_empty() {
                println!("  content: none (declared by the site file; nhn image import adds it)");
            } else {
                println!(
                    "  archive: {} ({}, unpacks to {})",
                    c.archive,
                    mb(c.archive_bytes),
                    mb(c.unpacked_bytes)
                );
                println!("  sha256:  {}", c.sha256);
                println!(
                    "  kernel:  {} (vmlinuz and initrd.img beside the archive)",
                    c.kernel_version
                );
            }
            match d.used_by.as_slice() {
                [] => println!("  used by: no VM"),
                users => println!("  used by: {}", users.join(", ")),
            }
        }
        ImageCmd::Remove { image } => {
            let id = if image.starts_with("img-") {
                image.clone()
            } else {
                images::public_id(&image)
            };
            let i = id.clone();
            let existed = inv.write_blocking(move |tx| {
                let existed = tx.delete_image(&i)?;
                if existed {
                    nhn::inventory::record_event(tx, nhn::model::EventKind::Image, &i)?;
                    nhn::inventory::audit(tx, "cli", "image.remove", &i, "ok")?;
                }
                Ok(existed)
            })?;
            if !existed {
                bail!("no image {image:?}; `nhn image list` shows them");
            }
            images::remove_files(&config.data_dir, &id)
                .with_context(|| format!("removed {id} from the catalogue, but not its files"))?;
            println!("removed {id}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_sits_beside_the_archive() {
        for (archive, manifest) in [
            ("/x/centos54.tar.zst", "/x/centos54.toml"),
            ("deb.tar.gz", "deb.toml"),
            ("a.b.tar.xz", "a.b.toml"),
            ("img.tgz", "img.toml"),
            ("plain", "plain.toml"),
        ] {
            assert_eq!(manifest_path(Path::new(archive)), PathBuf::from(manifest));
        }
    }
}
