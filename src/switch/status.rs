//! Per-switch reconciler status as the operator sees it: queued intents, last success, last
//! read-back, last error. Shared by `nhn switch show`, the status page and `/metrics`.

use rusqlite::Connection;

use crate::inventory::Result;

use super::plan::{Action, Change};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchStatus {
    pub name: String,
    pub role: String,
    pub os: String,
    /// `ssh` or `snmp`.
    pub driver: String,
    /// The credential's name in the configuration (never a secret).
    pub credentials: String,
    pub address: String,
    pub host_key: Option<String>,
    pub pending: i64,
    pub last_success_at: Option<String>,
    pub last_readback_at: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// Why the last plan was refused for this edge (MAC budget), while it still is.
    pub plan_refusal: Option<String>,
}

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

pub fn all(conn: &Connection) -> Result<Vec<SwitchStatus>> {
    let mut st = conn.prepare(
        "SELECT s.name, s.role, s.os, s.driver, s.credentials, s.address, s.host_key,
                (SELECT COUNT(*) FROM switch_intents i WHERE i.switch_id = s.id AND i.state = 'pending'),
                st.last_success_at, st.last_readback_at, st.last_error, st.last_error_at,
                st.plan_refusal
         FROM switches s LEFT JOIN switch_status st ON st.switch_id = s.id ORDER BY s.name",
    )?;
    let rows = st.query_map([], |r| {
        Ok(SwitchStatus {
            name: r.get(0)?,
            role: r.get(1)?,
            os: r.get(2)?,
            driver: r.get(3)?,
            credentials: r.get(4)?,
            address: r.get(5)?,
            host_key: r.get(6)?,
            pending: r.get(7)?,
            last_success_at: r.get(8)?,
            last_readback_at: r.get(9)?,
            last_error: r.get(10)?,
            last_error_at: r.get(11)?,
            plan_refusal: r.get(12)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Pending intents of one switch with their reasons, oldest first, as the plan prints them.
pub fn pending(conn: &Connection, switch: &str) -> Result<Vec<String>> {
    let mut st = conn.prepare(
        "SELECT i.action, i.native, i.port, i.vlan, i.reason, i.created_at FROM switch_intents i
         JOIN switches s ON s.id = i.switch_id
         WHERE s.name = ?1 AND i.state = 'pending' ORDER BY i.id",
    )?;
    let rows = st.query_map([switch], |r| {
        let (action, native) = (r.get::<_, String>(0)?, r.get::<_, bool>(1)?);
        let queued: String = r.get(5)?;
        Ok(match Action::from_row(&action, native) {
            Some(action) => {
                let c = Change {
                    switch: switch.to_owned(),
                    port: r.get(2)?,
                    action,
                    vlan: r.get(3)?,
                    reason: r.get(4)?,
                };
                format!("{c} (queued {queued})")
            }
            None => format!("? unknown intent {action:?} (queued {queued})"),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
