//! Initialization methods (HAAS-API.md §2.4): settings applied *offline* to the VM's DISK1 by a
//! "configure" boot of our initrd (DESIGN.md §4), so the VM must be stopped and idle, and its
//! DISK1 must hold an image of a family whose layout configure mode writes (Red Hat or Debian). Every call validates its arguments here, moves
//! the VM to `configuring` and queues an async request carrying the arguments for the facility.

use crate::images::Layout;
use crate::inventory::images::Images;
use crate::inventory::vms::Vms;
use base64::Engine;

use super::args::{Args, Struct};
use super::fault::{ApiError, ErrorType, fail};
use super::network::{check_nic_device, parse_ip};
use super::vm::{Vm, ensure_off, ensure_state, find_vm, installed_image, start_async};
use super::{Ctx, Outcome};
use crate::inventory::Tx;
use crate::model::VmState;
use crate::net::Ipv4Net;

/// Largest `writeFile` content.
pub const MAX_FILE_BYTES: usize = 64 * 1024;

/// Common checks, then `configuring`.
fn configure(conn: &Tx<'_>, ctx: &Ctx, vm: &Vm, method: &str) -> Result<Outcome, ApiError> {
    ensure_off(vm, method)?;
    ensure_state(vm, VmState::Stopped, method)?;
    let image = installed_image(conn, vm, "attachVolume one and restoreImage first")?;
    match conn.init_support(image)? {
        Some((true, os, _)) if Layout::for_os(&os).is_some() => {
            start_async(conn, ctx, vm, VmState::Configuring, Struct::new())
        }
        Some((_, os, id)) => fail(
            ErrorType::InvalidStatus,
            format!(
                "image {id} ({os}) on DISK1 of VM {} does not support {method} (the Init* methods know the Red Hat and Debian families)",
                vm.public_id
            ),
        ),
        None => fail(
            ErrorType::InvalidStatus,
            format!("VM {}: the image on DISK1 is gone", vm.public_id),
        ),
    }
}

fn bad<T>(msg: String) -> Result<T, ApiError> {
    fail(ErrorType::ParameterError, msg)
}

fn check_user(name: &str, what: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !ok {
        return bad(format!("{what} {name:?} is not a valid user or group name"));
    }
    Ok(())
}

fn check_hostname(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !ok {
        return bad(format!("{name:?} is not a valid host or domain name"));
    }
    Ok(())
}

/// The network of the VM's NIC at `device`: `(kind, subnet)`; ParameterError if none.
fn nic_network(conn: &Tx<'_>, vm: &Vm, device: &str) -> Result<(String, Option<String>), ApiError> {
    conn.nic_network(vm.id, device)?.ok_or_else(|| {
        ApiError::new(
            ErrorType::ParameterError,
            format!(
                "no network is attached to {device} of VM {}; attachNetwork first",
                vm.public_id
            ),
        )
    })
}

pub fn set_ip_address(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let vm = find_vm(conn, ctx, args.str("vmId")?)?;
    let device = args.str("device")?;
    check_nic_device(device)?;
    let ip = parse_ip("ipAddress", args.str("ipAddress")?)?;
    let len = match (args.opt_int("prefixLength")?, args.opt_str("netmask")?) {
        (Some(l), None) if (1..=32).contains(&l) => l as u8,
        (Some(l), None) => return bad(format!("prefixLength {l} must be between 1 and 32")),
        (None, Some(m)) => {
            let bits = u32::from(parse_ip("netmask", m)?);
            if bits.leading_ones() + bits.trailing_zeros() != 32 || bits == 0 {
                return bad(format!("netmask {m} is not contiguous"));
            }
            bits.leading_ones() as u8
        }
        _ => {
            return fail(
                ErrorType::InvalidParams,
                "give prefixLength or netmask (one of them)",
            );
        }
    };
    if let Some(g) = args.opt_str("gateway")? {
        let gw = parse_ip("gateway", g)?;
        let mask = u32::MAX << (32 - u32::from(len));
        if u32::from(gw) & mask != u32::from(ip) & mask {
            return bad(format!("gateway {gw} is not in {ip}/{len}"));
        }
    }
    let (kind, subnet) = nic_network(conn, &vm, device)?;
    if kind != "L2EX" {
        let net: Option<Ipv4Net> = subnet.as_deref().and_then(|s| s.parse().ok());
        if !net.is_some_and(|n| n.contains(ip)) {
            return bad(format!(
                "{ip} is not in the subnet {} of the {kind} network on {device}",
                subnet.unwrap_or_default()
            ));
        }
    }
    configure(conn, ctx, &vm, "setIpAddress")
}

