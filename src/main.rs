//! `nhn`: the network-boot and switch-automation appliance in one binary.
//!
//! This file only parses the arguments, loads the configuration, sets up logging and hands the
//! command to `cli/`, one file per command group. See ARCHITECTURE.md for the map of the code.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<()> {
    let config = cli.config()?;
    if let Some(filter) = cli.command.log_filter(&config) {
        cli::init_logging(&config, filter);
    }
    cli.command.run(config)
}
