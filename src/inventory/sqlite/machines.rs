//! [`Machines`] on SQLite.

use rusqlite::OptionalExtension;

use super::Tx;
use crate::inventory::Result;
use crate::inventory::machines::Machines;

impl Machines for Tx<'_> {
    fn power_driver(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT power_driver FROM machines WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?)
    }
}
