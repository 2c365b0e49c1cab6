//! The facility end to end, in the seed lab (tests/support/switchlab.rs): `nhn serve` in the
//! management namespace with tgtd, the five switches behind sshd, and an `nhn agent` in each
//! hypervisor namespace running real QEMU guests (TCG, direct kernel boot of nhn's initrd onto
//! DISK1 through QEMU's iSCSI initiator), all driven through the HaaS API from Python's stock
//! xmlrpc.client.
//!
//! One lab for every case (guests under TCG are slow): the seed scenario first, then the
//! crashes and the bad input against the same appliance and agents.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::api::{field, free_port, scripts};
use support::cli::Nhn;
use support::kernel::lab_with_kernel;
use support::switchlab::SeedLab;
use support::{Proc, wait_until};

/// Management addresses: the appliance (and tgtd) and the hypervisors' agents.
const APPLIANCE: &str = "10.99.0.1";
fn agent_ip(i: usize) -> String {
    format!("10.99.0.3{i}")
}

/// A root filesystem for one guest: static busybox and an init that brings up eth0 with `ip`,
/// pings `peer` until it answers, checks that `bad` never answers, and stays up.
fn guest_root(dir: &Path, name: &str, ip: &str, peer: &str, bad: &str) -> PathBuf {
    let tree = dir.join(format!("{name}-tree"));
    for d in ["bin", "sbin", "proc", "sys", "dev", "etc"] {
        std::fs::create_dir_all(tree.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", tree.join("bin/busybox")).unwrap();
    for applet in ["sh", "mount", "ip", "ping", "sleep", "echo", "cat"] {
        std::os::unix::fs::symlink("busybox", tree.join("bin").join(applet)).unwrap();
    }
    let init = format!(
        "#!/bin/sh\nmount -t proc proc /proc\nmount -t sysfs sys /sys\n\
         ip link set lo up\nip link set eth0 up\nip addr add {ip}/24 dev eth0\necho \"G1 NET-UP {ip}\"\n\
         i=0\nwhile [ $i -lt 120 ]; do\n  if ping -c 1 -W 1 {peer} >/dev/null 2>&1; then echo \"G2 PING-OK {peer}\"; break; fi\n  i=$((i + 1))\ndone\n\
         [ $i -lt 120 ] || echo \"G2 PING-FAILED {peer}\"\n\
         if ping -c 3 -W 1 {bad} >/dev/null 2>&1; then echo \"G4 ISOLATION-BROKEN {bad}\"; else echo \"G4 ISOLATION-OK {bad}\"; fi\n\
         echo G9 DONE\nwhile true; do sleep 1000; done\n"
    );
    std::fs::write(tree.join("sbin/init"), init).unwrap();
    std::fs::set_permissions(
        tree.join("sbin/init"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let img = dir.join(format!("{name}.img"));
    let ok = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(&tree)
        .arg(&img)
        .arg("32M")
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok, "mke2fs failed");
    img
}

/// Copies a filesystem image into the start of a volume's sparse backing file.
fn write_into(img: &Path, backing: &Path) {
    let ok = Command::new("dd")
        .arg(format!("if={}", img.display()))
        .arg(format!("of={}", backing.display()))
        .args(["bs=1M", "conv=notrunc,sparse", "status=none"])
        .status()
        .unwrap()
        .success();
    assert!(ok, "dd into {} failed", backing.display());
}

struct Rig<'lab> {
    sl: SeedLab<'lab>,
    nhn: Nhn,
    serve: Option<Proc>,
    agents: BTreeMap<usize, Proc>,
    keys: BTreeMap<&'static str, String>,
    url: String,
    internal: String,
    credentials: BTreeMap<usize, String>,
    tgtd: Proc,
    tgt_ctl: u16,
}

impl Rig<'_> {
    fn start_serve(&mut self) {
        let dir = self.nhn.dir().display().to_string();
        let cfg = self.nhn.dir().join("nhn.toml").display().to_string();
        let bin = env!("CARGO_BIN_EXE_nhn");
        self.serve = Some(
            self.sl
                .mgmt
                .spawn("nhn", &[bin, "--data-dir", &dir, "--config", &cfg, "serve"]),
        );
        let url = format!("http://{APPLIANCE}:{}/healthz", self.url_port());
        let mgmt = &self.sl.mgmt;
        let up = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            mgmt.try_run(&["curl", "-sf", &url]).status.success()
        });
        assert!(up, "nhn serve did not come up: {}", self.serve_log());
    }

    fn url_port(&self) -> &str {
        self.url
            .rsplit(':')
            .next()
            .unwrap()
            .trim_end_matches("/RPC2")
    }

    fn serve_log(&self) -> String {
        self.serve.as_ref().map(Proc::log).unwrap_or_default()
    }

    fn agent_dir(&self, i: usize) -> PathBuf {
        self.nhn.dir().join(format!("agent{i}"))
    }

    fn start_agent(&mut self, i: usize) {
        let dir = self.agent_dir(i);
        std::fs::create_dir_all(&dir).unwrap();
        let cred = dir.join("credential");
        std::fs::write(&cred, &self.credentials[&i]).unwrap();
        let cfg = dir.join("agent.toml");
        std::fs::write(
            &cfg,
            format!(
                "[agent]\nhost = \"Hypervisor-{i}\"\nlisten = \"{}:8090\"\nappliance_url = \"{}\"\n\
                 credential_file = \"{}\"\nstate_dir = \"{}\"\nbridge = \"br0\"\naccel = \"tcg\"\n\
                 shutdown_grace_secs = 3\nreport_secs = 1\n",
                agent_ip(i),
                self.internal,
                cred.display(),
                dir.join("state").display()
            ),
        )
        .unwrap();
        let (ns, ovs) = &self.sl.hypervisors[&format!("Hypervisor-{i}")];
        let mut cmd = ns.cmd(env!("CARGO_BIN_EXE_nhn"));
        cmd.args(["--config", cfg.to_str().unwrap(), "agent", "run"])
            .envs(ovs.env());
        let p = self.sl.lab.spawn(&format!("agent{i}"), cmd);
        let url = format!("http://{}:8090/v1/requests/x", agent_ip(i));
        let mgmt = &self.sl.mgmt;
        let up = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            // Any HTTP answer (401: unsigned) means it listens.
            mgmt.try_run(&["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", &url])
                .stdout
                .starts_with(b"401")
        });
        assert!(up, "agent {i} did not come up: {}", p.log());
        self.agents.insert(i, p);
    }

    /// Runs tests/api/seed_facility.py in the management namespace; returns stdout.
    fn api(&self, args: &[&str]) -> String {
        let mut cmd = self.sl.mgmt.cmd("python3");
        cmd.arg(scripts().join("seed_facility.py"))
            .args(args)
            .current_dir(scripts())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("NHN_URL", &self.url);
        for (name, key) in &self.keys {
            cmd.env(format!("NHN_KEY_{}", name.to_uppercase()), key);
        }
        let out = cmd.output().expect("run python3");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "seed_facility.py {args:?} failed:\n{stdout}\n{}\nnhn serve log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            tail(&self.serve_log(), 60)
        );
        stdout
    }

    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.nhn.dir().join("nhn.db")).expect("open nhn.db")
    }

    fn vm_row(&self, vm: &str) -> (String, Option<String>, String) {
        self.db()
            .query_row(
                "SELECT v.state, m.name, v.state_reason FROM vms v LEFT JOIN machines m ON m.id = v.hypervisor_id
                 WHERE v.public_id = ?1",
                [vm],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
    }

    fn console(&self, host: usize, vm: &str) -> String {
        let dir = self.agent_dir(host).join("state/vm");
        std::fs::read_to_string(dir.join(vm).join("console.log"))
            .or_else(|_| std::fs::read_to_string(dir.join(format!("{vm}.console.log"))))
            .unwrap_or_default()
    }

    fn wait_console(&self, host: usize, vm: &str, marker: &str, secs: u64) -> String {
        let mut text = String::new();
        let ok = wait_until(
            Duration::from_secs(secs),
            Duration::from_millis(250),
            || {
                text = self.console(host, vm);
                text.contains(marker)
            },
        );
        assert!(
            ok,
            "{vm} on Hypervisor-{host}: no {marker:?} on the console:\n{text}"
        );
        text
    }

    fn trunks(&self, switch: &str, port: &str) -> String {
        self.sl.switches[switch]
            .ovs
            .vsctl(&["get", "port", port, "trunks"])
            .trim()
            .to_owned()
    }

    fn qemu_pid(&self, host: usize, vm: &str) -> Option<u32> {
        std::fs::read_to_string(self.agent_dir(host).join("state/vm").join(vm).join("pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn host_number(name: &str) -> usize {
    name.trim_start_matches("Hypervisor-").parse().unwrap()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

#[test]
fn the_seed_scenario_runs_vms_on_hypervisors_and_the_vlans_follow() {
    let test = "the_seed_scenario_runs_vms_on_hypervisors_and_the_vlans_follow";
    let Some((lab, kroot, kver)) = lab_with_kernel(test) else {
        return;
    };
    let nhn = Nhn::new();
    let sl = SeedLab::build(&lab, &nhn.dir().join("lab"), &[], 64);
    // The hypervisors reach the appliance on the management network (agent API, results,
    // kernel downloads, iSCSI).
    for i in 1..=3 {
        let (ns, _) = &sl.hypervisors[&format!("Hypervisor-{i}")];
        lab.veth((ns, "mgmt0"), (&sl.mgmt, &format!("m-hv{i}")));
        sl.mgmt.enslave(&format!("m-hv{i}"), "mbr");
        ns.addr("mgmt0", &format!("{}/24", agent_ip(i)));
    }
    // One V10 (1 vCPU) per hypervisor: placement must spread the VMs over the edges.
    let site = sl
        .site_file()
        .replace("vcpus = 32", "vcpus = 1")
        .replace("memory_mb = 131072", "memory_mb = 1024")
        .replace(
            "address = \"10.10.0.1\"",
            &format!("address = \"{APPLIANCE}\""),
        );
    std::fs::write(nhn.dir().join("site.toml"), site).unwrap();
    nhn.ok(&[
        "inventory",
        "import",
        nhn.dir().join("site.toml").to_str().unwrap(),
    ]);

    // Boot files: Debian's kernel and nhn's initrd for it.
    let boot = nhn.dir().join("boot");
    std::fs::create_dir_all(&boot).unwrap();
    std::fs::copy(
        kroot.join(format!("boot/vmlinuz-{kver}")),
        boot.join("vmlinuz"),
    )
    .unwrap();
    nhn.ok(&[
        "initrd",
        "build",
        "--kernel-version",
        &kver,
        "--modules-dir",
        kroot.join("lib/modules").to_str().unwrap(),
        "--out",
        boot.join("initrd.img").to_str().unwrap(),
    ]);

    // tgtd's control port must be below 32768; the other tests use 1000.. and 11000.. .
    let tgt_ctl = 21000 + (std::process::id() % 9000) as u16;
    let (http, internal) = (free_port(), free_port());
    let tgtd = sl.mgmt.spawn(
        "tgtd",
        &[
            "tgtd",
            "-f",
            "--iscsi",
            &format!("portal={APPLIANCE}:3260"),
            "--control-port",
            &tgt_ctl.to_string(),
        ],
    );
    let config = sl.config(60).replace(
        "listen = \"127.0.0.1:18080\"",
        &format!("listen = \"{APPLIANCE}:{http}\""),
    ) + &format!(
        "\n[api]\ninternal_listen = \"{APPLIANCE}:{internal}\"\npower_deadline_secs = 120\n\
             [storage]\ndriver = \"tgt\"\ntgt_control_port = {tgt_ctl}\n\
             [boot]\ndir = \"{}\"\n\
             [facility]\nhost_dead_secs = 4\nvm_cmdline = \"console=ttyS0 panic=-1 quiet\"\n",
        boot.display()
    );
    std::fs::write(nhn.dir().join("nhn.toml"), config).unwrap();
    let mut keys = BTreeMap::new();
    for customer in ["acme", "globex"] {
        let out = nhn.ok(&["key", "create", "--customer", customer, "--scope", "full"]);
        keys.insert(
            customer,
            format!("{}:{}", field(&out, "key id:"), field(&out, "secret:")),
        );
    }
    let mut credentials = BTreeMap::new();
    for i in 1..=3 {
        let url = format!("http://{}:8090", agent_ip(i));
        let out = nhn.ok(&[
            "--config",
            nhn.dir().join("nhn.toml").to_str().unwrap(),
            "agent",
            "enroll",
            &format!("Hypervisor-{i}"),
            "--url",
            &url,
        ]);
        credentials.insert(i, out.trim().to_owned());
    }
    let mut rig = Rig {
        sl,
        nhn,
        serve: None,
        agents: BTreeMap::new(),
        keys,
        url: format!("http://{APPLIANCE}:{http}/RPC2"),
        internal: format!("http://{APPLIANCE}:{internal}/RPC2"),
        credentials,
        tgtd,
        tgt_ctl,
    };
    rig.start_serve();
    for i in 1..=3 {
        rig.start_agent(i);
    }
    let up = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        rig.db()
            .query_row("SELECT COUNT(*) FROM agents WHERE state = 'up'", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap()
            == 3
    });
    assert!(
        up,
        "the agents did not report: {}",
        tail(&rig.serve_log(), 40)
    );

    // Customer A: two VMs on one L2EX network; customer B: one VM on its own network. All three
    // on one IP subnet, so only the VLANs keep B apart.
    let ids: serde_json::Value = serde_json::from_str(rig.api(&["prepare"]).trim()).unwrap();
    let vm = |c: &str, i: usize| ids[c]["vms"][i]["vmId"].as_str().unwrap().to_owned();
    let (a1, a2, b1) = (vm("acme", 0), vm("acme", 1), vm("globex", 0));
    let guests = [
        (&a1, "10.100.0.11", "10.100.0.12", "10.100.0.21"),
        (&a2, "10.100.0.12", "10.100.0.11", "10.100.0.21"),
        (&b1, "10.100.0.21", "10.100.0.11", "10.100.0.12"),
    ];
    // The images issue installs images with restoreImage; until then the test writes each
    // VM's root filesystem onto its DISK1 itself and records the image as installed.
    for (vm, ip, peer, bad) in guests {
        let img = guest_root(rig.nhn.dir(), vm, ip, peer, bad);
        let backing: String = rig
            .db()
            .query_row(
                "SELECT vol.backing FROM volumes vol JOIN vms v ON v.id = vol.vm_id WHERE v.public_id = ?1",
                [vm],
                |r| r.get(0),
            )
            .unwrap();
        let backing = rig.nhn.dir().join(backing);
        let ready = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            backing.exists()
        });
        assert!(ready, "no backing file {}", backing.display());
        write_into(&img, &backing);
        rig.db()
            .execute(
                "UPDATE volumes SET image_id = (SELECT id FROM images LIMIT 1)
                 WHERE vm_id = (SELECT id FROM vms WHERE public_id = ?1)",
                [vm],
            )
            .unwrap();
    }

    rig.api(&["power_on", "acme", &a1, &a2]);
    rig.api(&["power_on", "globex", &b1]);
    let mut host_of = BTreeMap::new();
    for vm in [&a1, &a2, &b1] {
        let (state, host, _) = rig.vm_row(vm);
        assert_eq!(state, "running", "{vm}");
        host_of.insert(vm.clone(), host_number(&host.expect("placed")));
    }
    let hosts: std::collections::BTreeSet<_> = host_of.values().collect();
    assert_eq!(
        hosts.len(),
        3,
        "one VM per hypervisor (one vCPU each): {host_of:?}"
    );

    // A's VMs reach each other across edge -> core -> edge on their VLAN; B reaches neither.
    rig.wait_console(host_of[&a1], &a1, "G2 PING-OK", 150);
    rig.wait_console(host_of[&a2], &a2, "G2 PING-OK", 150);
    let b = rig.wait_console(host_of[&b1], &b1, "G9 DONE", 150);
    assert!(
        b.contains("G2 PING-FAILED") || !b.contains("G2 PING-OK"),
        "B reached A:\n{b}"
    );
    assert!(
        b.contains("G4 ISOLATION-OK"),
        "B reached A's other VM:\n{b}"
    );
    let a = rig.wait_console(host_of[&a1], &a1, "G9 DONE", 60);
    assert!(a.contains("G4 ISOLATION-OK"), "A reached B:\n{a}");

    // An edge with no VM of A's VLAN does not carry it (read back from its OVS).
    let vlan_a: i64 = rig
        .db()
        .query_row(
            "SELECT vlan FROM networks WHERE public_id = ?1",
            [ids["acme"]["networkId"].as_str().unwrap()],
            |r| r.get(0),
        )
        .unwrap();
    let edge_b = format!("Edge-Switch-{}", host_of[&b1]);
    let edge_a = format!("Edge-Switch-{}", host_of[&a1]);
    let trunks_b = rig.trunks(&edge_b, "swp3");
    assert!(
        !trunks_b.contains(&vlan_a.to_string()),
        "{edge_b} swp3 carries VLAN {vlan_a}: {trunks_b}"
    );
    assert!(rig.trunks(&edge_a, "swp3").contains(&vlan_a.to_string()));

    // kill -9 the agent while its VM runs: the VM keeps running and is re-adopted.
    let h1 = host_of[&a1];
    let pid = rig.qemu_pid(h1, &a1).expect("QEMU pid");
    rig.agents.remove(&h1).unwrap().kill();
    assert!(alive(pid), "the VM died with its agent");
    rig.start_agent(h1);
    let log = rig.agents[&h1].log();
    let adopted = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        rig.agents[&h1].log().contains("re-adopted a running VM")
    });
    assert!(adopted, "{log}");
    assert_eq!(rig.qemu_pid(h1, &a1), Some(pid));

    // powerOffVm stops A's VMs; once no VM needs A's VLAN, it leaves both edges.
    rig.api(&["power_off", "acme", &a1, &a2]);
    assert!(!alive(pid), "QEMU still runs after powerOffVm");
    let pruned = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        !rig.trunks(&edge_a, "swp3").contains(&vlan_a.to_string())
    });
    assert!(
        pruned,
        "{edge_a} swp3 still carries VLAN {vlan_a}: {}",
        rig.trunks(&edge_a, "swp3")
    );

    // A VM whose QEMU is killed from outside becomes `error`, with the reason.
    let hb = host_of[&b1];
    let bpid = rig.qemu_pid(hb, &b1).expect("B's QEMU pid");
    unsafe { libc::kill(bpid as i32, libc::SIGKILL) };
    let errored = wait_until(Duration::from_secs(15), Duration::from_millis(200), || {
        rig.vm_row(&b1).0 == "error"
    });
    let (state, _, reason) = rig.vm_row(&b1);
    assert!(errored, "{b1} is {state}");
    assert!(reason.contains("exited"), "{reason}");

    // Bad input: an unsigned dispatch gets 401 and nothing runs; a result signed with another
    // host's credential is refused; an unknown request id is refused.
    let code = rig.sl.mgmt.try_run(&[
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"requestId":"00000000-00000000","vm":"vm-x","command":{"kind":"reset"}}"#,
        &format!("http://{}:8090/v1/requests", agent_ip(1)),
    ]);
    assert_eq!(String::from_utf8_lossy(&code.stdout), "401");
    let rid: String = rig
        .db()
        .query_row(
            "SELECT r.id FROM requests r JOIN machines m ON m.id = r.host_id
             WHERE m.name = ?1 AND r.method = 'powerOnVm'",
            [format!("Hypervisor-{}", host_of[&a2])],
            |r| r.get(0),
        )
        .unwrap();
    let other = (1..=3).find(|i| *i != host_of[&a2]).unwrap();
    let script = format!(
        "import xmlrpc.client,sys\np=xmlrpc.client.ServerProxy('{}')\n\
         for rid in ['{rid}', 'ffffffff-ffffffff']:\n  try:\n    p.reportRequestResult('{}', rid, 'failed', {{}})\n    print('ACCEPTED', rid)\n  except xmlrpc.client.Fault as f:\n    print('FAULT', f.faultCode, f.faultString)\n",
        rig.internal, rig.credentials[&other]
    );
    let out = rig.sl.mgmt.run(&["python3", "-c", &script]);
    assert!(!out.contains("ACCEPTED"), "{out}");
    assert!(out.contains("was not dispatched to"), "{out}");
    assert!(out.contains("unknown request id"), "{out}");

    // A stopped agent makes its host unreachable within [facility] host_dead_secs.
    rig.agents.remove(&hb).unwrap().terminate();
    let unreachable = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        rig.db()
            .query_row(
                "SELECT a.state FROM agents a JOIN machines m ON m.id = a.machine_id WHERE m.name = ?1",
                [format!("Hypervisor-{hb}")],
                |r| r.get::<_, String>(0),
            )
            .unwrap()
            == "unreachable"
    });
    assert!(unreachable, "Hypervisor-{hb} still counts as up");
    let hosts = rig.nhn.ok(&[
        "--config",
        rig.nhn.dir().join("nhn.toml").to_str().unwrap(),
        "host",
        "list",
    ]);
    assert!(hosts.contains("unreachable"), "{hosts}");

    let _ = rig.sl.mgmt.try_run(&[
        "tgtadm",
        "-C",
        &rig.tgt_ctl.to_string(),
        "--op",
        "delete",
        "--mode",
        "system",
    ]);
    if rig.tgtd.wait_timeout(Duration::from_secs(2)).is_none() {
        rig.tgtd.kill();
    }
}
