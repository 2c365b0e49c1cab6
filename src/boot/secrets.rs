//! Boot secrets (DESIGN.md §4): what a booting machine needs but must never see on its kernel
//! command line — today the CHAP account of its root volume (`[storage] chap`).
//!
//! When nhn renders a machine's iPXE script it issues a **one-time token** and puts only the
//! URL `…/boot/secrets/<token>` on the command line. The initrd fetches that URL once, early,
//! and logs in with what it gets. A token is
//! - issued only to the address nhn's DHCP server gives that MAC (its reservation, or a bound
//!   lease; a script asked for from anywhere else says so and does not boot),
//! - redeemable once, only from that same address, within [`TOKEN_TTL_SECS`],
//! - stored as its SHA-256 only (in `boot_tokens`, so a restart between script and fetch does
//!   not break a boot).
//!
//! What it does not stop: a host that can spoof the machine's address on the provisioning
//! network during its boot window. What it does stop: secrets in kernel command lines, console
//! logs, iPXE scripts, DHCP options and `/proc/cmdline` of the booted system (the token is
//! spent by then).

use sha2::{Digest, Sha256};

use crate::inventory::boot::{Boot, BootToken};
use crate::inventory::{Result, Tx};
use crate::net::Mac;

/// How long a token is valid after its script was served.
pub const TOKEN_TTL_SECS: i64 = 600;

fn digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Issues a token for `mac` asked for from `address`; `Ok(Err(why))` if `address` is neither
/// the reservation of `mac` nor its bound lease.
pub fn issue(
    tx: &Tx<'_>,
    mac: &Mac,
    address: &str,
    now: i64,
) -> Result<std::result::Result<String, String>> {
    if !tx.address_given(&mac.to_string(), address, now)? {
        return Ok(Err(format!(
            "{address} is not the address nhn's DHCP gives {mac}; boot secrets are only handed to that address"
        )));
    }
    let mut raw = [0u8; 24];
    rand::fill(&mut raw);
    let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    tx.store_token(
        &digest(&token),
        &mac.to_string(),
        address,
        now + TOKEN_TTL_SECS,
        now - 86_400,
    )?;
    Ok(Ok(token))
}

/// Why a token was not honoured (each maps to an HTTP status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No such token (or not a token at all): 404.
    Unknown,
    /// Used already, or expired: 410.
    Spent,
    /// Presented from another address than it was issued to: 403.
    WrongAddress,
}

/// Spends `token` presented from `address`; returns the MAC it was issued for.
pub fn redeem(
    tx: &Tx<'_>,
    token: &str,
    address: &str,
    now: i64,
) -> Result<std::result::Result<Mac, Refusal>> {
    if token.len() != 48 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(Err(Refusal::Unknown));
    }
    let key = digest(token);
    let Some(BootToken {
        mac,
        address: issued_to,
        expires_at,
        used_at,
    }) = tx.token(&key)?
    else {
        return Ok(Err(Refusal::Unknown));
    };
    if issued_to != address {
        return Ok(Err(Refusal::WrongAddress));
    }
    if used_at.is_some() || expires_at < now {
        return Ok(Err(Refusal::Spent));
    }
    tx.spend_token(&key, now)?;
    Ok(mac.parse().map_err(|_| Refusal::Unknown))
}

/// The secrets bundle the initrd reads: `key=value` lines of letters, digits, `.:-`.
pub fn bundle(chap: &crate::storage::Chap) -> String {
    format!("chap_user={}\nchap_secret={}\n", chap.user, chap.secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Inventory;

    fn inv_with_lease() -> (tempfile::TempDir, Inventory) {
        let dir = tempfile::tempdir().unwrap();
        let inv = Inventory::open(&dir.path().join("nhn.db")).unwrap();
        inv.write_blocking(|c| {
            c.raw().execute(
                "INSERT INTO leases (address, mac, state, expires_at, updated_at)
                 VALUES ('10.96.0.12', '52:54:00:96:00:02', 'bound', 2000, 1000)",
                [],
            )?;
            Ok(())
        })
        .unwrap();
        (dir, inv)
    }

    #[test]
    fn a_token_is_issued_to_the_leased_address_and_spent_once() {
        let (_d, inv) = inv_with_lease();
        let mac: Mac = "52:54:00:96:00:02".parse().unwrap();
        let (token, refused) = inv
            .write_blocking(move |c| {
                Ok((
                    issue(c, &mac, "10.96.0.12", 1000)?,
                    issue(c, &mac, "10.96.0.66", 1000)?,
                ))
            })
            .unwrap();
        let token = token.unwrap();
        assert!(refused.unwrap_err().contains("not the address"));
        let t = token.clone();
        let (wrong, first, second, stored) = inv
            .write_blocking(move |c| {
                let stored: i64 = c.raw().query_row(
                    "SELECT COUNT(*) FROM boot_tokens WHERE token_sha256 = ?1",
                    [&t],
                    |r| r.get(0),
                )?;
                Ok((
                    redeem(c, &t, "10.96.0.66", 1001)?,
                    redeem(c, &t, "10.96.0.12", 1001)?,
                    redeem(c, &t, "10.96.0.12", 1002)?,
                    stored,
                ))
            })
            .unwrap();
        assert_eq!(stored, 0, "the token itself is never stored");
        assert_eq!(wrong, Err(Refusal::WrongAddress));
        assert_eq!(first, Ok(mac));
        assert_eq!(second, Err(Refusal::Spent));
    }

    #[test]
    fn expired_and_made_up_tokens_are_refused() {
        let (_d, inv) = inv_with_lease();
        let mac: Mac = "52:54:00:96:00:02".parse().unwrap();
        let out = inv
            .write_blocking(move |c| {
                let token = issue(c, &mac, "10.96.0.12", 1000)?.unwrap();
                Ok((
                    redeem(c, &token, "10.96.0.12", 1000 + TOKEN_TTL_SECS + 1)?,
                    redeem(c, &"0".repeat(48), "10.96.0.12", 1000)?,
                    redeem(c, "../../etc/passwd", "10.96.0.12", 1000)?,
                ))
            })
            .unwrap();
        assert_eq!(
            out,
            (
                Err(Refusal::Spent),
                Err(Refusal::Unknown),
                Err(Refusal::Unknown)
            )
        );
    }
}
