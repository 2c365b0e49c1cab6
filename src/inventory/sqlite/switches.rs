//! [`Switches`] on SQLite.

use super::Tx;
use crate::inventory::Result;
use crate::inventory::switches::{EdgePort, PendingIntent, SwitchStatus, Switches};

impl Switches for Tx<'_> {
    fn statuses(&self) -> Result<Vec<SwitchStatus>> {
        let mut st = self.conn.prepare_cached(
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

    fn pending_intents(&self, switch: &str) -> Result<Vec<PendingIntent>> {
        let mut st = self.conn.prepare_cached(
            "SELECT i.action, i.native, i.port, i.vlan, i.reason, i.created_at FROM switch_intents i
             JOIN switches s ON s.id = i.switch_id
             WHERE s.name = ?1 AND i.state = 'pending' ORDER BY i.id",
        )?;
        let rows = st.query_map([switch], |r| {
            Ok(PendingIntent {
                action: r.get(0)?,
                native: r.get(1)?,
                port: r.get(2)?,
                vlan: r.get(3)?,
                reason: r.get(4)?,
                queued_at: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn edge_ports_of(&self, machine: &str) -> Result<Vec<EdgePort>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT s.name, p.name, a.vlans FROM nics n
                 JOIN machines m ON m.id = n.machine_id
                 JOIN switch_ports p ON p.id = n.switch_port_id
                 JOIN switches s ON s.id = p.switch_id
                 LEFT JOIN switch_applied a ON a.switch_id = s.id AND a.port = p.name
                 WHERE m.name = ?1 AND s.role = 'edge'",
            )?
            .query_map([machine], |r| {
                Ok(EdgePort {
                    switch: r.get(0)?,
                    port: r.get(1)?,
                    applied: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?)
    }
}
