//! VM NICs on the hypervisor's Open vSwitch bridge (TESTBED.md §4): a persistent tap made with
//! `ip tuntap`, brought up, and added to the bridge as an access port **with its VLAN tag and
//! bandwidth cap in the same ovs-vsctl transaction**, so that the port is never untagged, not
//! even for a moment (OpenNebula #1177). The interface type stays empty: OVS reads the tap with
//! a packet socket and QEMU owns its file descriptor.

use std::process::Command;

#[derive(Debug, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct Error {
    what: String,
    reason: String,
}

fn run(program: &str, args: &[&str], what: &str) -> Result<(), Error> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| Error {
            what: what.to_owned(),
            reason: format!("cannot run {program}: {e}"),
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error {
        what: what.to_owned(),
        reason: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// The tap name of a VM's NIC: at most 15 characters (IFNAMSIZ), unique per VM and device.
pub fn tap_name(vm: &str, device: &str) -> String {
    let id: String = vm
        .trim_start_matches("vm-")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(9)
        .collect();
    let n: String = device.chars().filter(char::is_ascii_digit).collect();
    format!("nt{id}n{n}")
}

/// Creates the tap (if needed) and plugs it into `bridge` on `vlan` (no VLAN: a port of its
/// own that forwards nothing, `tag=4095`), capped at `mbps`.
pub fn plug(bridge: &str, tap: &str, vlan: Option<u16>, mbps: u32, vm: &str) -> Result<(), Error> {
    let what = format!("plug {tap} into {bridge}");
    if !std::path::Path::new("/sys/class/net").join(tap).exists() {
        run("ip", &["tuntap", "add", tap, "mode", "tap"], &what)?;
    }
    run("ip", &["link", "set", tap, "up"], &what)?;
    let tag = format!("tag={}", vlan.unwrap_or(4095));
    let rate = format!("ingress_policing_rate={}", u64::from(mbps) * 1000);
    let burst = format!("ingress_policing_burst={}", u64::from(mbps) * 100);
    let owner = format!("external_ids:nhn-vm={vm}");
    run(
        "ovs-vsctl",
        &[
            "--may-exist",
            "add-port",
            bridge,
            tap,
            &tag,
            "--",
            "set",
            "port",
            tap,
            &tag,
            "--",
            "set",
            "interface",
            tap,
            &rate,
            &burst,
            &owner,
        ],
        &what,
    )
}

/// Removes the tap from the bridge and deletes it (missing ones are fine).
pub fn unplug(bridge: &str, tap: &str) -> Result<(), Error> {
    let what = format!("unplug {tap} from {bridge}");
    run(
        "ovs-vsctl",
        &["--if-exists", "del-port", bridge, tap],
        &what,
    )?;
    if std::path::Path::new("/sys/class/net").join(tap).exists() {
        run("ip", &["link", "del", tap], &what)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_names_fit_ifnamsiz_and_differ_per_nic() {
        let a = tap_name("vm-0123456789abcdef", "NET1");
        let b = tap_name("vm-0123456789abcdef", "NET2");
        assert!(a.len() <= 15, "{a}");
        assert_ne!(a, b);
        assert_eq!(a, "nt012345678n1");
    }
}
