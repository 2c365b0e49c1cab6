//! VM methods (HAAS-API.md §2.1): the cartridge records customers allocate, inspect, power and
//! re-image. Sync calls edit the `vms` row; power and restore calls move the VM to a
//! transitional state and queue an async request in the same transaction (the job engine and
//! the facility do the rest). Also the helpers the other method groups share: looking up a VM
//! *of this customer* (a foreign id is NotFound) and the "powered off and idle" rule.

use dxr::Value;
use rusqlite::{OptionalExtension, params};

use super::args::{Args, Struct, int, s, st};
use super::fault::{ApiError, ErrorType, fail};
use super::requests::command_status;
use super::{Ctx, Outcome, Pending};
use crate::inventory::Tx;
use crate::inventory::quotas::Quotas;
use crate::inventory::record_event;
use crate::jobs::complete::VM_STATES;
use crate::util::now_rfc3339;

/// `power` is "on" for starting, running, stopping and resetting.
pub fn power(state: &str) -> &'static str {
    match state {
        "starting" | "running" | "stopping" | "resetting" => "on",
        _ => "off",
    }
}

/// A VM row as the API sees it.
#[derive(Debug, Clone)]
pub struct Vm {
    pub id: i64,
    pub public_id: String,
    pub vm_type: String,
    pub architecture: String,
    pub state: String,
    pub image_id: Option<i64>,
    pub current_request_id: Option<String>,
}

/// The caller's VM `public_id`; another customer's (or no) VM is NotFound.
pub fn find_vm(conn: &Tx<'_>, ctx: &Ctx, public_id: &str) -> Result<Vm, ApiError> {
    conn.prepare_cached(
        "SELECT id, public_id, vm_type, architecture, state, image_id, current_request_id
         FROM vms WHERE public_id = ?1 AND customer_id = ?2",
    )?
    .query_row(params![public_id, ctx.caller.customer_id], |r| {
        Ok(Vm {
            id: r.get(0)?,
            public_id: r.get(1)?,
            vm_type: r.get(2)?,
            architecture: r.get(3)?,
            state: r.get(4)?,
            image_id: r.get(5)?,
            current_request_id: r.get(6)?,
        })
    })
    .optional()?
    .ok_or_else(|| ApiError::new(ErrorType::NotFound, format!("VM {public_id}")))
}

/// ResourceBusy while an async request is in flight.
pub fn ensure_idle(vm: &Vm) -> Result<(), ApiError> {
    match &vm.current_request_id {
        Some(req) => fail(
            ErrorType::ResourceBusy,
            format!(
                "VM {} has request {req} in flight; poll getRequestIdInfo and retry when it is done",
                vm.public_id
            ),
        ),
        None => Ok(()),
    }
}

/// Hardware edits need the VM powered off and idle (§2.0).
pub fn ensure_off(vm: &Vm, method: &str) -> Result<(), ApiError> {
    ensure_idle(vm)?;
    if power(&vm.state) == "on" {
        return fail(
            ErrorType::InvalidStatus,
            format!(
                "VM {} is {}; {method} requires power off (powerOffVm first)",
                vm.public_id, vm.state
            ),
        );
    }
    Ok(())
}

/// A new unused public id such as `vm-0a1b2c3d`.
pub fn new_public_id(conn: &Tx<'_>, prefix: &str, table: &str) -> Result<String, ApiError> {
    let sql = format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE public_id = ?1)");
    for _ in 0..16 {
        let mut b = [0u8; 4];
        rand::fill(&mut b);
        let id = format!("{prefix}-{:02x}{:02x}{:02x}{:02x}", b[0], b[1], b[2], b[3]);
        let taken: bool = conn.query_row(&sql, [&id], |r| r.get(0))?;
        if !taken {
            return Ok(id);
        }
    }
    fail(ErrorType::InternalError, "cannot find a free id; retry")
}

pub fn check_comment(comment: &str) -> Result<(), ApiError> {
    if comment.chars().count() > 255 {
        return fail(
            ErrorType::ParameterError,
            "comment is longer than 255 characters",
        );
    }
    Ok(())
}

fn check_architecture(arch: &str) -> Result<(), ApiError> {
    if arch != "x86_64" && arch != "i386" {
        return fail(
            ErrorType::ParameterError,
            format!("architecture {arch:?}: use \"x86_64\" or \"i386\""),
        );
    }
    Ok(())
}

