//! The image catalogue: a backend-neutral repository, implemented for SQLite in
//! `sqlite/images.rs`. Grows with image import.

use super::{Page, Result, Window};

/// A catalogue entry as customers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    pub public_id: String,
    pub name: String,
    pub os: String,
    pub os_version: String,
    pub architecture: String,
    pub min_disk_gb: i64,
    pub init_supported: bool,
    pub description: String,
    pub created_at: String,
}

pub trait Images {
    /// Whether image `id` (row id) supports the Init* methods (CentOS images with init
    /// support), and its public id.
    fn init_support(&self, id: i64) -> Result<Option<(bool, String)>>;
    /// A page of the catalogue, by name.
    fn image_page(&self, window: Window) -> Result<Page<ImageRecord>>;
    /// Image `public_id`.
    fn image(&self, public_id: &str) -> Result<Option<ImageRecord>>;
    /// The image with row id `id` (the one a VM's DISK1 holds).
    fn image_by_row(&self, id: i64) -> Result<Option<ImageRecord>>;
}
