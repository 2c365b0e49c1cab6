//! `nhn serve`: the appliance itself. The command only applies its address overrides to the
//! configuration; `nhn::serve` holds the data dir's lock and runs the services.

use anyhow::Result;

use nhn::config::Config;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Override [http] listen, e.g. 0.0.0.0:8080.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<std::net::SocketAddr>,
    /// Override [api] internal_listen (facility callbacks), e.g. 127.0.0.1:8081.
    #[arg(long, value_name = "ADDR:PORT")]
    internal_listen: Option<std::net::SocketAddr>,
}

pub fn run(args: ServeArgs, mut config: Config) -> Result<()> {
    if let Some(listen) = args.listen {
        config.http.listen = listen;
    }
    if let Some(addr) = args.internal_listen {
        config.api.internal_listen = addr;
    }
    super::block_on(nhn::serve::run(config))
}
