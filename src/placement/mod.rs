//! VLAN-aware VM placement: which hypervisor a VM should run on, as a pure function over the
//! same topology + placement snapshot the switch planner uses, so that placement and switch
//! state are decided together ("VMs of the same VLAN on the same physical host as far as
//! possible", the seed's rule that keeps edge VLAN sets and MAC tables small).
//!
//! Candidates are ranked by (1) capacity and the MAC budgets of the edges involved (hard
//! limits), then (2) a host that already carries all the VM's VLANs, (3) a host whose edge
//! carries them, (4) the fewest MACs added to its edge, and finally by name, so the choice is
//! deterministic. Every candidate gets a line of explanation (`nhn vm place --explain`).
//! [`store`] applies a decision to the inventory.

pub mod store;
#[cfg(test)]
mod store_tests;

use std::fmt;

use crate::switch::plan::{Placement, SiteIndex, Topology};
use crate::switch::vlans::{Vlan, VlanSet};

/// A VM to place: its NICs' VLANs (one MAC each) and its size.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub name: String,
    pub vlans: Vec<Vlan>,
    pub vcpus: u32,
    pub memory_mb: u32,
}

/// How well a host fits, best first (derives the ranking order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fit {
    /// The host already carries every VLAN of the VM.
    HostCarries,
    /// The host's edge already carries them.
    EdgeCarries,
    /// The edge must get new VLANs.
    NewOnEdge,
}

impl fmt::Display for Fit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fit::HostCarries => "host already carries its VLANs",
            Fit::EdgeCarries => "edge already carries its VLANs",
            Fit::NewOnEdge => "edge needs new VLANs",
        })
    }
}

/// One hypervisor's evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub host: String,
    /// `Err(why not)` for hosts that cannot take the VM.
    pub fit: Result<(Fit, u64), String>,
}

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.fit {
            Ok((fit, macs)) => write!(f, "{}: {fit}, adds {macs} MACs to its edge", self.host),
            Err(why) => write!(f, "{}: excluded: {why}", self.host),
        }
    }
}

/// The chosen host and the evaluation of every candidate, best first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub host: String,
    pub candidates: Vec<Candidate>,
}

