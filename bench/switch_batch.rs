//! Benchmark: one inventory change that touches 50 switches (2 cores + 48 edges, each an Open
//! vSwitch in its own namespace behind its own sshd), applied by `nhn serve`'s reconciler (one
//! SSH session and one batch per switch), against the same amount of work done the way
//! networking-generic-switch does it without etcd batching: one SSH session per port change
//! (serialized per switch, switches in parallel). Target: all applied in < 2 s.
//!
//!     sudo cargo bench --bench switch_batch       (root: namespaces; needs OVS and sshd)

#[path = "../tests/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nhn::inventory::Inventory;
use nhn::placement::store::{PlaceArgs, place};
use nhn::switch::plan::Action;
use nhn::switch::readback::SwitchState;
use nhn::switch::ssh::{Auth, Session, Target};
use nhn::switch::templates::{PortChange, Templates, render_batch};
use nhn::switch::vlans::VlanSet;
use support::switchlab::{Persona, bridge_with_empty_trunks, ssh_client_key, start_sshd};
use support::{Ovs, in_netns, lab_or_skip, wait_until};

const EDGES: usize = 48;
const VLAN_BATCHED: u16 = 500;
const VLAN_PER_CHANGE: u16 = 600;

struct Sw<'l> {
    name: String,
    ip: String,
    ports: Vec<String>,
    ovs: Ovs<'l>,
    fingerprint: String,
}

