//! [`Vms`] on SQLite.

use rusqlite::{OptionalExtension, params};

use super::Tx;
use crate::inventory::Result;
use crate::inventory::vms::Vms;
use crate::util::rfc3339;

impl Vms for Tx<'_> {
    fn end_request(
        &self,
        vm: &str,
        request: &str,
        state: &str,
        reason: &str,
        at: i64,
    ) -> Result<bool> {
        let reason = if state == "error" { reason } else { "" };
        let n = self.conn.execute(
            "UPDATE vms SET state = ?3, current_request_id = NULL, updated_at = ?4, state_reason = ?5,
                hypervisor_id = CASE WHEN ?3 = 'stopped' THEN NULL ELSE hypervisor_id END
             WHERE public_id = ?1 AND current_request_id = ?2",
            params![vm, request, state, rfc3339(at), reason],
        )?;
        Ok(n > 0)
    }

    fn set_installed_image(&self, vm: &str, image: &str) -> Result<()> {
        let ids: Option<(i64, Option<i64>)> = self
            .conn
            .query_row(
                "SELECT v.id, (SELECT id FROM images WHERE public_id = ?2) FROM vms v
                 WHERE v.public_id = ?1",
                params![vm, image],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((vm_id, image_id)) = ids else {
            return Ok(());
        };
        self.conn.execute(
            "UPDATE volumes SET image_id = ?2 WHERE vm_id = ?1 AND device = 'DISK1'",
            params![vm_id, image_id],
        )?;
        self.conn.execute(
            "UPDATE vms SET image_id = ?2 WHERE id = ?1",
            params![vm_id, image_id],
        )?;
        Ok(())
    }
}