impl Choice {
    /// One line per candidate, the chosen one marked.
    pub fn explain(&self) -> Vec<String> {
        self.candidates
            .iter()
            .map(|c| {
                let mark = if c.host == self.host { "*" } else { " " };
                format!("{mark} {c}")
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("no hypervisor can take {vm}:\n  {}", .candidates.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    NoHost {
        vm: String,
        candidates: Vec<Candidate>,
    },
    #[error("unknown hypervisor {0:?}; `nhn inventory show` lists them")]
    UnknownHost(String),
    #[error("{vm} cannot go on {host}: {why}")]
    Rejected {
        vm: String,
        host: String,
        why: String,
    },
}

/// Picks a hypervisor for `req`. `placement` must not contain the VM itself (for a move, pass
/// the placement without it). With `only`, evaluates just that host (a forced placement or a
/// move) and fails with the reason if it cannot take the VM.
pub fn choose(
    topo: &Topology,
    placement: &Placement,
    req: &Request,
    only: Option<&str>,
) -> Result<Choice, PlacementError> {
    let ix = SiteIndex::new(topo, placement);
    let hosts: Vec<usize> = match only {
        Some(name) => vec![
            *ix.host_idx
                .get(name)
                .ok_or_else(|| PlacementError::UnknownHost(name.to_owned()))?,
        ],
        None => (0..topo.hosts.len()).collect(),
    };
    let mut candidates: Vec<Candidate> = hosts
        .into_iter()
        .map(|h| Candidate {
            host: topo.hosts[h].name.clone(),
            fit: evaluate(&ix, req, h),
        })
        .collect();
    candidates.sort_by(|a, b| match (&a.fit, &b.fit) {
        (Ok(x), Ok(y)) => x.cmp(y).then_with(|| a.host.cmp(&b.host)),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        (Err(_), Err(_)) => a.host.cmp(&b.host),
    });
    match candidates.first() {
        Some(Candidate { host, fit: Ok(_) }) => Ok(Choice {
            host: host.clone(),
            candidates,
        }),
        Some(Candidate {
            host,
            fit: Err(why),
        }) if only.is_some() => Err(PlacementError::Rejected {
            vm: req.name.clone(),
            host: host.clone(),
            why: why.clone(),
        }),
        _ => Err(PlacementError::NoHost {
            vm: req.name.clone(),
            candidates,
        }),
    }
}

/// Fit and MACs added to the host's edges, or why the host cannot take the VM.
fn evaluate(ix: &SiteIndex, req: &Request, h: usize) -> Result<(Fit, u64), String> {
    let host = &ix.topo.hosts[h];
    if !host.available {
        return Err("not available (maintenance or failed)".into());
    }
    let (used_cpu, used_mem) = ix.host_used[h];
    if used_cpu + u64::from(req.vcpus) > u64::from(host.vcpus) {
        return Err(format!(
            "no capacity: {used_cpu}/{} vCPUs used, needs {}",
            host.vcpus, req.vcpus
        ));
    }
    if used_mem + u64::from(req.memory_mb) > u64::from(host.memory_mb) {
        return Err(format!(
            "no capacity: {used_mem}/{} MB used, needs {}",
            host.memory_mb, req.memory_mb
        ));
    }
    let edges = &ix.host_edges[h];
    if edges.is_empty() {
        return Err("not cabled to an edge switch".into());
    }
    let wanted: VlanSet = req.vlans.iter().copied().collect();
    // MACs per VLAN once the VM runs: its own NICs join their VLANs.
    let added_macs = |v: Vlan| req.vlans.iter().filter(|x| **x == v).count() as u64;
    let macs_on = |set: &VlanSet| -> u64 {
        set.iter()
            .map(|v| u64::from(ix.macs_in_vlan[usize::from(v)]) + added_macs(v))
            .sum()
    };
    let mut macs_added = 0;
    for (s, sw) in ix.topo.switches.iter().enumerate() {
        let before = &ix.edge_vlans[s];
        let mine = edges.contains(&s);
        if !mine && wanted.minus(before) == wanted {
            continue; // an edge that neither gets the VM nor carries its VLANs
        }
        let mut after = before.clone();
        if mine {
            after.union_with(&wanted);
        }
        let macs = macs_on(&after);
        if mine {
            macs_added += macs - ix.macs_of(before);
        }
        if let Some(budget) = sw.max_macs
            && macs > u64::from(budget)
            && macs > ix.macs_of(before)
        {
            return Err(format!(
                "{} would hold {macs} MACs, over its budget of {budget}",
                sw.name
            ));
        }
    }
    let fit = if wanted.is_subset(&ix.host_vlans[h]) {
        Fit::HostCarries
    } else if edges.iter().all(|&s| wanted.is_subset(&ix.edge_vlans[s])) {
        Fit::EdgeCarries
    } else {
        Fit::NewOnEdge
    };
    Ok((fit, macs_added))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::switch::plan::tests::{seed, vm};
    use crate::switch::plan::{self, Vm};

    fn req(name: &str, vlan: Vlan) -> Request {
        Request {
            name: name.into(),
            vlans: vec![vlan],
            vcpus: 1,
            memory_mb: 1024,
        }
    }

    fn placement(vms: Vec<Vm>) -> Placement {
        let allocated = vms.iter().flat_map(|v| v.vlans.clone()).collect();
        Placement { vms, allocated }
    }

    /// The seed slides: VM1-1 (VLAN 100) on Hypervisor-1 and VM3-2 (VLAN 200) on Hypervisor-3.
    fn slides() -> Placement {
        placement(vec![
            vm("VM1-1", "Hypervisor-1", 100),
            vm("VM3-2", "Hypervisor-3", 200),
        ])
    }

    #[test]
    fn seed_another_vlan100_vm_goes_to_hypervisor_1_not_2() {
        let c = choose(&seed(), &slides(), &req("VM1-2", 100), None).unwrap();
        assert_eq!(c.host, "Hypervisor-1");
        assert_eq!(
            c.explain(),
            vec![
                "* Hypervisor-1: host already carries its VLANs, adds 1 MACs to its edge",
                "  Hypervisor-2: edge needs new VLANs, adds 2 MACs to its edge",
                "  Hypervisor-3: edge needs new VLANs, adds 2 MACs to its edge",
            ]
        );
    }

    #[test]
    fn seed_forcing_vm2_1_onto_vlan100_adds_vlan100_to_edge_switch_2_only() {
        let t = seed();
        let mut p = slides();
        p.vms.push(vm("VM1-2", "Hypervisor-1", 100));
        let before = plan::plan(&t, &p).unwrap();
        let c = choose(&t, &p, &req("VM2-1", 100), Some("Hypervisor-2")).unwrap();
        assert_eq!(c.host, "Hypervisor-2");
        p.vms.push(vm("VM2-1", "Hypervisor-2", 100));
        let after = plan::plan(&t, &p).unwrap();
        let changes = plan::diff(&after, &before.ports);
        let touched: Vec<String> = changes
            .iter()
            .map(|c| format!("{} {}:{} {}", c.action.as_str(), c.switch, c.port, c.vlan))
            .collect();
        assert_eq!(
            touched,
            vec![
                "add Edge-Switch-2:swp1 100",
                "add Edge-Switch-2:swp2 100",
                "add Edge-Switch-2:swp3 100",
            ]
        );
    }

    #[test]
    fn capacity_comes_first() {
        let mut t = seed();
        t.hosts[0].vcpus = 1; // Hypervisor-1 is full with VM1-1
        let c = choose(&t, &slides(), &req("VM1-2", 100), None).unwrap();
        assert_eq!(c.host, "Hypervisor-2");
        assert!(
            c.explain()
                .contains(&"  Hypervisor-1: excluded: no capacity: 1/1 vCPUs used, needs 1".into())
        );
    }

    #[test]
    fn a_host_whose_edge_carries_the_vlan_beats_one_that_needs_it_added() {
        let mut t = seed();
        // Hypervisor-4 shares Edge-Switch-1 with Hypervisor-1 (which is full).
        t.hosts.push(crate::switch::plan::Host {
            name: "Hypervisor-4".into(),
            vcpus: 32,
            memory_mb: 131_072,
            available: true,
            ports: vec![crate::inventory::site::PortRef {
                switch: "Edge-Switch-1".into(),
                port: "swp4".into(),
            }],
        });
        t.hosts[0].vcpus = 1;
        let c = choose(&t, &slides(), &req("VM1-2", 100), None).unwrap();
        assert_eq!(c.host, "Hypervisor-4");
        assert_eq!(
            c.candidates[0].fit,
            Ok((Fit::EdgeCarries, 1)),
            "{:?}",
            c.explain()
        );
    }

    #[test]
    fn among_new_edges_the_one_adding_fewest_macs_wins() {
        // VLAN 300 already has 3 MACs on Edge-Switch-3, VLAN 100 one on Edge-Switch-1: a VM
        // with both VLANs adds fewer MACs on Edge-Switch-3 (which already has 300) than on 2.
        let mut p = slides();
        for i in 0..3 {
            p.vms.push(vm(&format!("X{i}"), "Hypervisor-3", 300));
        }
        let mut t = seed();
        t.hosts[0].vcpus = 1;
        t.hosts[2].vcpus = 5; // Hypervisor-3 has room for exactly one more
        let r = Request {
            name: "Y".into(),
            vlans: vec![100, 300],
            vcpus: 1,
            memory_mb: 1024,
        };
        let c = choose(&t, &p, &r, None).unwrap();
        assert_eq!(c.host, "Hypervisor-3", "{:?}", c.explain());
        assert_eq!(c.candidates[0].fit, Ok((Fit::NewOnEdge, 3)));
        assert_eq!(c.candidates[1].fit, Ok((Fit::NewOnEdge, 6)));
    }

    #[test]
    fn a_full_mac_budget_sends_the_vm_elsewhere() {
        let mut t = seed();
        t.switches[2].max_macs = Some(1); // Edge-Switch-1 holds VM1-1's MAC and no more
        let c = choose(&t, &slides(), &req("VM9", 300), None).unwrap();
        assert_eq!(c.host, "Hypervisor-2", "{:?}", c.explain());
        assert!(
            c.explain().iter().any(|l| l.contains(
                "Hypervisor-1: excluded: Edge-Switch-1 would hold 2 MACs, over its budget of 1"
            )),
            "{:?}",
            c.explain()
        );
    }

    #[test]
    fn a_vlan_that_no_edge_can_grow_is_refused_everywhere_with_reasons() {
        let mut t = seed();
        for s in &mut t.switches[2..] {
            s.max_macs = Some(1);
        }
        // Edge-Switch-1 carries VLAN 100 with one MAC: a second VLAN 100 MAC overflows it
        // wherever the VM goes.
        let err = choose(&t, &slides(), &req("VM1-2", 100), None).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("no hypervisor can take VM1-2:"), "{text}");
        assert_eq!(text.matches("over its budget").count(), 3, "{text}");
    }

    #[test]
    fn forcing_a_host_without_capacity_is_rejected_with_the_reason() {
        let mut t = seed();
        t.hosts[1].memory_mb = 512;
        let err = choose(&t, &slides(), &req("VM2-1", 100), Some("Hypervisor-2")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "VM2-1 cannot go on Hypervisor-2: no capacity: 0/512 MB used, needs 1024"
        );
        assert!(matches!(
            choose(&t, &slides(), &req("x", 1), Some("nope")),
            Err(PlacementError::UnknownHost(_))
        ));
    }

    #[test]
    fn the_choice_is_deterministic_by_name_among_equals() {
        let empty = placement(vec![]);
        let c = choose(&seed(), &empty, &req("first", 100), None).unwrap();
        assert_eq!(c.host, "Hypervisor-1");
    }

    #[test]
    fn unavailable_hosts_are_skipped() {
        let mut t = seed();
        t.hosts[0].available = false;
        let c = choose(&t, &slides(), &req("VM1-2", 100), None).unwrap();
        assert_eq!(c.host, "Hypervisor-2");
    }
}
