//! Network methods (HAAS-API.md §2.2). `allocateNetwork` takes a VLAN from the operator's VLAN
//! pools (L2EX, L3EX), a prefix from the L3EX prefix pool, or hands out the customer's handle
//! to the shared L3SH segment; `allocateIpAddress` takes L3SH addresses from the shared pool;
//! `attachNetwork` creates the VM's NIC with a unique locally administered MAC. These rows are
//! what DHCP and the switch planner read.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use dxr::Value;

use super::args::{Args, Struct, int, list, s, st};
use super::fault::{ApiError, ErrorType, fail};
use super::vm::{check_comment, device_outcome, ensure_off, find_vm, new_public_id};
use super::{Ctx, Outcome};
use crate::inventory::networks::{IpPool, NetworkRecord, Networks, NewNetwork, Nic};
use crate::inventory::quotas::Quotas;
use crate::inventory::resources::Resource;
use crate::inventory::vms::Vms;
use crate::inventory::{Tx, record_event};
use crate::model::{EventKind, NetworkKind};
use crate::net::Ipv4Net;
use crate::util::unix_now;

/// A `networkType` argument: a kind customers allocate.
fn customer_kind(text: &str) -> Result<NetworkKind, ApiError> {
    match text.parse() {
        Ok(kind) if NetworkKind::CUSTOMER.contains(&kind) => Ok(kind),
        _ => fail(
            ErrorType::ParameterError,
            format!("networkType {text:?}: use L2EX, L3EX or L3SH"),
        ),
    }
}

/// A customer network row.
pub type Network = NetworkRecord;

/// The caller's network; infrastructure networks and other customers' are NotFound.
pub fn find_network(conn: &Tx<'_>, ctx: &Ctx, public_id: &str) -> Result<Network, ApiError> {
    conn.customer_network(ctx.caller.customer_id, public_id)?
        .ok_or_else(|| ApiError::new(ErrorType::NotFound, format!("network {public_id}")))
}

pub fn check_nic_device(device: &str) -> Result<(), ApiError> {
    if device != "NET1" && device != "NET2" {
        return fail(
            ErrorType::ParameterError,
            format!("device {device:?}: use \"NET1\" or \"NET2\""),
        );
    }
    Ok(())
}

pub fn parse_ip(name: &str, text: &str) -> Result<Ipv4Addr, ApiError> {
    text.parse().map_err(|_| {
        ApiError::new(
            ErrorType::ParameterError,
            format!("{name} {text:?} is not an IPv4 address"),
        )
    })
}

