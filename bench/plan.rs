//! Benchmark: plan + diff for a synthetic site of 10,000 hypervisors, 100,000 VMs, 4,000 VLANs
//! and 500 edges (2 cores), the target being < 100 ms. Prints the time of each step
//! (best of several runs) and the process's peak memory.
//!
//!     cargo bench --bench plan

use std::time::{Duration, Instant};

use nhn::inventory::site::{PortRef, SwitchRole};
use nhn::switch::plan::{self, Host, Placement, SwitchNode, Topology, Vm};

const EDGES: usize = 500;
const HOSTS: usize = 10_000;
const VMS: usize = 100_000;
const VLANS: u32 = 4_000;

fn port(switch: &str, port: &str) -> PortRef {
    PortRef {
        switch: switch.into(),
        port: port.into(),
    }
}

/// A small deterministic generator (no dependency, same site every run).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (self.0 >> 33) as u32
    }
}

fn site() -> (Topology, Placement) {
    let mut t = Topology::default();
    for c in ["Core-A", "Core-B"] {
        t.switches.push(SwitchNode {
            name: c.into(),
            role: SwitchRole::Core,
            max_macs: None,
        });
    }
    for e in 0..EDGES {
        let name = format!("Edge-{e}");
        t.switches.push(SwitchNode {
            name: name.clone(),
            role: SwitchRole::Edge,
            max_macs: Some(100_000),
        });
        t.links
            .push((port(&name, "up1"), port("Core-A", &format!("p{e}"))));
        t.links
            .push((port(&name, "up2"), port("Core-B", &format!("p{e}"))));
    }
    for h in 0..HOSTS {
        t.hosts.push(Host {
            name: format!("HV-{h}"),
            vcpus: 64,
            memory_mb: 262_144,
            available: true,
            ports: vec![port(
                &format!("Edge-{}", h % EDGES),
                &format!("h{}", h / EDGES),
            )],
        });
    }
    t.infra_vlans = [10, 20].into_iter().collect();
    let mut rng = Lcg(42);
    let mut p = Placement::default();
    for v in 0..VMS {
        // Customers' VMs cluster: a host's VMs mostly share a few VLANs.
        let h = v % HOSTS;
        let vlan = if rng.next().is_multiple_of(4) {
            100 + rng.next() % VLANS
        } else {
            100 + (h as u32 * 7 + rng.next() % 3) % VLANS
        } as u16;
        p.vms.push(Vm {
            name: format!("vm-{v}"),
            host: Some(format!("HV-{h}")),
            moving_to: None,
            active: true,
            vlans: vec![vlan],
            vcpus: 2,
            memory_mb: 2048,
        });
    }
    p.allocated = (100..100 + VLANS as u16).collect();
    (t, p)
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..runs {
        let t0 = Instant::now();
        let r = f();
        best = best.min(t0.elapsed());
        out = Some(r);
    }
    (best, out.expect("at least one run"))
}

fn main() {
    let (topo, mut placement) = site();
    let rss_site = peak_rss_mib();
    let (t_plan, before) = best(5, || plan::plan(&topo, &placement).expect("plan"));
    let rss_plan = peak_rss_mib();
    // One live migration: the VM's VLAN appears on another edge, leaves the first.
    placement.vms[0].host = Some(format!("HV-{}", HOSTS / 2 + 1));
    let (t_replan, after) = best(5, || plan::plan(&topo, &placement).expect("plan"));
    let (t_diff, changes) = best(5, || plan::diff(&after, &before.ports));
    let (t_full, _) = best(3, || {
        let d = plan::plan(&topo, &placement).expect("plan");
        plan::diff(&d, &before.ports).len()
    });
    let ports: usize = before.ports.values().map(|p| p.len()).sum();
    let core_vlans = before.ports["Core-A"]["p0"].tagged.len();
    println!(
        "site: {} switches ({EDGES} edges), {HOSTS} hypervisors, {VMS} VMs, {VLANS} VLANs; {ports} managed ports, {core_vlans} VLANs per core port",
        topo.switches.len()
    );
    println!("plan:            {:>8.1} ms", t_plan.as_secs_f64() * 1e3);
    println!("plan after move: {:>8.1} ms", t_replan.as_secs_f64() * 1e3);
    println!(
        "diff:            {:>8.1} ms ({} changes)",
        t_diff.as_secs_f64() * 1e3,
        changes.len()
    );
    println!(
        "plan + diff:     {:>8.1} ms (target < 100 ms)",
        t_full.as_secs_f64() * 1e3
    );
    println!(
        "memory: peak RSS {rss_site:.0} MiB after building the site, {rss_plan:.0} MiB after planning"
    );
    for c in changes.iter().take(6) {
        println!("  {c}");
    }
}
