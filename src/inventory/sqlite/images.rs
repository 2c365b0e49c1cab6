//! [`Images`] on SQLite.

use rusqlite::OptionalExtension;

use super::Tx;
use crate::inventory::Result;
use crate::inventory::images::Images;

impl Images for Tx<'_> {
    fn init_support(&self, id: i64) -> Result<Option<(bool, String)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT init_supported AND os = 'CentOS', public_id FROM images WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }
}
