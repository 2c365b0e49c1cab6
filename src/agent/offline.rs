//! Offline boots, carried out inside the VM by nhn's initrd: **install** (restoreImage) and
//! **configure** (the Init* methods). The VM boots with DISK1 attached as usual, no NIC, and a
//! payload as a read-only virtio disk ([`super::vm::Media::payload`]): the image archive, or
//! the settings bundle ([`bundle`]). The initrd reports on its second serial port
//! (`report.log`) and powers off. Nothing of the customer's disk is ever mounted on the
//! hypervisor.
//!
//! - install: make the filesystem, stream the archive while checking its SHA-256, unpack it,
//!   write fstab with the root by UUID;
//! - configure: check the bundle, mount DISK1, apply the method's settings in the layout of
//!   the image's family (its `/etc/os-release`), or change nothing when one cannot be applied.
//!
//! The report channel carries one line per event, written only by nhn's initrd (the image's
//! own code never runs during an offline boot):
//! - `NHN-REPORT progress <done> <total>`: payload bytes read so far;
//! - `NHN-REPORT ok <key>=<value>...`: done (install: `uuid=`, `sha256=`, `bytes=`);
//! - `NHN-REPORT failed <step>: <reason>`: install: nothing usable is on DISK1; configure:
//!   DISK1 is as it was.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use super::qmp::Qmp;
use super::vm::Vm;

/// The longest an offline boot may run (the appliance gives restoreImage 60 minutes).
pub const LIMIT: Duration = Duration::from_secs(55 * 60);

/// How often the run is looked at.
const POLL: Duration = Duration::from_millis(500);

const PREFIX: &str = "NHN-REPORT ";

/// How an offline boot ended, as its report says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Done, with what the initrd reported (`uuid`, `sha256`, `bytes` for an install).
    Done(BTreeMap<String, String>),
    Failed(String),
}

/// What the report channel says so far: the latest progress and the verdict, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub progress: Option<(u64, u64)>,
    pub verdict: Option<Verdict>,
}

