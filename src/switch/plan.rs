//! The VLAN planner: a pure function from a topology and a placement snapshot to what every
//! managed switch port should carry — a [`PortPlan`]: at most one untagged (native) VLAN and a
//! set of tagged VLANs — and the diff of that plan against what the switches last reported.
//! No I/O here; `snapshot.rs` loads the inputs from the inventory and the reconciler applies
//! the output.
//!
//! The rules (DESIGN.md §5):
//! - An edge port cabled to a **hypervisor** NIC is a trunk. Its native (untagged) VLAN is the
//!   network of that NIC in the site file (the service/provisioning network of the boot NIC,
//!   so the hypervisor can PXE boot through the port); tagged are the storage networks' VLANs
//!   (so it reaches its iSCSI target), `[switch] infra_vlans`, and the VLANs of the VMs running
//!   there. A NIC without a network gives a trunk without a native VLAN.
//! - An edge port cabled to a **bare-metal** server's NIC is an access port on that NIC's
//!   network (untagged only); a NIC without a network leaves its port unmanaged.
//! - An edge uplink is a trunk of every VLAN its machine ports carry (tagged); every core port
//!   on a link is a trunk of every allocated VLAN. Neither has a native VLAN.
//! - An edge's MAC budget is the sum, over the VLANs present on it, of the MACs in that VLAN
//!   (a VM NIC is one MAC in its VLAN; a hypervisor NIC one in its native and each tagged
//!   infrastructure VLAN; a bare-metal NIC one in its access VLAN); a plan that exceeds a
//!   budget is refused with the reason.
//!
//! The same [`PortPlan`] describes a read-back, so plan and switch compare directly; the diff
//! turns their difference into [`Change`]s, each with its reason, makes before breaks.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::inventory::site::{MachineKind, PortRef, SwitchRole};

use super::vlans::{Vlan, VlanSet};

/// A switch as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SwitchNode {
    pub name: String,
    pub role: SwitchRole,
    /// MAC table budget (edges); `None` means unlimited.
    pub max_macs: Option<u32>,
}

/// A hypervisor: its capacity and the edge ports its NICs are cabled to.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    pub name: String,
    pub vcpus: u32,
    pub memory_mb: u32,
    /// False for hypervisors in maintenance or failed: nothing new is placed there.
    pub available: bool,
    pub ports: Vec<PortRef>,
}

/// A network a machine NIC sits on untagged, as the site file names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicNetwork {
    pub name: String,
    pub vlan: Vlan,
}

/// A physical machine's NIC cabled to a switch port (hypervisors and bare-metal servers).
#[derive(Debug, Clone, PartialEq)]
pub struct MachineNic {
    pub machine: String,
    pub kind: MachineKind,
    /// The NIC's device name (`eth0`).
    pub device: String,
    pub port: PortRef,
    /// The NIC's network, untagged on its port; `None` when the NIC has none (or it has no VLAN).
    pub network: Option<NicNetwork>,
    /// The machine PXE boots through this NIC.
    pub boot: bool,
}

/// The physical world: switches, cabling, hypervisors, machine NICs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Topology {
    pub switches: Vec<SwitchNode>,
    pub links: Vec<(PortRef, PortRef)>,
    pub hosts: Vec<Host>,
    /// Every machine NIC cabled to a port: its untagged network (hypervisors and bare-metal).
    pub nics: Vec<MachineNic>,
    /// VLANs of the storage networks (role `storage`): tagged on every hypervisor port.
    pub storage_vlans: VlanSet,
    /// `[switch] infra_vlans`: tagged on every hypervisor port too.
    pub infra_vlans: VlanSet,
}

/// A VM and where it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Vm {
    pub name: String,
    /// The hypervisor holding its slot.
    pub host: Option<String>,
    /// While the VM moves: the destination, which holds a slot and carries its VLANs too.
    pub moving_to: Option<String>,
    /// Running (or starting, installing...): its VLANs must be on its host's port.
    pub active: bool,
    /// One entry per NIC: the VLAN of the network it is attached to (one MAC each).
    pub vlans: Vec<Vlan>,
    pub vcpus: u32,
    pub memory_mb: u32,
}

/// Where every VM is, and which VLANs are allocated to networks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Placement {
    pub vms: Vec<Vm>,
    /// VLANs of every network in the inventory (carried by the cores even without VMs).
    pub allocated: VlanSet,
}

/// How a port forwards VLANs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 802.1Q trunk: tagged VLANs and at most one untagged native VLAN.
    Trunk,
    /// Untagged member of one VLAN, nothing tagged.
    Access,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Trunk => "trunk",
            Mode::Access => "access",
        }
    }
}

/// What one switch port carries: planned for a managed port, or read back from a switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortPlan {
    pub mode: Mode,
    /// The untagged VLAN: a trunk's native VLAN, or an access port's VLAN (always set then).
    pub native: Option<Vlan>,
    /// The tagged VLANs (empty on an access port); never holds `native`.
    pub tagged: VlanSet,
}

impl Default for PortPlan {
    /// A trunk that carries nothing.
    fn default() -> Self {
        PortPlan::trunk(None, VlanSet::new())
    }
}

impl PortPlan {
    /// A trunk; `native` is taken out of `tagged` (a VLAN is untagged or tagged on a port).
    pub fn trunk(native: Option<Vlan>, mut tagged: VlanSet) -> Self {
        if let Some(n) = native {
            tagged.remove(n);
        }
        PortPlan {
            mode: Mode::Trunk,
            native,
            tagged,
        }
    }

    /// An access port in `vlan`.
    pub fn access(vlan: Vlan) -> Self {
        PortPlan {
            mode: Mode::Access,
            native: Some(vlan),
            tagged: VlanSet::new(),
        }
    }

    /// True if the port carries `vlan`, tagged or untagged.
    pub fn contains(&self, vlan: Vlan) -> bool {
        self.native == Some(vlan) || self.tagged.contains(vlan)
    }

