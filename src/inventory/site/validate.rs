//! Whole-file checks of a parsed site: names unique, references resolvable, cabling sane
//! (a port is used once), address plans without overlaps. Collects every problem instead of
//! stopping at the first, so an operator fixes a file in one pass.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use super::{At, MachineKind, NetworkRole, PortRef, PowerDriver, SiteError, SiteFile, SwitchRole};
use crate::net::Ipv4Net;
use crate::util::line_col;

struct Checker<'a> {
    text: &'a str,
    errors: Vec<SiteError>,
}

impl Checker<'_> {
    fn err<T>(&mut self, at: &At<T>, object: String, message: String) {
        let (line, _) = line_col(self.text, at.span().start);
        self.errors.push(SiteError {
            line: Some(line),
            column: None,
            object,
            message,
        });
    }

    /// Reports every name that appears twice among `items`.
    fn unique<T>(&mut self, kind: &str, items: &[At<T>], name: impl Fn(&T) -> &str) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for item in items {
            let n = name(item);
            if n.trim().is_empty() {
                self.err(item, kind.to_owned(), "name must not be empty".into());
            } else if let Some(first) = seen.insert(n, line_col(self.text, item.span().start).0) {
                self.err(
                    item,
                    format!("{kind} {n:?}"),
                    format!("duplicate name (first defined on line {first})"),
                );
            }
        }
    }
}

fn vlan_ok(v: u16) -> bool {
    (1..=4094).contains(&v)
}

/// Checks a parsed site file as a whole; `text` is its source, for line numbers.
pub fn validate(text: &str, site: &SiteFile) -> Vec<SiteError> {
    let mut c = Checker {
        text,
        errors: Vec::new(),
    };
    c.unique("iSCSI portal", &site.iscsi_portals, |p| &p.name);
    c.unique("VLAN pool", &site.vlan_pools, |p| &p.name);
    c.unique("network", &site.networks, |n| &n.name);
    c.unique("IP pool", &site.ip_pools, |p| &p.name);
    c.unique("switch", &site.switches, |s| &s.name);
    c.unique("machine", &site.machines, |m| &m.name);
    c.unique("VM type", &site.vm_types, |t| &t.name);
    c.unique("image", &site.images, |i| &i.name);
    c.unique("customer", &site.customers, |cu| &cu.name);

    check_vlans(&mut c, site);
    check_addresses(&mut c, site);
    check_switches_and_cabling(&mut c, site);
    check_machines(&mut c, site);

    for p in &site.iscsi_portals {
        if !p.iqn_prefix.starts_with("iqn.") {
            c.err(
                p,
                format!("iSCSI portal {:?}", p.name),
                format!("iqn_prefix {:?} must start with \"iqn.\"", p.iqn_prefix),
            );
        }
    }
    for t in &site.vm_types {
        if t.vcpus == 0 || t.memory_mb == 0 {
            c.err(
                t,
                format!("VM type {:?}", t.name),
                "vcpus and memory_mb must be greater than 0".into(),
            );
        }
    }
    for i in &site.images {
        if !matches!(i.architecture.as_str(), "x86_64" | "i386") {
            c.err(
                i,
                format!("image {:?}", i.name),
                format!("architecture {:?} must be x86_64 or i386", i.architecture),
            );
        }
    }
    c.errors.sort_by_key(|e| e.line);
    c.errors
}

fn check_vlans(c: &mut Checker, site: &SiteFile) {
    for p in &site.vlan_pools {
        if !vlan_ok(p.first) || !vlan_ok(p.last) || p.first > p.last {
            c.err(
                p,
                format!("VLAN pool {:?}", p.name),
                format!(
                    "range {}-{} must lie within 1-4094 with first <= last",
                    p.first, p.last
                ),
            );
        }
    }
    for (i, a) in site.vlan_pools.iter().enumerate() {
        for b in &site.vlan_pools[..i] {
            if a.first <= b.last && b.first <= a.last {
                c.err(
                    a,
                    format!("VLAN pool {:?}", a.name),
                    format!(
                        "range {}-{} overlaps VLAN pool {:?} ({}-{})",
                        a.first, a.last, b.name, b.first, b.last
                    ),
                );
            }
        }
    }
    // Fixed VLANs (infrastructure networks, the L3SH segment) must be distinct and outside pools.
    let mut fixed: HashMap<u16, String> = HashMap::new();
    let nets = site
        .networks
        .iter()
        .map(|n| (n.span(), format!("network {:?}", n.name), Some(n.vlan)));
    let pools = site
        .ip_pools
        .iter()
        .map(|p| (p.span(), format!("IP pool {:?}", p.name), p.vlan));
    for (span, object, vlan) in nets.chain(pools).collect::<Vec<_>>() {
        let Some(vlan) = vlan else { continue };
        let at = At::located(span, ());
        if !vlan_ok(vlan) {
            c.err(&at, object, format!("VLAN {vlan} is outside 1-4094"));
            continue;
        }
        if let Some(pool) = site
            .vlan_pools
            .iter()
            .find(|p| (p.first..=p.last).contains(&vlan))
        {
            c.err(
                &at,
                object.clone(),
                format!(
                    "VLAN {vlan} lies inside VLAN pool {:?}, which hands it to customers",
                    pool.name
                ),
            );
        }
        if let Some(other) = fixed.insert(vlan, object.clone()) {
            c.err(
                &at,
                object,
                format!("VLAN {vlan} is already used by {other}"),
            );
        }
    }
}

