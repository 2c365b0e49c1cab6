//! [`Hosts`] on SQLite.

use rusqlite::{OptionalExtension, params};

use super::Tx;
use crate::inventory::Result;
use crate::inventory::hosts::{AgentRecord, HostRecord, Hosts, PlacedVm};
use crate::util::rfc3339;

impl Hosts for Tx<'_> {
    fn host_of_credential(&self, credential_sha256: &str) -> Result<Option<(i64, String)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT m.id, m.name FROM agents a JOIN machines m ON m.id = a.machine_id
                 WHERE a.credential_sha256 = ?1",
                [credential_sha256],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    fn agent_of(&self, name: &str) -> Result<Option<(String, String)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT a.url, a.credential_sha256 FROM agents a JOIN machines m ON m.id = a.machine_id
                 WHERE m.name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    fn record_report(&self, id: i64, report_json: &str, at: i64) -> Result<(String, String)> {
        let (name, was): (String, String) = self.conn.query_row(
            "SELECT m.name, a.state FROM agents a JOIN machines m ON m.id = a.machine_id
             WHERE a.machine_id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        self.conn.execute(
            "UPDATE agents SET state = 'up', last_report_at = ?2, report = ?3 WHERE machine_id = ?1",
            params![id, rfc3339(at), report_json],
        )?;
        Ok((name, was))
    }

    fn expected_running(&self, id: i64) -> Result<Vec<String>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT public_id FROM vms WHERE hypervisor_id = ?1 AND state = 'running'
                 AND current_request_id IS NULL",
            )?
            .query_map([id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn silent_since(&self, cutoff: i64) -> Result<Vec<(i64, String)>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT a.machine_id, m.name FROM agents a JOIN machines m ON m.id = a.machine_id
                 WHERE a.state = 'up' AND a.last_report_at < ?1",
            )?
            .query_map([rfc3339(cutoff)], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn mark_unreachable(&self, id: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE agents SET state = 'unreachable' WHERE machine_id = ?1",
            [id],
        )?;
        Ok(())
    }

    fn machine_kind(&self, name: &str) -> Result<Option<(i64, String)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, kind FROM machines WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    fn enroll_agent(&self, id: i64, url: &str, credential_sha256: &str, at: i64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO agents (machine_id, url, credential_sha256, enrolled_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (machine_id) DO UPDATE SET url = excluded.url,
                credential_sha256 = excluded.credential_sha256, enrolled_at = excluded.enrolled_at,
                state = 'unknown'",
            params![id, url, credential_sha256, rfc3339(at)],
        )?;
        Ok(())
    }

    fn hypervisors(&self) -> Result<Vec<HostRecord>> {
        let mut st = self.conn.prepare_cached(
            "SELECT m.id, m.name, m.state, m.vcpus, m.memory_mb, a.state, a.url, a.last_report_at, a.report
             FROM machines m LEFT JOIN agents a ON a.machine_id = m.id
             WHERE m.kind = 'hypervisor' ORDER BY m.name",
        )?;
        let rows = st.query_map([], |r| {
            let agent = match r.get::<_, Option<String>>(5)? {
                Some(state) => Some(AgentRecord {
                    state,
                    url: r.get(6)?,
                    last_report_at: r.get(7)?,
                    report: r.get(8)?,
                }),
                None => None,
            };
            Ok(HostRecord {
                id: r.get(0)?,
                name: r.get(1)?,
                state: r.get(2)?,
                vcpus: r.get(3)?,
                memory_mb: r.get(4)?,
                agent,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn placed_vms(&self, id: i64) -> Result<Vec<PlacedVm>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT public_id, state, state_reason FROM vms WHERE hypervisor_id = ?1 ORDER BY public_id",
            )?
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn count_agents(&self, state: &str) -> Result<i64> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM agents WHERE state = ?1",
            [state],
            |r| r.get(0),
        )?)
    }
}