    /// Every VLAN the port carries, tagged or untagged.
    pub fn carried(&self) -> VlanSet {
        let mut all = self.tagged.clone();
        if let Some(n) = self.native {
            all.insert(n);
        }
        all
    }

    /// True if a switch port in state `got` does what this plan asks. Equality, except that
    /// an access port in N satisfies a planned trunk whose only VLAN is native N: they forward
    /// the same frames, and a Q-BRIDGE-MIB switch cannot tell them apart.
    pub fn satisfied_by(&self, got: &PortPlan) -> bool {
        self == got
            || (self.mode == Mode::Trunk
                && self.tagged.is_empty()
                && got.mode == Mode::Access
                && got.native == self.native)
    }
}

impl fmt::Display for PortPlan {
    /// `access 20`; a trunk as its tagged VLANs (`10,100`, `none`), with `native 20 + ` before
    /// them when it has a native VLAN (`native 20 + 10,100`, `native 20 + none`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.mode, self.native) {
            (Mode::Access, Some(v)) => write!(f, "access {v}"),
            (Mode::Access, None) => write!(f, "access none"),
            (Mode::Trunk, Some(n)) => write!(f, "native {n} + {}", self.tagged),
            (Mode::Trunk, None) => write!(f, "{}", self.tagged),
        }
    }
}

/// Per switch, per managed port: what it carries (what the planner wants, or what was read
/// back).
pub type PortPlans = BTreeMap<String, BTreeMap<String, PortPlan>>;

/// Why a port is managed, for explanations.
#[derive(Debug, Clone, PartialEq)]
enum PortRole {
    /// Edge port cabled to hypervisor `hosts[i]`; its NIC is `nics[j]` if the topology has it.
    Host(usize, Option<usize>),
    /// Edge port cabled to the bare-metal NIC `nics[j]`.
    BareMetal(usize),
    /// Edge port linked to a core.
    Uplink,
    /// Core port on a link.
    Core,
}

/// The plan: what every managed port should carry, with what is needed to explain it.
#[derive(Debug, Clone)]
pub struct DesiredState {
    pub ports: PortPlans,
    /// MACs per edge after the plan, and its budget.
    pub edge_macs: BTreeMap<String, (u64, Option<u32>)>,
    roles: HashMap<(String, String), PortRole>,
    host_names: Vec<String>,
    /// Per host: VLAN -> (first VM needing it, how many VMs).
    host_users: Vec<BTreeMap<Vlan, (String, u32)>>,
    nics: Vec<MachineNic>,
    storage: VlanSet,
    infra: VlanSet,
}

/// One kind of change to one VLAN on one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Carry the VLAN tagged (the port is, or becomes, a trunk).
    Add,
    /// Stop carrying the VLAN tagged.
    Remove,
    /// Make the VLAN the trunk's untagged (native) VLAN, replacing the one it had.
    Native,
    /// The trunk stops having this VLAN as its native VLAN (an access port in it becomes a
    /// trunk without one).
    ClearNative,
    /// Make the port an access port in the VLAN (untagged only, nothing tagged).
    Access,
}

impl Action {
    /// A word for messages: `add`, `remove`, `native`, `clear-native`, `access`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Remove => "remove",
            Action::Native => "native",
            Action::ClearNative => "clear-native",
            Action::Access => "access",
        }
    }

    /// True for the changes that give a port a VLAN (sent before the others: make before
    /// break).
    pub fn makes(self) -> bool {
        matches!(self, Action::Add | Action::Native | Action::Access)
    }

    /// How `switch_intents` stores it: its `action` and `native` columns.
    pub fn to_row(self) -> (&'static str, bool) {
        match self {
            Action::Add => ("add", false),
            Action::Remove => ("remove", false),
            Action::Native => ("add", true),
            Action::ClearNative => ("remove", true),
            Action::Access => ("access", false),
        }
    }

    /// The action a `switch_intents` row holds; `None` for a combination nhn never writes.
    pub fn from_row(action: &str, native: bool) -> Option<Action> {
        match (action, native) {
            ("add", false) => Some(Action::Add),
            ("remove", false) => Some(Action::Remove),
            ("add", true) => Some(Action::Native),
            ("remove", true) => Some(Action::ClearNative),
            ("access", false) => Some(Action::Access),
            _ => None,
        }
    }

    /// True if a port in state `port` already has this change to `vlan`.
    pub fn holds(self, vlan: Vlan, port: &PortPlan) -> bool {
        match self {
            Action::Add => port.mode == Mode::Trunk && port.tagged.contains(vlan),
            Action::Remove => !port.tagged.contains(vlan),
            // An access port in the VLAN has it untagged already; tagged adds turn it into a
            // trunk that keeps it native (see `templates::PortSteps`).
            Action::Native => port.native == Some(vlan),
            Action::ClearNative => port.native != Some(vlan),
            Action::Access => port.mode == Mode::Access && port.native == Some(vlan),
        }
    }
}

/// One change the plan needs on a switch, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub switch: String,
    pub port: String,
    pub action: Action,
    pub vlan: Vlan,
    pub reason: String,
}

impl fmt::Display for Change {
    /// `+ S:P VLAN 100: why` (add), `-` (remove), `+ S:P VLAN 20 untagged: why` (native),
    /// `- S:P VLAN 20 untagged: why` (clear native), `= S:P access VLAN 20: why` (access).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (sw, p, v, why) = (&self.switch, &self.port, self.vlan, &self.reason);
        match self.action {
            Action::Add => write!(f, "+ {sw}:{p} VLAN {v}: {why}"),
            Action::Remove => write!(f, "- {sw}:{p} VLAN {v}: {why}"),
            Action::Native => write!(f, "+ {sw}:{p} VLAN {v} untagged: {why}"),
            Action::ClearNative => write!(f, "- {sw}:{p} VLAN {v} untagged: {why}"),
            Action::Access => write!(f, "= {sw}:{p} access VLAN {v}: {why}"),
        }
    }
}

