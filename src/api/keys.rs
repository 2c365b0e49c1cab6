//! Per-customer API keys (HAAS-API.md §3.1): a public access key id and a random secret that is
//! shown once and stored only as a SHA-256 hash. The secret has 256 bits of entropy, so a plain
//! hash is not brute-forceable and keeps verification cheap on the API's hot path.

use rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::inventory::Tx;
use crate::inventory::{Error, Result, audit, record_event};
use crate::util::now_rfc3339;

/// What a key may do: `read` get* calls; `operate` adds power, restore, init, attach/detach,
/// comments; `full` adds allocate*/deallocate* and change*.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Scope {
    Read,
    Operate,
    Full,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Operate => "operate",
            Scope::Full => "full",
        }
    }
}

/// How many enabled keys a customer may hold (IIJ's limit).
pub const MAX_KEYS_PER_CUSTOMER: i64 = 5;

/// A freshly created key; `secret` exists only in this value and is never stored.
pub struct NewKey {
    pub id: String,
    pub secret: String,
    pub customer: String,
    pub scope: Scope,
}

/// One row of `nhn key list` (no secret material).
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub customer: String,
    pub scope: String,
    pub enabled: bool,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// SHA-256 of a secret, as stored in `api_keys.secret_hash`.
pub fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Compares a presented secret with a stored hash in constant time.
pub fn verify_secret(stored_hash: &[u8], secret: &str) -> bool {
    let presented = hash_secret(secret);
    stored_hash.len() == presented.len()
        && stored_hash
            .iter()
            .zip(&presented)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn random_key_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bytes = [0u8; 18];
    rand::fill(&mut bytes);
    let body: String = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(b % 32)] as char)
        .collect();
    format!("AK{body}")
}

fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("nhns_{hex}")
}

/// Creates a key for an existing customer; the caller shows `secret` once.
pub fn create(conn: &Tx<'_>, customer: &str, scope: Scope) -> Result<NewKey> {
    let customer_id: i64 = conn
        .query_row("SELECT id FROM customers WHERE name = ?1", [customer], |r| r.get(0))
        .optional()?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "customer {customer:?}; add it under [[customers]] in the site file and run `nhn inventory import`"
            ))
        })?;
    let active: i64 = conn.query_row(
        "SELECT COUNT(*) FROM api_keys WHERE customer_id = ?1 AND enabled = 1",
        [customer_id],
        |r| r.get(0),
    )?;
    if active >= MAX_KEYS_PER_CUSTOMER {
        return Err(Error::Invalid(format!(
            "customer {customer:?} already has {active} active keys (the limit); revoke one with `nhn key revoke ID`"
        )));
    }
    let key = NewKey {
        id: random_key_id(),
        secret: random_secret(),
        customer: customer.to_owned(),
        scope,
    };
    conn.execute(
        "INSERT INTO api_keys (id, customer_id, secret_hash, scope, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![key.id, customer_id, hash_secret(&key.secret), scope.as_str(), now_rfc3339()],
    )?;
    audit(
        conn,
        "cli",
        "key.create",
        &key.id,
        &format!("ok: customer {customer}, scope {}", scope.as_str()),
    )?;
    record_event(conn, "key", &key.id)?;
    Ok(key)
}

pub fn list(conn: &Tx<'_>) -> Result<Vec<KeyInfo>> {
    let mut st = conn.prepare(
        "SELECT k.id, c.name, k.scope, k.enabled, k.created_at, k.last_used_at, k.revoked_at
         FROM api_keys k JOIN customers c ON c.id = k.customer_id ORDER BY c.name, k.created_at, k.id",
    )?;
    let rows = st.query_map([], |r| {
        Ok(KeyInfo {
            id: r.get(0)?,
            customer: r.get(1)?,
            scope: r.get(2)?,
            enabled: r.get(3)?,
            created_at: r.get(4)?,
            last_used_at: r.get(5)?,
            revoked_at: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Disables a key for good; the row stays for the audit trail.
pub fn revoke(conn: &Tx<'_>, id: &str) -> Result<()> {
    let changed = conn.execute(
        "UPDATE api_keys SET enabled = 0, revoked_at = ?2 WHERE id = ?1 AND enabled = 1",
        params![id, now_rfc3339()],
    )?;
    if changed == 0 {
        let exists: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM api_keys WHERE id = ?1)",
            [id],
            |r| r.get(0),
        )?;
        return Err(if exists {
            Error::Invalid(format!("key {id} is already revoked"))
        } else {
            Error::NotFound(format!("key {id}; `nhn key list` shows the existing keys"))
        });
    }
    audit(conn, "cli", "key.revoke", id, "ok")?;
    record_event(conn, "key", id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_secrets_have_the_documented_shape() {
        let id = random_key_id();
        assert_eq!(id.len(), 20);
        assert!(id.starts_with("AK"));
        let s = random_secret();
        assert_eq!(s.len(), 5 + 64);
        assert_ne!(random_secret(), s);
    }

    #[test]
    fn verification_accepts_only_the_secret() {
        let h = hash_secret("nhns_abc");
        assert!(verify_secret(&h, "nhns_abc"));
        assert!(!verify_secret(&h, "nhns_abd"));
        assert!(!verify_secret(&h[..31], "nhns_abc"));
    }
}
