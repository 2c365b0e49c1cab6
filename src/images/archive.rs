//! Reading an image archive once, as it streams: the bytes are copied to the data dir and
//! hashed (SHA-256) on their way to the decompressor, and the tar entries are checked and
//! sorted as they pass. Only the kernels (`boot/vmlinuz-<kver>`) and the module trees
//! (`lib/modules/<kver>/`, or `usr/lib/` for merged-/usr images) are written out, and only as
//! regular files and directories nhn creates itself: no symlink from the archive is ever made
//! on this side, so no write can be redirected out of the staging directory.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{Error, io_err};

/// How the archive is compressed, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Zstd,
    Gzip,
    Xz,
}

impl Compression {
    pub fn sniff(head: &[u8]) -> Option<Compression> {
        if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Compression::Zstd)
        } else if head.starts_with(&[0x1f, 0x8b]) {
            Some(Compression::Gzip)
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Some(Compression::Xz)
        } else {
            None
        }
    }

    /// The file name the archive is kept under.
    pub fn file_name(self) -> &'static str {
        match self {
            Compression::Zstd => "rootfs.tar.zst",
            Compression::Gzip => "rootfs.tar.gz",
            Compression::Xz => "rootfs.tar.xz",
        }
    }
}

/// Copies what is read through it to `copy`, hashes it, and reports the count.
struct Tee<'p, R, W> {
    inner: R,
    copy: W,
    hash: Sha256,
    read: u64,
    progress: &'p mut dyn FnMut(u64),
}

impl<R: Read, W: Write> Read for Tee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        self.hash.update(&buf[..n]);
        self.read += n as u64;
        (self.progress)(self.read);
        Ok(n)
    }
}

/// What one pass over an archive found.
#[derive(Debug, Default)]
pub struct Scanned {
    pub sha256: String,
    pub archive_bytes: u64,
    /// The regular files' sizes, summed: what the root filesystem needs at least.
    pub unpacked_bytes: u64,
    /// Kernel releases with a `boot/vmlinuz-<kver>` (written to `<staging>/boot/`).
    pub kernels: BTreeSet<String>,
    /// Kernel releases with a module tree (written to `<staging>/lib/modules/<kver>/`).
    pub module_trees: BTreeSet<String>,
}

/// An entry's path relative to the root, or why it is refused: `..` anywhere (it would
/// climb out of the disk it is unpacked onto). Leading `/` and `./` are dropped, as tar does.
pub fn relative(path: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(path.display().to_string());
            }
        }
    }
    Ok(out)
}

/// Where an entry goes on this side: a kernel or a file of a module tree (with its kernel
/// release), or nowhere.
fn destination(rel: &Path) -> Option<(PathBuf, String, bool)> {
    let parts: Vec<&str> = rel.iter().filter_map(|p| p.to_str()).collect();
    match parts.as_slice() {
        ["boot", file] => {
            let kver = file.strip_prefix("vmlinuz-")?;
            Some((PathBuf::from("boot").join(file), kver.to_owned(), true))
        }
        ["lib", "modules", kver, rest @ ..] | ["usr", "lib", "modules", kver, rest @ ..] => {
            let mut to = PathBuf::from("lib/modules").join(kver);
            to.extend(rest);
            Some((to, (*kver).to_owned(), false))
        }
        _ => None,
    }
}

