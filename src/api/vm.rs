//! VM methods (HAAS-API.md §2.1): the cartridge records customers allocate, inspect, power and
//! re-image. Sync calls edit the `vms` row; power and restore calls move the VM to a
//! transitional state and queue an async request in the same transaction (the job engine and
//! the facility do the rest). Also the helpers the other method groups share: looking up a VM
//! *of this customer* (a foreign id is NotFound) and the "powered off and idle" rule.

use dxr::Value;

use super::args::{Args, Struct, int, list, s, st};
use super::fault::{ApiError, ErrorType, fail};
use super::requests::command_status;
use super::{Ctx, Outcome, Pending};
use crate::inventory::images::Images;
use crate::inventory::quotas::Quotas;
use crate::inventory::resources::{Resource, Resources};
use crate::inventory::vms::{Disk1, NewVm, VmSummary, Vms};
use crate::inventory::{Tx, record_event};
use crate::model::{EventKind, Power, VmState};
use crate::util::unix_now;

/// A VM row as the API sees it.
pub use crate::inventory::vms::VmRecord as Vm;

/// The caller's VM `public_id`; another customer's (or no) VM is NotFound.
pub fn find_vm(conn: &Tx<'_>, ctx: &Ctx, public_id: &str) -> Result<Vm, ApiError> {
    conn.customer_vm(ctx.caller.customer_id, public_id)?
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

/// InvalidStatus unless the VM is in `state`.
pub fn ensure_state(vm: &Vm, state: VmState, method: &str) -> Result<(), ApiError> {
    if vm.state != state {
        return fail(
            ErrorType::InvalidStatus,
            format!(
                "VM {} is {}; {method} needs it {state}",
                vm.public_id, vm.state
            ),
        );
    }
    Ok(())
}

/// The answer of a call that changed one device of a VM: `{vmId, device, <member>}`.
pub fn device_outcome(vm: Vm, device: &str, member: &'static str, value: &str) -> Outcome {
    Outcome {
        response: st([
            ("vmId", s(&vm.public_id)),
            ("device", s(device)),
            (member, s(value)),
        ]),
        resource: ("vm", vm.public_id),
        pending: None,
    }
}

/// Hardware edits need the VM powered off and idle (§2.0).
pub fn ensure_off(vm: &Vm, method: &str) -> Result<(), ApiError> {
    ensure_idle(vm)?;
    if vm.state.power() == Power::On {
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
pub fn new_public_id(conn: &Tx<'_>, kind: Resource) -> Result<String, ApiError> {
    for _ in 0..16 {
        let mut b = [0u8; 4];
        rand::fill(&mut b);
        let id = format!(
            "{}-{:02x}{:02x}{:02x}{:02x}",
            kind.prefix(),
            b[0],
            b[1],
            b[2],
            b[3]
        );
        if !conn.public_id_taken(kind, &id)? {
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
    if let Some((vcpus, memory_mb)) = conn.vm_type_size(name)? {
        return Ok((i64::from(vcpus), i64::from(memory_mb)));
    }
    let names = conn.vm_type_names()?;
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

fn summary(v: VmSummary) -> Struct {
    st([
        ("vmId", s(v.public_id)),
        ("vmType", s(v.vm_type)),
        ("architecture", s(v.architecture)),
        ("power", s(v.state.power().as_str())),
        ("state", s(v.state.as_str())),
        ("comment", s(v.comment)),
    ])
}

pub fn get_vm_list(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Struct, ApiError> {
    let window = args.page()?;
    let state = args.opt_str("state")?;
    if let Some(state) = state
        && let Err(e) = state.parse::<VmState>()
    {
        return fail(
            ErrorType::ParameterError,
            format!("state {state:?}: use one of {}", e.known.join(", ")),
        );
    }
    let page = conn.vm_page(ctx.caller.customer_id, state, window)?;
    Ok(list("vmList", page, summary))
}

pub fn get_vm_info(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Struct, ApiError> {
    let vm_id = args.str("vmId")?;
    let Some(d) = conn.vm_detail(ctx.caller.customer_id, vm_id)? else {
        return fail(ErrorType::NotFound, format!("VM {vm_id}"));
    };
    let disks = d.disks.into_iter().map(|disk| {
        Value::Struct(st([
            ("device", s(disk.device)),
            ("volumeId", s(disk.volume)),
            ("sizeGB", int(disk.size_gb)),
        ]))
    });
    let nics = d.nics.into_iter().map(|nic| {
        Value::Struct(st([
            ("device", s(nic.device)),
            ("networkId", s(nic.network)),
            ("networkType", s(nic.network_kind)),
            ("macAddress", s(nic.mac)),
            (
                "ipAddresses",
                Value::Array(nic.addresses.into_iter().map(s).collect()),
            ),
        ]))
    });
    let mut vm = summary(d.summary);
    vm.extend([
        ("cpu".to_owned(), int(d.vcpus)),
        ("memoryMB".to_owned(), int(d.memory_mb)),
        ("bandwidthMbps".to_owned(), int(d.bandwidth_mbps)),
        ("imageId".to_owned(), s(d.image)),
        ("createdAt".to_owned(), s(d.created_at)),
        ("updatedAt".to_owned(), s(d.updated_at)),
        ("currentRequestId".to_owned(), s(d.current_request)),
        ("disks".to_owned(), Value::Array(disks.collect())),
        ("nics".to_owned(), Value::Array(nics.collect())),
    ]);
    Ok(st([("vm", Value::Struct(vm))]))
}

pub fn get_vm_status(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Struct, ApiError> {
    let vm = find_vm(conn, ctx, args.str("vmId")?)?;
    let command = command_status(conn, &vm.public_id)?;
    Ok(st([
        ("vmId", s(&vm.public_id)),
        ("power", s(vm.state.power().as_str())),
        ("state", s(vm.state.as_str())),
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
    let id = new_public_id(conn, Resource::Vm)?;
    conn.insert_vm(
        &NewVm {
            public_id: &id,
            customer: ctx.caller.customer_id,
            vm_type,
            architecture: arch,
            comment,
        },
        unix_now(),
    )?;
    record_event(conn, EventKind::Vm, &id)?;
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
    conn.deallocate_vm(vm.id)?;
    record_event(conn, EventKind::Vm, &vm.public_id)?;
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
    to_state: VmState,
    mut response: Struct,
) -> Result<Outcome, ApiError> {
    conn.begin_request(vm.id, to_state, &ctx.request_id, unix_now())?;
    record_event(conn, EventKind::Vm, &vm.public_id)?;
    response.insert("vmId".into(), s(&vm.public_id));
    response.insert("previousState".into(), s(vm.state.as_str()));
    response.insert("currentState".into(), s(to_state.as_str()));
    Ok(Outcome {
        response,
        resource: ("vm", vm.public_id.clone()),
        pending: Some(Pending {
            previous_state: vm.state,
        }),
    })
}

/// The image installed on the VM's DISK1 (row id); InvalidStatus if there is none, with
/// `no_disk`, what to do when the VM has no DISK1 at all.
pub fn installed_image(conn: &Tx<'_>, vm: &Vm, no_disk: &str) -> Result<i64, ApiError> {
    match disk1(conn, vm)? {
        Some(Disk1 {
            image_id: Some(image),
            ..
        }) => Ok(image),
        Some(Disk1 { image_id: None, .. }) => fail(
            ErrorType::InvalidStatus,
            format!(
                "VM {}: DISK1 has no image; restoreImage first",
                vm.public_id
            ),
        ),
        None => fail(
            ErrorType::InvalidStatus,
            format!("VM {} has no DISK1; {no_disk}", vm.public_id),
        ),
    }
}

/// The VM's DISK1 (its size and installed image), if it has one.
pub fn disk1(conn: &Tx<'_>, vm: &Vm) -> Result<Option<Disk1>, ApiError> {
    Ok(conn.disk1(vm.id)?)
}

pub fn power_on_vm(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let vm = find_vm(conn, ctx, args.str("vmId")?)?;
    ensure_idle(&vm)?;
    ensure_state(&vm, VmState::Stopped, "powerOnVm")?;
    installed_image(
        conn,
        &vm,
        "allocateVolume and attachVolume it as DISK1, then restoreImage",
    )?;
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
    start_async(conn, ctx, &vm, VmState::Starting, Struct::new())
}

pub fn power_off_vm(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let vm = find_vm(conn, ctx, args.str("vmId")?)?;
    args.opt_bool("force")?;
    ensure_idle(&vm)?;
    ensure_state(&vm, VmState::Running, "powerOffVm")?;
    start_async(conn, ctx, &vm, VmState::Stopping, Struct::new())
}

pub fn reset_vm(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let vm = find_vm(conn, ctx, args.str("vmId")?)?;
    ensure_idle(&vm)?;
    ensure_state(&vm, VmState::Running, "resetVm")?;
    start_async(conn, ctx, &vm, VmState::Resetting, Struct::new())
}

pub fn restore_image(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let vm = find_vm(conn, ctx, args.str("vmId")?)?;
    let image_id = args.str("imageId")?;
    let device = args.opt_str("device")?.unwrap_or("DISK1");
    let Some(image) = conn.image(image_id)? else {
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
    let (image_arch, min_disk) = (image.architecture, image.min_disk_gb);
    let Some(Disk1 { size_gb: size, .. }) = disk1(conn, &vm)? else {
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
    start_async(
        conn,
        ctx,
        &vm,
        VmState::Installing,
        st([("imageId", s(image_id))]),
    )
}

pub fn change_vm_type(conn: &Tx<'_>, ctx: &Ctx, args: &Args) -> Result<Outcome, ApiError> {
    let vm = find_vm(conn, ctx, args.str("vmId")?)?;
    let vm_type = args.str("vmType")?;
    let size = vm_type_size(conn, vm_type)?;
    ensure_off(&vm, "changeVmType")?;
    check_vm_room(conn, ctx, size, Some(vm.id))?;
    conn.set_vm_type(vm.id, vm_type, unix_now())?;
    record_event(conn, EventKind::Vm, &vm.public_id)?;
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
        let image = conn
            .image_by_row(image)?
            .ok_or_else(|| crate::inventory::Error::NotFound(format!("image row {image}")))?;
        let image_id = &image.public_id;
        if image.architecture == "x86_64" && arch == "i386" {
            return fail(
                ErrorType::ParameterError,
                format!(
                    "the installed image {image_id} is x86_64 and cannot run on i386; restoreImage an i386 image afterwards instead"
                ),
            );
        }
    }
    conn.set_architecture(vm.id, arch, unix_now())?;
    record_event(conn, EventKind::Vm, &vm.public_id)?;
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
