//! The boot-file root shared by TFTP and HTTP: name resolution that nothing escapes, and an
//! in-memory cache so that a boot storm (hundreds of machines fetching the same initrd) costs
//! one read of each file, not one per client.
//!
//! Resolution rules: `\` counts as `/` (PXELINUX and Windows clients send it); a leading `/`
//! is relative to the root; any `..` component, NUL byte or empty name is refused; the result
//! is canonicalized (symlinks resolved) and must still lie inside the root and be a regular file.

use std::collections::HashMap;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;

/// Why a name cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("file not found")]
    NotFound,
    #[error("access violation: {0}")]
    Denied(&'static str),
    #[error("cannot read the file: {0}")]
    Io(#[from] io::Error),
}

#[derive(Clone)]
struct Cached {
    modified: Option<SystemTime>,
    len: u64,
    data: Bytes,
}

/// Files under one root, read-only.
pub struct BootRoot {
    root: Option<PathBuf>,
    /// One slot per file; the async mutex makes concurrent first readers share one read.
    cache: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<Option<Cached>>>>>,
}

impl BootRoot {
    /// `dir` may not exist yet (nothing installed): every lookup then says "not found".
    pub fn new(dir: &Path) -> Self {
        let root = dir.canonicalize().ok();
        if root.is_none() {
            tracing::warn!(dir = %dir.display(), "boot file directory does not exist; TFTP and /boot/ serve nothing");
        }
        BootRoot {
            root,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Maps a client's file name to a path inside the root, or refuses it.
    pub fn resolve(&self, name: &str) -> Result<PathBuf, FileError> {
        let root = self.root.as_ref().ok_or(FileError::NotFound)?;
        if name.contains('\0') {
            return Err(FileError::Denied("NUL in file name"));
        }
        let name = name.replace('\\', "/");
        let mut rel = PathBuf::new();
        for c in Path::new(name.trim_start_matches('/')).components() {
            match c {
                Component::Normal(p) => rel.push(p),
                Component::CurDir => {}
                Component::ParentDir => return Err(FileError::Denied("'..' in file name")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(FileError::Denied("absolute path"));
                }
            }
        }
        if rel.as_os_str().is_empty() {
            return Err(FileError::NotFound);
        }
        let full = root.join(&rel).canonicalize().map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => FileError::NotFound,
            _ => FileError::Io(e),
        })?;
        if !full.starts_with(root) {
            return Err(FileError::Denied("link out of the boot directory"));
        }
        if !full.is_file() {
            return Err(FileError::NotFound);
        }
        Ok(full)
    }

    /// The whole file, from the cache when it has not changed on disk.
    pub async fn load(&self, name: &str) -> Result<Bytes, FileError> {
        let path = self.resolve(name)?;
        let meta = tokio::fs::metadata(&path).await?;
        let (modified, len) = (meta.modified().ok(), meta.len());
        let slot = {
            let mut cache = self
                .cache
                .lock()
                .map_err(|_| FileError::Denied("cache poisoned"))?;
            cache.entry(path.clone()).or_default().clone()
        };
        let mut entry = slot.lock().await;
        if let Some(c) = entry.as_ref()
            && c.modified == modified
            && c.len == len
        {
            return Ok(c.data.clone());
        }
        let data = Bytes::from(tokio::fs::read(&path).await?);
        *entry = Some(Cached {
            modified,
            len: data.len() as u64,
            data: data.clone(),
        });
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, BootRoot) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("boot")).unwrap();
        std::fs::write(dir.path().join("boot/ipxe.efi"), b"efi").unwrap();
        std::fs::create_dir(dir.path().join("boot/sub")).unwrap();
        std::fs::write(dir.path().join("boot/sub/file"), b"sub").unwrap();
        std::fs::write(dir.path().join("secret"), b"secret").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), dir.path().join("boot/escape"))
            .unwrap();
        std::os::unix::fs::symlink("ipxe.efi", dir.path().join("boot/alias")).unwrap();
        let r = BootRoot::new(&dir.path().join("boot"));
        (dir, r)
    }

    #[test]
    fn names_inside_the_root_resolve() {
        let (_d, r) = root();
        for ok in [
            "ipxe.efi",
            "/ipxe.efi",
            "./ipxe.efi",
            "sub/file",
            "sub\\file",
            "\\sub\\file",
            "alias",
        ] {
            assert!(r.resolve(ok).is_ok(), "{ok} refused");
        }
    }

    #[test]
    fn escapes_are_refused() {
        let (_d, r) = root();
        for bad in [
            "../secret",
            "sub/../../secret",
            "..\\secret",
            "escape",
            "ipxe.efi\0x",
        ] {
            assert!(
                matches!(r.resolve(bad), Err(FileError::Denied(_))),
                "{bad} not denied"
            );
        }
        for missing in ["", "/", "nope", "sub"] {
            assert!(
                matches!(r.resolve(missing), Err(FileError::NotFound)),
                "{missing} found"
            );
        }
    }

    #[tokio::test]
    async fn a_changed_file_is_read_again() {
        let (d, r) = root();
        assert_eq!(&r.load("ipxe.efi").await.unwrap()[..], b"efi");
        std::fs::write(d.path().join("boot/ipxe.efi"), b"efi v2").unwrap();
        assert_eq!(&r.load("ipxe.efi").await.unwrap()[..], b"efi v2");
    }
}
