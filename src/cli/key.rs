//! `nhn key`: customers' API keys (`nhn::api::keys`). A secret is printed once, at creation;
//! the inventory keeps only its hash.

use anyhow::Result;
use clap::Subcommand;

use nhn::api::keys::{self, Scope};
use nhn::inventory::Inventory;

#[derive(Subcommand)]
pub enum KeyCmd {
    /// Create an API key for a customer and print its secret once.
    Create {
        /// Customer name (from the site file's [[customers]]).
        #[arg(long)]
        customer: String,
        /// read: get* calls; operate: + power, restore, init, attach/detach; full: + allocate/deallocate/change.
        #[arg(long, value_enum)]
        scope: Scope,
    },
    /// List keys (ids, customers, scopes, state; never secrets).
    List,
    /// Revoke a key by its id; it stops working at once.
    Revoke {
        /// The access key id (AK...).
        id: String,
    },
}

pub fn run(cmd: KeyCmd, inv: &Inventory) -> Result<()> {
    match cmd {
        KeyCmd::Create { customer, scope } => {
            let key = inv.write_blocking(move |c| keys::create(c, &customer, scope))?;
            println!("key id:   {}", key.id);
            println!("customer: {}", key.customer);
            println!("scope:    {}", key.scope.as_str());
            println!("secret:   {}", key.secret);
            println!();
            println!("The secret is shown only now; nhn keeps only its hash.");
            println!(
                "API clients authenticate with \"{}:<secret>\" as the first parameter.",
                key.id
            );
        }
        KeyCmd::List => {
            let list = inv.read_blocking(keys::list)?;
            if list.is_empty() {
                println!(
                    "no keys; create one with `nhn key create --customer NAME --scope read|operate|full`"
                );
            }
            for k in list {
                let state = if k.enabled { "enabled" } else { "revoked" };
                let used = k.last_used_at.as_deref().unwrap_or("never used");
                println!(
                    "{}  {:<16} {:<8} {:<8} created {}  {}",
                    k.id, k.customer, k.scope, state, k.created_at, used
                );
            }
        }
        KeyCmd::Revoke { id } => {
            let shown = id.clone();
            inv.write_blocking(move |c| keys::revoke(c, &id))?;
            println!("revoked {shown}");
        }
    }
    Ok(())
}
