//! Install boots (restoreImage), carried out inside the VM: the VM boots its image's kernel
//! with nhn's initrd in install mode, DISK1 attached as usual and the image archive as a
//! read-only virtio disk ([`super::vm::Media::payload`]). The initrd makes the filesystem,
//! streams the archive while checking its SHA-256, unpacks it, writes fstab, reports on its
//! second serial port (`report.log`) and powers off. Nothing of the customer's disk is ever
//! mounted on the hypervisor.
//!
//! The report channel carries one line per event, written only by nhn's initrd (the image's
//! own code never runs during an install):
//! - `NHN-REPORT progress <done> <total>`: archive bytes read so far;
//! - `NHN-REPORT ok uuid=<uuid> sha256=<hex> bytes=<n>`: installed;
//! - `NHN-REPORT failed <step>: <reason>`: nothing usable is on DISK1.

use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use super::qmp::Qmp;
use super::vm::Vm;

/// The longest an install boot may run (the appliance gives restoreImage 60 minutes).
pub const LIMIT: Duration = Duration::from_secs(55 * 60);

/// How often the run is looked at.
const POLL: Duration = Duration::from_millis(500);

const PREFIX: &str = "NHN-REPORT ";

/// How an install boot ended, as its report says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Installed {
        uuid: String,
        sha256: String,
        bytes: u64,
    },
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
                let field = |name: &str| {
                    args.split_whitespace()
                        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
                        .unwrap_or_default()
                        .to_owned()
                };
                report.verdict = Some(Verdict::Installed {
                    uuid: field("uuid"),
                    sha256: field("sha256"),
                    bytes: field("bytes").parse().unwrap_or(0),
                });
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

/// Watches an install boot until the guest powers off, QEMU exits, or [`LIMIT`] passes;
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
    fn reports_are_read_line_by_line_and_the_first_verdict_counts() {
        let text = "noise\nNHN-REPORT progress 10 100\r\nNHN-REPORT progress 60 100\n\
                    NHN-REPORT ok uuid=1b4e28ba-2fa1-11d2-883f-0016d3cca427 sha256=ab bytes=100\n\
                    NHN-REPORT failed late: ignored\n";
        let r = parse(text);
        assert_eq!(r.progress, Some((60, 100)));
        assert_eq!(
            r.verdict,
            Some(Verdict::Installed {
                uuid: "1b4e28ba-2fa1-11d2-883f-0016d3cca427".into(),
                sha256: "ab".into(),
                bytes: 100
            })
        );
        let r = parse("NHN-REPORT failed verify: sha256 mismatch\x1b[0m\n");
        assert_eq!(
            r.verdict,
            Some(Verdict::Failed("verify: sha256 mismatch[0m".into()))
        );
        assert_eq!(parse("NHN-REPORT progress x y\n"), Report::default());
    }
}