/// A gateway must lie inside its network's `net` (the network's `what`: subnet or prefix).
fn check_gateway<T>(
    c: &mut Checker,
    at: &At<T>,
    object: &str,
    gateway: Option<Ipv4Addr>,
    net: Ipv4Net,
    what: &str,
) {
    if let Some(gw) = gateway
        && !net.contains(gw)
    {
        let message = format!("gateway {gw} is outside {what} {net}");
        c.err(at, object.to_owned(), message);
    }
}

fn check_addresses(c: &mut Checker, site: &SiteFile) {
    let mut prefixes: Vec<(Ipv4Net, String)> = Vec::new();
    let mut check_overlap =
        |c: &mut Checker, span: std::ops::Range<usize>, object: String, net: Ipv4Net| {
            if let Some((_, other)) = prefixes.iter().find(|(p, _)| p.overlaps(&net)) {
                c.err(
                    &At::located(span, ()),
                    object.clone(),
                    format!("{net} overlaps {other}"),
                );
            }
            prefixes.push((net, object));
        };
    for n in &site.networks {
        let object = format!("network {:?}", n.name);
        check_gateway(c, n, &object, n.gateway, n.subnet, "subnet");
        check_overlap(c, n.span(), object, n.subnet);
    }
    for p in &site.ip_pools {
        let object = format!("IP pool {:?}", p.name);
        check_gateway(c, p, &object, p.gateway, p.prefix, "prefix");
        match p.kind {
            super::PoolKind::L3SH => {
                if p.vlan.is_none() {
                    c.err(
                        p,
                        object.clone(),
                        "an L3SH pool needs the shared segment's vlan".into(),
                    );
                }
                for ip in [p.first, p.last].into_iter().flatten() {
                    if !p.prefix.contains(ip) {
                        c.err(
                            p,
                            object.clone(),
                            format!("range address {ip} is outside prefix {}", p.prefix),
                        );
                    }
                }
                if let (Some(f), Some(l)) = (p.first, p.last)
                    && f > l
                {
                    c.err(p, object.clone(), format!("range {f}-{l} is reversed"));
                }
            }
            super::PoolKind::L3EX => {
                let len = p.default_prefix_length.unwrap_or(29);
                if len < p.prefix.prefix_len() || len > 30 {
                    c.err(
                        p,
                        object.clone(),
                        format!(
                            "default_prefix_length /{len} must lie between /{} and /30",
                            p.prefix.prefix_len()
                        ),
                    );
                }
            }
        }
        check_overlap(c, p.span(), object, p.prefix);
    }
}

fn check_switches_and_cabling(c: &mut Checker, site: &SiteFile) {
    let mut ports: HashMap<&str, HashSet<&str>> = HashMap::new();
    for s in &site.switches {
        let object = format!("switch {:?}", s.name);
        if s.ports.is_empty() {
            c.err(s, object.clone(), "lists no ports".into());
        }
        let mut seen = HashSet::new();
        for p in &s.ports {
            if p.trim().is_empty() || p.contains(':') {
                c.err(
                    s,
                    object.clone(),
                    format!("port name {p:?} must be non-empty and contain no ':'"),
                );
            } else if !seen.insert(p.as_str()) {
                c.err(s, object.clone(), format!("port {p:?} is listed twice"));
            }
        }
        if s.role == SwitchRole::Edge && s.max_macs == Some(0) {
            c.err(s, object.clone(), "max_macs must be greater than 0".into());
        }
        if s.address.trim().is_empty() || s.credentials.trim().is_empty() {
            c.err(
                s,
                object,
                "address and credentials must not be empty".into(),
            );
        }
        // A duplicate switch is reported above; its ports must not mask the first one's.
        ports.entry(&s.name).or_insert(seen);
    }
    let mut used: HashMap<PortRef, String> = HashMap::new();
    for l in &site.links {
        let object = format!("link {} <-> {}", l.a, l.b);
        if l.a == l.b {
            c.err(l, object.clone(), "connects a port to itself".into());
            continue;
        }
        for end in [&l.a, &l.b] {
            if let Some(problem) = port_problem(&ports, end) {
                c.err(l, object.clone(), problem);
            } else if let Some(other) = used.insert(end.clone(), object.clone()) {
                c.err(
                    l,
                    object.clone(),
                    format!("port {end} is already used by {other}"),
                );
            }
        }
    }
    for m in &site.machines {
        for n in &m.nics {
            let Some(port) = &n.port else { continue };
            let object = format!("machine {:?} NIC {}", m.name, n.device);
            if let Some(problem) = port_problem(&ports, port) {
                c.err(n, object, problem);
                continue;
            }
            let role = site
                .switches
                .iter()
                .find(|s| s.name == port.switch)
                .map(|s| s.role);
            if role != Some(SwitchRole::Edge) {
                c.err(
                    n,
                    object.clone(),
                    format!(
                        "port {port} is on a core switch; machines are cabled to edge switches"
                    ),
                );
            }
            if let Some(other) = used.insert(port.clone(), object.clone()) {
                c.err(n, object, format!("port {port} is already used by {other}"));
            }
        }
    }
}

