//! Image and other methods (HAAS-API.md §2.5): the image catalogue, request status
//! (getRequestIdInfo), comments on VMs, networks and volumes, and the caller's quota.

use dxr::Value;
use rusqlite::{OptionalExtension, params};

use super::args::{Args, Struct, int, s, st};
use super::fault::{ApiError, ErrorType, fail};
use super::requests::request_info;
use super::vm::check_comment;
use super::{Ctx, Outcome};
use crate::inventory::Tx;
use crate::inventory::quotas::{Amounts, Quotas};
use crate::inventory::record_event;

fn image_summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<Struct> {
    Ok(st([
        ("imageId", s(r.get::<_, String>(0)?)),
        ("name", s(r.get::<_, String>(1)?)),
        ("os", s(r.get::<_, String>(2)?)),
        ("osVersion", s(r.get::<_, String>(3)?)),
        ("architecture", s(r.get::<_, String>(4)?)),
        ("minDiskGB", int(r.get(5)?)),
        ("initSupported", Value::Boolean(r.get(6)?)),
    ]))
}

const IMAGE_COLUMNS: &str = "public_id, name, os, os_version, architecture, min_disk_gb, init_supported, description, created_at";

pub fn get_image_list(conn: &Tx<'_>, _ctx: &Ctx, args: &Args) -> Result<Struct, ApiError> {
    let (offset, limit) = args.page()?;
    let total: i64 = conn.query_row("SELECT COUNT(*) FROM images", [], |r| r.get(0))?;
    let list = conn
        .prepare_cached(&format!(
            "SELECT {IMAGE_COLUMNS} FROM images ORDER BY name LIMIT ?1 OFFSET ?2"
        ))?
        .query_map(params![limit, offset], |r| {
            image_summary(r).map(Value::Struct)
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(st([
        ("totalCount", int(total)),
        ("imageList", Value::Array(list)),
    ]))
}

pub fn get_image_info(conn: &Tx<'_>, _ctx: &Ctx, args: &Args) -> Result<Struct, ApiError> {
    let id = args.str("imageId")?;
    let image = conn
        .query_row(
            &format!("SELECT {IMAGE_COLUMNS} FROM images WHERE public_id = ?1"),
            [id],
            |r| {
                let mut m = image_summary(r)?;
                m.insert("description".into(), s(r.get::<_, String>(7)?));
                m.insert("createdAt".into(), s(r.get::<_, String>(8)?));
                Ok(m)
            },
        )
        .optional()?;
    match image {
        Some(m) => Ok(st([("image", Value::Struct(m))])),
        None => fail(
            ErrorType::NotFound,
            format!("image {id}; getImageList lists them"),
        ),
    }
}

pub fn get_request_id_info(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Struct, ApiError> {
    let id = args.str("requestId")?;
    let info = match request_info(conn, ctx.caller.customer_id, id) {
        Err(e) if e.kind == ErrorType::NotFound => {
            ctx.call_log.info(id, ctx.caller.customer_id).ok_or(e)?
        }
        other => other?,
    };
    Ok(st([("request", Value::Struct(info))]))
}

/// The table holding a resource id's comment, by its prefix.
fn resource_table(id: &str) -> Result<(&'static str, &'static str), ApiError> {
    if id.starts_with("vm-") {
        Ok(("vms", "vm"))
    } else if id.starts_with("net-") {
        Ok(("networks", "network"))
    } else if id.starts_with("vol-") {
        Ok(("volumes", "volume"))
    } else {
        fail(
            ErrorType::NotFound,
            format!("resource {id} (comments exist on vm-, net- and vol- ids)"),
        )
    }
}

pub fn get_resource_comment(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Struct, ApiError> {
    let id = args.str("resourceId")?;
    let (table, _) = resource_table(id)?;
    let comment: Option<String> = conn
        .query_row(
            &format!("SELECT comment FROM {table} WHERE public_id = ?1 AND customer_id = ?2"),
            params![id, ctx.caller.customer_id],
            |r| r.get(0),
        )
        .optional()?;
    match comment {
        Some(c) => Ok(st([("resourceId", s(id)), ("comment", s(c))])),
        None => fail(ErrorType::NotFound, format!("resource {id}")),
    }
}

pub fn set_resource_comment(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let id = args.str("resourceId")?;
    let comment = args.str("comment")?;
    let (table, kind) = resource_table(id)?;
    check_comment(comment)?;
    let changed = conn.execute(
        &format!("UPDATE {table} SET comment = ?3 WHERE public_id = ?1 AND customer_id = ?2"),
        params![id, ctx.caller.customer_id, comment],
    )?;
    if changed == 0 {
        return fail(ErrorType::NotFound, format!("resource {id}"));
    }
    record_event(conn, kind, id)?;
    Ok(Outcome {
        response: st([("resourceId", s(id)), ("comment", s(comment))]),
        resource: (kind, id.to_owned()),
        pending: None,
    })
}

pub fn get_quota(conn: &Tx<'_>, ctx: &Ctx, _args: &Args) -> Result<Struct, ApiError> {
    let c = ctx.caller.customer_id;
    let (limits, usage) = (conn.limits(c)?, conn.usage(c, None)?);
    let shape = |v: Amounts| {
        Value::Struct(st([
            ("vms", int(v.vms)),
            ("vcpu", int(v.vcpu)),
            ("memoryMB", int(v.memory_mb)),
            ("volumes", int(v.volumes)),
            ("volumeGB", int(v.volume_gb)),
            (
                "networks",
                Value::Struct(st([
                    ("L2EX", int(v.networks_l2ex)),
                    ("L3EX", int(v.networks_l3ex)),
                    ("L3SH", int(v.networks_l3sh)),
                ])),
            ),
            ("l3shAddresses", int(v.l3sh_addresses)),
            ("pendingRequests", int(v.pending_requests)),
        ]))
    };
    Ok(st([
        ("limits", shape(limits)),
        ("usage", shape(usage)),
        (
            "rate",
            Value::Struct(st([
                ("perSecond", int(i64::from(ctx.config.mutating_per_second))),
                ("burst", int(i64::from(ctx.config.mutating_burst))),
                ("readPerSecond", int(i64::from(ctx.config.read_per_second))),
                ("readBurst", int(i64::from(ctx.config.read_burst))),
            ])),
        ),
    ]))
}
