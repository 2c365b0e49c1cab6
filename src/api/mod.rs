//! The customer-facing HaaS API (HAAS-API.md): XML-RPC on `POST /RPC2`.
//!
//! - [`rpc`] is the transport: body limit, a pre-scan that bounds nesting and refuses DTDs,
//!   the dxr codec, auth, rate limits, and the request id every call gets.
//! - [`METHODS`] is the method table: name, scope, argument members, help text and body.
//!   Read bodies run on the inventory's read pool; write bodies run inside the single
//!   writer's transaction ([`requests::run_write`]), so quota checks, the change, the request
//!   row and the audit entry commit together or not at all.
//! - One file per method group: [`vm`], [`network`], [`storage`], [`init`], [`other`].

pub mod args;
pub mod auth;
pub mod calllog;
pub mod encode;
pub mod fault;
pub mod init;
pub mod internal;
pub mod keys;
pub mod limit;
pub mod network;
pub mod other;
pub mod password;
pub mod requests;
pub mod rpc;
pub mod storage;
pub mod vm;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use tokio::sync::{Notify, Semaphore};

use crate::config;
use crate::inventory::Inventory;
use crate::inventory::Tx;
use crate::model::EventKind;
use crate::switch::vlans::VlanSet;
use args::{Args, Struct};
use auth::{Caller, KeyCache};
use calllog::CallLog;
use fault::ApiError;
use keys::Scope;
use limit::Buckets;

/// Everything a method body may use besides the database.
pub struct Ctx {
    pub caller: Caller,
    /// This call's request id (also the id of the async request it creates).
    pub request_id: String,
    pub config: Arc<config::Api>,
    /// Read calls recorded but not yet written (for getRequestIdInfo).
    pub call_log: Arc<CallLog>,
    /// `[switch] infra_vlans`: placement at power-on sees the edges as the planner does.
    pub infra_vlans: Arc<VlanSet>,
    /// The appliance secret (`crate::secret`): derived salts for plaintext passwords.
    pub secret: [u8; 32],
}

/// What a write body did. `pending` makes the call async: its request row is inserted as
/// `queued` for the job engine instead of `succeeded`.
pub struct Outcome {
    pub response: Struct,
    /// `(resourceType, resourceId)` for the request row and the audit trail.
    pub resource: (&'static str, String),
    pub pending: Option<Pending>,
}

pub struct Pending {
    pub previous_state: crate::model::VmState,
}

pub type ReadFn = fn(&Tx<'_>, &Ctx, &Args) -> Result<Struct, ApiError>;
pub type WriteFn = fn(&Tx<'_>, &Ctx, &Args) -> Result<Outcome, ApiError>;
/// Rewrites a call's arguments before anything records them (e.g. a plaintext secret into its
/// hash), so the request row, the clientToken digest and the facility see only the result.
pub type PrepareFn = fn(&mut Args, &Ctx) -> Result<(), ApiError>;

#[derive(Clone, Copy)]
pub enum Body {
    Read(ReadFn),
    Write(WriteFn),
}

/// One API method.
pub struct Method {
    pub name: &'static str,
    pub scope: Scope,
    /// The members its `args` struct may have; anything else is -32602.
    pub members: &'static [&'static str],
    /// `clientToken` makes repeated calls idempotent.
    pub idempotent: bool,
    pub help: &'static str,
    pub body: Body,
    pub prepare: Option<PrepareFn>,
}

impl Method {
    const fn prepared(mut self, f: PrepareFn) -> Method {
        self.prepare = Some(f);
        self
    }
}

const fn read(
    name: &'static str,
    members: &'static [&'static str],
    help: &'static str,
    f: ReadFn,
) -> Method {
    Method {
        name,
        scope: Scope::Read,
        members,
        idempotent: false,
        help,
        body: Body::Read(f),
        prepare: None,
    }
}

const fn write(
    name: &'static str,
    scope: Scope,
    members: &'static [&'static str],
    help: &'static str,
    f: WriteFn,
) -> Method {
    let mut idempotent = false;
    let mut i = 0;
    while i < members.len() {
        if members[i].len() == 11 && matches!(members[i].as_bytes(), b"clientToken") {
            idempotent = true;
        }
        i += 1;
    }
    Method {
        name,
        scope,
        members,
        idempotent,
        help,
        body: Body::Write(f),
        prepare: None,
    }
}