/// An edge whose MAC table would overflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverBudget {
    pub edge: String,
    pub macs: u64,
    pub budget: u32,
    /// The VLANs on the edge with their MAC counts, largest first.
    pub vlans: Vec<(Vlan, u32)>,
}

impl fmt::Display for OverBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let top: Vec<String> = self
            .vlans
            .iter()
            .take(5)
            .map(|(v, n)| format!("VLAN {v}: {n}"))
            .collect();
        write!(
            f,
            "{} would hold {} MACs, over its budget of {} ({})",
            self.edge,
            self.macs,
            self.budget,
            top.join(", ")
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "plan refused, MAC budget exceeded: {}; move VMs of those VLANs onto fewer edges or raise max_macs",
        .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    MacBudget(Vec<OverBudget>),
}

/// Derived facts about a topology + placement, shared by the planner and placement.
pub struct SiteIndex<'a> {
    pub topo: &'a Topology,
    pub host_idx: HashMap<&'a str, usize>,
    /// Per host: the VLANs tagged on its ports (its active VMs', storage, infrastructure).
    pub host_vlans: Vec<VlanSet>,
    /// Per host: (vCPUs, MB) held by its VMs, active or not.
    pub host_used: Vec<(u64, u64)>,
    /// Per host: indexes of the edge switches its NICs are cabled to.
    pub host_edges: Vec<Vec<usize>>,
    /// Per switch (index into `topo.switches`): every VLAN its machine ports carry (edges only).
    pub edge_vlans: Vec<VlanSet>,
    /// MACs in each VLAN site-wide (index = VLAN id).
    pub macs_in_vlan: Vec<u32>,
    /// Per port cabled to a machine NIC: that NIC (index into `topo.nics`).
    nic_at: HashMap<&'a PortRef, usize>,
    switch_idx: HashMap<&'a str, usize>,
    host_users: Vec<BTreeMap<Vlan, (String, u32)>>,
}

impl<'a> SiteIndex<'a> {
    pub fn new(topo: &'a Topology, placement: &Placement) -> Self {
        let switch_idx: HashMap<&str, usize> = topo
            .switches
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        let host_idx: HashMap<&str, usize> = topo
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.name.as_str(), i))
            .collect();
        let nic_at: HashMap<&PortRef, usize> = topo
            .nics
            .iter()
            .enumerate()
            .map(|(i, n)| (&n.port, i))
            .collect();
        let n = topo.hosts.len();
        let mut tagged_infra = topo.infra_vlans.clone();
        tagged_infra.union_with(&topo.storage_vlans);
        let mut host_vlans = vec![tagged_infra.clone(); n];
        let mut host_used = vec![(0u64, 0u64); n];
        let mut host_users: Vec<BTreeMap<Vlan, (String, u32)>> = vec![BTreeMap::new(); n];
        let mut macs_in_vlan = vec![0u32; 4096];
        for vm in &placement.vms {
            if vm.active {
                for &v in &vm.vlans {
                    if let Some(m) = macs_in_vlan.get_mut(usize::from(v)) {
                        *m += 1;
                    }
                }
            }
            let hosts = [vm.host.as_deref(), vm.moving_to.as_deref()];
            for h in hosts
                .into_iter()
                .flatten()
                .filter_map(|h| host_idx.get(h).copied())
            {
                host_used[h].0 += u64::from(vm.vcpus);
                host_used[h].1 += u64::from(vm.memory_mb);
                if !vm.active {
                    continue;
                }
                for &v in &vm.vlans {
                    host_vlans[h].insert(v);
                    host_users[h]
                        .entry(v)
                        .and_modify(|e| e.1 += 1)
                        .or_insert_with(|| (vm.name.clone(), 1));
                }
            }
        }
        let is_edge = |sw: &str| {
            switch_idx
                .get(sw)
                .is_some_and(|&s| topo.switches[s].role == SwitchRole::Edge)
        };
        let native_of = |p: &PortRef| {
            nic_at
                .get(p)
                .and_then(|&i| topo.nics[i].network.as_ref())
                .map(|net| net.vlan)
        };
        let mut host_edges = vec![Vec::new(); n];
        let mut edge_vlans = vec![VlanSet::new(); topo.switches.len()];
        for (h, host) in topo.hosts.iter().enumerate() {
            for p in host.ports.iter().filter(|p| is_edge(&p.switch)) {
                let s = switch_idx[p.switch.as_str()];
                if !host_edges[h].contains(&s) {
                    host_edges[h].push(s);
                }
                edge_vlans[s].union_with(&host_vlans[h]);
                // A hypervisor's own NIC is one MAC in its native VLAN and in each tagged
                // infrastructure VLAN.
                let mut own = tagged_infra.clone();
                if let Some(v) = native_of(p) {
                    edge_vlans[s].insert(v);
                    own.insert(v);
                }
                for v in own.iter() {
                    macs_in_vlan[usize::from(v)] += 1;
                }
            }
        }
        for nic in &topo.nics {
            if nic.kind != MachineKind::BareMetal || !is_edge(&nic.port.switch) {
                continue;
            }
            if let Some(net) = &nic.network {
                edge_vlans[switch_idx[nic.port.switch.as_str()]].insert(net.vlan);
                macs_in_vlan[usize::from(net.vlan)] += 1;
            }
        }
        SiteIndex {
            topo,
            host_idx,
            host_vlans,
            host_used,
            host_edges,
            edge_vlans,
            macs_in_vlan,
            nic_at,
            switch_idx,
            host_users,
        }
    }

    /// MACs an edge carrying `vlans` holds.
    pub fn macs_of(&self, vlans: &VlanSet) -> u64 {
        vlans
            .iter()
            .map(|v| u64::from(self.macs_in_vlan[usize::from(v)]))
            .sum()
    }

    pub fn switch(&self, name: &str) -> Option<usize> {
        self.switch_idx.get(name).copied()
    }

    fn over_budget(&self, s: usize, vlans: &VlanSet) -> Option<OverBudget> {
        let sw = &self.topo.switches[s];
        let budget = sw.max_macs?;
        let macs = self.macs_of(vlans);
        if macs <= u64::from(budget) {
            return None;
        }
        let mut per: Vec<(Vlan, u32)> = vlans
            .iter()
            .map(|v| (v, self.macs_in_vlan[usize::from(v)]))
            .filter(|(_, n)| *n > 0)
            .collect();
        per.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Some(OverBudget {
            edge: sw.name.clone(),
            macs,
            budget,
            vlans: per,
        })
    }
}

