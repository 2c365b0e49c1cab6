//! Benchmark: powerOnVm's control-plane latency and fairness, on the facility lab
//! (tests/support/facility.rs: the seed switches behind sshd, `nhn serve`, an `nhn agent` per
//! hypervisor, QEMU under TCG).
//!
//! 1. **Latency**: 20 times, one VM: powerOnVm → the edge confirms its VLAN by read-back → the
//!    agent starts QEMU and sees it running over QMP → the request succeeds (the client polls
//!    every 2 ms). The guest's own boot is not counted. Between runs the VM is powered off and
//!    its VLAN pruned from the edge, so every run adds the VLAN again. Side by side: the floor,
//!    the same QEMU command line started by hand 20 times (the agent's argv, until QMP says
//!    running). Target: nhn's overhead over the floor < 1 s median.
//! 2. **Fairness**: customer A issues 20 power-ons at once and customer B one, all concurrently
//!    (a thread per call). B's request must finish no later than A's second.
//!
//!     sudo cargo bench --bench power_on      (root; the kernel from tests/fetch-kernel.sh)

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::facility::{Rig, guest_root};
use support::kernel::lab_with_kernel;
use support::wait_until;

const RUNS: usize = 20;

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    (q(0.5), q(0.99), v[0])
}

/// The agent's QEMU command line for `vm`, rewritten to files of our own.
fn floor_argv(argv: &[String], dir: &Path) -> Vec<String> {
    let d = |f: &str| dir.join(f).display().to_string();
    let mut out = Vec::new();
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        out.push(a.clone());
        let next = match a.as_str() {
            "-pidfile" => Some(d("pid")),
            "-qmp" => Some(format!("unix:{},server=on,wait=off", d("qmp.sock"))),
            "-serial" => Some(format!("file:{}", d("console.log"))),
            // The CHAP secret file: the agent removes its own once QEMU runs.
            "-object" => it
                .clone()
                .next()
                .filter(|o| o.starts_with("secret,"))
                .map(|o| {
                    let id = o
                        .split(',')
                        .find_map(|kv| kv.strip_prefix("id="))
                        .unwrap_or("chap0");
                    format!("secret,id={id},file={}", d(id))
                }),
            _ => None,
        };
        if let Some(n) = next {
            it.next();
            out.push(n);
        }
    }
    out
}

