//! `nhn boot`: boot assets that come from the distribution, not from nhn (the iPXE binaries
//! TFTP serves to machines that PXE boot).

use anyhow::{Context, Result};
use clap::Subcommand;
use std::path::PathBuf;

use nhn::config::Config;

#[derive(Subcommand)]
pub enum BootCmd {
    /// Copy the PXE boot programs (undionly.kpxe, ipxe.efi, snponly.efi) from Debian's `ipxe`
    /// package into [boot] dir, where TFTP serves them. They are not part of nhn.
    InstallIpxe {
        /// Where the ipxe package put them.
        #[arg(long, value_name = "DIR", default_value = "/usr/lib/ipxe")]
        from: PathBuf,
    },
}

pub fn run(cmd: BootCmd, config: &Config) -> Result<()> {
    let BootCmd::InstallIpxe { from } = cmd;
    let dir = &config.boot.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for name in ["undionly.kpxe", "ipxe.efi", "snponly.efi"] {
        let src = from.join(name);
        if !src.exists() {
            anyhow::bail!(
                "{} not found: install the ipxe package (apt-get install ipxe) or pass --from",
                src.display()
            );
        }
        std::fs::copy(&src, dir.join(name))
            .with_context(|| format!("cannot copy {} into {}", src.display(), dir.display()))?;
        println!("{} -> {}", src.display(), dir.join(name).display());
    }
    Ok(())
}
