//! Per-customer API keys (HAAS-API.md §3.1): a public access key id and a random secret that is
//! shown once and stored only as a SHA-256 hash. The secret has 256 bits of entropy, so a plain
//! hash is not brute-forceable and keeps verification cheap on the API's hot path.

use sha2::{Digest, Sha256};

use crate::inventory::keys::Keys;
use crate::inventory::{Error, Result, Tx, audit, record_event};
use crate::model::EventKind;
use crate::util::unix_now;

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

pub use crate::inventory::keys::KeyInfo;

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
pub fn create(tx: &Tx<'_>, customer: &str, scope: Scope) -> Result<NewKey> {
    let customer_id = tx.customer_id(customer)?.ok_or_else(|| {
        Error::NotFound(format!(
            "customer {customer:?}; add it under [[customers]] in the site file and run `nhn inventory import`"
        ))
    })?;
    let active = tx.active_keys(customer_id)?;
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
    tx.insert_key(
        &key.id,
        customer_id,
        &hash_secret(&key.secret),
        scope.as_str(),
        unix_now(),
    )?;
    audit(
        tx,
        "cli",
        "key.create",
        &key.id,
        &format!("ok: customer {customer}, scope {}", scope.as_str()),
    )?;
    record_event(tx, EventKind::Key, &key.id)?;
    Ok(key)
}

pub fn list(tx: &Tx<'_>) -> Result<Vec<KeyInfo>> {
    tx.keys()
}

/// Disables a key for good; the row stays for the audit trail.
pub fn revoke(tx: &Tx<'_>, id: &str) -> Result<()> {
    match tx.revoke_key(id, unix_now())? {
        Some(true) => {}
        Some(false) => return Err(Error::Invalid(format!("key {id} is already revoked"))),
        None => {
            return Err(Error::NotFound(format!(
                "key {id}; `nhn key list` shows the existing keys"
            )));
        }
    }
    audit(tx, "cli", "key.revoke", id, "ok")?;
    record_event(tx, EventKind::Key, id)
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
