//! The tgt driver: Linux SCSI target framework's `tgtd`, configured with `tgtadm`. Each volume
//! is one target with LUN 1 on the backing file and an initiator-name ACL (`-Q`), so only the
//! machine the volume belongs to can log in; with `[storage] chap` also a CHAP account bound to
//! the target. tgtadm takes the CHAP secret as an argument (it has no other way): it is visible
//! to root on the appliance for the instant tgtadm runs, and nowhere else.

use std::path::PathBuf;
use std::process::Command;

use super::{Error, Result, TargetDriver, TargetSpec};

/// tgtd reached through `tgtadm`, on its default control socket or a given control port.
#[derive(Debug, Clone, Default)]
pub struct Tgt {
    pub control_port: Option<u16>,
}

impl Tgt {
    fn tgtadm(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new("tgtadm");
        if let Some(p) = self.control_port {
            cmd.arg("-C").arg(p.to_string());
        }
        cmd.args(["--lld", "iscsi"]).args(args);
        let out = cmd.output().map_err(|source| Error::Spawn {
            tool: "tgtadm".into(),
            source,
        })?;
        if !out.status.success() {
            return Err(Error::Command {
                tool: format!("tgtadm {}", args.join(" ")),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Target ids by IQN, from `tgtadm --op show`.
    fn tids(&self) -> Result<Vec<(u32, TargetSpec)>> {
        Ok(parse_show(
            &self.tgtadm(&["--op", "show", "--mode", "target"])?,
        ))
    }
}

/// Parses `tgtadm --op show --mode target`: targets, their LUN ≥ 1 and name ACLs.
pub fn parse_show(text: &str) -> Vec<(u32, TargetSpec)> {
    let mut out: Vec<(u32, TargetSpec)> = Vec::new();
    #[derive(PartialEq)]
    enum Section {
        Acl,
        Account,
        Other,
    }
    let mut lun: Option<u32> = None;
    let mut section = Section::Other;
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = line.strip_prefix("Target ") {
            if let Some((tid, iqn)) = rest.split_once(": ")
                && let Ok(tid) = tid.parse()
            {
                out.push((
                    tid,
                    TargetSpec {
                        iqn: iqn.trim().to_owned(),
                        lun: 0,
                        backing: PathBuf::new(),
                        initiators: Vec::new(),
                        chap: None,
                    },
                ));
            }
            section = Section::Other;
            continue;
        }
        let Some((_, spec)) = out.last_mut() else {
            continue;
        };
        if let Some(n) = t.strip_prefix("LUN: ") {
            lun = n.parse().ok();
        } else if let Some(path) = t.strip_prefix("Backing store path: ") {
            if let Some(n) = lun.filter(|n| *n > 0 && path != "None") {
                spec.lun = n;
                spec.backing = PathBuf::from(path);
            }
        } else if t == "ACL information:" {
            section = Section::Acl;
        } else if t == "Account information:" {
            section = Section::Account;
        } else if t.ends_with("information:") {
            section = Section::Other;
        } else if !t.is_empty() && section == Section::Acl {
            spec.initiators.push(t.to_owned());
        } else if !t.is_empty() && section == Section::Account {
            // Outgoing accounts are listed with " (outgoing)"; ours are incoming only.
            if !t.ends_with("(outgoing)") {
                spec.chap = Some(super::Chap {
                    user: t.to_owned(),
                    secret: String::new(),
                });
            }
        }
    }
    for (_, s) in &mut out {
        s.initiators.sort();
    }
    out
}

impl TargetDriver for Tgt {
    fn list(&self) -> Result<Vec<TargetSpec>> {
        Ok(self.tids()?.into_iter().map(|(_, s)| s).collect())
    }

    fn create(&self, spec: &TargetSpec) -> Result<()> {
        let tid = self.tids()?.iter().map(|(t, _)| *t).max().unwrap_or(0) + 1;
        let tid = tid.to_string();
        self.tgtadm(&[
            "--op", "new", "--mode", "target", "--tid", &tid, "-T", &spec.iqn,
        ])?;
        let backing = spec.backing.to_string_lossy();
        let lun = spec.lun.to_string();
        let configured = self
            .tgtadm(&[
                "--op",
                "new",
                "--mode",
                "logicalunit",
                "--tid",
                &tid,
                "--lun",
                &lun,
                "-b",
                &backing,
            ])
            .and_then(|_| {
                let mut initiators = spec.initiators.clone();
                initiators.sort();
                for i in &initiators {
                    self.tgtadm(&["--op", "bind", "--mode", "target", "--tid", &tid, "-Q", i])?;
                }
                if let Some(chap) = &spec.chap {
                    // A stale account of the same name (an older secret) goes first.
                    let _ =
                        self.tgtadm(&["--op", "delete", "--mode", "account", "--user", &chap.user]);
                    self.tgtadm(&[
                        "--op",
                        "new",
                        "--mode",
                        "account",
                        "--user",
                        &chap.user,
                        "--password",
                        &chap.secret,
                    ])?;
                    self.tgtadm(&[
                        "--op", "bind", "--mode", "account", "--tid", &tid, "--user", &chap.user,
                    ])?;
                }
                Ok(())
            });
        if configured.is_err() {
            // Half a target is worse than none: the next reconciliation starts clean.
            let _ = self.tgtadm(&[
                "--op", "delete", "--mode", "target", "--tid", &tid, "--force",
            ]);
        }
        configured
    }

    fn remove(&self, iqn: &str) -> Result<()> {
        for (tid, s) in self.tids()? {
            if s.iqn == iqn {
                self.tgtadm(&[
                    "--op",
                    "delete",
                    "--mode",
                    "target",
                    "--tid",
                    &tid.to_string(),
                    "--force",
                ])?;
                if let Some(chap) = s.chap {
                    self.tgtadm(&["--op", "delete", "--mode", "account", "--user", &chap.user])?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_output_parses_into_specs() {
        let text = "Target 1: iqn.2026-11.x:vol-1\n    System information:\n        Driver: iscsi\n    LUN information:\n        LUN: 0\n            Backing store path: None\n        LUN: 1\n            Type: disk\n            Backing store path: /tmp/tg.img\n    Account information:\n        nhn-0123456789ab\n    ACL information:\n        iqn.2026-11.x:initiator:b\n        iqn.2026-11.x:initiator:a\nTarget 3: iqn.2026-11.x:vol-2\n    LUN information:\n        LUN: 0\n            Backing store path: None\n    ACL information:\n";
        let got = parse_show(text);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, 1);
        assert_eq!(got[0].1.backing, PathBuf::from("/tmp/tg.img"));
        assert_eq!(got[0].1.lun, 1);
        assert_eq!(
            got[0].1.initiators,
            vec!["iqn.2026-11.x:initiator:a", "iqn.2026-11.x:initiator:b"]
        );
        assert_eq!(
            got[0].1.chap.as_ref().map(|c| c.user.as_str()),
            Some("nhn-0123456789ab")
        );
        assert_eq!(got[1].0, 3);
        assert!(got[1].1.chap.is_none());
        assert_eq!(got[1].1.lun, 0);
        assert!(got[1].1.initiators.is_empty());
    }
}
