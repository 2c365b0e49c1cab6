//! Volume records from the operator's side (`nhn volume create|list`): a boot volume for a
//! physical machine. Customer volumes come from the API; both are rows the reconciler exports.

use rusqlite::{Connection, OptionalExtension, params};

use crate::inventory::{self, Error, Result};
use crate::util::now_rfc3339;

/// One row of `nhn volume list`.
#[derive(Debug, Clone)]
pub struct VolumeRow {
    pub id: String,
    pub size_gb: u32,
    pub target_iqn: String,
    pub owner: String,
    pub device: String,
    pub backing: String,
}

/// Creates a boot volume for machine `machine` on `portal` (the only portal if `None`).
pub fn create(
    conn: &Connection,
    machine: &str,
    size_gb: u32,
    portal: Option<&str>,
) -> Result<VolumeRow> {
    if size_gb == 0 {
        return Err(Error::Invalid("--size-gb must be at least 1".into()));
    }
    let machine_id: i64 = conn
        .query_row(
            "SELECT id FROM machines WHERE name = ?1 AND kind != 'discovered'",
            [machine],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "machine {machine:?}; `nhn inventory show` lists the machines"
            ))
        })?;
    let existing: Option<String> = conn
        .query_row(
            "SELECT public_id FROM volumes WHERE machine_id = ?1",
            [machine_id],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(v) = existing {
        return Err(Error::Invalid(format!(
            "machine {machine:?} already has boot volume {v}"
        )));
    }
    let portals: Vec<(i64, String, String)> = {
        let mut st =
            conn.prepare("SELECT id, name, iqn_prefix FROM iscsi_portals ORDER BY name")?;
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    let (portal_id, _, prefix) = match portal {
        Some(p) => portals
            .into_iter()
            .find(|(_, n, _)| n == p)
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "iSCSI portal {p:?}; define it under [[iscsi_portals]] in the site file"
                ))
            })?,
        None => match portals.len() {
            1 => portals
                .into_iter()
                .next()
                .ok_or_else(|| Error::Invalid("no portal".into()))?,
            0 => {
                return Err(Error::Invalid(
                    "no iSCSI portal; add one under [[iscsi_portals]] in the site file".into(),
                ));
            }
            _ => {
                return Err(Error::Invalid(
                    "several iSCSI portals; choose one with --portal".into(),
                ));
            }
        },
    };
    let id = format!(
        "vol-{}",
        machine
            .to_ascii_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "-")
    );
    let row = VolumeRow {
        target_iqn: format!("{prefix}:{id}"),
        backing: format!("volumes/{id}.img"),
        id,
        size_gb,
        owner: machine.to_owned(),
        device: String::new(),
    };
    conn.execute(
        "INSERT INTO volumes (public_id, size_gb, backing, portal_id, target_iqn, lun, machine_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7)",
        params![row.id, size_gb, row.backing, portal_id, row.target_iqn, machine_id, now_rfc3339()],
    )?;
    inventory::audit(
        conn,
        "cli",
        "volume.create",
        &row.id,
        &format!("ok: {size_gb} GB for {machine}"),
    )?;
    inventory::record_event(conn, "volume", &row.id)?;
    Ok(row)
}

pub fn list(conn: &Connection) -> Result<Vec<VolumeRow>> {
    let mut st = conn.prepare(
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