/// Plans every managed port (see the module doc for the rules).
pub fn plan(topo: &Topology, placement: &Placement) -> Result<DesiredState, PlanError> {
    let ix = SiteIndex::new(topo, placement);
    let mut ports: PortPlans = BTreeMap::new();
    let mut roles = HashMap::new();
    let role_of = |name: &str| ix.switch(name).map(|s| topo.switches[s].role);

    for (h, host) in topo.hosts.iter().enumerate() {
        for p in &host.ports {
            if role_of(&p.switch) == Some(SwitchRole::Edge) {
                let nic = ix.nic_at.get(p).copied();
                let native = nic
                    .and_then(|i| topo.nics[i].network.as_ref())
                    .map(|n| n.vlan);
                ports.entry(p.switch.clone()).or_default().insert(
                    p.port.clone(),
                    PortPlan::trunk(native, ix.host_vlans[h].clone()),
                );
                roles.insert((p.switch.clone(), p.port.clone()), PortRole::Host(h, nic));
            }
        }
    }
    for (i, nic) in topo.nics.iter().enumerate() {
        let Some(net) = &nic.network else { continue };
        if nic.kind != MachineKind::BareMetal || role_of(&nic.port.switch) != Some(SwitchRole::Edge)
        {
            continue;
        }
        ports
            .entry(nic.port.switch.clone())
            .or_default()
            .insert(nic.port.port.clone(), PortPlan::access(net.vlan));
        roles.insert(
            (nic.port.switch.clone(), nic.port.port.clone()),
            PortRole::BareMetal(i),
        );
    }

    let mut everything = placement.allocated.clone();
    everything.union_with(&topo.infra_vlans);
    everything.union_with(&topo.storage_vlans);
    for set in &ix.edge_vlans {
        everything.union_with(set);
    }
    for (a, b) in &topo.links {
        for (this, other) in [(a, b), (b, a)] {
            let (Some(mine), Some(theirs)) = (role_of(&this.switch), role_of(&other.switch)) else {
                continue;
            };
            let (set, role) = match (mine, theirs) {
                (SwitchRole::Core, _) => (everything.clone(), PortRole::Core),
                (SwitchRole::Edge, SwitchRole::Core) => {
                    let s = ix.switch(&this.switch).map(|s| ix.edge_vlans[s].clone());
                    (s.unwrap_or_default(), PortRole::Uplink)
                }
                // Edge-to-edge links are not part of the seed's design; leave them alone.
                (SwitchRole::Edge, SwitchRole::Edge) => continue,
            };
            ports
                .entry(this.switch.clone())
                .or_default()
                .insert(this.port.clone(), PortPlan::trunk(None, set));
            roles.insert((this.switch.clone(), this.port.clone()), role);
        }
    }

    let mut over = Vec::new();
    let mut edge_macs = BTreeMap::new();
    for (s, sw) in topo.switches.iter().enumerate() {
        if sw.role != SwitchRole::Edge {
            continue;
        }
        edge_macs.insert(
            sw.name.clone(),
            (ix.macs_of(&ix.edge_vlans[s]), sw.max_macs),
        );
        if let Some(o) = ix.over_budget(s, &ix.edge_vlans[s]) {
            over.push(o);
        }
    }
    if !over.is_empty() {
        return Err(PlanError::MacBudget(over));
    }
    Ok(DesiredState {
        ports,
        edge_macs,
        roles,
        host_names: topo.hosts.iter().map(|h| h.name.clone()).collect(),
        host_users: ix.host_users,
        nics: topo.nics.clone(),
        storage: topo.storage_vlans.clone(),
        infra: topo.infra_vlans.clone(),
    })
}

impl DesiredState {
    /// Why `switch:port` gets (`Add`, `Native`, `Access`) or loses (`Remove`, `ClearNative`)
    /// `vlan`.
    pub fn explain(&self, switch: &str, port: &str, action: Action, vlan: Vlan) -> String {
        let role = self.roles.get(&(switch.to_owned(), port.to_owned()));
        match (role, action) {
            (Some(PortRole::Host(h, _)), Action::Add) => self.host_reason(*h, vlan),
            (Some(PortRole::Host(h, _)), Action::Remove) => {
                format!("no VM running on {} needs it", self.host_names[*h])
            }
            (Some(PortRole::Host(h, nic)), Action::Native) => match nic.map(|i| &self.nics[i]) {
                Some(n) => format!(
                    "{} {} is on network {} untagged{}",
                    self.host_names[*h],
                    n.device,
                    n.network.as_ref().map_or("?", |x| x.name.as_str()),
                    if n.boot { " (boot NIC: PXE)" } else { "" }
                ),
                None => format!("native VLAN of {}", self.host_names[*h]),
            },
            (Some(PortRole::Host(h, _)), Action::ClearNative) => format!(
                "{}'s NIC on this port is on no network: no untagged VLAN",
                self.host_names[*h]
            ),
            (Some(PortRole::Host(h, _)), Action::Access) => {
                format!(
                    "{} is a hypervisor: its port is a trunk",
                    self.host_names[*h]
                )
            }
            (Some(PortRole::BareMetal(i)), Action::Access) => {
                let n = &self.nics[*i];
                format!(
                    "bare-metal {} {} is on network {}{}",
                    n.machine,
                    n.device,
                    n.network.as_ref().map_or("?", |x| x.name.as_str()),
                    if n.boot { " (boot NIC: PXE)" } else { "" }
                )
            }
            (Some(PortRole::BareMetal(i)), _) => format!(
                "bare-metal {}: an access port on its network only",
                self.nics[*i].machine
            ),
            (Some(PortRole::Uplink), Action::Add) => {
                let why = self.edge_user(switch, vlan).unwrap_or_default();
                format!("uplink of {switch}, whose hosts need it{why}")
            }
            (Some(PortRole::Uplink), Action::Remove) => {
                format!("no host behind {switch} needs it")
            }
            (Some(PortRole::Core), Action::Add) => {
                "core ports carry every allocated VLAN".to_owned()
            }
            (Some(PortRole::Core), Action::Remove) => "no longer allocated".to_owned(),
            (Some(PortRole::Uplink | PortRole::Core), _) => {
                "uplinks and core ports are trunks without a native VLAN".to_owned()
            }
            (None, _) => "port not managed by the plan".to_owned(),
        }
    }

