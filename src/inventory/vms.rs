//! The VMs aggregate: a backend-neutral repository, implemented for SQLite in `sqlite/vms.rs`.
//! The rules about a VM's state live here as modules move behind it (today: how a request's
//! end moves its VM).

use super::{Page, Result, Window};
use crate::model::VmState;

/// A VM as the status page lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VmOverview {
    pub vm: String,
    pub customer: String,
    pub vm_type: String,
    pub state: String,
    pub host: String,
    pub reason: String,
}

/// What a VM runs with: its type's size, its NICs and attached disks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hardware {
    /// The customer's name ("" for an operator's VM).
    pub owner: String,
    pub vcpus: u32,
    pub memory_mb: u32,
    pub bandwidth_mbps: u32,
    /// Device, MAC, and the access VLAN of its network (if attached), by device.
    pub nics: Vec<(String, String, Option<u16>)>,
    pub disks: Vec<AttachedDisk>,
    /// The public id of the image installed on DISK1, if any.
    pub image: Option<String>,
}

/// A volume attached to a VM, with the portal that exports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedDisk {
    pub device: String,
    pub address: String,
    pub port: u16,
    pub target: String,
    pub lun: u32,
    pub iqn_prefix: String,
}

/// A customer's VM as the API's rules need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmRecord {
    pub id: i64,
    pub public_id: String,
    pub vm_type: String,
    pub architecture: String,
    pub state: VmState,
    pub image_id: Option<i64>,
    pub current_request_id: Option<String>,
}

/// A VM in a customer's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSummary {
    pub public_id: String,
    pub vm_type: String,
    pub architecture: String,
    pub state: VmState,
    pub comment: String,
}

/// A VM with its size, disks and NICs (`getVmInfo`). Absent references are empty strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmDetail {
    pub summary: VmSummary,
    pub vcpus: i64,
    pub memory_mb: i64,
    pub bandwidth_mbps: i64,
    pub image: String,
    pub created_at: String,
    pub updated_at: String,
    pub current_request: String,
    pub disks: Vec<DiskSummary>,
    pub nics: Vec<NicSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSummary {
    pub device: String,
    pub volume: String,
    pub size_gb: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicSummary {
    pub device: String,
    pub network: String,
    pub network_kind: String,
    pub mac: String,
    pub addresses: Vec<String>,
}

/// A VM a customer allocates (stopped, on no host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVm<'a> {
    pub public_id: &'a str,
    pub customer: i64,
    pub vm_type: &'a str,
    pub architecture: &'a str,
    pub comment: &'a str,
}

/// What VM `id` has on DISK1: the volume's size and the image installed on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disk1 {
    pub size_gb: i64,
    pub image_id: Option<i64>,
}

pub trait Vms {
    /// VM `vm`'s hardware (an error if there is no such VM).
    fn hardware(&self, vm: &str) -> Result<Hardware>;
    /// Ends request `request` on VM `vm` (public id): the VM takes `state` (with `reason`,
    /// kept only for `error`) and no longer has a current request. A VM that is `stopped`
    /// holds no hypervisor slot (a power-on places it again). Nothing happens unless the
    /// request is the VM's current one; whether it was.
    fn end_request(
        &self,
        vm: &str,
        request: &str,
        state: VmState,
        reason: &str,
        at: i64,
    ) -> Result<bool>;
    /// Sets VM `vm`'s state from what its host saw (not from a request): `stopped` also frees
    /// its hypervisor slot.
    fn set_observed_state(&self, vm: &str, state: VmState, reason: &str, at: i64) -> Result<()>;
    /// Every VM for the operator's views, by public id.
    fn overview(&self) -> Result<Vec<VmOverview>>;
    /// How many VMs are in `state`.
    fn count_in_state(&self, state: VmState) -> Result<i64>;
    /// The kind and subnet of the network attached to NIC `device` of VM `vm_id`.
    fn nic_network(&self, vm_id: i64, device: &str) -> Result<Option<(String, Option<String>)>>;
    /// The size (vCPUs, memory MB) of VM type `name`.
    fn vm_type_size(&self, name: &str) -> Result<Option<(u32, u32)>>;
    /// The id of the hypervisor named `name`.
    fn hypervisor_id(&self, name: &str) -> Result<Option<i64>>;
    /// The id of the VM named `name`.
    fn vm_id_by_name(&self, name: &str) -> Result<Option<i64>>;
    /// The name of VM `id`.
    fn vm_name(&self, id: i64) -> Result<String>;
    /// Creates an operator's VM, running on `host_id`; its id.
    fn create_running_vm(
        &self,
        public_id: &str,
        name: &str,
        vm_type: &str,
        host_id: i64,
        at: i64,
    ) -> Result<i64>;
    fn add_nic(&self, vm_id: i64, device: &str, mac: &str, network_id: i64) -> Result<()>;
    /// Records the hypervisor VM `vm_id` is placed on.
    fn set_host(&self, vm_id: i64, host_id: i64) -> Result<()>;
    /// Marks VM `name` as moving to `host_id`; whether there is such a VM.
    fn begin_move(&self, name: &str, host_id: i64, at: i64) -> Result<bool>;
    /// Where VM `name` is moving (`None`: no such VM; `Some(None)`: not moving).
    fn move_target(&self, name: &str) -> Result<Option<Option<String>>>;
    /// VM `name` now runs on its move's destination only.
    fn finish_move(&self, name: &str, at: i64) -> Result<()>;
    /// The host VM `name` is on (`None`: no such VM).
    fn host_of_vm(&self, name: &str) -> Result<Option<Option<String>>>;
    /// Deletes VM `name` with its NICs.
    fn delete_vm(&self, name: &str) -> Result<()>;
    /// Records that image `image` (public id) is installed on the VM's DISK1.
    fn set_installed_image(&self, vm: &str, image: &str) -> Result<()>;

    /// Customer `customer`'s VM `public_id` (another customer's is `None`).
    fn customer_vm(&self, customer: i64, public_id: &str) -> Result<Option<VmRecord>>;
    /// A page of the customer's VMs (in `state`, if given), oldest first.
    fn vm_page(
        &self,
        customer: i64,
        state: Option<&str>,
        window: Window,
    ) -> Result<Page<VmSummary>>;
    /// The customer's VM `public_id` with its size, disks and NICs.
    fn vm_detail(&self, customer: i64, public_id: &str) -> Result<Option<VmDetail>>;
    /// Every VM type's name, smallest first.
    fn vm_type_names(&self) -> Result<Vec<String>>;
    /// Records a customer's new VM, stopped.
    fn insert_vm(&self, vm: &NewVm<'_>, at: i64) -> Result<()>;
    /// Deletes VM `id`: its volumes stay allocated (detached), its NICs go, and their L3SH
    /// addresses stay allocated to the customer (unassigned).
    fn deallocate_vm(&self, id: i64) -> Result<()>;
    /// VM `id` takes transitional `state` for request `request`.
    fn begin_request(&self, id: i64, state: VmState, request: &str, at: i64) -> Result<()>;
    /// What VM `id` has on DISK1, if a volume is attached there.
    fn disk1(&self, id: i64) -> Result<Option<Disk1>>;
    fn set_vm_type(&self, id: i64, vm_type: &str, at: i64) -> Result<()>;
    fn set_architecture(&self, id: i64, architecture: &str, at: i64) -> Result<()>;
}
