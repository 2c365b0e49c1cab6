//! The facility lab: the seed topology (switchlab.rs) with `nhn serve` and tgtd in the
//! management namespace and an `nhn agent` in each hypervisor namespace running real QEMU
//! guests (TCG), driven through the HaaS API by tests/api/seed_facility.py. Shared by
//! tests/facility.rs and bench/power_on.rs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::api::{field, free_port, scripts};
use super::cli::Nhn;
use super::kernel::{boot_dir, busybox_root};
use super::switchlab::SeedLab;
use super::{Lab, Proc, wait_until};

/// Management addresses: the appliance (and tgtd) and the hypervisors' agents.
pub const APPLIANCE: &str = "10.99.0.1";
pub fn agent_ip(i: usize) -> String {
    format!("10.99.0.3{i}")
}

/// A root filesystem for one guest: static busybox and an init that brings up eth0 with `ip`,
/// pings `peer` until it answers (at most `tries` times), checks that `bad` never answers,
/// and stays up.
pub fn guest_root(dir: &Path, name: &str, ip: &str, peer: &str, bad: &str, tries: u32) -> PathBuf {
    let init = format!(
        "#!/bin/sh\nmount -t proc proc /proc\nmount -t sysfs sys /sys\n\
         ip link set lo up\nip link set eth0 up\nip addr add {ip}/24 dev eth0\necho \"G1 NET-UP {ip}\"\n\
         i=0\nwhile [ $i -lt {tries} ]; do\n  if ping -c 1 -W 1 {peer} >/dev/null 2>&1; then echo \"G2 PING-OK {peer}\"; break; fi\n  i=$((i + 1))\ndone\n\
         [ $i -lt {tries} ] || echo \"G2 PING-FAILED {peer}\"\n\
         if ping -c 3 -W 1 {bad} >/dev/null 2>&1; then echo \"G4 ISOLATION-BROKEN {bad}\"; else echo \"G4 ISOLATION-OK {bad}\"; fi\n\
         echo G9 DONE\nwhile true; do sleep 1000; done\n"
    );
    busybox_root(
        dir,
        name,
        &["sh", "mount", "ip", "ping", "sleep", "echo", "cat"],
        &init,
        "32M",
    )
}

/// Copies a filesystem image into the start of a volume's sparse backing file.
pub fn write_into(img: &Path, backing: &Path) {
    let ok = Command::new("dd")
        .arg(format!("if={}", img.display()))
        .arg(format!("of={}", backing.display()))
        .args(["bs=1M", "conv=notrunc,sparse", "status=none"])
        .status()
        .unwrap()
        .success();
    assert!(ok, "dd into {} failed", backing.display());
}

pub struct Rig<'lab> {
    pub sl: SeedLab<'lab>,
    pub nhn: Nhn,
    pub serve: Option<Proc>,
    pub agents: BTreeMap<usize, Proc>,
    pub keys: BTreeMap<&'static str, String>,
    pub url: String,
    pub internal: String,
    pub credentials: BTreeMap<usize, String>,
    pub tgtd: Proc,
    pub tgt_ctl: u16,
}

