//! [`Keys`] on SQLite.

use rusqlite::{OptionalExtension, params};

use super::Tx;
use crate::inventory::Result;
use crate::inventory::keys::{KeyAuth, KeyInfo, Keys};
use crate::util::rfc3339;

impl Keys for Tx<'_> {
    fn customer_id(&self, name: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row("SELECT id FROM customers WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?)
    }

    fn active_keys(&self, customer_id: i64) -> Result<i64> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM api_keys WHERE customer_id = ?1 AND enabled = 1",
            [customer_id],
            |r| r.get(0),
        )?)
    }

    fn insert_key(
        &self,
        id: &str,
        customer_id: i64,
        secret_hash: &[u8],
        scope: &str,
        at: i64,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT INTO api_keys (id, customer_id, secret_hash, scope, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, customer_id, secret_hash, scope, rfc3339(at)],
        )?;
        Ok(())
    }

    fn keys(&self) -> Result<Vec<KeyInfo>> {
        let mut st = self.conn.prepare_cached(
            "SELECT k.id, c.name, k.scope, k.enabled, k.created_at, k.last_used_at, k.revoked_at
             FROM api_keys k JOIN customers c ON c.id = k.customer_id ORDER BY c.name, k.created_at, k.id",
        )?;
        let rows = st.query_map([], |r| {
            Ok(KeyInfo {
                id: r.get(0)?,
                customer: r.get(1)?,
                scope: r.get(2)?,
                enabled: r.get(3)?,
                created_at: r.get(4)?,
                last_used_at: r.get(5)?,
                revoked_at: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn revoke_key(&self, id: &str, at: i64) -> Result<Option<bool>> {
        let changed = self.conn.execute(
            "UPDATE api_keys SET enabled = 0, revoked_at = ?2 WHERE id = ?1 AND enabled = 1",
            params![id, rfc3339(at)],
        )?;
        if changed > 0 {
            return Ok(Some(true));
        }
        let exists: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM api_keys WHERE id = ?1)",
            [id],
            |r| r.get(0),
        )?;
        Ok(exists.then_some(false))
    }

    fn key_auth(&self, id: &str) -> Result<Option<KeyAuth>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT k.customer_id, k.scope, k.secret_hash, k.enabled AND c.enabled
                 FROM api_keys k JOIN customers c ON c.id = k.customer_id WHERE k.id = ?1",
            )?
            .query_row([id], |r| {
                Ok(KeyAuth {
                    customer_id: r.get(0)?,
                    scope: r.get(1)?,
                    secret_hash: r.get(2)?,
                    usable: r.get(3)?,
                })
            })
            .optional()?)
    }

    fn touch_key(&self, id: &str, at: i64) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE api_keys SET last_used_at = ?2
                 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
            )?
            .execute(params![id, rfc3339(at)])?;
        Ok(())
    }
}