    fn host_reason(&self, h: usize, vlan: Vlan) -> String {
        let host = &self.host_names[h];
        match self.host_users[h].get(&vlan) {
            Some((vm, 1)) => format!("{vm} on {host} needs it"),
            Some((vm, n)) => format!("{vm} and {} more VMs on {host} need it", n - 1),
            None if self.storage.contains(vlan) => {
                format!("storage network, tagged to every hypervisor ({host})")
            }
            None if self.infra.contains(vlan) => {
                format!("infrastructure VLAN, carried to every hypervisor ({host})")
            }
            None => format!("needed on {host}"),
        }
    }

    /// ": VM1-1 on Hypervisor-1" for the first host behind `edge` that needs `vlan`, or the
    /// machine whose NIC is on it untagged.
    fn edge_user(&self, edge: &str, vlan: Vlan) -> Option<String> {
        let vm = self.roles.iter().find_map(|((sw, _), role)| match role {
            PortRole::Host(h, _) if sw == edge => self.host_users[*h]
                .get(&vlan)
                .map(|(vm, _)| format!(": {vm} on {}", self.host_names[*h])),
            _ => None,
        });
        vm.or_else(|| {
            self.nics
                .iter()
                .find(|n| {
                    n.port.switch == edge && n.network.as_ref().is_some_and(|x| x.vlan == vlan)
                })
                .map(|n| format!(": network of {} {}", n.machine, n.device))
        })
    }
}

