//! Plaintext passwords in `setPassword` (HAAS-API.md §2.4 accepts `password` beside the
//! preferred `passwordHash`). The plaintext is checked for strength and turned into a SHA-512
//! crypt hash *before* the call is recorded, so it never reaches the `requests` table, the
//! facility, the audit trail or a log: from then on the call is exactly a `passwordHash` call.
//!
//! The salt is derived from the appliance secret (`crate::secret`) and the customer, vmId, user
//! and password, so the same call gives the same hash and a `clientToken` replay matches its
//! first call; the secret keeps that salt from being a fast, unsalted digest of the password.
//! Different VMs, users or customers get different salts.

use dxr::Value;

use super::Ctx;
use super::args::Args;
use super::fault::{ApiError, ErrorType, fail};
use crate::secret;

/// Passwords nobody should get past a strength check, whatever their length.
const COMMON: [&str; 10] = [
    "password",
    "12345678",
    "123456789",
    "1234567890",
    "qwertyui",
    "qwerty123",
    "iloveyou",
    "password1",
    "changeme",
    "letmein1",
];

/// Refuses weak passwords; the message never contains the password.
fn check_strength(password: &str, user: &str) -> Result<(), ApiError> {
    let weak = |why: &str| {
        fail(
            ErrorType::ParameterError,
            format!("weak password: {why} (or send passwordHash from `openssl passwd -6`)"),
        )
    };
    let chars = password.chars().count();
    if chars < 8 {
        return weak("use at least 8 characters");
    }
    if chars > 256 {
        return weak("use at most 256 characters");
    }
    if password
        .chars()
        .any(|c| c == '\0' || c == '\n' || c == '\r')
    {
        return weak("NUL and line breaks are not allowed");
    }
    let mut distinct: Vec<char> = password.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 4 {
        return weak("use at least 4 different characters");
    }
    let lower = password.to_lowercase();
    if lower.contains(&user.to_lowercase()) || COMMON.contains(&lower.as_str()) {
        return weak("it is the user name or a well-known password");
    }
    Ok(())
}

/// crypt(3)'s base-64 alphabet, for salts.
const CRYPT64: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// SHA-512 crypt (`$6$salt$hash`, 5000 rounds) of `password` with `salt` (crypt64 chars).
pub fn sha512_crypt(password: &str, salt: &str) -> String {
    let hash = sha_crypt::sha512_crypt_b64(
        password.as_bytes(),
        salt.as_bytes(),
        &sha_crypt::Sha512Params::default(),
    )
    .expect("sha512 crypt with default rounds cannot fail");
    format!("$6${salt}${hash}")
}

/// If `args` carries a plaintext `password`, replaces it with the equivalent `passwordHash`.
pub fn hash_plaintext(args: &mut Args, ctx: &Ctx) -> Result<(), ApiError> {
    hash_with(args, &ctx.secret, ctx.caller.customer_id)
}

fn hash_with(args: &mut Args, secret: &[u8; 32], customer_id: i64) -> Result<(), ApiError> {
    let Some(password) = args.opt_str("password")? else {
        return Ok(());
    };
    if args.opt_str("passwordHash")?.is_some() {
        return fail(
            ErrorType::InvalidParams,
            "give one of passwordHash or password, not both",
        );
    }
    let password = password.to_owned();
    let user = args.opt_str("user")?.unwrap_or("root").to_owned();
    let vm = args.opt_str("vmId")?.unwrap_or_default().to_owned();
    check_strength(&password, &user)?;
    let mac = secret::derive(
        secret,
        "setPassword salt",
        &format!("{customer_id}\0{vm}\0{user}\0{password}"),
    );
    let salt = secret::text(&mac, CRYPT64, 16);
    args.replace(
        "password",
        "passwordHash",
        Value::String(sha512_crypt(&password, &salt)),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha512_crypt_matches_glibc() {
        // The reference vector of Drepper's SHA-crypt specification.
        assert_eq!(
            sha512_crypt("Hello world!", "saltstring"),
            "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
        );
    }

    fn args(members: &[(&str, &str)]) -> Args {
        let m = members
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect();
        Args::parse(
            "setPassword",
            Some(Value::Struct(m)),
            &["vmId", "user", "password", "passwordHash"],
        )
        .unwrap()
    }

    #[test]
    fn plaintext_becomes_a_stable_salted_hash_and_disappears() {
        let key = [7u8; 32];
        let mut a = args(&[("vmId", "vm-1"), ("password", "correct horse")]);
        hash_with(&mut a, &key, 1).unwrap();
        assert!(a.opt_str("password").unwrap().is_none());
        let h = a.opt_str("passwordHash").unwrap().unwrap().to_owned();
        assert!(h.starts_with("$6$") && h.split('$').count() == 4, "{h}");
        assert!(!format!("{:?}", a.members()).contains("correct horse"));
        let salt = h.split('$').nth(2).unwrap();
        assert_eq!(sha512_crypt("correct horse", salt), h);
        // Same call, same hash (clientToken replays match); another VM or customer differs.
        let mut again = args(&[("vmId", "vm-1"), ("password", "correct horse")]);
        hash_with(&mut again, &key, 1).unwrap();
        assert_eq!(again.opt_str("passwordHash").unwrap().unwrap(), h);
        let mut other = args(&[("vmId", "vm-2"), ("password", "correct horse")]);
        hash_with(&mut other, &key, 1).unwrap();
        assert_ne!(other.opt_str("passwordHash").unwrap().unwrap(), h);
        let mut foreign = args(&[("vmId", "vm-1"), ("password", "correct horse")]);
        hash_with(&mut foreign, &key, 2).unwrap();
        assert_ne!(foreign.opt_str("passwordHash").unwrap().unwrap(), h);
    }

    #[test]
    fn weak_passwords_are_refused_without_echoing_them() {
        for (pw, user) in [
            ("hunter2", "root"),
            ("aaaaaaaaaaaa", "root"),
            ("Password", "root"),
            ("myrootpw!", "root"),
            ("admin-1234", "admin"),
        ] {
            let mut a = args(&[("vmId", "vm-1"), ("user", user), ("password", pw)]);
            let e = hash_with(&mut a, &[0; 32], 1).unwrap_err();
            assert_eq!(e.kind, ErrorType::ParameterError, "{pw}");
            assert!(!e.message.contains(pw), "{}", e.message);
        }
        let mut both = args(&[("password", "x"), ("passwordHash", "$6$a$b")]);
        assert!(hash_with(&mut both, &[0; 32], 1).is_err());
    }
}