/// Reads `file` (compressed `compression`) once: copies it to `copy_to`, hashes it, checks
/// every entry, and writes kernels and module trees under `staging`.
pub fn scan(
    file: &Path,
    compression: Compression,
    copy_to: &Path,
    staging: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<Scanned, Error> {
    let input = File::open(file).map_err(io_err(file))?;
    let copy = File::create(copy_to).map_err(io_err(copy_to))?;
    let mut tee = Tee {
        inner: BufReader::with_capacity(1 << 20, input),
        copy: io::BufWriter::with_capacity(1 << 20, copy),
        hash: Sha256::new(),
        read: 0,
        progress,
    };
    let mut found = Scanned::default();
    {
        let decoder: Box<dyn Read + '_> = match compression {
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::new(&mut tee)
                    .map_err(|e| Error::Corrupt(e.to_string()))?,
            ),
            Compression::Gzip => Box::new(flate2::read::GzDecoder::new(&mut tee)),
            Compression::Xz => Box::new(liblzma::read::XzDecoder::new(&mut tee)),
        };
        let mut tar = tar::Archive::new(decoder);
        let entries = tar.entries().map_err(|e| Error::Corrupt(e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| Error::Corrupt(e.to_string()))?;
            let path = entry.path().map_err(|e| Error::Corrupt(e.to_string()))?;
            let rel = relative(&path).map_err(Error::UnsafePath)?;
            let kind = entry.header().entry_type();
            if kind.is_hard_link()
                && let Some(target) = entry
                    .link_name()
                    .map_err(|e| Error::Corrupt(e.to_string()))?
            {
                relative(&target).map_err(|t| {
                    Error::UnsafePath(format!("{} (a hard link to {t})", rel.display()))
                })?;
            }
            if kind.is_file() {
                found.unpacked_bytes += entry.size();
            }
            let Some((to, kver, is_kernel)) = destination(&rel) else {
                continue;
            };
            let to = staging.join(to);
            if kind.is_dir() {
                fs::create_dir_all(&to).map_err(io_err(&to))?;
            } else if kind.is_file() {
                if let Some(parent) = to.parent() {
                    fs::create_dir_all(parent).map_err(io_err(parent))?;
                }
                let mut out = File::create(&to).map_err(io_err(&to))?;
                io::copy(&mut entry, &mut out)
                    .map_err(|e| Error::Corrupt(format!("{}: {e}", rel.display())))?;
                if is_kernel {
                    found.kernels.insert(kver);
                } else {
                    found.module_trees.insert(kver);
                }
            }
            // Symlinks, hard links and devices of these trees are not needed to boot
            // (`build`/`source` links, a `vmlinuz` alias): never made here.
        }
    }
    // The rest of the compressed stream (padding after the tar end) still belongs to the copy
    // and the hash.
    io::copy(&mut tee, &mut io::sink()).map_err(io_err(file))?;
    tee.copy.flush().map_err(io_err(copy_to))?;
    found.archive_bytes = tee.read;
    found.sha256 = tee
        .hash
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_taken_relative_and_parent_components_refused() {
        for (path, want) in [
            ("./etc/passwd", Ok("etc/passwd")),
            ("/boot/vmlinuz-6.1", Ok("boot/vmlinuz-6.1")),
            (
                "lib/modules/6.1/kernel/x.ko",
                Ok("lib/modules/6.1/kernel/x.ko"),
            ),
            ("../etc/passwd", Err(())),
            ("etc/../../x", Err(())),
            ("./a/./b", Ok("a/b")),
        ] {
            let got = relative(Path::new(path))
                .map(|p| p.display().to_string())
                .map_err(|_| ());
            assert_eq!(got, want.map(str::to_owned), "{path}");
        }
    }

    #[test]
    fn only_kernels_and_module_trees_are_written_out() {
        for (path, want) in [
            (
                "boot/vmlinuz-6.1.0-9-amd64",
                Some(("boot/vmlinuz-6.1.0-9-amd64", "6.1.0-9-amd64", true)),
            ),
            ("boot/initrd.img-6.1.0-9-amd64", None),
            (
                "lib/modules/6.1.0-9-amd64/modules.dep",
                Some((
                    "lib/modules/6.1.0-9-amd64/modules.dep",
                    "6.1.0-9-amd64",
                    false,
                )),
            ),
            (
                "usr/lib/modules/6.1/kernel/fs/ext4.ko",
                Some(("lib/modules/6.1/kernel/fs/ext4.ko", "6.1", false)),
            ),
            ("etc/shadow", None),
            ("boot", None),
        ] {
            let got = destination(Path::new(path));
            let want = want.map(|(p, k, b)| (PathBuf::from(p), k.to_owned(), b));
            assert_eq!(got, want, "{path}");
        }
    }

    #[test]
    fn formats_are_known_by_their_magic() {
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Some(Compression::Zstd)
        );
        assert_eq!(
            Compression::sniff(&[0x1f, 0x8b, 8]),
            Some(Compression::Gzip)
        );
        assert_eq!(Compression::sniff(b"\xfd7zXZ\0\0"), Some(Compression::Xz));
        assert_eq!(Compression::sniff(b"ustar"), None);
    }
}
