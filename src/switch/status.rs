//! Per-switch reconciler status as the operator sees it: queued intents, last success, last
//! read-back, last error. Shared by `nhn switch show`, the status page and `/metrics`.

use crate::inventory::switches::Switches;
use crate::inventory::{Result, Tx};

use super::plan::{Action, Change};

pub use crate::inventory::switches::SwitchStatus;

impl SwitchStatus {
    /// `plan refused` (over its MAC budget: no switch changes until fixed), `ok`, `failing`
    /// (the last session failed after the last success) or `never contacted`.
    pub fn health(&self) -> &'static str {
        if self.plan_refusal.is_some() {
            return "plan refused";
        }
        match (&self.last_success_at, &self.last_error_at) {
            (Some(ok), Some(err)) if err > ok => "failing",
            (Some(_), _) => "ok",
            (None, Some(_)) => "failing",
            (None, None) => "never contacted",
        }
    }
}

pub fn all(tx: &Tx<'_>) -> Result<Vec<SwitchStatus>> {
    tx.statuses()
}

/// Pending intents of one switch with their reasons, oldest first, as the plan prints them.
pub fn pending(tx: &Tx<'_>, switch: &str) -> Result<Vec<String>> {
    Ok(tx
        .pending_intents(switch)?
        .into_iter()
        .map(|i| match Action::from_row(&i.action, i.native) {
            Some(action) => {
                let c = Change {
                    switch: switch.to_owned(),
                    port: i.port,
                    action,
                    vlan: i.vlan,
                    reason: i.reason,
                };
                format!("{c} (queued {})", i.queued_at)
            }
            None => format!("? unknown intent {:?} (queued {})", i.action, i.queued_at),
        })
        .collect())
}
