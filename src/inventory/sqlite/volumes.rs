//! [`Volumes`] on SQLite.

use rusqlite::{OptionalExtension, params};

use super::{Tx, page};
use crate::inventory::volumes::{
    Export, NewVolume, Portal, VolumeDetail, VolumeRow, VolumeSummary, Volumes, backing_of,
    target_iqn,
};
use crate::inventory::{Page, Result, Window};
use crate::util::rfc3339;

impl Volumes for Tx<'_> {
    fn machine_id(&self, name: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id FROM machines WHERE name = ?1 AND kind != 'discovered'",
                [name],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn boot_volume_of(&self, machine_id: i64) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT public_id FROM volumes WHERE machine_id = ?1",
                [machine_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn portals(&self) -> Result<Vec<Portal>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id, name, iqn_prefix FROM iscsi_portals ORDER BY name")?;
        let rows = st.query_map([], |r| {
            Ok(Portal {
                id: r.get(0)?,
                name: r.get(1)?,
                iqn_prefix: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn insert_boot_volume(
        &self,
        row: &VolumeRow,
        portal_id: i64,
        machine_id: i64,
        at: i64,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT INTO volumes (public_id, size_gb, backing, portal_id, target_iqn, lun, machine_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7)",
            params![
                row.id,
                row.size_gb,
                row.backing,
                portal_id,
                row.target_iqn,
                machine_id,
                rfc3339(at)
            ],
        )?;
        Ok(())
    }

    fn volumes(&self) -> Result<Vec<VolumeRow>> {
        let mut st = self.conn.prepare_cached(
            "SELECT vol.public_id, vol.size_gb, vol.target_iqn, COALESCE(m.name, v.public_id, ''), COALESCE(vol.device, ''), vol.backing
             FROM volumes vol LEFT JOIN machines m ON m.id = vol.machine_id LEFT JOIN vms v ON v.id = vol.vm_id
             ORDER BY vol.public_id",
        )?;
        let rows = st.query_map([], |r| {
            Ok(VolumeRow {
                id: r.get(0)?,
                size_gb: r.get(1)?,
                target_iqn: r.get(2)?,
                owner: r.get(3)?,
                device: r.get(4)?,
                backing: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn exports(&self) -> Result<Vec<Export>> {
        let mut st = self.conn.prepare_cached(
            "SELECT vol.target_iqn, vol.lun, vol.backing, vol.size_gb, p.iqn_prefix,
                    m.initiator_iqn, COALESCE(m.name, v.public_id)
             FROM volumes vol JOIN iscsi_portals p ON p.id = vol.portal_id
             LEFT JOIN machines m ON m.id = vol.machine_id LEFT JOIN vms v ON v.id = vol.vm_id
             ORDER BY vol.target_iqn",
        )?;
        let rows = st.query_map([], |r| {
            Ok(Export {
                iqn: r.get(0)?,
                lun: r.get(1)?,
                backing: r.get(2)?,
                size_gb: r.get(3)?,
                iqn_prefix: r.get(4)?,
                initiator: r.get(5)?,
                owner: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn default_portal(&self) -> Result<Option<Portal>> {
        Ok(self
            .conn
            .prepare_cached("SELECT id, name, iqn_prefix FROM iscsi_portals ORDER BY id LIMIT 1")?
            .query_row([], |r| {
                Ok(Portal {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    iqn_prefix: r.get(2)?,
                })
            })
            .optional()?)
    }

    fn customer_volume(
        &self,
        customer: i64,
        public_id: &str,
    ) -> Result<Option<(i64, Option<i64>)>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, vm_id FROM volumes WHERE public_id = ?1 AND customer_id = ?2",
            )?
            .query_row(params![public_id, customer], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    fn volume_page(&self, customer: i64, window: Window) -> Result<Page<VolumeSummary>> {
        page(
            self.conn,
            SUMMARY,
            "FROM volumes o LEFT JOIN vms v ON v.id = o.vm_id WHERE o.customer_id = ?1",
            "o.id",
            &[&customer],
            window,
            summary,
        )
    }

    fn volume_detail(&self, customer: i64, public_id: &str) -> Result<Option<VolumeDetail>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {SUMMARY}, COALESCE(i.public_id, ''), o.created_at
                 FROM volumes o LEFT JOIN vms v ON v.id = o.vm_id LEFT JOIN images i ON i.id = o.image_id
                 WHERE o.public_id = ?1 AND o.customer_id = ?2"
            ))?
            .query_row(params![public_id, customer], |r| {
                Ok(VolumeDetail {
                    summary: summary(r)?,
                    image: r.get(5)?,
                    created_at: r.get(6)?,
                })
            })
            .optional()?)
    }

    fn insert_volume(&self, v: &NewVolume<'_>, at: i64) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO volumes (public_id, customer_id, size_gb, backing, portal_id, target_iqn, comment, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                v.public_id,
                v.customer,
                v.size_gb,
                backing_of(v.public_id),
                v.portal.id,
                target_iqn(&v.portal.iqn_prefix, v.public_id),
                v.comment,
                rfc3339(at)
            ])?;
        Ok(())
    }

    fn delete_volume(&self, id: i64) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM volumes WHERE id = ?1")?
            .execute([id])?;
        Ok(())
    }

    fn volume_at(&self, vm: i64, device: &str) -> Result<Option<(i64, String)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT id, public_id FROM volumes WHERE vm_id = ?1 AND device = ?2")?
            .query_row(params![vm, device], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    fn attach_volume(&self, id: i64, vm: i64, device: &str, at: i64) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE volumes SET vm_id = ?2, device = ?3 WHERE id = ?1")?
            .execute(params![id, vm, device])?;
        if device == "DISK1" {
            self.conn
                .prepare_cached(
                    "UPDATE vms SET image_id = (SELECT image_id FROM volumes WHERE id = ?2), updated_at = ?3 WHERE id = ?1",
                )?
                .execute(params![vm, id, rfc3339(at)])?;
        }
        Ok(())
    }

    fn detach_volume(&self, id: i64, vm: i64, device: &str, at: i64) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE volumes SET vm_id = NULL, device = NULL WHERE id = ?1")?
            .execute([id])?;
        if device == "DISK1" {
            self.conn
                .prepare_cached("UPDATE vms SET image_id = NULL, updated_at = ?2 WHERE id = ?1")?
                .execute(params![vm, rfc3339(at)])?;
        }
        Ok(())
    }
}

/// A customer's volume list columns (`o`: the volume, `v`: its VM).
const SUMMARY: &str =
    "o.public_id, o.size_gb, COALESCE(v.public_id, ''), COALESCE(o.device, ''), o.comment";

fn summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<VolumeSummary> {
    Ok(VolumeSummary {
        public_id: r.get(0)?,
        size_gb: r.get(1)?,
        vm: r.get(2)?,
        device: r.get(3)?,
        comment: r.get(4)?,
    })
}
