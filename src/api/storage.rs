//! Storage methods (HAAS-API.md §2.3): volumes ("extension disks") a customer allocates and
//! attaches to a VM as DISK1 (boot/system, the target of restoreImage) or DISK2. The API records
//! the volume with its backing file and iSCSI target IQN (`<portal iqn_prefix>:<volume id>`);
//! the storage driver creates and exports them from the inventory's change events.

use dxr::Value;
use rusqlite::{OptionalExtension, params};

use super::args::{Args, Struct, int, s, st};
use super::fault::{ApiError, ErrorType, fail};
use super::vm::{check_comment, ensure_off, find_vm, new_public_id};
use super::{Ctx, Outcome};
use crate::inventory::Tx;
use crate::inventory::quotas::Quotas;
use crate::inventory::record_event;
use crate::util::now_rfc3339;

/// The sizes the seed offers.
pub const SIZES_GB: [i64; 3] = [30, 100, 300];

fn check_disk_device(device: &str) -> Result<(), ApiError> {
    if device != "DISK1" && device != "DISK2" {
        return fail(
            ErrorType::ParameterError,
            format!("device {device:?}: use \"DISK1\" or \"DISK2\""),
        );
    }
    Ok(())
}

/// The caller's volume: `(row id, vm row id)`.
fn find_volume(conn: &Tx<'_>, ctx: &Ctx, public_id: &str) -> Result<(i64, Option<i64>), ApiError> {
    conn.query_row(
        "SELECT id, vm_id FROM volumes WHERE public_id = ?1 AND customer_id = ?2",
        params![public_id, ctx.caller.customer_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?
    .ok_or_else(|| ApiError::new(ErrorType::NotFound, format!("volume {public_id}")))
}

pub fn get_volume_list(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Struct, ApiError> {
    let (offset, limit) = args.page()?;
    let total: i64 = conn.query_row(
        "SELECT COUNT(*) FROM volumes WHERE customer_id = ?1",
        [ctx.caller.customer_id],
        |r| r.get(0),
    )?;
    let list = conn
        .prepare_cached(
            "SELECT o.public_id, o.size_gb, COALESCE(v.public_id, ''), COALESCE(o.device, ''), o.comment
             FROM volumes o LEFT JOIN vms v ON v.id = o.vm_id
             WHERE o.customer_id = ?1 ORDER BY o.id LIMIT ?2 OFFSET ?3",
        )?
        .query_map(params![ctx.caller.customer_id, limit, offset], |r| {
            Ok(Value::Struct(st([
                ("volumeId", s(r.get::<_, String>(0)?)),
                ("sizeGB", int(r.get(1)?)),
                ("vmId", s(r.get::<_, String>(2)?)),
                ("device", s(r.get::<_, String>(3)?)),
                ("comment", s(r.get::<_, String>(4)?)),
            ])))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(st([
        ("totalCount", int(total)),
        ("volumeList", Value::Array(list)),
    ]))
}

pub fn get_volume_info(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Struct, ApiError> {
    let id = args.str("volumeId")?;
    let info = conn
        .query_row(
            "SELECT o.public_id, o.size_gb, COALESCE(v.public_id, ''), COALESCE(o.device, ''),
                    COALESCE(i.public_id, ''), o.comment, o.created_at
             FROM volumes o LEFT JOIN vms v ON v.id = o.vm_id LEFT JOIN images i ON i.id = o.image_id
             WHERE o.public_id = ?1 AND o.customer_id = ?2",
            params![id, ctx.caller.customer_id],
            |r| {
                Ok(st([
                    ("volumeId", s(r.get::<_, String>(0)?)),
                    ("sizeGB", int(r.get(1)?)),
                    ("vmId", s(r.get::<_, String>(2)?)),
                    ("device", s(r.get::<_, String>(3)?)),
                    ("imageId", s(r.get::<_, String>(4)?)),
                    ("comment", s(r.get::<_, String>(5)?)),
                    ("createdAt", s(r.get::<_, String>(6)?)),
                ]))
            },
        )
        .optional()?;
    match info {
        Some(v) => Ok(st([("volume", Value::Struct(v))])),
        None => fail(ErrorType::NotFound, format!("volume {id}")),
    }
}

pub fn allocate_volume(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let size = args.int("sizeGB")?;
    let comment = args.opt_str("comment")?.unwrap_or("");
    check_comment(comment)?;
    if !SIZES_GB.contains(&size) {
        return fail(
            ErrorType::ParameterError,
            format!("sizeGB {size}: use 30, 100 or 300"),
        );
    }
    let used = conn.usage(ctx.caller.customer_id, None)?;
    let limits = conn.limits(ctx.caller.customer_id)?;
    let (n, gb, qn, qgb) = (
        used.volumes,
        used.volume_gb,
        limits.volumes,
        limits.volume_gb,
    );
    if n + 1 > qn {
        return fail(
            ErrorType::QuotaExceeded,
            format!("volumes: you have {n} of {qn}; deallocate one or ask the operator"),
        );
    }
    if gb + size > qgb {
        return fail(
            ErrorType::QuotaExceeded,
            format!("volumeGB: you use {gb} of {qgb} GB, this volume needs {size} more"),
        );
    }
    let portal: Option<(i64, String)> = conn
        .query_row(
            "SELECT id, iqn_prefix FROM iscsi_portals ORDER BY id LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((portal, iqn_prefix)) = portal else {
        return fail(
            ErrorType::ResourceExhausted,
            "the operator has no iSCSI portal configured; volumes cannot be created yet",
        );
    };
    let id = new_public_id(conn, "vol", "volumes")?;
    conn.execute(
        "INSERT INTO volumes (public_id, customer_id, size_gb, backing, portal_id, target_iqn, comment, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            id,
            ctx.caller.customer_id,
            size,
            format!("volumes/{id}.img"),
            portal,
            format!("{iqn_prefix}:{id}"),
            comment,
            now_rfc3339()
        ],
    )?;
    record_event(conn, "volume", &id)?;
    Ok(Outcome {
        response: st([("volumeId", s(&id)), ("sizeGB", int(size))]),
        resource: ("volume", id),
        pending: None,
    })
}

pub fn deallocate_volume(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let public_id = args.str("volumeId")?;
    let (id, vm) = find_volume(conn, ctx, public_id)?;
    if vm.is_some() {
        return fail(
            ErrorType::InvalidStatus,
            format!("volume {public_id} is attached; detachVolume it first"),
        );
    }
    conn.execute("DELETE FROM volumes WHERE id = ?1", [id])?;
    record_event(conn, "volume", public_id)?;
    Ok(Outcome {
        response: st([("volumeId", s(public_id))]),
        resource: ("volume", public_id.to_owned()),
        pending: None,
    })
}

pub fn attach_volume(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let vm = find_vm(conn, ctx, args.str("vmId")?)?;
    let public_id = args.str("volumeId")?;
    let (id, attached) = find_volume(conn, ctx, public_id)?;
    let device = args.str("device")?;
    check_disk_device(device)?;
    ensure_off(&vm, "attachVolume")?;
    if attached.is_some() {
        return fail(
            ErrorType::InvalidStatus,
            format!("volume {public_id} is attached to a VM; detachVolume it first"),
        );
    }
    let occupied: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM volumes WHERE vm_id = ?1 AND device = ?2)",
        params![vm.id, device],
        |r| r.get(0),
    )?;
    if occupied {
        return fail(
            ErrorType::Conflict,
            format!(
                "{device} of VM {} is occupied; detachVolume it first",
                vm.public_id
            ),
        );
    }
    conn.execute(
        "UPDATE volumes SET vm_id = ?2, device = ?3 WHERE id = ?1",
        params![id, vm.id, device],
    )?;
    if device == "DISK1" {
        // The VM's installed image is DISK1's.
        conn.execute(
            "UPDATE vms SET image_id = (SELECT image_id FROM volumes WHERE id = ?2), updated_at = ?3 WHERE id = ?1",
            params![vm.id, id, now_rfc3339()],
        )?;
    }
    record_event(conn, "volume", public_id)?;
    record_event(conn, "vm", &vm.public_id)?;
    Ok(Outcome {
        response: st([
            ("vmId", s(&vm.public_id)),
            ("device", s(device)),
            ("volumeId", s(public_id)),
        ]),
        resource: ("vm", vm.public_id),
        pending: None,
    })
}

pub fn detach_volume(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let vm = find_vm(conn, ctx, args.str("vmId")?)?;
    let device = args.str("device")?;
    check_disk_device(device)?;
    ensure_off(&vm, "detachVolume")?;
    let vol: Option<(i64, String)> = conn
        .query_row(
            "SELECT id, public_id FROM volumes WHERE vm_id = ?1 AND device = ?2",
            params![vm.id, device],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((id, public_id)) = vol else {
        return fail(
            ErrorType::NotFound,
            format!("no volume on {device} of VM {}", vm.public_id),
        );
    };
    conn.execute(
        "UPDATE volumes SET vm_id = NULL, device = NULL WHERE id = ?1",
        [id],
    )?;
    if device == "DISK1" {
        conn.execute(
            "UPDATE vms SET image_id = NULL, updated_at = ?2 WHERE id = ?1",
            params![vm.id, now_rfc3339()],
        )?;
    }
    record_event(conn, "volume", &public_id)?;
    record_event(conn, "vm", &vm.public_id)?;
    Ok(Outcome {
        response: st([
            ("vmId", s(&vm.public_id)),
            ("device", s(device)),
            ("volumeId", s(public_id)),
        ]),
        resource: ("vm", vm.public_id),
        pending: None,
    })
}