pub fn unset_ip_address(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let vm = find_vm(conn, ctx, args.str("vmId")?)?;
    check_nic_device(args.str("device")?)?;
    configure(conn, ctx, &vm, "unsetIpAddress")
}

pub fn set_network(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let vm = find_vm(conn, ctx, args.str("vmId")?)?;
    if let Some(h) = args.opt_str("hostname")? {
        check_hostname(h)?;
    }
    if let Some(g) = args.opt_str("defaultGateway")? {
        parse_ip("defaultGateway", g)?;
    }
    if let Some(d) = args.opt_str("gatewayDevice")? {
        check_nic_device(d)?;
    }
    let servers = args.opt_str_list("nameservers")?.unwrap_or_default();
    if servers.len() > 3 {
        return bad("at most 3 nameservers (resolv.conf's limit)".into());
    }
    for n in &servers {
        parse_ip("nameserver", n)?;
    }
    let domains = args.opt_str_list("searchDomains")?.unwrap_or_default();
    if domains.len() > 6 {
        return bad("at most 6 searchDomains".into());
    }
    for d in &domains {
        check_hostname(d)?;
    }
    configure(conn, ctx, &vm, "setNetwork")
}

pub fn set_password(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let vm = find_vm(conn, ctx, args.str("vmId")?)?;
    check_user(args.opt_str("user")?.unwrap_or("root"), "user")?;
    match (args.opt_str("passwordHash")?, args.opt_str("password")?) {
        (Some(h), None) => {
            let fields: Vec<&str> = h.split('$').collect();
            let ok = h.starts_with("$6$")
                && (fields.len() == 4 || fields.len() == 5)
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "$./=".contains(c));
            if !ok {
                return bad("passwordHash must be a SHA-512 crypt hash ($6$salt$hash, e.g. from `openssl passwd -6`)".into());
            }
        }
        _ => {
            return fail(
                ErrorType::InvalidParams,
                "give one of passwordHash (preferred) or password",
            );
        }
    }
    configure(conn, ctx, &vm, "setPassword")
}

