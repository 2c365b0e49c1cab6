//! What a change event is about (`events.kind`): services follow the inventory through these
//! and rebuild what depends on the kinds they care about.

use super::named;

/// The kind of object a change event names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Customer,
    /// A MAC seen by DHCP that the inventory does not know.
    Discovered,
    Host,
    Image,
    Ip,
    IpPool,
    IscsiPortal,
    Key,
    /// A batch of DHCP lease changes.
    Leases,
    Link,
    Machine,
    Network,
    Nic,
    Request,
    Site,
    Switch,
    /// The reconciler's own bookkeeping (status, read-back, plan refusals): services that
    /// plan from the inventory ignore it, or they would wake themselves.
    SwitchStatus,
    VlanPool,
    Vm,
    VmType,
    Volume,
}

named!(
    EventKind,
    "event kind",
    [
        (Customer, "customer"),
        (Discovered, "discovered"),
        (Host, "host"),
        (Image, "image"),
        (Ip, "ip"),
        (IpPool, "ip_pool"),
        (IscsiPortal, "iscsi_portal"),
        (Key, "key"),
        (Leases, "leases"),
        (Link, "link"),
        (Machine, "machine"),
        (Network, "network"),
        (Nic, "nic"),
        (Request, "request"),
        (Site, "site"),
        (Switch, "switch"),
        (SwitchStatus, "switch-status"),
        (VlanPool, "vlan_pool"),
        (Vm, "vm"),
        (VmType, "vm_type"),
        (Volume, "volume"),
    ]
);