use Scope::{Full, Operate};

/// Every method of HAAS-API.md §2.1–2.5, in the contract's order.
pub static METHODS: &[Method] = &[
    read(
        "getVmList",
        &["offset", "limit", "state"],
        "List your VMs: {offset?, limit?, state?} -> {totalCount, vmList}",
        vm::get_vm_list,
    ),
    read(
        "getVmInfo",
        &["vmId"],
        "One VM with its disks and NICs: {vmId} -> {vm}",
        vm::get_vm_info,
    ),
    read(
        "getVmStatus",
        &["vmId"],
        "Power, state and latest async command of a VM: {vmId} -> {vmId, power, state, command}",
        vm::get_vm_status,
    ),
    write(
        "allocateVm",
        Full,
        &["vmType", "architecture", "comment", "clientToken"],
        "Create a stopped VM, reserving capacity: {vmType, architecture?, comment?, clientToken?} -> {vmId, vmType, architecture, power, state}",
        vm::allocate_vm,
    ),
    write(
        "deallocateVm",
        Full,
        &["vmId"],
        "Delete a stopped VM; its volumes and networks stay allocated: {vmId} -> {vmId}",
        vm::deallocate_vm,
    ),
    write(
        "powerOnVm",
        Operate,
        &["vmId", "clientToken"],
        "Start a VM (async): {vmId, clientToken?} -> {vmId, previousState, currentState}",
        vm::power_on_vm,
    ),
    write(
        "powerOffVm",
        Operate,
        &["vmId", "force", "clientToken"],
        "Stop a VM, ACPI or hard (async): {vmId, force?, clientToken?} -> {vmId, previousState, currentState}",
        vm::power_off_vm,
    ),
    write(
        "resetVm",
        Operate,
        &["vmId", "clientToken"],
        "Reset a running VM (async): {vmId, clientToken?} -> {vmId, previousState, currentState}",
        vm::reset_vm,
    ),
    write(
        "restoreImage",
        Operate,
        &["vmId", "imageId", "device", "clientToken"],
        "Install an image on DISK1 of a stopped VM (async): {vmId, imageId, device?, clientToken?} -> {vmId, imageId, previousState, currentState}",
        vm::restore_image,
    ),
    write(
        "changeVmType",
        Full,
        &["vmId", "vmType"],
        "Change the type of a stopped VM: {vmId, vmType} -> {vmId, previousVmType, vmType}",
        vm::change_vm_type,
    ),
    write(
        "changeVmArchitecture",
        Full,
        &["vmId", "architecture"],
        "Change the architecture of a stopped VM: {vmId, architecture} -> {vmId, previousArchitecture, architecture}",
        vm::change_vm_architecture,
    ),
    read(
        "getNetworkList",
        &["offset", "limit", "networkType"],
        "List your networks: {offset?, limit?, networkType?} -> {totalCount, networkList}",
        network::get_network_list,
    ),
    read(
        "getNetworkInfo",
        &["networkId"],
        "One network with attachments and addresses: {networkId} -> {network}",
        network::get_network_info,
    ),
    write(
        "allocateNetwork",
        Full,
        &["networkType", "prefixLength", "comment", "clientToken"],
        "Create an L2EX, L3EX or L3SH network: {networkType, prefixLength?, comment?, clientToken?} -> {networkId, networkType, subnet, gateway}",
        network::allocate_network,
    ),
    write(
        "deallocateNetwork",
        Full,
        &["networkId"],
        "Delete a detached network: {networkId} -> {networkId}",
        network::deallocate_network,
    ),
    write(
        "allocateIpAddress",
        Full,
        &["networkId", "ipAddress", "count", "clientToken"],
        "Take L3SH addresses from the shared pool: {networkId, ipAddress? | count?, clientToken?} -> {networkId, ipAddresses}",
        network::allocate_ip_address,
    ),
    write(
        "deallocateIpAddress",
        Full,
        &["networkId", "ipAddress"],
        "Return an unassigned L3SH address: {networkId, ipAddress} -> {ipAddress}",
        network::deallocate_ip_address,
    ),
    write(
        "attachNetwork",
        Operate,
        &["vmId", "networkId", "device"],
        "Attach a network to NET1/NET2 of a stopped VM: {vmId, networkId, device} -> {vmId, device, networkId, macAddress}",
        network::attach_network,
    ),
    write(
        "detachNetwork",
        Operate,
        &["vmId", "device"],
        "Detach NET1/NET2 of a stopped VM: {vmId, device} -> {vmId, device, networkId}",
        network::detach_network,
    ),
    write(
        "assignIpAddress",
        Operate,
        &["vmId", "device", "ipAddress"],
        "Bind an allocated L3SH address to a NIC: {vmId, device, ipAddress} -> {vmId, device, ipAddress}",
        network::assign_ip_address,
    ),
    write(
        "removeIpAddress",
        Operate,
        &["vmId", "device", "ipAddress"],
        "Unbind an L3SH address from a NIC: {vmId, device, ipAddress} -> {vmId, device, ipAddress}",
        network::remove_ip_address,
    ),
    read(
        "getVolumeList",
        &["offset", "limit"],
        "List your volumes: {offset?, limit?} -> {totalCount, volumeList}",
        storage::get_volume_list,
    ),
    read(
        "getVolumeInfo",
        &["volumeId"],
        "One volume: {volumeId} -> {volume}",
        storage::get_volume_info,
    ),
    write(
        "allocateVolume",
        Full,
        &["sizeGB", "comment", "clientToken"],
        "Create a volume of 30, 100 or 300 GB: {sizeGB, comment?, clientToken?} -> {volumeId, sizeGB}",
        storage::allocate_volume,
    ),
    write(
        "deallocateVolume",
        Full,
        &["volumeId"],
        "Delete a detached volume and its data: {volumeId} -> {volumeId}",
        storage::deallocate_volume,
    ),
    write(
        "attachVolume",
        Operate,
        &["vmId", "volumeId", "device"],
        "Attach a volume as DISK1/DISK2 of a stopped VM: {vmId, volumeId, device} -> {vmId, device, volumeId}",
        storage::attach_volume,
    ),
    write(
        "detachVolume",
        Operate,
        &["vmId", "device"],
        "Detach DISK1/DISK2 of a stopped VM: {vmId, device} -> {vmId, device, volumeId}",
        storage::detach_volume,
    ),
    write(
        "setIpAddress",
        Operate,
        &[
            "vmId",
            "device",
            "ipAddress",
            "prefixLength",
            "netmask",
            "gateway",
            "clientToken",
        ],
        "Configure a static address in the guest (async, VM off): {vmId, device, ipAddress, prefixLength | netmask, gateway?} -> {vmId, previousState, currentState}",
        init::set_ip_address,
    ),
    write(
        "unsetIpAddress",
        Operate,
        &["vmId", "device", "clientToken"],
        "Reset a guest interface to DHCP (async, VM off): {vmId, device} -> {vmId, previousState, currentState}",
        init::unset_ip_address,
    ),
    write(
        "setNetwork",
        Operate,
        &[
            "vmId",
            "hostname",
            "defaultGateway",
            "gatewayDevice",
            "nameservers",
            "searchDomains",
            "clientToken",
        ],
        "Set hostname, gateway and resolvers in the guest (async, VM off) -> {vmId, previousState, currentState}",
        init::set_network,
    ),
    write(
        "setPassword",
        Operate,
        &["vmId", "user", "passwordHash", "password", "clientToken"],
        "Set a guest user's password from a SHA-512 crypt hash, or from a plaintext password that nhn hashes at once and never stores (async, VM off) -> {vmId, previousState, currentState}",
        init::set_password,
    )
    .prepared(password::hash_plaintext),
    write(
        "setSshKey",
        Operate,
        &["vmId", "user", "publicKeys", "append", "clientToken"],
        "Install SSH public keys for a guest user (async, VM off) -> {vmId, previousState, currentState}",
        init::set_ssh_key,
    ),
    write(
        "setIptables",
        Operate,
        &["vmId", "rules", "ip6Rules", "clientToken"],
        "Install iptables-save rules in the guest (async, VM off) -> {vmId, previousState, currentState}",
        init::set_iptables,
    ),
    write(
        "setSshdConfig",
        Operate,
        &[
            "vmId",
            "permitRootLogin",
            "passwordAuthentication",
            "port",
            "clientToken",
        ],
        "Set whitelisted sshd_config directives in the guest (async, VM off) -> {vmId, previousState, currentState}",
        init::set_sshd_config,
    ),
    write(
        "writeFile",
        Operate,
        &[
            "vmId",
            "path",
            "content",
            "mode",
            "owner",
            "group",
            "clientToken",
        ],
        "Write a whitelisted guest file, at most 64 KiB (async, VM off) -> {vmId, previousState, currentState}",
        init::write_file,
    ),
    read(
        "getImageList",
        &["offset", "limit"],
        "List the images: {offset?, limit?} -> {totalCount, imageList}",
        other::get_image_list,
    ),
    read(
        "getImageInfo",
        &["imageId"],
        "One image: {imageId} -> {image}",
        other::get_image_info,
    ),
    read(
        "getRequestIdInfo",
        &["requestId"],
        "Status and result of any of your calls: {requestId} -> {request}",
        other::get_request_id_info,
    ),
    read(
        "getResourceComment",
        &["resourceId"],
        "The comment of a VM, network or volume: {resourceId} -> {resourceId, comment}",
        other::get_resource_comment,
    ),
    write(
        "setResourceComment",
        Operate,
        &["resourceId", "comment"],
        "Set the comment (at most 255 characters) of a VM, network or volume: {resourceId, comment} -> {resourceId, comment}",
        other::set_resource_comment,
    ),
    read(
        "getQuota",
        &[],
        "Your limits, usage and request rate: {} -> {limits, usage, rate}",
        other::get_quota,
    ),
];