fn main() {
    let Some(lab) = lab_or_skip(
        "switch_batch",
        &["ovs-vswitchd", "/usr/sbin/sshd", "ssh-keygen", "ss"],
    ) else {
        return;
    };
    let nhn = support::cli::Nhn::new();
    let dir = nhn.dir().join("lab");
    let key = ssh_client_key(&dir);
    let t_build = Instant::now();
    let mgmt = lab.netns("mgmt");
    lab.bridge(&mgmt, "mbr");
    mgmt.addr("mbr", "10.99.0.1/24");
    let mut switches = Vec::new();
    let mut specs: Vec<(String, String, Vec<String>)> = Vec::new();
    for c in ["A", "B"] {
        let ports = (1..=EDGES).map(|e| format!("p{e}")).collect();
        let ip = if c == "A" { "10.99.0.11" } else { "10.99.0.12" };
        specs.push((format!("Core-{c}"), ip.into(), ports));
    }
    for e in 1..=EDGES {
        let ports = ["swp1", "swp2", "swp3"].map(String::from).to_vec();
        specs.push((format!("Edge-{e}"), format!("10.99.0.{}", 100 + e), ports));
    }
    for (i, (name, ip, ports)) in specs.into_iter().enumerate() {
        let ns = lab.netns(&format!("s{i}"));
        let m = format!("m{i}");
        lab.veth((&ns, "mgmt0"), (&mgmt, &m));
        mgmt.enslave(&m, "mbr");
        ns.addr("mgmt0", &format!("{ip}/24"));
        let ovs = lab.ovs(&ns);
        bridge_with_empty_trunks(&ovs, &ports);
        let node = format!("s{i}");
        let (_sshd, fingerprint, _) =
            start_sshd(&lab, &ns, &ovs, &dir, &node, &name, &ip, Persona::Ovs, &key);
        switches.push(Sw {
            name,
            ip,
            ports,
            ovs,
            fingerprint,
        });
    }
    println!(
        "lab: {} switches up in {:.1} s",
        switches.len(),
        t_build.elapsed().as_secs_f64()
    );

    // The site: cores' pN <-> Edge-N swp1/swp2, Hypervisor-N on Edge-N swp3.
    let mut site = String::from("[site]\nname = \"bench\"\n\n");
    for s in &switches {
        let role = if s.name.starts_with("Core") {
            "core"
        } else {
            "edge"
        };
        let ports: Vec<String> = s.ports.iter().map(|p| format!("\"{p}\"")).collect();
        let _ = write!(
            site,
            "[[switches]]\nname = \"{}\"\nrole = \"{role}\"\ndriver = \"ssh\"\nos = \"openvswitch\"\naddress = \"{}\"\ncredentials = \"lab\"\nhost_key = \"{}\"\nports = [{}]\n\n",
            s.name,
            s.ip,
            s.fingerprint,
            ports.join(", ")
        );
    }
    for e in 1..=EDGES {
        let _ = write!(
            site,
            "[[links]]\na = \"Edge-{e}:swp1\"\nb = \"Core-A:p{e}\"\n\n[[links]]\na = \"Edge-{e}:swp2\"\nb = \"Core-B:p{e}\"\n\n"
        );
    }
    for e in 1..=EDGES {
        let _ = write!(
            site,
            "[[machines]]\nname = \"HV-{e}\"\nkind = \"hypervisor\"\nvcpus = 32\nmemory_mb = 65536\n\n[[machines.nics]]\ndevice = \"eth0\"\nmac = \"52:54:00:00:10:{e:02x}\"\nport = \"Edge-{e}:swp3\"\n\n"
        );
    }
    let site_path = nhn.dir().join("site.toml");
    std::fs::write(&site_path, site).expect("write site");
    nhn.ok(&["inventory", "import", site_path.to_str().expect("utf-8")]);
    let cfg = nhn.dir().join("nhn.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:18080\"\n[switch]\nreadback_period_secs = 3600\n[credentials.lab]\nuser = \"root\"\nkey_file = \"{}\"\n",
            key.display()
        ),
    )
    .expect("write config");
    let data = nhn.dir().display().to_string();
    let serve = mgmt.spawn(
        "nhn",
        &[
            env!("CARGO_BIN_EXE_nhn"),
            "--data-dir",
            &data,
            "--config",
            &cfg.display().to_string(),
            "serve",
        ],
    );
    let db = nhn.dir().join("nhn.db");
    let count = |sql: &str| -> i64 {
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| c.query_row(sql, [], |r| r.get(0)))
            .unwrap_or(-1)
    };
    let read_all = wait_until(Duration::from_secs(120), Duration::from_millis(100), || {
        count("SELECT COUNT(*) FROM switch_status WHERE last_readback_at IS NOT NULL")
            == switches.len() as i64
    });
    assert!(read_all, "not every switch was read back:\n{}", serve.log());

    // The change: 48 VMs on VLAN 500, one per hypervisor, in one inventory transaction.
    let inv = Inventory::open(&db).expect("open the inventory");
    let expected = (EDGES * 3 + 2 * EDGES) as i64;
    // What the idle lab (50 ovs-vswitchd, 50 sshd, nhn) costs by itself, for comparison.
    let idle0 = (machine_busy_secs(), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let idle_load = (machine_busy_secs() - idle0.0) / idle0.1.elapsed().as_secs_f64();
    let by_comm0 = cpu_by_command();
    let cpu0 = cpu_secs(serve.pid());
    let busy0 = machine_busy_secs();
    let t0 = Instant::now();
    inv.write_blocking(|c| {
        for e in 1..=EDGES {
            let args = PlaceArgs {
                name: format!("vm-{e}"),
                networks: vec![VLAN_BATCHED.to_string()],
                host: Some(format!("HV-{e}")),
                vm_type: "V10".into(),
            };
            place(c, &args, &VlanSet::new())?;
        }
        Ok(())
    })
    .expect("place the VMs");
    let done = wait_until(Duration::from_secs(60), Duration::from_millis(10), || {
        count(&format!(
            "SELECT COUNT(*) FROM switch_intents WHERE vlan = {VLAN_BATCHED} AND state = 'applied'"
        )) == expected
    });
    let batched = t0.elapsed();
    let nhn_cpu = cpu_secs(serve.pid()) - cpu0;
    let busy = machine_busy_secs() - busy0;
    let mut by_comm: Vec<(String, f64)> = cpu_by_command()
        .into_iter()
        .map(|(c, s)| {
            let before = by_comm0.get(&c).copied().unwrap_or(0.0);
            (c, s - before)
        })
        .filter(|(_, s)| *s >= 0.01)
        .collect();
    by_comm.sort_by(|a, b| b.1.total_cmp(&a.1));
    assert!(
        done,
        "the batched change did not complete:\n{}",
        serve.log()
    );
    serve.kill();
    for s in &switches {
        let st = state(&s.ovs);
        assert!(
            s.ports.iter().all(|p| st.ports[p].contains(VLAN_BATCHED)),
            "{} lacks VLAN {VLAN_BATCHED}",
            s.name
        );
    }
    let sessions_batched = switches.len();

    // The same work, one SSH session per port change, serialized per switch.
    let templates = Arc::new(Templates::builtin().expect("templates"));
    let jobs: Vec<(Target, Vec<String>, SwitchState)> = switches
        .iter()
        .map(|s| {
            let t = Target {
                switch: s.name.clone(),
                address: s.ip.clone(),
                user: "root".into(),
                auth: Auth::KeyFile(key.clone()),
                pinned: Some(s.fingerprint.clone()),
                trust_on_first_use: false,
                legacy_algorithms: false,
                connect_timeout: Duration::from_secs(10),
                command_timeout: Duration::from_secs(30),
            };
            (t, s.ports.clone(), state(&s.ovs))
        })
        .collect();
    let per_change_sessions: usize = jobs.iter().map(|(_, p, _)| p.len()).sum();
    let mgmt_name = mgmt.name().to_owned();
    let t1 = Instant::now();
    let errors = in_netns(&mgmt_name, move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async move {
            let mut tasks = Vec::new();
            for (t, ports, mut st) in jobs {
                let templates = templates.clone();
                tasks.push(tokio::spawn(async move {
                    let set = templates.get("openvswitch").expect("openvswitch");
                    for p in ports {
                        let change = [PortChange {
                            port: p,
                            action: Action::Add,
                            vlan: VLAN_PER_CHANGE,
                        }];
                        let batch = render_batch(set, &t.switch, &st, &change)
                            .map_err(|e| e.to_string())?;
                        let mut s = Session::connect(&t, &set.meta)
                            .await
                            .map_err(|e| e.to_string())?;
                        s.run(&batch.lines).await.map_err(|e| e.to_string())?;
                        s.close().await;
                        st.ports.extend(batch.expected);
                    }
                    Ok::<(), String>(())
                }));
            }
            let mut errors = Vec::new();
            for t in tasks {
                match t.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => errors.push(e),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            errors
        })
    });
    let per_change = t1.elapsed();
    assert!(errors.is_empty(), "{errors:?}");
    for s in &switches {
        let st = state(&s.ovs);
        assert!(
            s.ports
                .iter()
                .all(|p| st.ports[p].contains(VLAN_PER_CHANGE)),
            "{}",
            s.name
        );
    }
    println!(
        "one change over {} switches ({expected} port changes): nhn batched {:.2} s ({sessions_batched} SSH sessions, target < 2 s)",
        switches.len(),
        batched.as_secs_f64()
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "  nhn's own CPU time for it: {nhn_cpu:.2} s; the machine was busy {busy:.2} of {:.2} core-seconds \
         (the rest of the busy time is the peers: sshd, sh, ovs-vsctl, ovs-vswitchd, on {cores} cores)",
        batched.as_secs_f64() * cores as f64
    );
    println!("  the idle lab alone keeps {idle_load:.2} of {cores} cores busy");
    let top: Vec<String> = by_comm
        .iter()
        .take(6)
        .map(|(c, s)| format!("{c} {s:.2} s"))
        .collect();
    println!(
        "  CPU by command during the change (children count for their parent): {}",
        top.join(", ")
    );
    println!(
        "same work with one SSH session per change: {:.2} s ({per_change_sessions} sessions)",
        per_change.as_secs_f64()
    );
    println!(
        "ratio: {:.1}x faster batched",
        per_change.as_secs_f64() / batched.as_secs_f64()
    );
}

