//! HMAC-SHA256 and the signature that authenticates calls between the appliance and the
//! facility (`X-Nhn-Signature: <unix time>:<hex HMAC-SHA256(key, "<unix time>\n" + body)>`).
//!
//! The key is the SHA-256 of a credential: the facility (an `nhn agent`, or the legacy facility
//! at `[api] facility_url`) holds the credential itself, the appliance only its hash. The
//! appliance signs what it sends with the hash; the facility hashes its credential to check;
//! callbacks the other way present the credential, which the appliance hashes and looks up. A
//! signature older (or newer) than [`MAX_SKEW_SECS`] is refused; within that window a replay
//! changes nothing, because every call is idempotent per request id.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How far a signature's time may be from the receiver's clock.
pub const MAX_SKEW_SECS: i64 = 300;

/// The header that carries the signature.
pub const HEADER: &str = "x-nhn-signature";

/// HMAC-SHA256 (RFC 2104) from the `hmac` crate: keys of any length (longer than the block
/// are hashed first).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    mac(key, message).finalize().into_bytes().into()
}

fn mac(key: &[u8], message: &[u8]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(message);
    m
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 64 hex digits as 32 bytes (`None` for anything else).
pub fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The SHA-256 of a credential: the key both sides sign with.
pub fn credential_key(credential: &str) -> [u8; 32] {
    Sha256::digest(credential.trim().as_bytes()).into()
}

/// Equality that takes the same time wherever the inputs differ (`subtle`).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The signature header value for `body` sent at `now`.
pub fn sign(key: &[u8; 32], now: i64, body: &[u8]) -> String {
    let mut message = format!("{now}\n").into_bytes();
    message.extend_from_slice(body);
    format!("{now}:{}", hex(&hmac_sha256(key, &message)))
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no X-Nhn-Signature header")]
    Missing,
    #[error("the X-Nhn-Signature header is malformed")]
    Malformed,
    #[error("the signature's time is more than {MAX_SKEW_SECS} s from this host's clock")]
    Stale,
    #[error("the signature does not match (wrong credential, or the body was changed)")]
    Mismatch,
}

/// Checks a signature header against `body`, received at `now`.
pub fn verify(key: &[u8; 32], header: Option<&str>, body: &[u8], now: i64) -> Result<(), Refused> {
    let header = header.ok_or(Refused::Missing)?;
    let (time, mac) = header.split_once(':').ok_or(Refused::Malformed)?;
    let time: i64 = time.parse().map_err(|_| Refused::Malformed)?;
    let mac = parse_hex32(mac).ok_or(Refused::Malformed)?;
    if (now - time).abs() > MAX_SKEW_SECS {
        return Err(Refused::Stale);
    }
    let mut message = format!("{time}\n").into_bytes();
    message.extend_from_slice(body);
    self::mac(key, &message)
        .verify_slice(&mac)
        .map_err(|_| Refused::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn hmac_hashes_keys_longer_than_a_block_first() {
        // RFC 4231 test case 6: a 131-byte key.
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex(&mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn signatures_cover_time_and_body() {
        let key = [1; 32];
        let a = sign(&key, 1000, b"<x/>");
        assert!(a.starts_with("1000:") && a.len() == 5 + 64, "{a}");
        assert_ne!(a, sign(&key, 1001, b"<x/>"));
        assert_ne!(a, sign(&key, 1000, b"<y/>"));
        assert_eq!(verify(&key, Some(&a), b"<x/>", 1010), Ok(()));
        assert_eq!(
            verify(&key, Some(&a), b"<y/>", 1010),
            Err(Refused::Mismatch)
        );
        assert_eq!(
            verify(&[2; 32], Some(&a), b"<x/>", 1010),
            Err(Refused::Mismatch)
        );
        assert_eq!(verify(&key, Some(&a), b"<x/>", 2000), Err(Refused::Stale));
        assert_eq!(verify(&key, None, b"<x/>", 1000), Err(Refused::Missing));
        assert_eq!(
            verify(&key, Some("1000:zz"), b"", 1000),
            Err(Refused::Malformed)
        );
    }

    #[test]
    fn hex_round_trips() {
        let k = credential_key("s3cret\n");
        assert_eq!(k, credential_key("s3cret"));
        assert_eq!(parse_hex32(&hex(&k)), Some(k));
        assert_eq!(parse_hex32("abc"), None);
    }
}
