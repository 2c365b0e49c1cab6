//! [`LeaseStore`] on SQLite. The statements are cached: they run once per lease change.

use rusqlite::params;

use super::Tx;
use crate::inventory::Result;
use crate::inventory::leases::{LeaseRow, LeaseStore, LeaseWrite};
use crate::util::rfc3339;

impl LeaseStore for Tx<'_> {
    fn leases(&self) -> Result<Vec<LeaseRow>> {
        let mut st = self.conn.prepare_cached(
            "SELECT address, mac, state, hostname, expires_at, giaddr FROM leases",
        )?;
        let rows = st.query_map([], |r| {
            Ok(LeaseRow {
                address: r.get(0)?,
                mac: r.get(1)?,
                state: r.get(2)?,
                hostname: r.get(3)?,
                expires_at: r.get(4)?,
                giaddr: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn put_lease(&self, l: &LeaseWrite<'_>) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO leases (address, mac, state, hostname, client_id, giaddr, circuit_id, remote_id, expires_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT(address) DO UPDATE SET mac = excluded.mac, state = excluded.state, hostname = excluded.hostname,
                     client_id = excluded.client_id, giaddr = excluded.giaddr, circuit_id = excluded.circuit_id,
                     remote_id = excluded.remote_id, expires_at = excluded.expires_at, updated_at = excluded.updated_at",
            )?
            .execute(params![
                l.address,
                l.mac,
                l.state,
                l.hostname,
                l.client_id,
                l.giaddr,
                l.circuit_id,
                l.remote_id,
                l.expires_at,
                l.at
            ])?;
        Ok(())
    }

    fn release_lease(&self, address: &str, at: i64) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE leases SET state = 'released', updated_at = ?2 WHERE address = ?1",
            )?
            .execute(params![address, at])?;
        Ok(())
    }

    fn discover(&self, mac: &str, at: i64) -> Result<Option<String>> {
        let known: bool = self
            .conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM nics WHERE mac = ?1)")?
            .query_row([mac], |r| r.get(0))?;
        if known {
            return Ok(None);
        }
        let name = format!("discovered-{}", mac.replace(':', ""));
        self.conn
            .prepare_cached(
                "INSERT INTO machines (name, kind, state, created_at) VALUES (?1, 'discovered', 'discovered', ?2)
                 ON CONFLICT(name) DO NOTHING",
            )?
            .execute(params![name, rfc3339(at)])?;
        self.conn
            .prepare_cached(
                "INSERT INTO nics (mac, machine_id, device) VALUES (?1, (SELECT id FROM machines WHERE name = ?2), 'eth0')",
            )?
            .execute(params![mac, name])?;
        Ok(Some(name))
    }
}
