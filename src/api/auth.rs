//! Authentication of API calls (HAAS-API.md §3.1).
//!
//! - Mode A: the first parameter is `"<accessKeyId>:<secret>"`, checked in constant time
//!   against the key's stored SHA-256.
//! - Mode B: the first parameter is `""` and the HTTP headers carry `X-Haas-Expire` (RFC 3339
//!   UTC, at most 24 h ahead), `X-Haas-SignatureVersion: 2` and `Authorization: HAAS
//!   <accessKeyId>:<base64 HMAC-SHA256(secret, "POST\n" + path + "\n" + expire + "\n" +
//!   hex(sha256(body)))>`. HMAC hashes keys longer than its 64-byte block first (RFC 2104), and
//!   our secrets are 69 bytes, so the stored SHA-256 *is* the HMAC key: the secret is still
//!   never stored.
//!
//! Keys are cached in memory (the hot path does no SQL) and the cache is dropped whenever the
//! inventory reports a key or customer change, so a revoked key stops working at once.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::sign::hmac_sha256;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::fault::{ApiError, ErrorType};
use super::keys::{Scope, verify_secret};
use crate::inventory::keys::Keys;
use crate::inventory::{self, Inventory, Tx};
use crate::util::parse_rfc3339;

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
        "unknown, disabled or revoked key, wrong secret or bad signature; pass \"<accessKeyId>:<secret>\" as the first parameter, or \"\" with signed headers",
    )
}

fn load(tx: &Tx<'_>, id: &str) -> inventory::Result<Option<CachedKey>> {
    Ok(tx.key_auth(id)?.map(|k| CachedKey {
        customer_id: k.customer_id,
        scope: match k.scope.as_str() {
            "full" => Scope::Full,
            "operate" => Scope::Operate,
            _ => Scope::Read,
        },
        hash: k.secret_hash,
        usable: k.usable,
    }))
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
        if secret.is_empty() {
            return Err(bad_credentials());
        }
        match self.lookup(inventory, id).await? {
            Some(k) if k.usable && verify_secret(&k.hash, secret) => Ok(Caller {
                customer_id: k.customer_id,
                key_id: id.to_owned(),
                scope: k.scope,
            }),
            _ => Err(bad_credentials()),
        }
    }

    /// Mode B: checks a signed request (see the module doc).
    pub async fn verify_signed(
        &self,
        inventory: &Inventory,
        signed: &Signed,
        path: &str,
        body: &[u8],
        now: i64,
    ) -> Result<Caller, ApiError> {
        let expire = parse_rfc3339(&signed.expire).ok_or_else(|| {
            ApiError::new(
                ErrorType::AuthFailure,
                "X-Haas-Expire must be RFC 3339 UTC like 2026-01-02T03:04:05Z",
            )
        })?;
        if expire < now || expire > now + 86_400 {
            return Err(ApiError::new(
                ErrorType::AuthFailure,
                "the signature has expired or X-Haas-Expire is more than 24 hours ahead",
            ));
        }
        if signed.version != "2" {
            return Err(ApiError::new(
                ErrorType::AuthFailure,
                "X-Haas-SignatureVersion must be 2",
            ));
        }
        let body_hash: String = Sha256::digest(body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let message = format!("POST\n{path}\n{}\n{body_hash}", signed.expire);
        let presented = base64::engine::general_purpose::STANDARD
            .decode(&signed.signature)
            .map_err(|_| bad_credentials())?;
        match self.lookup(inventory, &signed.key_id).await? {
            Some(k) if k.usable => {
                let expected = hmac_sha256(&k.hash, message.as_bytes());
                let same = presented.len() == expected.len()
                    && presented
                        .iter()
                        .zip(expected.iter())
                        .fold(0u8, |a, (x, y)| a | (x ^ y))
                        == 0;
                if same {
                    Ok(Caller {
                        customer_id: k.customer_id,
                        key_id: signed.key_id.clone(),
                        scope: k.scope,
                    })
                } else {
                    Err(bad_credentials())
                }
            }
            _ => Err(bad_credentials()),
        }
    }

    async fn lookup(&self, inventory: &Inventory, id: &str) -> Result<Option<CachedKey>, ApiError> {
        if id.is_empty() || id.len() > 64 {
            return Ok(None);
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
        Ok(key)
    }
}

/// The mode B headers of one request.
#[derive(Debug, Clone)]
pub struct Signed {
    pub key_id: String,
    pub signature: String,
    pub expire: String,
    pub version: String,
}

impl Signed {
    /// Reads `Authorization: HAAS id:sig`, `X-Haas-Expire` and `X-Haas-SignatureVersion`.
    pub fn from_headers(headers: &axum::http::HeaderMap) -> Option<Signed> {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let (key_id, signature) = text("authorization")?
            .strip_prefix("HAAS ")?
            .split_once(':')?;
        Some(Signed {
            key_id: key_id.trim().to_owned(),
            signature: signature.trim().to_owned(),
            expire: text("x-haas-expire").unwrap_or_default().to_owned(),
            version: text("x-haas-signatureversion")
                .unwrap_or_default()
                .to_owned(),
        })
    }
}
