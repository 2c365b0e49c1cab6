//! [`SwitchIntents`] on SQLite: `switch_intents`, `switch_applied` and `switch_status`.

use rusqlite::{OptionalExtension, Params, params};

use super::Tx;
use crate::inventory::Result;
use crate::inventory::switches::{
    AppliedPort, NewIntent, StatusUpdate, SwitchAccess, SwitchIntents,
};
use crate::util::rfc3339;

/// Runs one statement from the connection's statement cache.
fn execute(tx: &Tx<'_>, sql: &str, params: impl Params) -> Result<()> {
    tx.conn.prepare_cached(sql)?.execute(params)?;
    Ok(())
}

impl SwitchIntents for Tx<'_> {
    fn switch_id(&self, name: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached("SELECT id FROM switches WHERE name = ?1")?
            .query_row([name], |r| r.get(0))
            .optional()?)
    }

    fn switch_access(&self, name: &str) -> Result<Option<SwitchAccess>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, driver, os, address, credentials, host_key FROM switches WHERE name = ?1",
            )?
            .query_row([name], |r| {
                Ok(SwitchAccess {
                    id: r.get(0)?,
                    driver: r.get(1)?,
                    os: r.get(2)?,
                    address: r.get(3)?,
                    credentials: r.get(4)?,
                    host_key: r.get(5)?,
                })
            })
            .optional()?)
    }

    fn pin_host_key(&self, switch_id: i64, host_key: &str) -> Result<()> {
        execute(
            self,
            "UPDATE switches SET host_key = ?1 WHERE id = ?2",
            params![host_key, switch_id],
        )
    }

    fn pending_count(&self, switch: &str) -> Result<usize> {
        let n: i64 = self
            .conn
            .prepare_cached(
                "SELECT COUNT(*) FROM switch_intents i JOIN switches s ON s.id = i.switch_id
                 WHERE s.name = ?1 AND i.state = 'pending'",
            )?
            .query_row([switch], |r| r.get(0))?;
        Ok(n as usize)
    }

    fn queue_intent(&self, switch_id: i64, intent: &NewIntent, at: i64) -> Result<()> {
        execute(
            self,
            "INSERT INTO switch_intents (switch_id, port, action, native, vlan, reason, state, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7)",
            params![
                switch_id,
                intent.port,
                intent.action,
                intent.native,
                intent.vlan,
                intent.reason,
                rfc3339(at)
            ],
        )
    }

    fn cancel_intent(&self, id: i64, at: i64) -> Result<()> {
        execute(
            self,
            "UPDATE switch_intents SET state = 'canceled', applied_at = ?2 WHERE id = ?1",
            params![id, rfc3339(at)],
        )
    }

    fn mark_applied(&self, id: i64, at: i64) -> Result<()> {
        execute(
            self,
            "UPDATE switch_intents SET state = 'applied', applied_at = ?2
             WHERE id = ?1 AND state = 'pending'",
            params![id, rfc3339(at)],
        )
    }

    fn vlans_added_elsewhere(&self, switch_id: i64) -> Result<Vec<u16>> {
        let mut st = self.conn.prepare_cached(
            "SELECT DISTINCT vlan FROM switch_intents
             WHERE state = 'pending' AND action IN ('add', 'access') AND switch_id != ?1
             ORDER BY vlan",
        )?;
        Ok(st
            .query_map([switch_id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn applied_ports(&self, switch_id: i64) -> Result<Vec<AppliedPort>> {
        let mut st = self.conn.prepare_cached(
            "SELECT port, mode, vlans, native_vlan FROM switch_applied WHERE switch_id = ?1
             ORDER BY port",
        )?;
        let rows = st.query_map([switch_id], |r| {
            Ok(AppliedPort {
                port: r.get(0)?,
                mode: r.get(1)?,
                vlans: r.get(2)?,
                native: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn replace_applied(&self, switch_id: i64, ports: &[AppliedPort], at: i64) -> Result<()> {
        execute(
            self,
            "DELETE FROM switch_applied WHERE switch_id = ?1",
            [switch_id],
        )?;
        let at = rfc3339(at);
        let mut st = self.conn.prepare_cached(
            "INSERT INTO switch_applied (switch_id, port, mode, vlans, native_vlan, read_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for p in ports {
            st.execute(params![switch_id, p.port, p.mode, p.vlans, p.native, at])?;
        }
        Ok(())
    }

    fn record_status(&self, switch_id: i64, update: StatusUpdate<'_>, at: i64) -> Result<()> {
        let at = rfc3339(at);
        match update {
            StatusUpdate::ReadBack => execute(
                self,
                "INSERT INTO switch_status (switch_id, last_readback_at) VALUES (?1, ?2)
                 ON CONFLICT(switch_id) DO UPDATE SET last_readback_at = excluded.last_readback_at",
                params![switch_id, at],
            ),
            StatusUpdate::Success => execute(
                self,
                "INSERT INTO switch_status (switch_id, last_success_at) VALUES (?1, ?2)
                 ON CONFLICT(switch_id) DO UPDATE SET last_success_at = excluded.last_success_at",
                params![switch_id, at],
            ),
            StatusUpdate::Error(error) => execute(
                self,
                "INSERT INTO switch_status (switch_id, last_error, last_error_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(switch_id) DO UPDATE SET last_error = excluded.last_error,
                    last_error_at = excluded.last_error_at",
                params![switch_id, error, at],
            ),
        }
    }

    fn refuse_plan(&self, switch: &str, reason: &str, at: i64) -> Result<bool> {
        let changed = self
            .conn
            .prepare_cached(
                "INSERT INTO switch_status (switch_id, plan_refusal, plan_refused_at)
                 SELECT id, ?2, ?3 FROM switches WHERE name = ?1
                 ON CONFLICT(switch_id) DO UPDATE SET plan_refusal = excluded.plan_refusal,
                    plan_refused_at = COALESCE(switch_status.plan_refused_at, excluded.plan_refused_at)
                 WHERE switch_status.plan_refusal IS NOT excluded.plan_refusal",
            )?
            .execute(params![switch, reason, rfc3339(at)])?;
        Ok(changed > 0)
    }

    fn plan_refused(&self) -> Result<Vec<String>> {
        let mut st = self.conn.prepare_cached(
            "SELECT s.name FROM switch_status st JOIN switches s ON s.id = st.switch_id
             WHERE st.plan_refusal IS NOT NULL ORDER BY s.name",
        )?;
        Ok(st
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn clear_plan_refusal(&self, switch: &str) -> Result<()> {
        execute(
            self,
            "UPDATE switch_status SET plan_refusal = NULL, plan_refused_at = NULL
             WHERE switch_id = (SELECT id FROM switches WHERE name = ?1)",
            [switch],
        )
    }
}
