//! Storage methods (HAAS-API.md §2.3): volumes ("extension disks") a customer allocates and
//! attaches to a VM as DISK1 (boot/system, the target of restoreImage) or DISK2. The API records
//! the volume with its backing file and iSCSI target IQN (`<portal iqn_prefix>:<volume id>`);
//! the storage driver creates and exports them from the inventory's change events.

use dxr::Value;

use super::args::{Args, Struct, int, list, s, st};
use super::fault::{ApiError, ErrorType, fail};
use super::vm::{check_comment, device_outcome, ensure_off, find_vm, new_public_id};
use super::{Ctx, Outcome};
use crate::inventory::quotas::Quotas;
use crate::inventory::resources::Resource;
use crate::inventory::volumes::{NewVolume, VolumeSummary, Volumes};
use crate::inventory::{Tx, record_event};
use crate::model::EventKind;
use crate::util::unix_now;

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
    conn.customer_volume(ctx.caller.customer_id, public_id)?
        .ok_or_else(|| ApiError::new(ErrorType::NotFound, format!("volume {public_id}")))
}

fn summary(v: VolumeSummary) -> Struct {
    st([
        ("volumeId", s(v.public_id)),
        ("sizeGB", int(v.size_gb)),
        ("vmId", s(v.vm)),
        ("device", s(v.device)),
        ("comment", s(v.comment)),
    ])
}

pub fn get_volume_list(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Struct, ApiError> {
    let page = conn.volume_page(ctx.caller.customer_id, args.page()?)?;
    Ok(list("volumeList", page, summary))
}

pub fn get_volume_info(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Struct, ApiError> {
    let id = args.str("volumeId")?;
    let Some(v) = conn.volume_detail(ctx.caller.customer_id, id)? else {
        return fail(ErrorType::NotFound, format!("volume {id}"));
    };
    let mut info = summary(v.summary);
    info.insert("imageId".into(), s(v.image));
    info.insert("createdAt".into(), s(v.created_at));
    Ok(st([("volume", Value::Struct(info))]))
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
    let Some(portal) = conn.default_portal()? else {
        return fail(
            ErrorType::ResourceExhausted,
            "the operator has no iSCSI portal configured; volumes cannot be created yet",
        );
    };
    let id = new_public_id(conn, Resource::Volume)?;
    conn.insert_volume(
        &NewVolume {
            public_id: &id,
            customer: ctx.caller.customer_id,
            size_gb: size,
            portal: &portal,
            comment,
        },
        unix_now(),
    )?;
    record_event(conn, EventKind::Volume, &id)?;
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
    conn.delete_volume(id)?;
    record_event(conn, EventKind::Volume, public_id)?;
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
    if conn.volume_at(vm.id, device)?.is_some() {
        return fail(
            ErrorType::Conflict,
            format!(
                "{device} of VM {} is occupied; detachVolume it first",
                vm.public_id
            ),
        );
    }
    conn.attach_volume(id, vm.id, device, unix_now())?;
    record_event(conn, EventKind::Volume, public_id)?;
    record_event(conn, EventKind::Vm, &vm.public_id)?;
    Ok(device_outcome(vm, device, "volumeId", public_id))
}

pub fn detach_volume(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let vm = find_vm(conn, ctx, args.str("vmId")?)?;
    let device = args.str("device")?;
    check_disk_device(device)?;
    ensure_off(&vm, "detachVolume")?;
    let Some((id, public_id)) = conn.volume_at(vm.id, device)? else {
        return fail(
            ErrorType::NotFound,
            format!("no volume on {device} of VM {}", vm.public_id),
        );
    };
    conn.detach_volume(id, vm.id, device, unix_now())?;
    record_event(conn, EventKind::Volume, &public_id)?;
    record_event(conn, EventKind::Vm, &vm.public_id)?;
    Ok(device_outcome(vm, device, "volumeId", &public_id))
}
