//! [`Images`] on SQLite.

use rusqlite::{OptionalExtension, params};

use super::{Tx, page};
use crate::inventory::images::{ImageContent, ImageDetail, ImageRecord, Images};
use crate::inventory::{Error, Page, Result, Window};
use crate::util::rfc3339;

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

const CONTENT: &str =
    "archive, sha256, kernel_version, archive_bytes, unpacked_bytes, kernel_sha256, initrd_sha256";

/// [`CONTENT`] from column `at` on.
fn content(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<ImageContent> {
    Ok(ImageContent {
        archive: r.get(at)?,
        sha256: r.get(at + 1)?,
        kernel_version: r.get(at + 2)?,
        archive_bytes: r.get::<_, i64>(at + 3)? as u64,
        unpacked_bytes: r.get::<_, i64>(at + 4)? as u64,
        kernel_sha256: r.get(at + 5)?,
        initrd_sha256: r.get(at + 6)?,
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
    fn init_support(&self, id: i64) -> Result<Option<(bool, String, String)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT init_supported, os, public_id FROM images WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
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

    fn add_image(&self, i: &ImageRecord, c: &ImageContent, at: i64) -> Result<()> {
        let existing: Option<String> = self
            .conn
            .prepare_cached("SELECT archive FROM images WHERE name = ?1")?
            .query_row([&i.name], |r| r.get(0))
            .optional()?;
        if existing.as_deref().is_some_and(|a| !a.is_empty()) {
            return Err(Error::Invalid(format!(
                "image {:?} is already imported; `nhn image remove {}` it first",
                i.name, i.public_id
            )));
        }
        self.conn
            .prepare_cached(
                "INSERT INTO images (public_id, name, os, os_version, architecture, min_disk_gb,
                    init_supported, description, archive, sha256, kernel_version, archive_bytes,
                    unpacked_bytes, kernel_sha256, initrd_sha256, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
                 ON CONFLICT(name) DO UPDATE SET os = excluded.os, os_version = excluded.os_version,
                    architecture = excluded.architecture, min_disk_gb = excluded.min_disk_gb,
                    description = excluded.description, archive = excluded.archive,
                    sha256 = excluded.sha256, kernel_version = excluded.kernel_version,
                    archive_bytes = excluded.archive_bytes, unpacked_bytes = excluded.unpacked_bytes,
                    kernel_sha256 = excluded.kernel_sha256, initrd_sha256 = excluded.initrd_sha256",
            )?
            .execute(params![
                i.public_id,
                i.name,
                i.os,
                i.os_version,
                i.architecture,
                i.min_disk_gb,
                i.init_supported,
                i.description,
                c.archive,
                c.sha256,
                c.kernel_version,
                c.archive_bytes as i64,
                c.unpacked_bytes as i64,
                c.kernel_sha256,
                c.initrd_sha256,
                rfc3339(at)
            ])?;
        Ok(())
    }

    fn image_content(&self, public_id: &str) -> Result<Option<ImageContent>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {CONTENT} FROM images WHERE public_id = ?1"
            ))?
            .query_row([public_id], |r| content(r, 0))
            .optional()?)
    }

    fn image_details(&self) -> Result<Vec<ImageDetail>> {
        let rows: Vec<(i64, ImageRecord, ImageContent)> = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS}, id, {CONTENT} FROM images ORDER BY name"
            ))?
            .query_map([], |r| Ok((r.get(9)?, image(r)?, content(r, 10)?)))?
            .collect::<rusqlite::Result<_>>()?;
        rows.into_iter()
            .map(|(id, image, content)| {
                Ok(ImageDetail {
                    used_by: self.users(id)?,
                    image,
                    content,
                })
            })
            .collect()
    }

    fn delete_image(&self, public_id: &str) -> Result<bool> {
        let Some(id): Option<i64> = self
            .conn
            .prepare_cached("SELECT id FROM images WHERE public_id = ?1")?
            .query_row([public_id], |r| r.get(0))
            .optional()?
        else {
            return Ok(false);
        };
        let users = self.users(id)?;
        if !users.is_empty() {
            return Err(Error::Invalid(format!(
                "image {public_id} is installed on {}; those VMs must be deallocated or restored with another image first",
                users.join(", ")
            )));
        }
        self.conn
            .prepare_cached("DELETE FROM images WHERE id = ?1")?
            .execute([id])?;
        Ok(true)
    }
}

impl Tx<'_> {
    /// The VMs whose DISK1 (or whose volumes) hold image row `id`.
    fn users(&self, id: i64) -> Result<Vec<String>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT public_id FROM vms WHERE image_id = ?1
                 UNION SELECT COALESCE(v.public_id, o.public_id) FROM volumes o
                     LEFT JOIN vms v ON v.id = o.vm_id WHERE o.image_id = ?1
                 ORDER BY 1",
            )?
            .query_map([id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }
}
