//! Volumes and the iSCSI portals that export them: a backend-neutral repository, implemented
//! for SQLite in `sqlite/volumes.rs`.

use super::Result;

/// One volume as `nhn volume list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRow {
    pub id: String,
    pub size_gb: u32,
    pub target_iqn: String,
    /// The machine or VM it belongs to.
    pub owner: String,
    pub device: String,
    pub backing: String,
}

/// An iSCSI portal of the site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Portal {
    pub id: i64,
    pub name: String,
    pub iqn_prefix: String,
}

/// A volume as its target daemon must export it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub iqn: String,
    pub lun: u32,
    pub backing: String,
    pub size_gb: u32,
    pub iqn_prefix: String,
    /// The machine's own initiator name, if the site file sets one.
    pub initiator: Option<String>,
    /// The machine's name or the VM's public id.
    pub owner: Option<String>,
}

pub trait Volumes {
    /// The id of machine `name` (not a discovered one).
    fn machine_id(&self, name: &str) -> Result<Option<i64>>;
    /// The public id of machine `machine_id`'s boot volume.
    fn boot_volume_of(&self, machine_id: i64) -> Result<Option<String>>;
    /// Every portal, by name.
    fn portals(&self) -> Result<Vec<Portal>>;
    /// Stores a machine's boot volume (LUN 1) on portal `portal_id`.
    fn insert_boot_volume(
        &self,
        row: &VolumeRow,
        portal_id: i64,
        machine_id: i64,
        at: i64,
    ) -> Result<()>;
    /// Every volume, by public id.
    fn volumes(&self) -> Result<Vec<VolumeRow>>;
    /// Every volume on a portal, by target name.
    fn exports(&self) -> Result<Vec<Export>>;
}
