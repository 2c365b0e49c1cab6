//! API keys from the command line: the secret is printed once and exists nowhere else —
//! not in the database (nor its WAL), not in any log.

mod support;

use sha2::{Digest, Sha256};
use support::cli::{Nhn, examples};

fn field<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(name))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name:?} in:\n{out}"))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn key_secret_is_shown_once_and_never_stored_or_logged() {
    let nhn = Nhn::new();
    nhn.ok(&[
        "inventory",
        "import",
        examples().join("seed-site.toml").to_str().unwrap(),
    ]);
    let out = nhn
        .command(&["key", "create", "--customer", "acme", "--scope", "operate"])
        .env("NHN_LOG", "trace")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let id = field(&stdout, "key id:");
    let secret = field(&stdout, "secret:");
    assert!(id.starts_with("AK") && id.len() == 20, "{id}");
    assert!(secret.len() >= 64, "{secret}");
    assert!(
        !contains(&out.stderr, secret.as_bytes()),
        "secret in the log"
    );

    // Nowhere on disk: every file of the data dir, WAL included, before any checkpoint.
    for entry in std::fs::read_dir(nhn.dir()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !contains(&bytes, secret.as_bytes()),
            "secret stored in {}",
            path.display()
        );
    }
    // What is stored is its hash, under the printed id, with the scope asked for.
    let db = rusqlite::Connection::open(nhn.dir().join("nhn.db")).unwrap();
    let (hash, scope): (Vec<u8>, String) = db
        .query_row(
            "SELECT secret_hash, scope FROM api_keys WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(hash, Sha256::digest(secret.as_bytes()).to_vec());
    assert_eq!(scope, "operate");

    let list = nhn
        .command(&["key", "list"])
        .env("NHN_LOG", "trace")
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed.contains(id) && listed.contains("acme") && listed.contains("enabled"),
        "{listed}"
    );
    assert!(
        !contains(&list.stdout, secret.as_bytes()) && !contains(&list.stderr, secret.as_bytes())
    );
}

#[test]
fn revoked_keys_are_listed_as_revoked_and_cannot_be_revoked_twice() {
    let nhn = Nhn::new();
    nhn.ok(&[
        "inventory",
        "import",
        examples().join("seed-site.toml").to_str().unwrap(),
    ]);
    let out = nhn.ok(&["key", "create", "--customer", "globex", "--scope", "read"]);
    let id = field(&out, "key id:").to_owned();
    assert_eq!(
        nhn.ok(&["key", "revoke", &id]).trim(),
        format!("revoked {id}")
    );
    assert!(nhn.ok(&["key", "list"]).contains("revoked"));
    assert!(
        nhn.fails(&["key", "revoke", &id])
            .contains("already revoked")
    );
    assert!(
        nhn.fails(&["key", "revoke", "AKNOSUCHKEY000000000"])
            .contains("`nhn key list`")
    );
}

#[test]
fn keys_need_a_known_customer_and_respect_the_per_customer_limit() {
    let nhn = Nhn::new();
    nhn.ok(&[
        "inventory",
        "import",
        examples().join("seed-site.toml").to_str().unwrap(),
    ]);
    let err = nhn.fails(&["key", "create", "--customer", "initech", "--scope", "full"]);
    assert!(
        err.contains("customer \"initech\"") && err.contains("[[customers]]"),
        "{err}"
    );
    for _ in 0..5 {
        nhn.ok(&["key", "create", "--customer", "acme", "--scope", "full"]);
    }
    let err = nhn.fails(&["key", "create", "--customer", "acme", "--scope", "full"]);
    assert!(err.contains("already has 5 active keys"), "{err}");
    let err = nhn.fails(&["key", "create", "--customer", "acme", "--scope", "admin"]);
    assert!(err.contains("invalid value 'admin'"), "{err}");
}
