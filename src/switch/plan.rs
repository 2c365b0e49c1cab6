//! The VLAN planner: a pure function from a topology and a placement snapshot to the VLAN set
//! every managed switch port should carry, and the diff of that plan against what the switches
//! last reported. No I/O here; `snapshot.rs` loads the inputs from the inventory and the
//! reconciler applies the output.
//!
//! The rules (DESIGN.md §5): an edge port cabled to a hypervisor carries the VLANs of the VMs
//! running there plus the infrastructure VLANs; an edge uplink carries the union of its host
//! ports; every core port on a link carries every allocated VLAN. An edge's MAC budget is the
//! sum, over the VLANs present on it, of the MACs in that VLAN; a plan that exceeds a budget is
//! refused with the reason.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::inventory::site::{PortRef, SwitchRole};

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

/// The physical world: switches, cabling, hypervisors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Topology {
    pub switches: Vec<SwitchNode>,
    pub links: Vec<(PortRef, PortRef)>,
    pub hosts: Vec<Host>,
    /// Carried on every hypervisor port (storage, management), from the configuration.
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

/// Per switch, per managed port: a VLAN set (what the planner wants, or what was read back).
pub type PortVlans = BTreeMap<String, BTreeMap<String, VlanSet>>;

/// Why a port is managed, for explanations.
#[derive(Debug, Clone, PartialEq)]
enum PortRole {
    /// Edge port cabled to hypervisor `hosts[i]`.
    Host(usize),
    /// Edge port linked to a core.
    Uplink,
    /// Core port on a link.
    Core,
}

/// The plan: the desired VLANs of every managed port, with what is needed to explain them.
#[derive(Debug, Clone)]
pub struct DesiredState {
    pub ports: PortVlans,
    /// MACs per edge after the plan, and its budget.
    pub edge_macs: BTreeMap<String, (u64, Option<u32>)>,
    roles: HashMap<(String, String), PortRole>,
    host_names: Vec<String>,
    /// Per host: VLAN -> (first VM needing it, how many VMs).
    host_users: Vec<BTreeMap<Vlan, (String, u32)>>,
    infra: VlanSet,
}

/// Add or remove one VLAN on one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Add,
    Remove,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Remove => "remove",
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
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = match self.action {
            Action::Add => '+',
            Action::Remove => '-',
        };
        write!(
            f,
            "{sign} {}:{} VLAN {}: {}",
            self.switch, self.port, self.vlan, self.reason
        )
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
    /// Per host: VLANs of its active VMs plus the infrastructure VLANs.
    pub host_vlans: Vec<VlanSet>,
    /// Per host: (vCPUs, MB) held by its VMs, active or not.
    pub host_used: Vec<(u64, u64)>,
    /// Per host: indexes of the edge switches its NICs are cabled to.
    pub host_edges: Vec<Vec<usize>>,
    /// Per switch (index into `topo.switches`): the union of its host ports (edges only).
    pub edge_vlans: Vec<VlanSet>,
    /// MACs in each VLAN site-wide (index = VLAN id).
    pub macs_in_vlan: Vec<u32>,
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
        let n = topo.hosts.len();
        let mut host_vlans = vec![topo.infra_vlans.clone(); n];
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
        let mut host_edges = vec![Vec::new(); n];
        let mut edge_vlans = vec![VlanSet::new(); topo.switches.len()];
        for (h, host) in topo.hosts.iter().enumerate() {
            for p in &host.ports {
                if let Some(&s) = switch_idx.get(p.switch.as_str())
                    && topo.switches[s].role == SwitchRole::Edge
                {
                    if !host_edges[h].contains(&s) {
                        host_edges[h].push(s);
                    }
                    edge_vlans[s].union_with(&host_vlans[h]);
                    // A hypervisor's own NIC is one MAC in each infrastructure VLAN.
                    for v in topo.infra_vlans.iter() {
                        macs_in_vlan[usize::from(v)] += 1;
                    }
                }
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

/// Plans the VLAN set of every managed port (see the module doc for the rules).
pub fn plan(topo: &Topology, placement: &Placement) -> Result<DesiredState, PlanError> {
    let ix = SiteIndex::new(topo, placement);
    let mut ports: PortVlans = BTreeMap::new();
    let mut roles = HashMap::new();
    let role_of = |name: &str| ix.switch(name).map(|s| topo.switches[s].role);

    for (h, host) in topo.hosts.iter().enumerate() {
        for p in &host.ports {
            if role_of(&p.switch) == Some(SwitchRole::Edge) {
                ports
                    .entry(p.switch.clone())
                    .or_default()
                    .insert(p.port.clone(), ix.host_vlans[h].clone());
                roles.insert((p.switch.clone(), p.port.clone()), PortRole::Host(h));
            }
        }
    }

    let mut everything = placement.allocated.clone();
    everything.union_with(&topo.infra_vlans);
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
                .insert(this.port.clone(), set);
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
        infra: topo.infra_vlans.clone(),
    })
}

