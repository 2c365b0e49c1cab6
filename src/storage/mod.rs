//! Storage: volumes are sparse files in the data dir, exported as iSCSI targets (one target
//! per volume, LUN 1, an ACL naming the one initiator allowed to log in).
//!
//! The target daemon forgets its configuration when it restarts, so the appliance does not
//! "configure" it once: [`reconcile`] compares what the inventory says ([`desired`]) with what
//! the daemon reports and creates, fixes or removes targets until they match — at start-up and
//! after every volume change. The daemon is driven through [`TargetDriver`]; [`tgt::Tgt`]
//! speaks to tgtd with `tgtadm`, and LIO (configfs) can follow behind the same trait.

pub mod tgt;
pub mod volumes;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::inventory::Tx;
use crate::inventory::volumes::{Export, Volumes};
use tokio::sync::watch;

use crate::inventory::{self, Inventory};
use crate::model::EventKind;

/// One exported volume, as the inventory wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    pub iqn: String,
    pub lun: u32,
    pub backing: PathBuf,
    /// Initiator names allowed to log in (empty: nobody).
    pub initiators: Vec<String>,
    /// The CHAP account an initiator must also present (`[storage] chap`).
    pub chap: Option<Chap>,
}

/// A target's CHAP account. Targets are compared by user only (a daemon never shows the
/// secret back), and the secret never appears in `Debug` output or logs.
#[derive(Clone, Eq)]
pub struct Chap {
    pub user: String,
    pub secret: String,
}

impl PartialEq for Chap {
    fn eq(&self, other: &Self) -> bool {
        self.user == other.user
    }
}

impl std::fmt::Debug for Chap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Chap {{ user: {:?}, secret: <redacted> }}", self.user)
    }
}

/// CHAP secrets use letters and digits only (safe in tgtadm arguments and the boot bundle).
const CHAP_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

/// The CHAP account of target `iqn`, derived from the appliance secret: the same after every
/// restart (tgtd forgets accounts), different per target, never stored. 16 characters, the
/// longest every initiator accepts.
/// RFC 4173 root-path for a portal, LUN and target (what DHCP and iPXE hand a machine).
pub fn root_path(portal: std::net::Ipv4Addr, port: u16, lun: u32, target: &str) -> String {
    format!("iscsi:{portal}::{port}:{lun}:{target}")
}

pub fn chap_for(secret: &[u8; 32], iqn: &str) -> Chap {
    let user = crate::secret::derive(secret, "chap user", iqn);
    let hex: String = user[..6].iter().map(|b| format!("{b:02x}")).collect();
    Chap {
        user: format!("nhn-{hex}"),
        secret: crate::secret::text(
            &crate::secret::derive(secret, "chap secret", iqn),
            CHAP_ALPHABET,
            16,
        ),
    }
}

/// The initiator name of a machine (or VM) whose inventory record names none: the one rule
/// that DHCP option 203, the iPXE command line and the target's ACL must agree on.
pub fn default_initiator(iqn_prefix: &str, owner: &str) -> String {
    format!("{iqn_prefix}:initiator:{}", owner.to_ascii_lowercase())
}

