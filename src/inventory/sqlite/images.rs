//! [`Images`] on SQLite.

use rusqlite::OptionalExtension;

use super::{Tx, page};
use crate::inventory::images::{ImageRecord, Images};
use crate::inventory::{Page, Result, Window};

const COLUMNS: &str = "public_id, name, os, os_version, architecture, min_disk_gb, init_supported, description, created_at";

fn image(r: &rusqlite::Row<'_>) -> rusqlite::Result<ImageRecord> {
    Ok(ImageRecord {
        public_id: r.get(0)?,
        name: r.get(1)?,
        os: r.get(2)?,
        os_version: r.get(3)?,
        architecture: r.get(4)?,
        min_disk_gb: r.get(5)?,
        init_supported: r.get(6)?,
        description: r.get(7)?,
        created_at: r.get(8)?,
    })
}

impl Tx<'_> {
    fn image_where(&self, filter: &str, key: &dyn rusqlite::ToSql) -> Result<Option<ImageRecord>> {
        Ok(self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM images WHERE {filter}"))?
            .query_row([key], image)
            .optional()?)
    }
}

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

    fn image_page(&self, window: Window) -> Result<Page<ImageRecord>> {
        page(
            self.conn,
            COLUMNS,
            "FROM images",
            "name",
            &[],
            window,
            image,
        )
    }

    fn image(&self, public_id: &str) -> Result<Option<ImageRecord>> {
        self.image_where("public_id = ?1", &public_id)
    }

    fn image_by_row(&self, id: i64) -> Result<Option<ImageRecord>> {
        self.image_where("id = ?1", &id)
    }
}
