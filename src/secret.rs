//! The appliance secret: 32 random bytes in `<data_dir>/api-secret` (mode 0600), made on first
//! start. Values that must be reproducible but unguessable are derived from it with HMAC
//! instead of being stored: the salts of plaintext `setPassword` passwords, and the CHAP
//! secrets of iSCSI targets (tgtd forgets them on restart; nhn derives them again). Removing
//! the file rotates every derived value at the next start.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::sign::hmac_sha256;

/// The appliance secret of `data_dir`, created on first use.
pub fn load_or_create(data_dir: &Path) -> std::io::Result<[u8; 32]> {
    let path = data_dir.join("api-secret");
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut f) => {
            let mut key = [0u8; 32];
            rand::fill(&mut key);
            f.write_all(&key)?;
            f.sync_all()?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mut key = [0u8; 32];
            let mut f = std::fs::File::open(&path)?;
            f.read_exact(&mut key).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "{} is not a 32-byte secret ({e}); remove it and restart to make a new one",
                        path.display()
                    ),
                )
            })?;
            Ok(key)
        }
        Err(e) => Err(e),
    }
}

/// A value derived for one purpose (`label`) and one subject: HMAC-SHA256(secret, label \0 input).
pub fn derive(secret: &[u8; 32], label: &str, input: &str) -> [u8; 32] {
    let message = format!("{label}\0{input}");
    hmac_sha256(secret, message.as_bytes())
}

/// `n` characters of `alphabet` (at most 256 entries) from derived bytes.
pub fn text(bytes: &[u8; 32], alphabet: &[u8], n: usize) -> String {
    bytes
        .iter()
        .take(n)
        .map(|b| alphabet[usize::from(*b) % alphabet.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_created_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        let b = load_or_create(dir.path()).unwrap();
        assert_eq!(a, b);
        let mode = std::fs::metadata(dir.path().join("api-secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(dir.path().join("api-secret"), b"short").unwrap();
        let e = load_or_create(dir.path()).unwrap_err();
        assert!(e.to_string().contains("remove it"), "{e}");
    }

    #[test]
    fn derivations_differ_by_label_and_input() {
        let k = [3u8; 32];
        assert_eq!(derive(&k, "chap", "a"), derive(&k, "chap", "a"));
        assert_ne!(derive(&k, "chap", "a"), derive(&k, "chap", "b"));
        assert_ne!(derive(&k, "chap", "a"), derive(&k, "salt", "a"));
        assert_eq!(text(&derive(&k, "x", "y"), b"ab", 16).len(), 16);
    }
}
