//! [`Networks`] on SQLite.

use rusqlite::{OptionalExtension, params};

use super::Tx;
use crate::inventory::Result;
use crate::inventory::networks::Networks;
use crate::util::rfc3339;

impl Networks for Tx<'_> {
    fn network_by_ref(&self, name: &str) -> Result<Option<(i64, Option<u16>)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, vlan FROM networks WHERE name = ?1 OR public_id = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    fn network_on_vlan(&self, vlan: u16) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id FROM networks WHERE vlan = ?1 ORDER BY kind = 'L3SH', id LIMIT 1",
                [vlan],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn create_l2ex(&self, public_id: &str, name: &str, vlan: u16, at: i64) -> Result<i64> {
        Ok(self.conn.query_row(
            "INSERT INTO networks (public_id, name, kind, vlan, created_at) VALUES (?1, ?2, 'L2EX', ?3, ?4)
             RETURNING id",
            params![public_id, name, vlan, rfc3339(at)],
            |r| r.get(0),
        )?)
    }
}