fn main() {
    let Some((lab, kroot, kver)) = lab_with_kernel("power_on") else {
        return;
    };
    let mut rig = Rig::build(&lab, &kroot, &kver, 32);
    rig.db()
        .execute(
            "INSERT OR REPLACE INTO quotas SELECT id, 100, 100, 1000000, 100, 100000, 10, 10, 10, 10, 100 FROM customers",
            [],
        )
        .unwrap();
    let a: Vec<String> =
        serde_json::from_str(rig.api(&["prepare_many", "acme", "21"]).trim()).unwrap();
    let b: Vec<String> =
        serde_json::from_str(rig.api(&["prepare_many", "globex", "2"]).trim()).unwrap();
    let img = guest_root(
        rig.nhn.dir(),
        "bench",
        "10.100.0.99",
        "10.100.0.98",
        "10.100.0.97",
        1,
    );
    for vm in a.iter().chain(&b) {
        rig.install_root(vm, &img);
    }

    // 1. Latency, VLAN added each time.
    let vm = &a[0];
    let vlan: String = rig
        .db()
        .query_row(
            "SELECT w.vlan FROM nics n JOIN networks w ON w.id = n.network_id JOIN vms v ON v.id = n.vm_id WHERE v.public_id = ?1",
            [vm],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
        .to_string();
    let mut nhn = Vec::new();
    let mut argv: Vec<String> = Vec::new();
    let mut host = String::new();
    for i in 0..RUNS {
        let secs: f64 = rig.api(&["timed_on", "acme", vm]).trim().parse().unwrap();
        nhn.push(secs);
        let (_, h, _) = rig.vm_row(vm);
        host = h.expect("placed");
        let n: usize = host.trim_start_matches("Hypervisor-").parse().unwrap();
        if i == 0 {
            let path = rig.agent_dir(n).join("state/vm").join(vm).join("argv.json");
            argv = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        }
        rig.api(&["off", "acme", vm]);
        let edge = format!("Edge-Switch-{n}");
        let pruned = wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
            !rig.trunks(&edge, "swp3")
                .split([',', '[', ']', ' '])
                .any(|v| v == vlan)
        });
        assert!(pruned, "VLAN {vlan} not pruned from {edge}");
    }

    // The floor: the same QEMU started by hand, its tap made beforehand (as the agent does).
    let n: usize = host.trim_start_matches("Hypervisor-").parse().unwrap();
    let (ns, ovs) = &rig.sl.hypervisors[&host];
    let tap = nhn::agent::ovs::tap_name(vm, "NET1");
    ns.ip(&["tuntap", "add", &tap, "mode", "tap"]);
    ns.ip(&["link", "set", &tap, "up"]);
    ovs.vsctl(&["add-port", "br0", &tap, &format!("tag={vlan}")]);
    let dir = rig.nhn.dir().join("floor");
    std::fs::create_dir_all(&dir).unwrap();
    let args = floor_argv(&argv[1..], &dir);
    // The target's CHAP account, as the appliance derives it, for the floor's secret file.
    if let Some(target) = args
        .iter()
        .find_map(|a| a.split(',').find_map(|kv| kv.strip_prefix("target=")))
    {
        let key: [u8; 32] = std::fs::read(rig.nhn.dir().join("api-secret"))
            .unwrap()
            .try_into()
            .unwrap();
        std::fs::write(
            dir.join("chap0"),
            nhn::storage::chap_for(&key, target).secret,
        )
        .unwrap();
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut floor = Vec::new();
    for _ in 0..RUNS {
        let _ = std::fs::remove_file(dir.join("qmp.sock"));
        let t0 = Instant::now();
        let ok = ns.cmd(&argv[0]).args(&args).status().unwrap().success();
        assert!(ok, "bare QEMU failed: {args:?}");
        let pid: u32 = std::fs::read_to_string(dir.join("pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let status = runtime.block_on(async {
            let mut q = nhn::agent::qmp::Qmp::connect(&dir.join("qmp.sock"))
                .await
                .unwrap();
            let s = q.status().await.unwrap();
            floor.push(t0.elapsed().as_secs_f64());
            let _ = q.execute("quit", serde_json::json!({})).await;
            s
        });
        assert_eq!(status, "running");
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            !Path::new(&format!("/proc/{pid}")).exists()
        });
    }
    let (nm, np, nmin) = stats(nhn.clone());
    let (fm, fp, fmin) = stats(floor.clone());
    println!(
        "powerOnVm control-plane latency over {RUNS} runs on {host} (Hypervisor-{n}), VLAN {vlan} added each time:"
    );
    println!(
        "  nhn (API -> edge read-back -> QEMU running): median {:.3} s  p99 {:.3} s  min {:.3} s",
        nm, np, nmin
    );
    println!(
        "  bare QEMU, same argv (floor):                median {:.3} s  p99 {:.3} s  min {:.3} s",
        fm, fp, fmin
    );
    println!(
        "  nhn's overhead: median {:.3} s (target < 1 s), ratio {:.2}x",
        nm - fm,
        nm / fm
    );
    let metrics = rig.sl.mgmt.run(&[
        "curl",
        "-sf",
        &format!(
            "http://{}:{}/metrics",
            support::facility::APPLIANCE,
            rig.url_port()
        ),
    ]);
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("nhn_power_on_edge_wait_seconds"))
    {
        println!("  {line}");
    }

    // 2. Fairness: A's 20 and B's one, concurrently. First "cold": both networks' VLANs must
    // be added to an edge (A's first add serves all of A's, B needs its own). Then "warm": each
    // customer already runs one VM on its network, so placement puts the new ones where the
    // VLAN is and no switch work differs: what is left is the job engine's fairness.
    let a20: Vec<String> = a[..20].to_vec();
    fairness(&rig, "cold", &a20, &b[0]);
    for vm in a20.iter().chain([&b[0]]) {
        rig.api(&["off", if vm == &b[0] { "globex" } else { "acme" }, vm]);
    }
    rig.api(&["power_on", "acme", &a[20]]);
    rig.api(&["power_on", "globex", &b[1]]);
    fairness(&rig, "warm", &a20, &b[0]);
    // The same with one request per customer in flight ([api] max_in_flight = 1).
    for vm in a20.iter().chain([&b[0]]) {
        rig.api(&["off", if vm == &b[0] { "globex" } else { "acme" }, vm]);
    }
    let cfg = rig.nhn.dir().join("nhn.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace(
            "power_deadline_secs = 120\n",
            "power_deadline_secs = 120\nmax_in_flight = 1\n",
        ),
    )
    .unwrap();
    rig.kill9_serve();
    rig.start_serve();
    fairness(&rig, "warm, max_in_flight = 1", &a20, &b[0]);
}

fn fairness(rig: &Rig, what: &str, a: &[String], b: &str) {
    let out = rig.api(&["fairness", "acme", &a.join(","), "globex", b]);
    let f: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let a_done: Vec<f64> = f["a"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let b_done = f["b"].as_f64().unwrap();
    println!(
        "fairness ({what}): A's 20 power-ons finished at {:.2} s (first), {:.2} s (second), {:.2} s (last); B's one at {:.2} s",
        a_done[0],
        a_done[1],
        a_done[a_done.len() - 1],
        b_done
    );
    println!(
        "  B no later than A's second: {}",
        if b_done <= a_done[1] { "yes" } else { "NO" }
    );
}