/// Errors of a target driver, with what the operator should check.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{tool} failed ({status}): {stderr}; is the iSCSI target daemon running (see [storage] in the config)?"
    )]
    Command {
        tool: String,
        status: String,
        stderr: String,
    },
    #[error("cannot run {tool}: {source} (install the tgt package)")]
    Spawn {
        tool: String,
        source: std::io::Error,
    },
    #[error("cannot prepare the backing file {path}: {source}")]
    Backing {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Inventory(#[from] inventory::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What an iSCSI target daemon can do for us.
pub trait TargetDriver: Send + Sync {
    /// The targets the daemon exports now.
    fn list(&self) -> Result<Vec<TargetSpec>>;
    fn create(&self, spec: &TargetSpec) -> Result<()>;
    fn remove(&self, iqn: &str) -> Result<()>;
}

/// What the inventory wants exported: every volume on a portal, with the initiator of the
/// machine (or VM host) it belongs to, and a CHAP account when `chap` holds the appliance
/// secret. Relative backing paths are under `data_dir`.
pub fn desired(
    tx: &Tx<'_>,
    data_dir: &Path,
    chap: Option<&[u8; 32]>,
) -> inventory::Result<Vec<(TargetSpec, u64)>> {
    let mut out = Vec::new();
    for Export {
        iqn,
        lun,
        backing,
        size_gb,
        iqn_prefix: prefix,
        initiator,
        owner,
    } in tx.exports()?
    {
        let initiators = match (initiator, owner) {
            (Some(i), _) if !i.is_empty() => vec![i],
            (_, Some(owner)) => vec![default_initiator(&prefix, &owner)],
            _ => Vec::new(),
        };
        let backing = PathBuf::from(backing);
        let backing = if backing.is_absolute() {
            backing
        } else {
            data_dir.join(backing)
        };
        out.push((
            TargetSpec {
                chap: chap.map(|k| chap_for(k, &iqn)),
                iqn,
                lun,
                backing,
                initiators,
            },
            u64::from(size_gb),
        ));
    }
    Ok(out)
}

/// Creates a missing backing file as a sparse file of `size_gb` GiB (existing data is kept).
pub fn ensure_backing(path: &Path, size_gb: u64) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    let err = |source| Error::Backing {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(err)?;
    f.set_len(size_gb << 30).map_err(err)
}

/// What one reconciliation did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub created: Vec<String>,
    pub removed: Vec<String>,
}

/// Makes the daemon export exactly `want` among the targets whose IQN starts with one of
/// `ours` (targets of other owners are left alone).
pub fn reconcile(
    driver: &dyn TargetDriver,
    want: &[(TargetSpec, u64)],
    ours: &[String],
) -> Result<Reconciled> {
    let have = driver.list()?;
    let mut done = Reconciled::default();
    for h in &have {
        let mine = ours.iter().any(|p| h.iqn.starts_with(p.as_str()));
        let wanted = want.iter().find(|(w, _)| w.iqn == h.iqn);
        if mine && wanted.is_none_or(|(w, _)| w != h) {
            driver.remove(&h.iqn)?;
            done.removed.push(h.iqn.clone());
        }
    }
    for (w, size_gb) in want {
        if have.iter().any(|h| h == w) {
            continue;
        }
        ensure_backing(&w.backing, *size_gb)?;
        driver.create(w)?;
        done.created.push(w.iqn.clone());
    }
    Ok(done)
}

/// Keeps the target daemon in step with the inventory: at start, after volume changes, and
/// every minute (tgtd forgets everything when it restarts).
pub async fn follow(
    driver: Arc<dyn TargetDriver>,
    inventory: Inventory,
    data_dir: PathBuf,
    chap: Option<[u8; 32]>,
    mut stop: watch::Receiver<bool>,
) {
    let mut events = inventory.subscribe();
    loop {
        let dir = data_dir.clone();
        let want = inventory
            .read(move |c| {
                let want = desired(c, &dir, chap.as_ref())?;
                let ours = c.portals()?;
                Ok((
                    want,
                    ours.into_iter()
                        .map(|p| format!("{}:", p.iqn_prefix))
                        .collect::<Vec<_>>(),
                ))
            })
            .await;
        match want {
            Ok((want, ours)) => {
                let d = driver.clone();
                let result =
                    tokio::task::spawn_blocking(move || reconcile(d.as_ref(), &want, &ours)).await;
                match result {
                    Ok(Ok(done)) if done != Reconciled::default() => {
                        tracing::info!(created = ?done.created, removed = ?done.removed, "iSCSI targets reconciled")
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        metrics::counter!("nhn_storage_errors_total").increment(1);
                        tracing::error!(error = %e, "cannot reconcile iSCSI targets; retrying")
                    }
                    Err(e) => tracing::error!(error = %e, "iSCSI reconciliation panicked"),
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read volumes"),
        }
        let deadline = tokio::time::sleep(Duration::from_secs(60));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = &mut deadline => break,
                ev = events.recv() => match ev {
                    Ok(e) if matches!(e.kind, EventKind::Volume | EventKind::Machine | EventKind::IscsiPortal | EventKind::Vm) => break,
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
            }
        }
        // A burst of changes (an import) settles into one pass.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// An in-memory daemon, for the reconciliation logic only (tgt itself is tested for real).
    #[derive(Default)]
    struct Fake(Mutex<Vec<TargetSpec>>);

    impl TargetDriver for Fake {
        fn list(&self) -> Result<Vec<TargetSpec>> {
            Ok(self.0.lock().unwrap().clone())
        }
        fn create(&self, spec: &TargetSpec) -> Result<()> {
            self.0.lock().unwrap().push(spec.clone());
            Ok(())
        }
        fn remove(&self, iqn: &str) -> Result<()> {
            self.0.lock().unwrap().retain(|t| t.iqn != iqn);
            Ok(())
        }
    }

    fn spec(iqn: &str, backing: &Path, who: &str) -> (TargetSpec, u64) {
        (
            TargetSpec {
                iqn: iqn.into(),
                lun: 1,
                backing: backing.to_owned(),
                initiators: vec![who.into()],
                chap: None,
            },
            1,
        )
    }

    #[test]
    fn chap_accounts_are_stable_per_target_and_secrets_stay_out_of_debug() {
        let key = [5u8; 32];
        let a = chap_for(&key, "iqn.nhn:vol-a");
        assert_eq!(a.secret, chap_for(&key, "iqn.nhn:vol-a").secret);
        let b = chap_for(&key, "iqn.nhn:vol-b");
        assert_ne!(
            (a.user.as_str(), a.secret.as_str()),
            (b.user.as_str(), b.secret.as_str())
        );
        assert_eq!(a.secret.len(), 16);
        assert!(
            a.user.starts_with("nhn-") && a.user.len() == 16,
            "{}",
            a.user
        );
        assert!(a.secret.chars().all(|c| c.is_ascii_alphanumeric()));
        assert!(!format!("{a:?}").contains(&a.secret));
        assert_ne!(a.secret, chap_for(&[6u8; 32], "iqn.nhn:vol-a").secret);
    }

    #[test]
    fn reconcile_creates_fixes_and_removes_only_its_own_targets() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.img"), dir.path().join("b.img"));
        let fake = Fake::default();
        fake.0.lock().unwrap().push(spec("iqn.other:x", &a, "i").0);
        fake.0
            .lock()
            .unwrap()
            .push(spec("iqn.nhn:stale", &a, "i").0);
        fake.0
            .lock()
            .unwrap()
            .push(spec("iqn.nhn:b", &b, "old-initiator").0);
        let want = vec![spec("iqn.nhn:a", &a, "i1"), spec("iqn.nhn:b", &b, "i2")];
        let done = reconcile(&fake, &want, &["iqn.nhn:".into()]).unwrap();
        assert_eq!(done.removed, vec!["iqn.nhn:stale", "iqn.nhn:b"]);
        assert_eq!(done.created, vec!["iqn.nhn:a", "iqn.nhn:b"]);
        let now = fake.list().unwrap();
        assert!(
            now.iter().any(|t| t.iqn == "iqn.other:x"),
            "a foreign target was touched"
        );
        assert_eq!(
            reconcile(&fake, &want, &["iqn.nhn:".into()]).unwrap(),
            Reconciled::default()
        );
        // A CHAP account added (or changed) is a different target: re-created.
        let key = [9u8; 32];
        let mut with_chap = want.clone();
        with_chap[0].0.chap = Some(chap_for(&key, "iqn.nhn:a"));
        let done = reconcile(&fake, &with_chap, &["iqn.nhn:".into()]).unwrap();
        assert_eq!(
            (done.removed, done.created),
            (vec!["iqn.nhn:a".to_owned()], vec!["iqn.nhn:a".to_owned()])
        );
        // Backing files are sparse: 1 GiB long, next to nothing on disk.
        let meta = std::fs::metadata(&a).unwrap();
        assert_eq!(meta.len(), 1 << 30);
        assert!(std::os::unix::fs::MetadataExt::blocks(&meta) < 64);
    }
}
