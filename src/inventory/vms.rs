//! The VMs aggregate: a backend-neutral repository, implemented for SQLite in `sqlite/vms.rs`.
//! The rules about a VM's state live here as modules move behind it (today: how a request's
//! end moves its VM).

use super::Result;

pub trait Vms {
    /// Ends request `request` on VM `vm` (public id): the VM takes `state` (with `reason`,
    /// kept only for `error`) and no longer has a current request. A VM that is `stopped`
    /// holds no hypervisor slot (a power-on places it again). Nothing happens unless the
    /// request is the VM's current one; whether it was.
    fn end_request(
        &self,
        vm: &str,
        request: &str,
        state: &str,
        reason: &str,
        at: i64,
    ) -> Result<bool>;
    /// Records that image `image` (public id) is installed on the VM's DISK1.
    fn set_installed_image(&self, vm: &str, image: &str) -> Result<()>;
}
