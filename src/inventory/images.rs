//! The image catalogue: a backend-neutral repository, implemented for SQLite in
//! `sqlite/images.rs`. Grows with image import.

use super::Result;

pub trait Images {
    /// Whether image `id` supports the Init* methods (a supported CentOS), and its public id.
    fn init_support(&self, id: i64) -> Result<Option<(bool, String)>>;
}
