//! `nhn config`: the effective configuration, as the other commands read it.

use anyhow::Result;
use clap::Subcommand;

use nhn::config::Config;

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Print the effective configuration (file values plus defaults) as TOML.
    Show,
}

pub fn run(cmd: ConfigCmd, config: &Config) -> Result<()> {
    match cmd {
        ConfigCmd::Show => print!("{}", config.to_toml()),
    }
    Ok(())
}