pub fn get_network_list(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Struct, ApiError> {
    let window = args.page()?;
    let kind = args
        .opt_str("networkType")?
        .map(customer_kind)
        .transpose()?;
    let page = conn.network_page(ctx.caller.customer_id, kind, window)?;
    Ok(list("networkList", page, |n| {
        st([
            ("networkId", s(n.public_id)),
            ("networkType", s(n.kind.as_str())),
            ("subnet", s(n.subnet)),
            ("comment", s(n.comment)),
        ])
    }))
}

pub fn get_network_info(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Struct, ApiError> {
    let net = find_network(conn, ctx, args.str("networkId")?)?;
    let prefix_len = net
        .subnet
        .as_deref()
        .and_then(|p| p.parse::<Ipv4Net>().ok())
        .map_or(0, |p| i64::from(p.prefix_len()));
    let attachments = conn
        .attachments(net.id)?
        .into_iter()
        .map(|(vm, device)| Value::Struct(st([("vmId", s(vm)), ("device", s(device))])))
        .collect();
    let mut info = st([
        ("networkId", s(&net.public_id)),
        ("networkType", s(net.kind.as_str())),
        ("subnet", s(net.subnet.clone().unwrap_or_default())),
        ("gateway", s(net.gateway.clone().unwrap_or_default())),
        ("prefixLength", int(prefix_len)),
        ("attachments", Value::Array(attachments)),
        ("comment", s(&net.comment)),
        ("createdAt", s(&net.created_at)),
    ]);
    if net.kind == NetworkKind::L3sh {
        let addrs = conn
            .addresses_on(net.id)?
            .into_iter()
            .map(|a| {
                Value::Struct(st([
                    ("ipAddress", s(a.address)),
                    ("vmId", s(a.vm)),
                    ("device", s(a.device)),
                ]))
            })
            .collect();
        info.insert("ipAddresses".into(), Value::Array(addrs));
    }
    Ok(st([("network", Value::Struct(info))]))
}

/// The lowest VLAN of any customer VLAN pool that no network uses.
fn free_vlan(conn: &Tx<'_>) -> Result<(i64, i64), ApiError> {
    let used: HashSet<i64> = conn.used_vlans()?.into_iter().collect();
    for pool in conn.vlan_pools()? {
        if let Some(v) = (pool.first..=pool.last).find(|v| !used.contains(v)) {
            return Ok((pool.id, v));
        }
    }
    fail(
        ErrorType::ResourceExhausted,
        "no free VLAN in the operator's VLAN pools; try later or ask the operator",
    )
}

/// A free prefix of length `len` from an L3EX pool: `(pool id, subnet, gateway)`.
fn free_prefix(conn: &Tx<'_>, len: Option<i64>) -> Result<(i64, Ipv4Net, Ipv4Addr), ApiError> {
    let pools = conn.ip_pools(NetworkKind::L3ex)?;
    if pools.is_empty() {
        return fail(
            ErrorType::ResourceExhausted,
            "the operator has no L3EX prefix pool",
        );
    }
    let taken: Vec<Ipv4Net> = conn
        .routed_subnets()?
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect();
    for pool in pools {
        let prefix = &pool.prefix;
        let Ok(pool_net) = prefix.parse::<Ipv4Net>() else {
            continue;
        };
        let want = len.or(pool.default_prefix_length).unwrap_or(29);
        if !(i64::from(pool_net.prefix_len())..=30).contains(&want) {
            return fail(
                ErrorType::ParameterError,
                format!(
                    "prefixLength {want}: must be between {} and 30 for the pool {prefix}",
                    pool_net.prefix_len()
                ),
            );
        }
        let want = want as u8;
        let pool_gw: Option<Ipv4Addr> = pool.gateway.as_deref().and_then(|g| g.parse().ok());
        let step = 1u64 << (32 - u32::from(want));
        let start = u64::from(u32::from(pool_net.network()));
        let end = u64::from(u32::from(pool_net.broadcast()));
        let mut at = start;
        while at + step - 1 <= end {
            let Ok(cand) = Ipv4Net::new(Ipv4Addr::from(at as u32), want) else {
                break;
            };
            let hits_gateway = pool_gw.is_some_and(|g| cand.contains(g));
            if !hits_gateway && !taken.iter().any(|t| t.overlaps(&cand)) {
                let gw = Ipv4Addr::from(u32::from(cand.network()) + 1);
                return Ok((pool.id, cand, gw));
            }
            at += step;
        }
    }
    fail(
        ErrorType::ResourceExhausted,
        "no free prefix of that size in the L3EX pool; try a longer prefixLength or later",
    )
}

pub fn allocate_network(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let kind = args.str("networkType")?;
    let prefix_len = args.opt_int("prefixLength")?;
    let comment = args.opt_str("comment")?.unwrap_or("");
    check_comment(comment)?;
    let kind = customer_kind(kind)?;
    if prefix_len.is_some() && kind != NetworkKind::L3ex {
        return fail(
            ErrorType::ParameterError,
            "prefixLength applies to L3EX networks only",
        );
    }
    let used = conn.usage(ctx.caller.customer_id, None)?.networks(kind);
    let limit = conn.limits(ctx.caller.customer_id)?.networks(kind);
    if used >= limit {
        return fail(
            ErrorType::QuotaExceeded,
            format!(
                "networks.{kind}: you have {used} of {limit}; deallocate one or ask the operator"
            ),
        );
    }
    let id = new_public_id(conn, Resource::Network)?;
    let (vlan, vlan_pool, ip_pool, subnet, gateway): (
        i64,
        Option<i64>,
        Option<i64>,
        Option<String>,
        Option<String>,
    ) = match kind {
        NetworkKind::L2ex => {
            let (pool, vlan) = free_vlan(conn)?;
            (vlan, Some(pool), None, None, None)
        }
        NetworkKind::L3ex => {
            let (ip_pool, subnet, gw) = free_prefix(conn, prefix_len)?;
            let (pool, vlan) = free_vlan(conn)?;
            (
                vlan,
                Some(pool),
                Some(ip_pool),
                Some(subnet.to_string()),
                Some(gw.to_string()),
            )
        }
        _ => {
            let shared = conn.ip_pools(NetworkKind::L3sh)?.into_iter().next();
            let Some(IpPool {
                id: pool,
                prefix,
                gateway,
                vlan: Some(vlan),
                ..
            }) = shared
            else {
                return fail(
                    ErrorType::ResourceExhausted,
                    "the operator has no L3SH segment (an L3SH ip_pool with a VLAN)",
                );
            };
            (vlan, None, Some(pool), Some(prefix), gateway)
        }
    };
    conn.insert_network(
        &NewNetwork {
            public_id: &id,
            kind,
            customer: ctx.caller.customer_id,
            vlan,
            vlan_pool,
            ip_pool,
            subnet: subnet.as_deref(),
            gateway: gateway.as_deref(),
            comment,
        },
        unix_now(),
    )?;
    record_event(conn, EventKind::Network, &id)?;
    Ok(Outcome {
        response: st([
            ("networkId", s(&id)),
            ("networkType", s(kind.as_str())),
            ("subnet", s(subnet.unwrap_or_default())),
            ("gateway", s(gateway.unwrap_or_default())),
        ]),
        resource: ("network", id),
        pending: None,
    })
}

pub fn deallocate_network(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let net = find_network(conn, ctx, args.str("networkId")?)?;
    let (attached, addresses) = conn.network_use(net.id)?;
    if attached > 0 {
        return fail(
            ErrorType::InvalidStatus,
            format!(
                "network {} is attached to {attached} NIC(s); detachNetwork first",
                net.public_id
            ),
        );
    }
    if addresses > 0 {
        return fail(
            ErrorType::InvalidStatus,
            format!(
                "network {} still has {addresses} allocated address(es); deallocateIpAddress them first",
                net.public_id
            ),
        );
    }
    conn.delete_network(net.id)?;
    record_event(conn, EventKind::Network, &net.public_id)?;
    Ok(Outcome {
        response: st([("networkId", s(&net.public_id))]),
        resource: ("network", net.public_id),
        pending: None,
    })
}

fn not_l3sh<T>(net: &Network, method: &str) -> Result<T, ApiError> {
    fail(
        ErrorType::ParameterError,
        format!(
            "NotSupportedForNetworkType: {method} applies to L3SH networks; {} is {}",
            net.public_id, net.kind
        ),
    )
}

pub fn allocate_ip_address(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let net = find_network(conn, ctx, args.str("networkId")?)?;
    let wanted = args.opt_str("ipAddress")?;
    let count = args.opt_int("count")?;
    if wanted.is_some() && count.is_some() {
        return fail(
            ErrorType::InvalidParams,
            "give ipAddress or count, not both",
        );
    }
    let count = count.unwrap_or(1);
    if !(1..=64).contains(&count) {
        return fail(ErrorType::ParameterError, "count must be between 1 and 64");
    }
    if net.kind != NetworkKind::L3sh {
        return not_l3sh(&net, "allocateIpAddress");
    }
    let used = conn.usage(ctx.caller.customer_id, None)?.l3sh_addresses;
    let limit = conn.limits(ctx.caller.customer_id)?.l3sh_addresses;
    if used + count > limit {
        return fail(
            ErrorType::QuotaExceeded,
            format!("l3shAddresses: you have {used} of {limit}; this call needs {count} more"),
        );
    }
    let Some(pool) = net.ip_pool_id else {
        return fail(
            ErrorType::InternalError,
            "this L3SH network has no address pool",
        );
    };
    let IpPool {
        range_first: first,
        range_last: last,
        gateway,
        ..
    } = conn
        .ip_pool(pool)?
        .ok_or_else(|| crate::inventory::Error::NotFound(format!("address pool {pool}")))?;
    let bound = |v: Option<String>| v.and_then(|a| a.parse::<Ipv4Addr>().ok()).map(u32::from);
    let (Some(first), Some(last)) = (bound(first), bound(last)) else {
        return fail(
            ErrorType::ResourceExhausted,
            "the L3SH pool has no address range",
        );
    };
    let gateway = bound(gateway);
    let used: HashSet<u32> = conn
        .pool_addresses(pool)?
        .iter()
        .filter_map(|a| a.parse::<Ipv4Addr>().ok().map(u32::from))
        .collect();
    let picked: Vec<u32> = match wanted {
        Some(text) => {
            let ip = u32::from(parse_ip("ipAddress", text)?);
            if !(first..=last).contains(&ip) || Some(ip) == gateway {
                return fail(
                    ErrorType::ParameterError,
                    format!(
                        "ipAddress {text} is outside the shared range {}–{}",
                        Ipv4Addr::from(first),
                        Ipv4Addr::from(last)
                    ),
                );
            }
            if used.contains(&ip) {
                return fail(ErrorType::Conflict, format!("ipAddress {text} is taken"));
            }
            vec![ip]
        }
        None => {
            let free: Vec<u32> = (first..=last)
                .filter(|a| !used.contains(a) && Some(*a) != gateway)
                .take(count as usize)
                .collect();
            if (free.len() as i64) < count {
                return fail(
                    ErrorType::ResourceExhausted,
                    "the shared L3SH pool has no free addresses left; try later",
                );
            }
            free
        }
    };
    let mut out = Vec::new();
    for ip in picked {
        let text = Ipv4Addr::from(ip).to_string();
        conn.insert_address(&text, net.id, pool, ctx.caller.customer_id)?;
        record_event(conn, EventKind::Ip, &text)?;
        out.push(s(text));
    }
    Ok(Outcome {
        response: st([
            ("networkId", s(&net.public_id)),
            ("ipAddresses", Value::Array(out)),
        ]),
        resource: ("network", net.public_id),
        pending: None,
    })
}

pub fn deallocate_ip_address(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let net = find_network(conn, ctx, args.str("networkId")?)?;
    let ip = args.str("ipAddress")?;
    let Some((id, nic)) = conn.customer_address(ctx.caller.customer_id, net.id, ip)? else {
        return fail(
            ErrorType::NotFound,
            format!("address {ip} on network {}", net.public_id),
        );
    };
    if nic.is_some() {
        return fail(
            ErrorType::InvalidStatus,
            format!("address {ip} is assigned to a NIC; removeIpAddress first"),
        );
    }
    conn.delete_address(id)?;
    record_event(conn, EventKind::Ip, ip)?;
    Ok(Outcome {
        response: st([("ipAddress", s(ip))]),
        resource: ("ip", ip.to_owned()),
        pending: None,
    })
}

/// A unique locally administered unicast MAC (first octet 0x02).
fn new_mac(conn: &Tx<'_>) -> Result<String, ApiError> {
    for _ in 0..32 {
        let mut b = [0u8; 5];
        rand::fill(&mut b);
        let mac = format!(
            "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4]
        );
        if !conn.mac_taken(&mac)? {
            return Ok(mac);
        }
    }
    fail(
        ErrorType::InternalError,
        "cannot find a free MAC address; retry",
    )
}

pub fn attach_network(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let vm = find_vm(conn, ctx, args.str("vmId")?)?;
    let net = find_network(conn, ctx, args.str("networkId")?)?;
    let device = args.str("device")?;
    check_nic_device(device)?;
    ensure_off(&vm, "attachNetwork")?;
    for (dev, network) in conn.nics_of(vm.id)? {
        if dev == device {
            return fail(
                ErrorType::Conflict,
                format!(
                    "{device} of VM {} is in use; detachNetwork it first",
                    vm.public_id
                ),
            );
        }
        if network == Some(net.id) {
            return fail(
                ErrorType::Conflict,
                format!(
                    "network {} is already on {dev} of VM {}",
                    net.public_id, vm.public_id
                ),
            );
        }
    }
    let mac = new_mac(conn)?;
    conn.add_nic(vm.id, device, &mac, net.id)?;
    record_event(conn, EventKind::Nic, &mac)?;
    record_event(conn, EventKind::Vm, &vm.public_id)?;
    Ok(Outcome {
        response: st([
            ("vmId", s(&vm.public_id)),
            ("device", s(device)),
            ("networkId", s(&net.public_id)),
            ("macAddress", s(&mac)),
        ]),
        resource: ("vm", vm.public_id),
        pending: None,
    })
}

/// The public id and kind of the network a NIC is on, if any.
fn network_of(conn: &Tx<'_>, nic: &Nic) -> Result<Option<(String, NetworkKind)>, ApiError> {
    Ok(match nic.network {
        Some(n) => conn.network_ref(n)?,
        None => None,
    })
}

pub fn detach_network(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let vm = find_vm(conn, ctx, args.str("vmId")?)?;
    let device = args.str("device")?;
    check_nic_device(device)?;
    ensure_off(&vm, "detachNetwork")?;
    let Some(nic) = conn.nic_at(vm.id, device)? else {
        return fail(
            ErrorType::NotFound,
            format!("no network on {device} of VM {}", vm.public_id),
        );
    };
    let network_id = network_of(conn, &nic)?
        .map(|(id, _)| id)
        .unwrap_or_default();
    conn.remove_nic(nic.id)?;
    record_event(conn, EventKind::Nic, &nic.mac)?;
    record_event(conn, EventKind::Vm, &vm.public_id)?;
    Ok(device_outcome(vm, device, "networkId", &network_id))
}

pub fn assign_ip_address(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let vm = find_vm(conn, ctx, args.str("vmId")?)?;
    let device = args.str("device")?;
    let ip = args.str("ipAddress")?;
    check_nic_device(device)?;
    let Some(nic) = conn.nic_at(vm.id, device)? else {
        return fail(
            ErrorType::NotFound,
            format!("no network on {device} of VM {}", vm.public_id),
        );
    };
    let kind = network_of(conn, &nic)?.map(|(_, kind)| kind);
    if kind != Some(NetworkKind::L3sh) {
        return fail(
            ErrorType::ParameterError,
            format!(
                "NotSupportedForNetworkType: {device} of VM {} is not on an L3SH network",
                vm.public_id
            ),
        );
    }
    let row = match nic.network {
        Some(network) => conn.customer_address(ctx.caller.customer_id, network, ip)?,
        None => None,
    };
    let Some((addr, assigned)) = row else {
        return fail(
            ErrorType::ParameterError,
            format!(
                "address {ip} is not allocated to you on this network; allocateIpAddress first"
            ),
        );
    };
    if assigned.is_some() {
        return fail(
            ErrorType::Conflict,
            format!("address {ip} is already assigned"),
        );
    }
    conn.assign_address(addr, nic.id)?;
    record_event(conn, EventKind::Nic, &nic.mac)?;
    record_event(conn, EventKind::Ip, ip)?;
    Ok(device_outcome(vm, device, "ipAddress", ip))
}

pub fn remove_ip_address(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let vm = find_vm(conn, ctx, args.str("vmId")?)?;
    let device = args.str("device")?;
    let ip = args.str("ipAddress")?;
    check_nic_device(device)?;
    let nic = conn.nic_at(vm.id, device)?;
    let changed = match &nic {
        Some(nic) => conn.unassign_address(ip, nic.id)?,
        None => false,
    };
    if !changed {
        return fail(
            ErrorType::NotFound,
            format!(
                "address {ip} is not assigned to {device} of VM {}",
                vm.public_id
            ),
        );
    }
    if let Some(nic) = nic {
        record_event(conn, EventKind::Nic, &nic.mac)?;
    }
    record_event(conn, EventKind::Ip, ip)?;
    Ok(device_outcome(vm, device, "ipAddress", ip))
}
