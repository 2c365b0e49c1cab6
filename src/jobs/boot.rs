//! What VMs boot: the kernel and initrd under the boot directory, offered to the hypervisors'
//! agents by URL and SHA-256. Hashing a kernel takes tens of milliseconds, so it happens here,
//! outside the writer, and only when a file's size or modification time changed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::resolve::VmBoot;
use crate::config::Config;

/// A file's size and modification time, and its SHA-256 then.
type Stamped = (u64, SystemTime, String);

#[derive(Clone)]
pub struct BootFiles {
    dir: PathBuf,
    base_url: String,
    kernel: String,
    initrd: String,
    cmdline: String,
    chap: bool,
    hashes: Arc<Mutex<HashMap<PathBuf, Stamped>>>,
}

impl BootFiles {
    pub fn from_config(config: &Config) -> Self {
        let base_url = config
            .facility
            .boot_url
            .clone()
            .or_else(|| config.boot.http_base.clone())
            .unwrap_or_else(|| format!("http://{}", config.http.listen));
        BootFiles {
            dir: config.boot.dir.clone(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            kernel: config
                .facility
                .vm_kernel
                .clone()
                .unwrap_or_else(|| config.boot.kernel.clone()),
            initrd: config
                .facility
                .vm_initrd
                .clone()
                .unwrap_or_else(|| config.boot.initrd.clone()),
            cmdline: config.facility.vm_cmdline.clone(),
            chap: config.storage.chap,
            hashes: Arc::default(),
        }
    }

    /// The boot files as they are now (a missing file has an empty hash; the agent then
    /// fails the power-on naming the URL).
    pub async fn current(&self) -> VmBoot {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.current_blocking())
            .await
            .unwrap_or_else(|_| self.describe(String::new(), String::new()))
    }

    fn current_blocking(&self) -> VmBoot {
        let kernel = self.sha256(&self.dir.join(&self.kernel));
        let initrd = self.sha256(&self.dir.join(&self.initrd));
        self.describe(kernel, initrd)
    }

    fn describe(&self, kernel_sha256: String, initrd_sha256: String) -> VmBoot {
        VmBoot {
            base_url: self.base_url.clone(),
            kernel_url: format!("{}/boot/{}", self.base_url, self.kernel),
            kernel_sha256,
            initrd_url: format!("{}/boot/{}", self.base_url, self.initrd),
            initrd_sha256,
            cmdline: self.cmdline.clone(),
            chap: self.chap,
        }
    }

    fn sha256(&self, path: &Path) -> String {
        let Ok(meta) = std::fs::metadata(path) else {
            return String::new();
        };
        let stamp = (
            meta.len(),
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        );
        let mut hashes = self.hashes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((len, modified, hash)) = hashes.get(path)
            && (*len, *modified) == stamp
        {
            return hash.clone();
        }
        let Ok(bytes) = std::fs::read(path) else {
            return String::new();
        };
        let hash = crate::sign::hex(&Sha256::digest(&bytes));
        hashes.insert(path.to_owned(), (stamp.0, stamp.1, hash.clone()));
        hash
    }
}
