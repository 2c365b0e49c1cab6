//! Authentication of API calls, mode A (HAAS-API.md §3.1): the first parameter is
//! `"<accessKeyId>:<secret>"`, checked in constant time against the key's stored SHA-256.
//! Keys are cached in memory (the hot path does no SQL) and the cache is dropped whenever the
//! inventory reports a key or customer change, so a revoked key stops working at once.

use std::collections::HashMap;
use std::sync::RwLock;

use rusqlite::Connection;

use super::fault::{ApiError, ErrorType};
use super::keys::{Scope, verify_secret};
use crate::inventory::{self, Inventory};

/// Cached key ids (including unknown ones) before the cache starts over.
const MAX_CACHED: usize = 10_000;

/// Who is calling: the key's customer and scope.
#[derive(Debug, Clone)]
pub struct Caller {
    pub customer_id: i64,
    pub key_id: String,
    pub scope: Scope,
}

#[derive(Debug, Clone)]
struct CachedKey {
    customer_id: i64,
    scope: Scope,
    hash: Vec<u8>,
    usable: bool,
}

/// Verifies credentials against the `api_keys` table through an in-memory cache.
#[derive(Default)]
pub struct KeyCache {
    keys: RwLock<HashMap<String, Option<CachedKey>>>,
}

fn bad_credentials() -> ApiError {
    ApiError::new(
        ErrorType::AuthFailure,
        "unknown, disabled or revoked key, or wrong secret; pass \"<accessKeyId>:<secret>\" as the first parameter",
    )
}

fn load(conn: &Connection, id: &str) -> inventory::Result<Option<CachedKey>> {
    inventory::optional(conn.query_row(
        "SELECT k.customer_id, k.scope, k.secret_hash, k.enabled AND c.enabled
         FROM api_keys k JOIN customers c ON c.id = k.customer_id WHERE k.id = ?1",
        [id],
        |r| {
            let scope: String = r.get(1)?;
            Ok(CachedKey {
                customer_id: r.get(0)?,
                scope: match scope.as_str() {
                    "full" => Scope::Full,
                    "operate" => Scope::Operate,
                    _ => Scope::Read,
                },
                hash: r.get(2)?,
                usable: r.get(3)?,
            })
        },
    ))
}

impl KeyCache {
    /// Forgets every cached key (after a key or customer change).
    pub fn clear(&self) {
        self.keys.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The key id named in a credential, for throttling failed attempts per key.
    pub fn key_id(auth: &str) -> Option<&str> {
        auth.split_once(':').map(|(id, _)| id)
    }

    /// Checks `auth`; `Err(AuthFailure)` for anything but an enabled key with its secret.
    pub async fn verify(&self, inventory: &Inventory, auth: &str) -> Result<Caller, ApiError> {
        let Some((id, secret)) = auth.split_once(':') else {
            return Err(bad_credentials());
        };
        if id.is_empty() || id.len() > 64 || secret.is_empty() {
            return Err(bad_credentials());
        }
        let cached = self
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned();
        let key = match cached {
            Some(k) => k,
            None => {
                let owned = id.to_owned();
                let k = inventory.read(move |c| load(c, &owned)).await?;
                let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
                if keys.len() >= MAX_CACHED {
                    // Unknown ids probed in bulk must not grow memory without bound.
                    keys.clear();
                }
                keys.insert(id.to_owned(), k.clone());
                k
            }
        };
        match key {
            Some(k) if k.usable && verify_secret(&k.hash, secret) => Ok(Caller {
                customer_id: k.customer_id,
                key_id: id.to_owned(),
                scope: k.scope,
            }),
            _ => Err(bad_credentials()),
        }
    }
}