/// Reads the report channel's text (lines that are not reports are ignored; the first verdict
/// counts).
pub fn parse(text: &str) -> Report {
    let mut report = Report::default();
    for line in text.lines() {
        let Some(rest) = line.trim_end_matches('\r').strip_prefix(PREFIX) else {
            continue;
        };
        let (kind, args) = rest.split_once(' ').unwrap_or((rest, ""));
        match kind {
            "progress" => {
                let mut n = args.split_whitespace().map(str::parse::<u64>);
                if let (Some(Ok(done)), Some(Ok(total))) = (n.next(), n.next()) {
                    report.progress = Some((done, total));
                }
            }
            "ok" if report.verdict.is_none() => {
                let fields = args
                    .split_whitespace()
                    .filter_map(|w| w.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                report.verdict = Some(Verdict::Done(fields));
            }
            "failed" if report.verdict.is_none() => {
                let why: String = args.chars().filter(|c| !c.is_control()).take(500).collect();
                report.verdict = Some(Verdict::Failed(why));
            }
            _ => {}
        }
    }
    report
}

/// Watches an offline boot until the guest powers off, QEMU exits, or [`LIMIT`] passes;
/// `progress` sees every new progress report. Returns the report as it stands then.
pub async fn watch(vm: &Vm, mut progress: impl FnMut(u64, u64)) -> (Report, Ended) {
    let report_path = vm.dir.join("report.log");
    let deadline = Instant::now() + LIMIT;
    let mut last = None;
    loop {
        let report = read(&report_path);
        if report.progress != last
            && let Some((done, total)) = report.progress
        {
            progress(done, total);
            last = report.progress;
        }
        let ended = if !vm.alive() {
            Some(Ended::Exited)
        } else if guest_off(vm).await {
            Some(Ended::PoweredOff)
        } else if Instant::now() >= deadline {
            Some(Ended::TimedOut)
        } else {
            None
        };
        if let Some(ended) = ended {
            // The last lines may have landed after the read above.
            return (read(&report_path), ended);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    PoweredOff,
    Exited,
    TimedOut,
}

fn read(path: &Path) -> Report {
    parse(&String::from_utf8_lossy(
        &std::fs::read(path).unwrap_or_default(),
    ))
}

/// The guest powered off (`-no-shutdown` leaves QEMU in `shutdown`).
async fn guest_off(vm: &Vm) -> bool {
    match Qmp::connect(&vm.qmp_path()).await {
        Ok(mut q) => q.status().await.is_ok_and(|s| s == "shutdown"),
        Err(_) => false,
    }
}

/// The settings bundle of a configure boot: an uncompressed tar of `method` and one file per
/// argument, named as the API names it, holding the value's bytes: text as it is, numbers in
/// decimal, booleans `true`/`false`, lists one item per line, writeFile's `content` decoded.
/// The initrd reads each file as data (never as shell code), so quotes, `$()` and newlines in
/// a password or a key land byte for byte.
pub fn bundle(method: &str, settings: &serde_json::Value) -> Result<Vec<u8>, String> {
    use base64::Engine;
    use serde_json::Value as J;
    let fields = settings
        .as_object()
        .ok_or_else(|| format!("{method}: the settings are not a struct"))?;
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_path(name).map_err(|e| format!("{name}: {e}"))?;
        h.set_cksum();
        tar.append(&h, data).map_err(|e| e.to_string())
    };
    add("method", method.as_bytes())?;
    for (name, value) in fields {
        if name == "vmId" || value.is_null() {
            continue;
        }
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!("{method}: argument name {name:?} is not plain"));
        }
        let data: Vec<u8> = match (name.as_str(), value) {
            ("content", J::String(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| format!("{method}: content is not base64"))?,
            (_, J::String(s)) => s.clone().into_bytes(),
            (_, J::Bool(b)) => b.to_string().into_bytes(),
            (_, J::Number(n)) => n.to_string().into_bytes(),
            (_, J::Array(items)) => {
                let mut out = String::new();
                for item in items {
                    let J::String(s) = item else {
                        return Err(format!("{method}: {name} holds something other than text"));
                    };
                    if s.contains('\n') {
                        return Err(format!("{method}: an item of {name} holds a line break"));
                    }
                    out.push_str(s);
                    out.push('\n');
                }
                out.into_bytes()
            }
            _ => {
                return Err(format!(
                    "{method}: {name} is a {value} the bundle cannot carry"
                ));
            }
        };
        add(name, &data)?;
    }
    tar.into_inner().map_err(|e| e.to_string())
}

/// Whether the cached archive at `path` still has SHA-256 `sha256` (read again after a failed
/// install: a damaged cache must not fail every install that follows).
pub async fn intact(path: &Path, sha256: &str) -> bool {
    let path = path.to_owned();
    let want = sha256.to_owned();
    tokio::task::spawn_blocking(move || {
        use sha2::{Digest, Sha256};
        let Ok(mut f) = std::fs::File::open(&path) else {
            return false;
        };
        let mut hash = Sha256::new();
        std::io::copy(&mut f, &mut hash).is_ok() && crate::sign::hex(&hash.finalize()) == want
    })
    .await
    .unwrap_or(false)
}

/// The last `n` lines of the VM's console, for a failure without a verdict.
pub fn console_tail(vm: &Vm, n: usize) -> String {
    let text =
        String::from_utf8_lossy(&std::fs::read(vm.dir.join("console.log")).unwrap_or_default())
            .into_owned();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_carries_each_argument_as_its_bytes() {
        use base64::Engine;
        let content = base64::engine::general_purpose::STANDARD.encode(b"a'b\"$(x)\n\0");
        let settings = serde_json::json!({
            "vmId": "vm-1",
            "user": "root",
            "publicKeys": ["ssh-ed25519 AAAA me", "ssh-rsa BBBB you"],
            "append": false,
            "mode": 420,
            "content": content,
        });
        let tar = bundle("writeFile", &settings).unwrap();
        assert_eq!(tar.len() % 512, 0);
        let mut files = BTreeMap::new();
        let mut archive = tar::Archive::new(tar.as_slice());
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            files.insert(name, data);
        }
        assert_eq!(files["method"], b"writeFile");
        assert_eq!(files["user"], b"root");
        assert_eq!(
            files["publicKeys"],
            b"ssh-ed25519 AAAA me\nssh-rsa BBBB you\n"
        );
        assert_eq!(files["append"], b"false");
        assert_eq!(files["mode"], b"420");
        assert_eq!(files["content"], b"a'b\"$(x)\n\0");
        assert!(!files.contains_key("vmId"));
        assert!(bundle("x", &serde_json::json!({"../x": "y"})).is_err());
        assert!(bundle("x", &serde_json::json!({"k": ["a\nb"]})).is_err());
    }

    #[test]
    fn reports_are_read_line_by_line_and_the_first_verdict_counts() {
        let text = "noise\nNHN-REPORT progress 10 100\r\nNHN-REPORT progress 60 100\n\
                    NHN-REPORT ok uuid=1b4e28ba-2fa1-11d2-883f-0016d3cca427 sha256=ab bytes=100\n\
                    NHN-REPORT failed late: ignored\n";
        let r = parse(text);
        assert_eq!(r.progress, Some((60, 100)));
        let fields: BTreeMap<String, String> = [
            ("uuid", "1b4e28ba-2fa1-11d2-883f-0016d3cca427"),
            ("sha256", "ab"),
            ("bytes", "100"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(r.verdict, Some(Verdict::Done(fields)));
        let r = parse("NHN-REPORT failed verify: sha256 mismatch\x1b[0m\n");
        assert_eq!(
            r.verdict,
            Some(Verdict::Failed("verify: sha256 mismatch[0m".into()))
        );
        assert_eq!(parse("NHN-REPORT progress x y\n"), Report::default());
    }
}
