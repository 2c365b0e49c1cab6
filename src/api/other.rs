//! Image and other methods (HAAS-API.md §2.5): the image catalogue, request status
//! (getRequestIdInfo), comments on VMs, networks and volumes, and the caller's quota.

use dxr::Value;

use super::args::{Args, Struct, int, list, s, st};
use super::fault::{ApiError, ErrorType, fail};
use super::requests::request_info;
use super::vm::check_comment;
use super::{Ctx, Outcome};
use crate::inventory::images::{ImageRecord, Images};
use crate::inventory::quotas::{Amounts, Quotas};
use crate::inventory::resources::{Resource, Resources};
use crate::inventory::{Tx, record_event};

fn image_summary(i: &ImageRecord) -> Struct {
    st([
        ("imageId", s(&i.public_id)),
        ("name", s(&i.name)),
        ("os", s(&i.os)),
        ("osVersion", s(&i.os_version)),
        ("architecture", s(&i.architecture)),
        ("minDiskGB", int(i.min_disk_gb)),
        ("initSupported", Value::Boolean(i.init_supported)),
    ])
}

pub fn get_image_list(conn: &Tx<'_>, _ctx: &Ctx, args: &Args) -> Result<Struct, ApiError> {
    let page = conn.image_page(args.page()?)?;
    Ok(list("imageList", page, |i| image_summary(&i)))
}

pub fn get_image_info(conn: &Tx<'_>, _ctx: &Ctx, args: &Args) -> Result<Struct, ApiError> {
    let id = args.str("imageId")?;
    let Some(image) = conn.image(id)? else {
        return fail(
            ErrorType::NotFound,
            format!("image {id}; getImageList lists them"),
        );
    };
    let mut m = image_summary(&image);
    m.insert("description".into(), s(image.description));
    m.insert("createdAt".into(), s(image.created_at));
    Ok(st([("image", Value::Struct(m))]))
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

/// The kind of a resource id that has a comment, by its prefix.
fn commented(id: &str) -> Result<Resource, ApiError> {
    Resource::of_id(id).ok_or_else(|| {
        ApiError::new(
            ErrorType::NotFound,
            format!("resource {id} (comments exist on vm-, net- and vol- ids)"),
        )
    })
}

pub fn get_resource_comment(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Struct, ApiError> {
    let id = args.str("resourceId")?;
    match conn.comment(commented(id)?, id, ctx.caller.customer_id)? {
        Some(c) => Ok(st([("resourceId", s(id)), ("comment", s(c))])),
        None => fail(ErrorType::NotFound, format!("resource {id}")),
    }
}

pub fn set_resource_comment(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let id = args.str("resourceId")?;
    let comment = args.str("comment")?;
    let kind = commented(id)?;
    check_comment(comment)?;
    if !conn.set_comment(kind, id, ctx.caller.customer_id, comment)? {
        return fail(ErrorType::NotFound, format!("resource {id}"));
    }
    record_event(conn, kind.event_kind(), id)?;
    Ok(Outcome {
        response: st([("resourceId", s(id)), ("comment", s(comment))]),
        resource: (kind.event_kind().as_str(), id.to_owned()),
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