/// `(vcpus, memory_mb)` of a VM type; unknown types are ParameterError.
fn vm_type_size(conn: &Tx<'_>, name: &str) -> Result<(i64, i64), ApiError> {
    if let Some(size) = conn
        .query_row(
            "SELECT vcpus, memory_mb FROM vm_types WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
    {
        return Ok(size);
    }
    let mut st = conn.prepare("SELECT name FROM vm_types ORDER BY vcpus, name")?;
    let names: Vec<String> = st
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    fail(
        ErrorType::ParameterError,
        format!(
            "unknown vmType {name:?}; the types are {}",
            names.join(", ")
        ),
    )
}

/// Quota (vms, vcpu, memoryMB) and site capacity for the caller's VMs plus `add`, without
/// `except` (the VM whose type changes). Capacity is reserved at allocation (§2.1).
fn check_vm_room(
    conn: &Tx<'_>,
    ctx: &Ctx,
    add: (i64, i64),
    except: Option<i64>,
) -> Result<(), ApiError> {
    let used = conn.usage(ctx.caller.customer_id, except)?;
    let limits = conn.limits(ctx.caller.customer_id)?;
    for (what, used, adding, limit) in [
        ("vms", used.vms, 1, limits.vms),
        ("vcpu", used.vcpu, add.0, limits.vcpu),
        ("memoryMB", used.memory_mb, add.1, limits.memory_mb),
    ] {
        if used + adding > limit {
            return fail(
                ErrorType::QuotaExceeded,
                format!(
                    "{what}: you use {used} of {limit}, this call needs {adding} more; free some (getQuota shows usage) or ask the operator"
                ),
            );
        }
    }
    let cap = conn.capacity(except)?;
    if cap.used_vcpu + add.0 > cap.vcpu || cap.used_memory_mb + add.1 > cap.memory_mb {
        return fail(
            ErrorType::ResourceExhausted,
            "no hypervisor capacity left for this vmType; try a smaller type or later",
        );
    }
    Ok(())
}

fn summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<Value> {
    let state: String = r.get(3)?;
    Ok(Value::Struct(st([
        ("vmId", s(r.get::<_, String>(0)?)),
        ("vmType", s(r.get::<_, String>(1)?)),
        ("architecture", s(r.get::<_, String>(2)?)),
        ("power", s(power(&state))),
        ("state", s(state)),
        ("comment", s(r.get::<_, String>(4)?)),
    ])))
}

pub fn get_vm_list(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Struct, ApiError> {
    let (offset, limit) = args.page()?;
    let state = args.opt_str("state")?;
    if let Some(state) = state
        && !VM_STATES.contains(&state)
    {
        return fail(
            ErrorType::ParameterError,
            format!("state {state:?}: use one of {}", VM_STATES.join(", ")),
        );
    }
    let total: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM vms WHERE customer_id = ?1 AND (?2 IS NULL OR state = ?2)",
        )?
        .query_row(params![ctx.caller.customer_id, state], |r| r.get(0))?;
    let mut stmt = conn.prepare_cached(
        "SELECT public_id, vm_type, architecture, state, comment FROM vms
         WHERE customer_id = ?1 AND (?2 IS NULL OR state = ?2)
         ORDER BY id LIMIT ?3 OFFSET ?4",
    )?;
    let list = stmt
        .query_map(
            params![ctx.caller.customer_id, state, limit, offset],
            summary,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(st([
        ("totalCount", int(total)),
        ("vmList", Value::Array(list)),
    ]))
}

pub fn get_vm_info(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Struct, ApiError> {
    let vm_id = args.str("vmId")?;
    let info = conn
        .prepare_cached(
            "SELECT v.id, v.public_id, v.vm_type, t.vcpus, t.memory_mb, t.bandwidth_mbps, v.architecture,
                    v.state, COALESCE(i.public_id, ''), v.comment, v.created_at, v.updated_at,
                    COALESCE(v.current_request_id, '')
             FROM vms v JOIN vm_types t ON t.name = v.vm_type LEFT JOIN images i ON i.id = v.image_id
             WHERE v.public_id = ?1 AND v.customer_id = ?2",
        )?
        .query_row(params![vm_id, ctx.caller.customer_id], |r| {
            let state: String = r.get(7)?;
            Ok((
                r.get::<_, i64>(0)?,
                st([
                    ("vmId", s(r.get::<_, String>(1)?)),
                    ("vmType", s(r.get::<_, String>(2)?)),
                    ("cpu", int(r.get(3)?)),
                    ("memoryMB", int(r.get(4)?)),
                    ("bandwidthMbps", int(r.get(5)?)),
                    ("architecture", s(r.get::<_, String>(6)?)),
                    ("power", s(power(&state))),
                    ("state", s(state)),
                    ("imageId", s(r.get::<_, String>(8)?)),
                    ("comment", s(r.get::<_, String>(9)?)),
                    ("createdAt", s(r.get::<_, String>(10)?)),
                    ("updatedAt", s(r.get::<_, String>(11)?)),
                    ("currentRequestId", s(r.get::<_, String>(12)?)),
                ]),
            ))
        })
        .optional()?;
    let Some((id, mut vm)) = info else {
        return fail(ErrorType::NotFound, format!("VM {vm_id}"));
    };
    let disks = conn
        .prepare_cached(
            "SELECT device, public_id, size_gb FROM volumes WHERE vm_id = ?1 ORDER BY device",
        )?
        .query_map([id], |r| {
            Ok(Value::Struct(st([
                ("device", s(r.get::<_, String>(0)?)),
                ("volumeId", s(r.get::<_, String>(1)?)),
                ("sizeGB", int(r.get(2)?)),
            ])))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut nic_rows = conn
        .prepare_cached(
            "SELECT n.id, n.device, COALESCE(w.public_id, ''), COALESCE(w.kind, ''), n.mac
             FROM nics n LEFT JOIN networks w ON w.id = n.network_id WHERE n.vm_id = ?1 ORDER BY n.device",
        )?
        .query_map([id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut nics = Vec::new();
    let mut addrs =
        conn.prepare_cached("SELECT address FROM ip_addresses WHERE nic_id = ?1 ORDER BY address")?;
    for (nic_id, device, network, kind, mac) in nic_rows.drain(..) {
        let ips = addrs
            .query_map([nic_id], |r| Ok(s(r.get::<_, String>(0)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        nics.push(Value::Struct(st([
            ("device", s(device)),
            ("networkId", s(network)),
            ("networkType", s(kind)),
            ("macAddress", s(mac)),
            ("ipAddresses", Value::Array(ips)),
        ])));
    }
    vm.insert("disks".into(), Value::Array(disks));
    vm.insert("nics".into(), Value::Array(nics));
    Ok(st([("vm", Value::Struct(vm))]))
}

pub fn get_vm_status(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Struct, ApiError> {
    let vm = find_vm(conn, ctx, args.str("vmId")?)?;
    let command = command_status(conn, &vm.public_id)?;
    Ok(st([
        ("vmId", s(&vm.public_id)),
        ("power", s(power(&vm.state))),
        ("state", s(&vm.state)),
        ("command", Value::Struct(command)),
    ]))
}

pub fn allocate_vm(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let vm_type = args.str("vmType")?;
    let arch = args.opt_str("architecture")?.unwrap_or("x86_64");
    let comment = args.opt_str("comment")?.unwrap_or("");
    check_architecture(arch)?;
    check_comment(comment)?;
    let size = vm_type_size(conn, vm_type)?;
    check_vm_room(conn, ctx, size, None)?;
    let id = new_public_id(conn, "vm", "vms")?;
    let now = now_rfc3339();
    conn.execute(
        "INSERT INTO vms (public_id, name, customer_id, vm_type, architecture, state, comment, created_at, updated_at)
         VALUES (?1, ?1, ?2, ?3, ?4, 'stopped', ?5, ?6, ?6)",
        params![id, ctx.caller.customer_id, vm_type, arch, comment, now],
    )?;
    record_event(conn, "vm", &id)?;
    Ok(Outcome {
        response: st([
            ("vmId", s(&id)),
            ("vmType", s(vm_type)),
            ("architecture", s(arch)),
            ("power", s("off")),
            ("state", s("stopped")),
        ]),
        resource: ("vm", id),
        pending: None,
    })
}

pub fn deallocate_vm(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let vm = find_vm(conn, ctx, args.str("vmId")?)?;
    ensure_off(&vm, "deallocateVm")?;
    // Volumes and networks stay allocated; NIC rows go, their L3SH addresses stay allocated.
    conn.execute(
        "UPDATE volumes SET vm_id = NULL, device = NULL WHERE vm_id = ?1",
        [vm.id],
    )?;
    conn.execute(
        "UPDATE ip_addresses SET nic_id = NULL WHERE nic_id IN (SELECT id FROM nics WHERE vm_id = ?1)",
        [vm.id],
    )?;
    conn.execute("DELETE FROM nics WHERE vm_id = ?1", [vm.id])?;
    conn.execute("DELETE FROM vms WHERE id = ?1", [vm.id])?;
    record_event(conn, "vm", &vm.public_id)?;
    Ok(Outcome {
        response: st([("vmId", s(&vm.public_id))]),
        resource: ("vm", vm.public_id),
        pending: None,
    })
}

/// Moves an idle VM to a transitional state and makes the call async.
pub fn start_async(
    conn: &Tx<'_>,
    ctx: &Ctx,
    vm: &Vm,
    to_state: &str,
    mut response: Struct,
) -> Result<Outcome, ApiError> {
    conn.execute(
        "UPDATE vms SET state = ?2, current_request_id = ?3, updated_at = ?4 WHERE id = ?1",
        params![vm.id, to_state, ctx.request_id, now_rfc3339()],
    )?;
    record_event(conn, "vm", &vm.public_id)?;
    response.insert("vmId".into(), s(&vm.public_id));
    response.insert("previousState".into(), s(&vm.state));
    response.insert("currentState".into(), s(to_state));
    Ok(Outcome {
        response,
        resource: ("vm", vm.public_id.clone()),
        pending: Some(Pending {
            previous_state: vm.state.clone(),
        }),
    })
}

/// The image installed on the VM's DISK1, if any: `(volume size, image id)`.
pub fn disk1(conn: &Tx<'_>, vm: &Vm) -> Result<Option<(i64, Option<i64>)>, ApiError> {
    Ok(conn
        .query_row(
            "SELECT size_gb, image_id FROM volumes WHERE vm_id = ?1 AND device = 'DISK1'",
            [vm.id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

pub fn power_on_vm(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let vm = find_vm(conn, ctx, args.str("vmId")?)?;
    ensure_idle(&vm)?;
    if vm.state != "stopped" {
        return fail(
            ErrorType::InvalidStatus,
            format!(
                "VM {} is {}; powerOnVm needs it stopped",
                vm.public_id, vm.state
            ),
        );
    }
    match disk1(conn, &vm)? {
        Some((_, Some(_))) => {}
        Some((_, None)) => {
            return fail(
                ErrorType::InvalidStatus,
                format!(
                    "VM {}: DISK1 has no image; restoreImage first",
                    vm.public_id
                ),
            );
        }
        None => {
            return fail(
                ErrorType::InvalidStatus,
                format!(
                    "VM {} has no DISK1; allocateVolume and attachVolume it as DISK1, then restoreImage",
                    vm.public_id
                ),
            );
        }
    }
    // A stopped VM holds no slot: pick its hypervisor now (VLAN-aware, see `placement`), in
    // this transaction, so the switch plane builds its VLANs while the facility starts it.
    match crate::placement::store::place_for_start(conn, vm.id, &ctx.infra_vlans)? {
        Ok(choice) => {
            tracing::info!(vm = %vm.public_id, host = %choice.host, why = %choice.explain().join("; "), "placed for power-on");
        }
        Err(why) => {
            tracing::warn!(vm = %vm.public_id, %why, "powerOnVm: no hypervisor can take the VM");
            return fail(
                ErrorType::ResourceExhausted,
                format!(
                    "no hypervisor can start VM {} now (capacity or switch MAC budgets); try later or a smaller vmType",
                    vm.public_id
                ),
            );
        }
    }
    start_async(conn, ctx, &vm, "starting", Struct::new())
}

pub fn power_off_vm(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let vm = find_vm(conn, ctx, args.str("vmId")?)?;
    args.opt_bool("force")?;
    ensure_idle(&vm)?;
    if vm.state != "running" {
        return fail(
            ErrorType::InvalidStatus,
            format!(
                "VM {} is {}; powerOffVm needs it running",
                vm.public_id, vm.state
            ),
        );
    }
    start_async(conn, ctx, &vm, "stopping", Struct::new())
}

pub fn reset_vm(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let vm = find_vm(conn, ctx, args.str("vmId")?)?;
    ensure_idle(&vm)?;
    if vm.state != "running" {
        return fail(
            ErrorType::InvalidStatus,
            format!(
                "VM {} is {}; resetVm needs it running",
                vm.public_id, vm.state
            ),
        );
    }
    start_async(conn, ctx, &vm, "resetting", Struct::new())
}

pub fn restore_image(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let vm = find_vm(conn, ctx, args.str("vmId")?)?;
    let image_id = args.str("imageId")?;
    let device = args.opt_str("device")?.unwrap_or("DISK1");
    let image: Option<(String, i64)> = conn
        .query_row(
            "SELECT architecture, min_disk_gb FROM images WHERE public_id = ?1",
            [image_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((image_arch, min_disk)) = image else {
        return fail(
            ErrorType::NotFound,
            format!("image {image_id}; getImageList lists them"),
        );
    };
    if device != "DISK1" {
        return fail(
            ErrorType::ParameterError,
            format!("device {device:?}: only DISK1 can be restored"),
        );
    }
    ensure_off(&vm, "restoreImage")?;
    let Some((size, _)) = disk1(conn, &vm)? else {
        return fail(
            ErrorType::InvalidStatus,
            format!("VM {} has no DISK1; attachVolume one first", vm.public_id),
        );
    };
    if image_arch != vm.architecture {
        return fail(
            ErrorType::ParameterError,
            format!(
                "image {image_id} is {image_arch} but VM {} is {}; changeVmArchitecture or pick another image",
                vm.public_id, vm.architecture
            ),
        );
    }
    if size < min_disk {
        return fail(
            ErrorType::ParameterError,
            format!(
                "image {image_id} needs a DISK1 of at least {min_disk} GB; this one has {size} GB"
            ),
        );
    }
    start_async(conn, ctx, &vm, "installing", st([("imageId", s(image_id))]))
}

pub fn change_vm_type(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let vm = find_vm(conn, ctx, args.str("vmId")?)?;
    let vm_type = args.str("vmType")?;
    let size = vm_type_size(conn, vm_type)?;
    ensure_off(&vm, "changeVmType")?;
    check_vm_room(conn, ctx, size, Some(vm.id))?;
    conn.execute(
        "UPDATE vms SET vm_type = ?2, updated_at = ?3 WHERE id = ?1",
        params![vm.id, vm_type, now_rfc3339()],
    )?;
    record_event(conn, "vm", &vm.public_id)?;
    Ok(Outcome {
        response: st([
            ("vmId", s(&vm.public_id)),
            ("previousVmType", s(&vm.vm_type)),
            ("vmType", s(vm_type)),
        ]),
        resource: ("vm", vm.public_id),
        pending: None,
    })
}

pub fn change_vm_architecture(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let vm = find_vm(conn, ctx, args.str("vmId")?)?;
    let arch = args.str("architecture")?;
    check_architecture(arch)?;
    ensure_off(&vm, "changeVmArchitecture")?;
    if let Some(image) = vm.image_id {
        let (image_id, image_arch): (String, String) = conn.query_row(
            "SELECT public_id, architecture FROM images WHERE id = ?1",
            [image],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if image_arch == "x86_64" && arch == "i386" {
            return fail(
                ErrorType::ParameterError,
                format!(
                    "the installed image {image_id} is x86_64 and cannot run on i386; restoreImage an i386 image afterwards instead"
                ),
            );
        }
    }
    conn.execute(
        "UPDATE vms SET architecture = ?2, updated_at = ?3 WHERE id = ?1",
        params![vm.id, arch, now_rfc3339()],
    )?;
    record_event(conn, "vm", &vm.public_id)?;
    Ok(Outcome {
        response: st([
            ("vmId", s(&vm.public_id)),
            ("previousArchitecture", s(&vm.architecture)),
            ("architecture", s(arch)),
        ]),
        resource: ("vm", vm.public_id),
        pending: None,
    })
}