impl DesiredState {
    /// Why `vlan` is (for `Add`) or is no longer (for `Remove`) wanted on `switch:port`.
    pub fn explain(&self, switch: &str, port: &str, action: Action, vlan: Vlan) -> String {
        let role = self.roles.get(&(switch.to_owned(), port.to_owned()));
        match (role, action) {
            (Some(PortRole::Host(h)), Action::Add) => self.host_reason(*h, vlan),
            (Some(PortRole::Host(h)), Action::Remove) => {
                format!("no VM running on {} needs it", self.host_names[*h])
            }
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
            (None, _) => "port not managed by the plan".to_owned(),
        }
    }

    fn host_reason(&self, h: usize, vlan: Vlan) -> String {
        let host = &self.host_names[h];
        match self.host_users[h].get(&vlan) {
            Some((vm, 1)) => format!("{vm} on {host} needs it"),
            Some((vm, n)) => format!("{vm} and {} more VMs on {host} need it", n - 1),
            None if self.infra.contains(vlan) => {
                format!("infrastructure VLAN, carried to every hypervisor ({host})")
            }
            None => format!("needed on {host}"),
        }
    }

    /// ": VM1-1 on Hypervisor-1" for the first host behind `edge` that needs `vlan`.
    fn edge_user(&self, edge: &str, vlan: Vlan) -> Option<String> {
        self.roles.iter().find_map(|((sw, _), role)| match role {
            PortRole::Host(h) if sw == edge => self.host_users[*h]
                .get(&vlan)
                .map(|(vm, _)| format!(": {vm} on {}", self.host_names[*h])),
            _ => None,
        })
    }
}

/// The changes that turn `actual` (last read back) into `desired`: adds first (make before
/// break), then removes, each ordered by switch, port and VLAN. Ports missing from `actual`
/// count as empty; ports the plan does not manage are left alone.
pub fn diff(desired: &DesiredState, actual: &PortVlans) -> Vec<Change> {
    let empty = VlanSet::new();
    let mut adds = Vec::new();
    let mut removes = Vec::new();
    for (switch, ports) in &desired.ports {
        let have = actual.get(switch);
        for (port, want) in ports {
            let got = have.and_then(|p| p.get(port)).unwrap_or(&empty);
            if got == want {
                continue;
            }
            for (action, set, out) in [
                (Action::Add, want.minus(got), &mut adds),
                (Action::Remove, got.minus(want), &mut removes),
            ] {
                for vlan in set.iter() {
                    out.push(Change {
                        switch: switch.clone(),
                        port: port.clone(),
                        action,
                        vlan,
                        reason: desired.explain(switch, port, action, vlan),
                    });
                }
            }
        }
    }
    adds.extend(removes);
    adds
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
            infra_vlans: VlanSet::new(),
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
        let changes = diff(&d, &PortVlans::new());
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
}