/// An OpenSSH public key line: `<type> <base64 blob> [comment]`, the blob naming the same type.
fn check_ssh_key(line: &str) -> Result<(), ApiError> {
    const TYPES: [&str; 6] = [
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
    ];
    let mut parts = line.split_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        return bad(format!(
            "public key {:?} does not parse: expected \"<type> <base64> [comment]\"",
            short(line)
        ));
    };
    if !TYPES.contains(&kind) || line.contains('\n') {
        return bad(format!(
            "public key type {kind:?} is not supported; use ssh-ed25519, ssh-rsa or ecdsa"
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .map_err(|_| {
            ApiError::new(
                ErrorType::ParameterError,
                format!("public key {:?}: the key data is not base64", short(line)),
            )
        })?;
    let named = bytes
        .get(..4)
        .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
        .and_then(|n| bytes.get(4..4 + n));
    if named != Some(kind.as_bytes()) {
        return bad(format!(
            "public key {:?}: the key data is not a {kind} key",
            short(line)
        ));
    }
    Ok(())
}

fn short(s: &str) -> &str {
    s.get(..40).unwrap_or(s)
}

pub fn set_ssh_key(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let vm = find_vm(conn, ctx, args.str("vmId")?)?;
    check_user(args.opt_str("user")?.unwrap_or("root"), "user")?;
    args.opt_bool("append")?;
    let keys = args
        .opt_str_list("publicKeys")?
        .ok_or_else(|| ApiError::new(ErrorType::InvalidParams, "missing member \"publicKeys\""))?;
    if keys.is_empty() || keys.len() > 32 {
        return bad("publicKeys must hold 1 to 32 keys".into());
    }
    for k in &keys {
        check_ssh_key(k)?;
    }
    configure(conn, ctx, &vm, "setSshKey")
}

/// iptables-save format: `*table`, `:CHAIN POLICY [p:b]`, `-A ...`, `COMMIT`, comments.
fn check_iptables(name: &str, rules: &str) -> Result<(), ApiError> {
    let mut in_table = false;
    let mut tables = 0;
    for (n, line) in rules.lines().enumerate() {
        let line = line.trim();
        let ok = if line.is_empty() || line.starts_with('#') {
            true
        } else if let Some(t) = line.strip_prefix('*') {
            let ok = !in_table && ["filter", "nat", "mangle", "raw", "security"].contains(&t);
            in_table = true;
            tables += 1;
            ok
        } else if line == "COMMIT" {
            let ok = in_table;
            in_table = false;
            ok
        } else {
            in_table
                && (line.starts_with(':')
                    || line.starts_with("-A ")
                    || line.starts_with("-I ")
                    || line.starts_with("-N "))
        };
        if !ok {
            return bad(format!(
                "{name} line {}: {:?} is not iptables-save format",
                n + 1,
                short(line)
            ));
        }
    }
    if in_table || tables == 0 {
        return bad(format!(
            "{name}: expected at least one *table section ending in COMMIT"
        ));
    }
    Ok(())
}

pub fn set_iptables(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let vm = find_vm(conn, ctx, args.str("vmId")?)?;
    check_iptables("rules", args.str("rules")?)?;
    if let Some(r6) = args.opt_str("ip6Rules")? {
        check_iptables("ip6Rules", r6)?;
    }
    configure(conn, ctx, &vm, "setIptables")
}

pub fn set_sshd_config(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let vm = find_vm(conn, ctx, args.str("vmId")?)?;
    let root = args.opt_str("permitRootLogin")?;
    let password = args.opt_bool("passwordAuthentication")?;
    let port = args.opt_int("port")?;
    if let Some(r) = root
        && !["yes", "no", "without-password"].contains(&r)
    {
        return bad(format!(
            "permitRootLogin {r:?}: use yes, no or without-password"
        ));
    }
    if let Some(p) = port
        && !(1..=65535).contains(&p)
    {
        return bad(format!("port {p} must be between 1 and 65535"));
    }
    if root.is_none() && password.is_none() && port.is_none() {
        return bad("give at least one of permitRootLogin, passwordAuthentication, port".into());
    }
    configure(conn, ctx, &vm, "setSshdConfig")
}

pub fn write_file(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let vm = find_vm(conn, ctx, args.str("vmId")?)?;
    let path = args.str("path")?;
    let content = args.base64("content")?;
    if !ctx.config.write_file_paths.iter().any(|p| p == path) {
        return bad(format!(
            "PathNotAllowed: {path:?} is not on the operator's whitelist ({})",
            ctx.config.write_file_paths.join(", ")
        ));
    }
    if content.len() > MAX_FILE_BYTES {
        return bad(format!(
            "content is {} bytes; the limit is 64 KiB",
            content.len()
        ));
    }
    if let Some(m) = args.opt_int("mode")?
        && !(0..=0o7777).contains(&m)
    {
        return bad(format!(
            "mode {m} is not a file mode (0 to 4095, e.g. 420 = 0644)"
        ));
    }
    if let Some(o) = args.opt_str("owner")? {
        check_user(o, "owner")?;
    }
    if let Some(g) = args.opt_str("group")? {
        check_user(g, "group")?;
    }
    configure(conn, ctx, &vm, "writeFile")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_keys_must_carry_their_own_type() {
        let ed = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@host";
        assert!(check_ssh_key(ed).is_ok());
        assert!(check_ssh_key(&ed.replacen("ssh-ed25519", "ssh-rsa", 1)).is_err());
        assert!(check_ssh_key("ssh-ed25519 !!!").is_err());
        assert!(check_ssh_key("hello").is_err());
    }

    #[test]
    fn iptables_save_format_is_checked() {
        let ok = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n";
        assert!(check_iptables("rules", ok).is_ok());
        assert!(check_iptables("rules", "-A INPUT -j DROP\n").is_err());
        assert!(check_iptables("rules", "*filter\n-A INPUT -j DROP\n").is_err());
        assert!(check_iptables("rules", "rm -rf /\n").is_err());
    }
}