/// The changes that turn `actual` (last read back) into `desired`: every change that gives a
/// port a VLAN first (make before break), then the ones that take it away, each ordered by
/// switch and port (a port's native or access change before its tagged adds). Ports missing
/// from `actual` count as empty trunks; ports the plan does not manage are left alone.
pub fn diff(desired: &DesiredState, actual: &PortPlans) -> Vec<Change> {
    let empty = PortPlan::default();
    let mut makes = Vec::new();
    let mut breaks = Vec::new();
    for (switch, ports) in &desired.ports {
        let have = actual.get(switch);
        for (port, want) in ports {
            let got = have.and_then(|p| p.get(port)).unwrap_or(&empty);
            if want.satisfied_by(got) {
                continue;
            }
            let mut push = |action: Action, vlan: Vlan| {
                let out = if action.makes() {
                    &mut makes
                } else {
                    &mut breaks
                };
                out.push(Change {
                    switch: switch.clone(),
                    port: port.clone(),
                    action,
                    vlan,
                    reason: desired.explain(switch, port, action, vlan),
                });
            };
            if want.mode == Mode::Access {
                if let Some(v) = want.native {
                    push(Action::Access, v);
                }
                continue;
            }
            // A trunk. An access port becomes one through its tagged adds (keeping its VLAN
            // untagged) or through clearing its VLAN.
            let from_access = got.mode == Mode::Access;
            match (want.native, got.native) {
                (Some(n), g) if g != Some(n) => push(Action::Native, n),
                (None, Some(m)) => push(Action::ClearNative, m),
                _ => {}
            }
            let got_tagged = if from_access {
                VlanSet::new()
            } else {
                got.tagged.clone()
            };
            for v in want.tagged.minus(&got_tagged).iter() {
                push(Action::Add, v);
            }
            for v in got_tagged.minus(&want.tagged).iter() {
                if want.native != Some(v) {
                    push(Action::Remove, v);
                }
            }
        }
    }
    makes.extend(breaks);
    makes
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn port(s: &str) -> PortRef {
        PortRef::try_from(s.to_owned()).unwrap()
    }

    /// The seed topology (examples/seed-site.toml): Core-Switch-A/B, Edge-Switch-1..3, each
    /// edge uplinked to both cores on swp1/swp2 and cabled to Hypervisor-N on swp3.
    pub fn seed() -> Topology {
        let sw = |name: &str, role, max_macs| SwitchNode {
            name: name.into(),
            role,
            max_macs,
        };
        let mut t = Topology {
            switches: vec![
                sw("Core-Switch-A", SwitchRole::Core, None),
                sw("Core-Switch-B", SwitchRole::Core, None),
            ],
            links: vec![(port("Core-Switch-A:swp4"), port("Core-Switch-B:swp4"))],
            hosts: vec![],
            ..Topology::default()
        };
        for i in 1..=3 {
            t.switches
                .push(sw(&format!("Edge-Switch-{i}"), SwitchRole::Edge, Some(64)));
            t.links.push((
                port(&format!("Edge-Switch-{i}:swp1")),
                port(&format!("Core-Switch-A:swp{i}")),
            ));
            t.links.push((
                port(&format!("Edge-Switch-{i}:swp2")),
                port(&format!("Core-Switch-B:swp{i}")),
            ));
            t.hosts.push(Host {
                name: format!("Hypervisor-{i}"),
                vcpus: 32,
                memory_mb: 131_072,
                available: true,
                ports: vec![port(&format!("Edge-Switch-{i}:swp3"))],
            });
        }
        t
    }

    pub fn vm(name: &str, host: &str, vlan: Vlan) -> Vm {
        Vm {
            name: name.into(),
            host: Some(host.into()),
            moving_to: None,
            active: true,
            vlans: vec![vlan],
            vcpus: 1,
            memory_mb: 1024,
        }
    }

    fn placed(vms: Vec<Vm>) -> Placement {
        let allocated = vms.iter().flat_map(|v| v.vlans.clone()).collect();
        Placement { vms, allocated }
    }

    fn vlans(d: &DesiredState, sw: &str, p: &str) -> String {
        d.ports[sw][p].to_string()
    }

    #[test]
    fn edge_host_ports_carry_the_vlans_of_their_vms_plus_infrastructure() {
        let mut t = seed();
        t.infra_vlans = [10, 20].into_iter().collect();
        let d = plan(
            &t,
            &placed(vec![
                vm("VM1-1", "Hypervisor-1", 100),
                vm("VM3-2", "Hypervisor-3", 200),
            ]),
        )
        .unwrap();
        assert_eq!(vlans(&d, "Edge-Switch-1", "swp3"), "10,20,100");
        assert_eq!(vlans(&d, "Edge-Switch-2", "swp3"), "10,20");
        assert_eq!(vlans(&d, "Edge-Switch-3", "swp3"), "10,20,200");
    }

    #[test]
    fn edge_uplinks_carry_the_union_of_their_host_ports_only() {
        let d = plan(
            &seed(),
            &placed(vec![
                vm("VM1-1", "Hypervisor-1", 100),
                vm("VM3-2", "Hypervisor-3", 200),
            ]),
        )
        .unwrap();
        for up in ["swp1", "swp2"] {
            assert_eq!(vlans(&d, "Edge-Switch-1", up), "100");
            assert_eq!(vlans(&d, "Edge-Switch-2", up), "none");
            assert_eq!(vlans(&d, "Edge-Switch-3", up), "200");
        }
    }

    #[test]
    fn core_ports_carry_every_allocated_vlan() {
        let mut p = placed(vec![vm("VM1-1", "Hypervisor-1", 100)]);
        p.allocated.insert(300); // a network without VMs yet
        let d = plan(&seed(), &p).unwrap();
        for sw in ["Core-Switch-A", "Core-Switch-B"] {
            for port in ["swp1", "swp2", "swp3", "swp4"] {
                assert_eq!(vlans(&d, sw, port), "100,300", "{sw}:{port}");
            }
        }
    }

    #[test]
    fn stopped_vms_need_no_vlan_but_hold_their_slot() {
        let mut v = vm("VM1-1", "Hypervisor-1", 100);
        v.active = false;
        let p = placed(vec![v]);
        let d = plan(&seed(), &p).unwrap();
        assert_eq!(vlans(&d, "Edge-Switch-1", "swp3"), "none");
        let t = seed();
        let ix = SiteIndex::new(&t, &p);
        assert_eq!(ix.host_used[0], (1, 1024));
    }

    #[test]
    fn diff_adds_before_removes_and_says_why() {
        let t = seed();
        let before = plan(&t, &placed(vec![vm("VM1-1", "Hypervisor-1", 100)])).unwrap();
        let after = plan(&t, &placed(vec![vm("VM1-1", "Hypervisor-2", 100)])).unwrap();
        let changes = diff(&after, &before.ports);
        let text: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            vec![
                "+ Edge-Switch-2:swp1 VLAN 100: uplink of Edge-Switch-2, whose hosts need it: VM1-1 on Hypervisor-2",
                "+ Edge-Switch-2:swp2 VLAN 100: uplink of Edge-Switch-2, whose hosts need it: VM1-1 on Hypervisor-2",
                "+ Edge-Switch-2:swp3 VLAN 100: VM1-1 on Hypervisor-2 needs it",
                "- Edge-Switch-1:swp1 VLAN 100: no host behind Edge-Switch-1 needs it",
                "- Edge-Switch-1:swp2 VLAN 100: no host behind Edge-Switch-1 needs it",
                "- Edge-Switch-1:swp3 VLAN 100: no VM running on Hypervisor-1 needs it",
            ]
        );
    }

    #[test]
    fn a_moving_vm_keeps_its_vlans_on_both_hosts_until_the_move_finishes() {
        let t = seed();
        let mut moving = vm("VM1-1", "Hypervisor-1", 100);
        moving.moving_to = Some("Hypervisor-2".into());
        let p = placed(vec![moving]);
        let d = plan(&t, &p).unwrap();
        assert_eq!(vlans(&d, "Edge-Switch-1", "swp3"), "100");
        assert_eq!(vlans(&d, "Edge-Switch-2", "swp3"), "100");
        let ix = SiteIndex::new(&t, &p);
        assert_eq!((ix.host_used[0].0, ix.host_used[1].0), (1, 1));
        // One VM, one MAC, whichever hosts carry it.
        assert_eq!(ix.macs_in_vlan[100], 1);
    }

    #[test]
    fn diff_against_the_plan_itself_is_empty() {
        let t = seed();
        let d = plan(&t, &placed(vec![vm("VM1-1", "Hypervisor-1", 100)])).unwrap();
        assert!(diff(&d, &d.ports).is_empty());
    }

    #[test]
    fn ports_never_read_back_count_as_empty() {
        let t = seed();
        let d = plan(&t, &placed(vec![vm("VM1-1", "Hypervisor-1", 100)])).unwrap();
        let changes = diff(&d, &PortPlans::new());
        assert!(changes.iter().all(|c| c.action == Action::Add));
        // 3 ports on Edge-Switch-1 + 8 core ports.
        assert_eq!(changes.len(), 11);
    }

    #[test]
    fn a_plan_over_an_edges_mac_budget_is_refused_with_the_reason() {
        let mut t = seed();
        t.switches[2].max_macs = Some(3); // Edge-Switch-1
        let vms = (0..4)
            .map(|i| vm(&format!("VM{i}"), "Hypervisor-1", 100))
            .collect();
        let err = plan(&t, &placed(vms)).unwrap_err();
        let PlanError::MacBudget(over) = &err;
        assert_eq!(over.len(), 1);
        assert_eq!((over[0].edge.as_str(), over[0].macs), ("Edge-Switch-1", 4));
        let text = err.to_string();
        assert!(
            text.contains("Edge-Switch-1 would hold 4 MACs, over its budget of 3 (VLAN 100: 4)"),
            "{text}"
        );
    }

    #[test]
    fn macs_count_on_every_edge_that_carries_the_vlan() {
        let t = seed();
        let d = plan(
            &t,
            &placed(vec![
                vm("a", "Hypervisor-1", 100),
                vm("b", "Hypervisor-1", 100),
                vm("c", "Hypervisor-2", 100),
                vm("d", "Hypervisor-3", 200),
            ]),
        )
        .unwrap();
        assert_eq!(d.edge_macs["Edge-Switch-1"].0, 3);
        assert_eq!(d.edge_macs["Edge-Switch-2"].0, 3);
        assert_eq!(d.edge_macs["Edge-Switch-3"].0, 1);
    }
    /// The seed with its machines' NICs as examples/seed-site.toml has them (each hypervisor's
    /// eth0 boots on the `service` network, VLAN 20; `storage` is VLAN 10), plus bare-metal
    /// Server-1 on Edge-Switch-2:swp4 (network `bm`, VLAN 300), Hypervisor-4, whose NIC has
    /// no network, on Edge-Switch-3:swp4, and bare-metal Server-2 without a network on
    /// Edge-Switch-3:swp5.
    pub fn seed_with_nics() -> Topology {
        let mut t = seed();
        t.storage_vlans = [10].into_iter().collect();
        let nic = |machine: &str, kind, port_name: &str, net: Option<(&str, Vlan)>| MachineNic {
            machine: machine.into(),
            kind,
            device: "eth0".into(),
            port: port(port_name),
            network: net.map(|(name, vlan)| NicNetwork {
                name: name.into(),
                vlan,
            }),
            boot: net.is_some(),
        };
        for i in 1..=3 {
            t.nics.push(nic(
                &format!("Hypervisor-{i}"),
                MachineKind::Hypervisor,
                &format!("Edge-Switch-{i}:swp3"),
                Some(("service", 20)),
            ));
        }
        t.nics.push(nic(
            "Server-1",
            MachineKind::BareMetal,
            "Edge-Switch-2:swp4",
            Some(("bm", 300)),
        ));
        t.hosts.push(Host {
            name: "Hypervisor-4".into(),
            vcpus: 8,
            memory_mb: 16_384,
            available: true,
            ports: vec![port("Edge-Switch-3:swp4")],
        });
        t.nics.push(nic(
            "Hypervisor-4",
            MachineKind::Hypervisor,
            "Edge-Switch-3:swp4",
            None,
        ));
        t.nics.push(nic(
            "Server-2",
            MachineKind::BareMetal,
            "Edge-Switch-3:swp5",
            None,
        ));
        t
    }

    #[test]
    fn machine_ports_get_their_nics_network_untagged() {
        let d = plan(
            &seed_with_nics(),
            &placed(vec![
                vm("VM1-1", "Hypervisor-1", 100),
                vm("VM4-1", "Hypervisor-4", 200),
            ]),
        )
        .unwrap();
        let access = |v| PortPlan::access(v);
        let trunk = |n, t: &str| PortPlan::trunk(n, t.parse().unwrap());
        // (port, plan, as `nhn switch plan` prints it)
        let cases = [
            // Hypervisor: boot network native, storage and its VMs' VLANs tagged.
            (
                "Edge-Switch-1:swp3",
                trunk(Some(20), "10,100"),
                "native 20 + 10,100",
            ),
            // Hypervisor without VMs: native and storage only.
            (
                "Edge-Switch-2:swp3",
                trunk(Some(20), "10"),
                "native 20 + 10",
            ),
            // Bare-metal server: an access port on its network.
            ("Edge-Switch-2:swp4", access(300), "access 300"),
            // A hypervisor whose NIC has no network (no boot NIC): a plain trunk.
            ("Edge-Switch-3:swp4", trunk(None, "10,200"), "10,200"),
            // Uplinks carry everything their machine ports carry, natives tagged.
            ("Edge-Switch-1:swp1", trunk(None, "10,20,100"), "10,20,100"),
            ("Edge-Switch-2:swp2", trunk(None, "10,20,300"), "10,20,300"),
            ("Edge-Switch-3:swp1", trunk(None, "10,20,200"), "10,20,200"),
            // Cores: every allocated VLAN, infrastructure and machine networks included.
            (
                "Core-Switch-A:swp4",
                trunk(None, "10,20,100,200,300"),
                "10,20,100,200,300",
            ),
        ];
        for (at, want, text) in cases {
            let p = port(at);
            let got = &d.ports[&p.switch][&p.port];
            assert_eq!((got, got.to_string().as_str()), (&want, text), "{at}");
        }
        // A bare-metal NIC without a network leaves its port alone.
        assert!(!d.ports["Edge-Switch-3"].contains_key("swp5"));
    }

    #[test]
    fn a_port_plan_keeps_its_native_vlan_out_of_the_tagged_set() {
        let p = PortPlan::trunk(Some(20), "10,20,100".parse().unwrap());
        assert_eq!(p.tagged.to_string(), "10,100");
        assert!(p.contains(20) && p.contains(10) && !p.contains(30));
        assert_eq!(p.carried().to_string(), "10,20,100");
        // An access port satisfies a trunk whose only VLAN is native (SNMP cannot tell them
        // apart), never the other way round, and never a trunk with tagged VLANs.
        let only_native = PortPlan::trunk(Some(20), VlanSet::new());
        assert!(only_native.satisfied_by(&PortPlan::access(20)));
        assert!(!PortPlan::access(20).satisfied_by(&only_native));
        assert!(!p.satisfied_by(&PortPlan::access(20)));
    }

    #[test]
    fn diff_sets_the_native_vlan_before_anything_is_removed_and_says_why() {
        let t = seed_with_nics();
        let d = plan(&t, &placed(vec![])).unwrap();
        // Edge-Switch-1:swp3 as the lab starts: a trunk of 100,200 and no native VLAN.
        let mut actual = d.ports.clone();
        actual.get_mut("Edge-Switch-1").unwrap().insert(
            "swp3".into(),
            PortPlan::trunk(None, "100,200".parse().unwrap()),
        );
        let text: Vec<String> = diff(&d, &actual).iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "+ Edge-Switch-1:swp3 VLAN 20 untagged: Hypervisor-1 eth0 is on network service untagged (boot NIC: PXE)",
                "+ Edge-Switch-1:swp3 VLAN 10: storage network, tagged to every hypervisor (Hypervisor-1)",
                "- Edge-Switch-1:swp3 VLAN 100: no VM running on Hypervisor-1 needs it",
                "- Edge-Switch-1:swp3 VLAN 200: no VM running on Hypervisor-1 needs it",
            ]
        );
    }

    #[test]
    fn diff_of_machine_ports_in_every_state_a_switch_may_report() {
        let t = seed_with_nics();
        let d = plan(&t, &placed(vec![])).unwrap();
        let at = |port: &str| -> Vec<String> {
            let p: PortRef = super::tests::port(port);
            diff(&d, &PortPlans::new())
                .into_iter()
                .filter(|c| c.switch == p.switch && c.port == p.port)
                .map(|c| format!("{} {}", c.action.as_str(), c.vlan))
                .collect()
        };
        // Never read back (an empty trunk): native, then tagged.
        assert_eq!(at("Edge-Switch-2:swp3"), ["native 20", "add 10"]);
        assert_eq!(at("Edge-Switch-2:swp4"), ["access 300"]);
        let with = |port: &str, got: PortPlan| -> Vec<String> {
            let p: PortRef = super::tests::port(port);
            let mut actual = d.ports.clone();
            actual
                .get_mut(&p.switch)
                .unwrap()
                .insert(p.port.clone(), got);
            diff(&d, &actual)
                .into_iter()
                .map(|c| format!("{} {}", c.action.as_str(), c.vlan))
                .collect()
        };
        let tr = |n, t: &str| PortPlan::trunk(n, t.parse().unwrap());
        let cases: [(&str, PortPlan, &[&str]); 8] = [
            // A hypervisor port with the wrong native VLAN: replaced, nothing else.
            ("Edge-Switch-2:swp3", tr(Some(30), "10"), &["native 20"]),
            // The service VLAN tagged instead of native: native first, then untagged only.
            ("Edge-Switch-2:swp3", tr(None, "10,20"), &["native 20"]),
            // An access port in the service VLAN becomes the trunk by its tagged adds.
            ("Edge-Switch-2:swp3", PortPlan::access(20), &["add 10"]),
            // An access port in another VLAN: native replaced, then the adds.
            (
                "Edge-Switch-2:swp3",
                PortPlan::access(30),
                &["native 20", "add 10"],
            ),
            // A bare-metal port that is a trunk (or in another VLAN) becomes an access port.
            ("Edge-Switch-2:swp4", tr(Some(300), "10"), &["access 300"]),
            ("Edge-Switch-2:swp4", PortPlan::access(20), &["access 300"]),
            // A hypervisor without a network: a native VLAN found there is cleared.
            (
                "Edge-Switch-3:swp4",
                tr(Some(20), "10"),
                &["clear-native 20"],
            ),
            // An uplink with a native VLAN: the VLAN stays tagged, the native goes.
            (
                "Edge-Switch-2:swp1",
                tr(Some(20), "10,300"),
                &["add 20", "clear-native 20"],
            ),
        ];
        for (port, got, want) in cases {
            assert_eq!(with(port, got.clone()), want, "{port} reported as {got}");
        }
    }

    #[test]
    fn every_action_round_trips_through_its_intent_row_and_knows_when_it_holds() {
        let trunk = PortPlan::trunk(Some(20), "10".parse().unwrap());
        let cases = [
            (Action::Add, 10, true),
            (Action::Add, 20, false),
            (Action::Remove, 20, true),
            (Action::Remove, 10, false),
            (Action::Native, 20, true),
            (Action::Native, 10, false),
            (Action::ClearNative, 10, true),
            (Action::ClearNative, 20, false),
            (Action::Access, 20, false),
        ];
        for (action, vlan, holds) in cases {
            let (name, native) = action.to_row();
            assert_eq!(Action::from_row(name, native), Some(action));
            assert_eq!(action.holds(vlan, &trunk), holds, "{action:?} {vlan}");
        }
        assert!(Action::Access.holds(20, &PortPlan::access(20)));
        // An access port has its VLAN untagged: native already, and not cleared.
        assert!(Action::Native.holds(20, &PortPlan::access(20)));
        assert!(!Action::ClearNative.holds(20, &PortPlan::access(20)));
        assert_eq!(Action::from_row("access", true), None);
    }

    #[test]
    fn machine_nics_count_against_their_edges_mac_budget() {
        let mut t = seed_with_nics();
        let d = plan(&t, &placed(vec![vm("VM1-1", "Hypervisor-1", 100)])).unwrap();
        // Edge-Switch-1 carries 10 (4 hypervisor NICs site-wide), 20 (3 boot NICs) and 100 (1).
        assert_eq!(d.edge_macs["Edge-Switch-1"].0, 8);
        // Edge-Switch-2 also carries Server-1's VLAN 300 (1 MAC).
        assert_eq!(d.edge_macs["Edge-Switch-2"].0, 8);
        t.switches[3].max_macs = Some(7); // Edge-Switch-2
        let err = plan(&t, &placed(vec![])).unwrap_err().to_string();
        assert!(
            err.contains("Edge-Switch-2 would hold 8 MACs, over its budget of 7 (VLAN 10: 4, VLAN 20: 3, VLAN 300: 1)"),
            "{err}"
        );
    }
}
