//! [`Resources`] on SQLite.

use rusqlite::{OptionalExtension, params};

use super::Tx;
use crate::inventory::Result;
use crate::inventory::resources::{Resource, Resources};

fn table(kind: Resource) -> &'static str {
    match kind {
        Resource::Vm => "vms",
        Resource::Network => "networks",
        Resource::Volume => "volumes",
    }
}

impl Resources for Tx<'_> {
    fn public_id_taken(&self, kind: Resource, id: &str) -> Result<bool> {
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE public_id = ?1)",
            table(kind)
        );
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row([id], |r| r.get(0))?)
    }

    fn comment(&self, kind: Resource, id: &str, customer: i64) -> Result<Option<String>> {
        let sql = format!(
            "SELECT comment FROM {} WHERE public_id = ?1 AND customer_id = ?2",
            table(kind)
        );
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row(params![id, customer], |r| r.get(0))
            .optional()?)
    }

    fn set_comment(&self, kind: Resource, id: &str, customer: i64, comment: &str) -> Result<bool> {
        let sql = format!(
            "UPDATE {} SET comment = ?3 WHERE public_id = ?1 AND customer_id = ?2",
            table(kind)
        );
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .execute(params![id, customer, comment])?
            > 0)
    }
}