pub fn method(name: &str) -> Option<&'static Method> {
    METHODS.iter().find(|m| m.name == name)
}

/// The API service: shared by every `/RPC2` call.
pub struct Api {
    pub inventory: Inventory,
    pub config: Arc<config::Api>,
    pub keys: KeyCache,
    pub read_rate: Buckets<i64>,
    pub write_rate: Buckets<i64>,
    pub failed_auth: Buckets<String>,
    /// Woken after a call queues an async request.
    pub jobs: Arc<Notify>,
    /// Calls being read or run at once; bounds memory (each holds at most one body).
    pub calls: Semaphore,
    /// Records of read and refused calls, written in batches.
    pub call_log: Arc<CallLog>,
    pub secret: [u8; 32],
    pub infra_vlans: Arc<VlanSet>,
}

/// Calls in progress at once (beyond it, connections wait for a slot).
pub const MAX_CONCURRENT_CALLS: usize = 256;

impl Api {
    pub fn new(
        inventory: Inventory,
        config: config::Api,
        jobs: Arc<Notify>,
        secret: [u8; 32],
        infra_vlans: VlanSet,
    ) -> Arc<Api> {
        let api = Arc::new(Api {
            read_rate: Buckets::new(f64::from(config.read_per_second), config.read_burst),
            write_rate: Buckets::new(f64::from(config.mutating_per_second), config.mutating_burst),
            failed_auth: Buckets::new(
                f64::from(config.auth_failures_per_minute) / 60.0,
                config.auth_failures_burst,
            ),
            inventory,
            config: Arc::new(config),
            keys: KeyCache::default(),
            jobs,
            calls: Semaphore::new(MAX_CONCURRENT_CALLS),
            call_log: Arc::new(CallLog::default()),
            secret,
            infra_vlans: Arc::new(infra_vlans),
        });
        api.follow_key_changes();
        api
    }

    /// Drops cached keys whenever a key or customer changes (revocation takes effect at once).
    fn follow_key_changes(self: &Arc<Self>) {
        let mut events = self.inventory.subscribe();
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let ev = events.recv().await;
                let Some(api) = weak.upgrade() else { return };
                match ev {
                    Ok(ev) if !matches!(ev.kind, EventKind::Key | EventKind::Customer) => {}
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        api.keys.clear()
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }
}
