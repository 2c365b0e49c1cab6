//! `nhn agent`: enroll a hypervisor's agent on the appliance, or run the agent on a hypervisor
//! (`nhn::agent`).

use anyhow::Result;
use clap::Subcommand;

use nhn::config::Config;

#[derive(Subcommand)]
pub enum AgentCmd {
    /// Run the agent on this hypervisor (reads the [agent] section of --config).
    ///
    /// First, on the appliance: `nhn agent enroll HOST --url http://HOST-ADDRESS:8090`. It prints
    /// a credential once; store it on the hypervisor in [agent] credential_file (mode 0600).
    /// Then here, with [agent] host = HOST, listen = HOST-ADDRESS:8090 and appliance_url = the
    /// appliance's internal listener (http://APPLIANCE:8081/RPC2): `nhn agent run --config FILE`.
    ///
    /// The agent runs the VMs the appliance places on this host as QEMU processes that outlive
    /// it (state under [agent] state_dir), plugs their NICs into [agent] bridge (Open vSwitch)
    /// with their VLAN tags, and reports results and host state back. Stop it with SIGTERM; its
    /// VMs keep running and are re-adopted at the next start.
    Run,
    /// Enroll the agent of hypervisor HOST and print its credential (shown once; only its
    /// SHA-256 is stored). Enrolling again replaces the credential.
    Enroll {
        /// The hypervisor's machine name in the inventory.
        host: String,
        /// Where its agent listens, as the appliance reaches it: http://ADDRESS:PORT.
        #[arg(long)]
        url: String,
    },
}

pub fn run(cmd: AgentCmd, config: Config) -> Result<()> {
    match cmd {
        AgentCmd::Run => super::block_on(nhn::agent::run(config.agent)),
        AgentCmd::Enroll { host, url } => {
            let inv = super::open_inventory(&config)?;
            let credential =
                inv.write_blocking(move |c| nhn::jobs::hosts::enroll(c, &host, &url))?;
            println!("{credential}");
            eprintln!(
                "Store this credential on the hypervisor in [agent] credential_file (mode 0600); it is not shown again."
            );
            Ok(())
        }
    }
}
