//! Volumes and the iSCSI portals that export them: a backend-neutral repository, implemented
//! for SQLite in `sqlite/volumes.rs`.

use super::{Page, Result, Window};

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

/// Where volume `id`'s backing file lives, under the data dir.
pub fn backing_of(id: &str) -> String {
    format!("volumes/{id}.img")
}

/// The iSCSI target that exports volume `id` through a portal with `iqn_prefix`.
pub fn target_iqn(iqn_prefix: &str, id: &str) -> String {
    format!("{iqn_prefix}:{id}")
}

/// A volume in a customer's list. Absent references are empty strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSummary {
    pub public_id: String,
    pub size_gb: i64,
    pub vm: String,
    pub device: String,
    pub comment: String,
}

/// A volume with the image installed on it (`getVolumeInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeDetail {
    pub summary: VolumeSummary,
    pub image: String,
    pub created_at: String,
}

/// A customer's new volume, exported through `portal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVolume<'a> {
    pub public_id: &'a str,
    pub customer: i64,
    pub size_gb: i64,
    pub portal: &'a Portal,
    pub comment: &'a str,
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

    /// The portal new customer volumes are exported through (the first one configured).
    fn default_portal(&self) -> Result<Option<Portal>>;
    /// Customer `customer`'s volume `public_id`: its row id and the VM row it is attached to.
    fn customer_volume(&self, customer: i64, public_id: &str)
    -> Result<Option<(i64, Option<i64>)>>;
    /// A page of the customer's volumes, oldest first.
    fn volume_page(&self, customer: i64, window: Window) -> Result<Page<VolumeSummary>>;
    fn volume_detail(&self, customer: i64, public_id: &str) -> Result<Option<VolumeDetail>>;
    fn insert_volume(&self, volume: &NewVolume<'_>, at: i64) -> Result<()>;
    fn delete_volume(&self, id: i64) -> Result<()>;
    /// The volume attached at `device` of VM `vm` (row ids): its row id and public id.
    fn volume_at(&self, vm: i64, device: &str) -> Result<Option<(i64, String)>>;
    /// Attaches volume `id` to VM `vm` at `device`; on DISK1 the VM's installed image becomes
    /// the volume's.
    fn attach_volume(&self, id: i64, vm: i64, device: &str, at: i64) -> Result<()>;
    /// Detaches volume `id` from VM `vm` at `device`; a VM without DISK1 has no image.
    fn detach_volume(&self, id: i64, vm: i64, device: &str, at: i64) -> Result<()>;
}