fn port_problem(ports: &HashMap<&str, HashSet<&str>>, r: &PortRef) -> Option<String> {
    match ports.get(r.switch.as_str()) {
        None => Some(format!("unknown switch {:?}", r.switch)),
        Some(p) if !p.contains(r.port.as_str()) => {
            Some(format!("switch {:?} has no port {:?}", r.switch, r.port))
        }
        Some(_) => None,
    }
}

fn check_machines(c: &mut Checker, site: &SiteFile) {
    let mut macs: HashMap<crate::net::Mac, String> = HashMap::new();
    let mut ips: HashMap<Ipv4Addr, String> = HashMap::new();
    for m in &site.machines {
        let object = format!("machine {:?}", m.name);
        if m.kind == MachineKind::Hypervisor && (m.vcpus == 0 || m.memory_mb == 0) {
            c.err(
                m,
                object.clone(),
                "a hypervisor needs vcpus and memory_mb (its slot capacity)".into(),
            );
        }
        if matches!(m.power_driver, PowerDriver::Ipmi | PowerDriver::Redfish)
            && m.bmc_address.is_none()
        {
            c.err(
                m,
                object.clone(),
                format!("power_driver {:?} needs bmc_address", m.power_driver),
            );
        }
        if m.nics.iter().filter(|n| n.boot).count() > 1 {
            c.err(
                m,
                object.clone(),
                "more than one NIC is marked boot = true".into(),
            );
        }
        let mut devices = HashSet::new();
        for n in &m.nics {
            let nic = format!("machine {:?} NIC {}", m.name, n.device);
            if !devices.insert(n.device.as_str()) {
                c.err(
                    n,
                    nic.clone(),
                    format!("device {:?} is listed twice", n.device),
                );
            }
            if n.mac.is_multicast() || n.mac.0 == [0; 6] {
                c.err(
                    n,
                    nic.clone(),
                    format!("{} is not a unicast MAC address", n.mac),
                );
            }
            if let Some(other) = macs.insert(n.mac, nic.clone()) {
                c.err(
                    n,
                    nic.clone(),
                    format!("duplicate MAC {} (also on {other})", n.mac),
                );
            }
            let net = n
                .network
                .as_ref()
                .map(|name| (name, site.networks.iter().find(|x| &x.name == name)));
            match (net, n.ip) {
                (Some((name, None)), _) => {
                    c.err(n, nic.clone(), format!("unknown network {name:?}"))
                }
                (Some((_, Some(net))), Some(ip)) if !net.subnet.contains(ip) => c.err(
                    n,
                    nic.clone(),
                    format!(
                        "address {ip} is outside network {:?} ({})",
                        net.name, net.subnet
                    ),
                ),
                (None, Some(ip)) => c.err(n, nic.clone(), format!("address {ip} needs a network")),
                _ => {}
            }
            if let Some(ip) = n.storage_ip {
                let storage = site
                    .networks
                    .iter()
                    .find(|x| x.role == NetworkRole::Storage && x.subnet.contains(ip));
                if storage.is_none() {
                    c.err(
                        n,
                        nic.clone(),
                        format!("storage_ip {ip} is in no network with role \"storage\""),
                    );
                }
                if n.port.is_none() {
                    c.err(
                        n,
                        nic.clone(),
                        format!("storage_ip {ip} needs the NIC's port (the storage VLAN is tagged there)"),
                    );
                }
                if let Some(other) = ips.insert(ip, nic.clone()) {
                    c.err(
                        n,
                        nic.clone(),
                        format!("address {ip} is also assigned to {other}"),
                    );
                }
            }
            if let Some(ip) = n.ip
                && let Some(other) = ips.insert(ip, nic.clone())
            {
                c.err(n, nic, format!("address {ip} is also assigned to {other}"));
            }
        }
    }
}