impl Rig<'_> {
    pub fn start_serve(&mut self) {
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

    /// kill -9 of `nhn serve`.
    pub fn kill9_serve(&mut self) {
        if let Some(p) = self.serve.take() {
            p.kill();
        }
    }

    /// QEMU processes running `vm` (by its `-name`), on any host.
    pub fn qemu_count(&self, vm: &str) -> usize {
        super::qemu_processes(&format!("{vm},process=nhn-{vm}"))
    }

    pub fn url_port(&self) -> &str {
        self.url
            .rsplit(':')
            .next()
            .unwrap()
            .trim_end_matches("/RPC2")
    }

    pub fn serve_log(&self) -> String {
        self.serve.as_ref().map(Proc::log).unwrap_or_default()
    }

    pub fn agent_dir(&self, i: usize) -> PathBuf {
        self.nhn.dir().join(format!("agent{i}"))
    }

    pub fn start_agent(&mut self, i: usize) {
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
    pub fn api(&self, args: &[&str]) -> String {
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

    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.nhn.dir().join("nhn.db")).expect("open nhn.db")
    }

    pub fn vm_row(&self, vm: &str) -> (String, Option<String>, String) {
        self.db()
            .query_row(
                "SELECT v.state, m.name, v.state_reason FROM vms v LEFT JOIN machines m ON m.id = v.hypervisor_id
                 WHERE v.public_id = ?1",
                [vm],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
    }

    pub fn console(&self, host: usize, vm: &str) -> String {
        let dir = self.agent_dir(host).join("state/vm");
        // Lossy: a guest may print any bytes.
        std::fs::read(dir.join(vm).join("console.log"))
            .or_else(|_| std::fs::read(dir.join(format!("{vm}.console.log"))))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn wait_console(&self, host: usize, vm: &str, marker: &str, secs: u64) -> String {
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
            "{vm} on Hypervisor-{host}: no {marker:?} on the console:\n{text}\nagent log:\n{}\nnhn serve log:\n{}\nrequests:\n{}",
            tail(
                &self.agents.get(&host).map(Proc::log).unwrap_or_default(),
                30
            ),
            tail(&self.serve_log(), 30),
            self.requests_of(vm)
        );
        text
    }

    /// The requests about `vm`, oldest first: method, status, error (for failure messages).
    pub fn requests_of(&self, vm: &str) -> String {
        let db = self.db();
        let mut st = db
            .prepare(
                "SELECT method, status, error_message, accepted_at FROM requests
                 WHERE resource_id = ?1 ORDER BY accepted_at",
            )
            .unwrap();
        st.query_map([vm], |r| {
            Ok(format!(
                "{} {} {} {}",
                r.get::<_, String>(3)?,
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?
            ))
        })
        .unwrap()
        .map(|r| r.unwrap())
        .collect::<Vec<_>>()
        .join("\n")
    }

    pub fn trunks(&self, switch: &str, port: &str) -> String {
        self.sl.switches[switch]
            .ovs
            .vsctl(&["get", "port", port, "trunks"])
            .trim()
            .to_owned()
    }

    /// Writes `img` onto `vm`'s DISK1 and records an image as installed there. The images
    /// issue installs images with restoreImage; until then tests prepare the root themselves.
    pub fn install_root(&self, vm: &str, img: &Path) {
        let backing: String = self
            .db()
            .query_row(
                "SELECT vol.backing FROM volumes vol JOIN vms v ON v.id = vol.vm_id WHERE v.public_id = ?1",
                [vm],
                |r| r.get(0),
            )
            .unwrap();
        let backing = self.nhn.dir().join(backing);
        let ready = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            backing.exists()
        });
        assert!(ready, "no backing file {}", backing.display());
        write_into(img, &backing);
        self.db()
            .execute(
                "UPDATE volumes SET image_id = (SELECT id FROM images LIMIT 1)
                 WHERE vm_id = (SELECT id FROM vms WHERE public_id = ?1)",
                [vm],
            )
            .unwrap();
    }

    pub fn qemu_pid(&self, host: usize, vm: &str) -> Option<u32> {
        std::fs::read_to_string(self.agent_dir(host).join("state/vm").join(vm).join("pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
    }
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub fn host_number(name: &str) -> usize {
    name.trim_start_matches("Hypervisor-").parse().unwrap()
}

pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

impl<'lab> Rig<'lab> {
    /// The seed lab with `nhn serve` (and tgtd) in the management namespace and an enrolled,
    /// running `nhn agent` in each hypervisor namespace, each hypervisor sized `vcpus` vCPUs
    /// and `vcpus` GB.
    pub fn build(lab: &'lab Lab, kroot: &Path, kver: &str, vcpus: u32) -> Rig<'lab> {
        let nhn = Nhn::new();
        let sl = SeedLab::build(lab, &nhn.dir().join("lab"), &[], 64);
        // The hypervisors reach the appliance on the management network (agent API, results,
        // kernel downloads, iSCSI).
        for i in 1..=3 {
            let (ns, _) = &sl.hypervisors[&format!("Hypervisor-{i}")];
            lab.veth((ns, "mgmt0"), (&sl.mgmt, &format!("m-hv{i}")));
            sl.mgmt.enslave(&format!("m-hv{i}"), "mbr");
            ns.addr("mgmt0", &format!("{}/24", agent_ip(i)));
        }
        let site = sl
            .site_file()
            .replace("vcpus = 32", &format!("vcpus = {vcpus}"))
            .replace(
                "memory_mb = 131072",
                &format!("memory_mb = {}", vcpus * 1024),
            )
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
        let (boot, _) = boot_dir(&nhn, kroot, kver);

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
             mutating_per_second = 1000\nmutating_burst = 1000\nread_per_second = 100000\nread_burst = 100000\n\
             [storage]\ndriver = \"tgt\"\ntgt_control_port = {tgt_ctl}\nchap = true\n\
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
        rig
    }
}