/// User + system CPU seconds of process `pid` (Linux clock ticks of 1/100 s).
/// CPU seconds the whole machine spent busy (not idle, not waiting for I/O) since boot.
fn machine_busy_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let total: f64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0.0) + ticks.get(4).copied().unwrap_or(0.0);
    (total - idle) / 100.0
}

/// CPU seconds (own + reaped children) of every process, summed by command name.
fn cpu_by_command() -> std::collections::HashMap<String, f64> {
    let mut out = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head.split_once('(').map_or("", |(_, c)| c).to_owned();
        let fields: Vec<f64> = rest
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        // After "(comm)": utime 11, stime 12, cutime 13, cstime 14.
        let ticks: f64 = fields.iter().skip(11).take(4).sum();
        *out.entry(comm).or_insert(0.0) += ticks / 100.0;
    }
    out
}

fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After "(comm)": state is field 0, utime 11, stime 12.
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(11) + tick(12)) / 100.0
}

fn state(ovs: &Ovs) -> SwitchState {
    let out = ovs.vsctl(&[
        "--format=csv",
        "--data=bare",
        "--no-headings",
        "--columns=name,vlan_mode,tag,trunks",
        "list",
        "Port",
    ]);
    nhn::switch::readback::openvswitch(&out).expect("parse ovs-vsctl")
}
