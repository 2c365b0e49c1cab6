//! Volume records from the operator's side (`nhn volume create|list`): a boot volume for a
//! physical machine. Customer volumes come from the API; both are rows the reconciler exports.

use crate::inventory::volumes::{Portal, Volumes, backing_of, target_iqn};
use crate::inventory::{self, Error, Result, Tx};
use crate::model::EventKind;
use crate::util::unix_now;

pub use crate::inventory::volumes::VolumeRow;

/// Creates a boot volume for machine `machine` on `portal` (the only portal if `None`).
pub fn create(tx: &Tx<'_>, machine: &str, size_gb: u32, portal: Option<&str>) -> Result<VolumeRow> {
    if size_gb == 0 {
        return Err(Error::Invalid("--size-gb must be at least 1".into()));
    }
    let machine_id = tx.machine_id(machine)?.ok_or_else(|| {
        Error::NotFound(format!(
            "machine {machine:?}; `nhn inventory show` lists the machines"
        ))
    })?;
    if let Some(v) = tx.boot_volume_of(machine_id)? {
        return Err(Error::Invalid(format!(
            "machine {machine:?} already has boot volume {v}"
        )));
    }
    let portals = tx.portals()?;
    let Portal {
        id: portal_id,
        iqn_prefix: prefix,
        ..
    } = match portal {
        Some(p) => portals.into_iter().find(|q| q.name == p).ok_or_else(|| {
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
        target_iqn: target_iqn(&prefix, &id),
        backing: backing_of(&id),
        id,
        size_gb,
        owner: machine.to_owned(),
        device: String::new(),
    };
    tx.insert_boot_volume(&row, portal_id, machine_id, unix_now())?;
    inventory::audit(
        tx,
        "cli",
        "volume.create",
        &row.id,
        &format!("ok: {size_gb} GB for {machine}"),
    )?;
    inventory::record_event(tx, EventKind::Volume, &row.id)?;
    Ok(row)
}

pub fn list(tx: &Tx<'_>) -> Result<Vec<VolumeRow>> {
    tx.volumes()
}
