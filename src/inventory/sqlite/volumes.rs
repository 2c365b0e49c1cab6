//! [`Volumes`] on SQLite.

use rusqlite::{OptionalExtension, params};

use super::Tx;
use crate::inventory::Result;
use crate::inventory::volumes::{Export, Portal, VolumeRow, Volumes};
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
}
