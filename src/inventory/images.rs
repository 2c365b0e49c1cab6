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

/// An image's content as `nhn image import` recorded it (empty for a catalogue entry from
/// the site file that nothing was imported for yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageContent {
    /// The archive, relative to the data dir.
    pub archive: String,
    pub sha256: String,
    pub kernel_version: String,
    pub archive_bytes: u64,
    pub unpacked_bytes: u64,
    /// SHA-256 of the image's kernel (`vmlinuz`) and of the nhn initrd built for it.
    pub kernel_sha256: String,
    pub initrd_sha256: String,
}

impl ImageContent {
    /// Whether `nhn image import` gave the image files (a site-file entry has none).
    pub fn imported(&self) -> bool {
        !self.archive.is_empty()
    }
}

/// An image for the operator: the catalogue entry, its content, and the VMs that hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDetail {
    pub image: ImageRecord,
    pub content: ImageContent,
    /// Public ids of the VMs whose DISK1 holds it.
    pub used_by: Vec<String>,
}

pub trait Images {
    /// Image `id` (row id): whether the catalogue marks it as taking the Init* methods, its
    /// `os`, and its public id.
    fn init_support(&self, id: i64) -> Result<Option<(bool, String, String)>>;
    /// A page of the catalogue, by name.
    fn image_page(&self, window: Window) -> Result<Page<ImageRecord>>;
    /// Image `public_id`.
    fn image(&self, public_id: &str) -> Result<Option<ImageRecord>>;
    /// The image with row id `id` (the one a VM's DISK1 holds).
    fn image_by_row(&self, id: i64) -> Result<Option<ImageRecord>>;
    /// Records an imported image: a new catalogue entry, or content for an entry the site
    /// file declared. An entry that already has content is refused (Invalid).
    fn add_image(&self, image: &ImageRecord, content: &ImageContent, at: i64) -> Result<()>;
    /// The content of image `public_id` (`None`: no such image).
    fn image_content(&self, public_id: &str) -> Result<Option<ImageContent>>;
    /// Every image with its content and users, by name.
    fn image_details(&self) -> Result<Vec<ImageDetail>>;
    /// Deletes image `public_id` from the catalogue; whether it existed. Refused (Invalid,
    /// naming them) while VMs hold it.
    fn delete_image(&self, public_id: &str) -> Result<bool>;
}
