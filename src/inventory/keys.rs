//! Customers' API keys (HAAS-API.md §3.1): a backend-neutral repository, implemented for
//! SQLite in `sqlite/keys.rs`. Only secret hashes are stored.

use super::Result;

/// One key as `nhn key list` shows it (no secret material).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub customer: String,
    pub scope: String,
    pub enabled: bool,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// What authentication needs of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAuth {
    pub customer_id: i64,
    /// `read`, `operate` or `full`.
    pub scope: String,
    pub secret_hash: Vec<u8>,
    /// The key and its customer are both enabled.
    pub usable: bool,
}

pub trait Keys {
    /// The id of customer `name`.
    fn customer_id(&self, name: &str) -> Result<Option<i64>>;
    /// How many enabled keys the customer holds.
    fn active_keys(&self, customer_id: i64) -> Result<i64>;
    fn insert_key(
        &self,
        id: &str,
        customer_id: i64,
        secret_hash: &[u8],
        scope: &str,
        at: i64,
    ) -> Result<()>;
    /// Every key, by customer and creation.
    fn keys(&self) -> Result<Vec<KeyInfo>>;
    /// Disables key `id` if it is enabled; `None` if there is no such key, else whether it
    /// was enabled.
    fn revoke_key(&self, id: &str, at: i64) -> Result<Option<bool>>;
    fn key_auth(&self, id: &str) -> Result<Option<KeyAuth>>;
    /// Records that key `id` was used at `at` (never moving backwards).
    fn touch_key(&self, id: &str, at: i64) -> Result<()>;
}
