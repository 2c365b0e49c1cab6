//! The seed topology as a real switch lab: Core-Switch-A/B and Edge-Switch-1..3, each an Open
//! vSwitch bridge (userspace datapath, real 802.1Q tags) in its own namespace behind its own
//! sshd on 10.99.0.x; Hypervisor-1..3 each an OVS bridge trunked to its edge's swp3; VMs as
//! namespaces on access ports of their hypervisor's bridge, all on one IP subnet whatever
//! their VLAN (so that isolation is proven by VLANs, not by routing).
//!
//! Cabling is the seed's: edge swp1 → Core-Switch-A, swp2 → Core-Switch-B, Core-A swp4 ↔
//! Core-B swp4. To break the loop without STP timing, the Core-B side and the core link are
//! administratively down (the testbed's "standby" mode): frames go edge → Core-A → edge.
//!
//! SSH personalities: `ovs` switches run each exec request through `/bin/sh -ec` with the
//! switch's OVS environment (and log every request to `<dir>/<switch>-cli.log`, so that tests
//! can count what was sent); `ios` switches run `switch/ios_cli.py`, an IOS-like CLI over PTY
//! backed by the same OVS.
//!
//! SNMP personalities (`snmp-v2c`, `snmp-v3`): no sshd, but net-snmp's snmpd on udp/161 in the
//! switch's namespace, with `switch/qbridge.py` serving BRIDGE-MIB/Q-BRIDGE-MIB from the same
//! OVS (pass_persist) and snmpd's own IF-MIB naming the ports. Community `private` (rw) /
//! `public` (ro); SNMPv3 user `nhnadmin`, SHA/AES, passwords [`V3_AUTH`]/[`V3_PRIV`]. Every
//! request the script saw is in `<dir>/<switch>-qbridge.log`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::{Lab, Netns, Ovs, Proc, run_checked};

/// Edge and core switches of the seed, with their lab node name and management address.
pub const SWITCHES: &[(&str, &str, &str)] = &[
    ("csa", "Core-Switch-A", "10.99.0.11"),
    ("csb", "Core-Switch-B", "10.99.0.12"),
    ("es1", "Edge-Switch-1", "10.99.0.21"),
    ("es2", "Edge-Switch-2", "10.99.0.22"),
    ("es3", "Edge-Switch-3", "10.99.0.23"),
];

/// How a switch is driven: sshd with a shell or CLI, or snmpd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persona {
    Ovs,
    Ios,
    /// snmpd; the site's credential is the SNMPv2c community.
    SnmpV2c,
    /// snmpd; the site's credential is the SNMPv3 authPriv user.
    SnmpV3,
}

impl Persona {
    pub fn is_snmp(self) -> bool {
        matches!(self, Persona::SnmpV2c | Persona::SnmpV3)
    }
}

/// The lab agents' SNMPv3 passwords (user `nhnadmin`, SHA-1 and AES-128).
pub const V3_AUTH: &str = "nhnauthpass1";
pub const V3_PRIV: &str = "nhnprivpass1";

/// `[credentials.lab-snmp]` for SNMPv2c with `community`.
pub fn snmp_v2c_credential(community: &str) -> String {
    format!("[credentials.lab-snmp]\ncommunity = \"{community}\"\n")
}

/// `[credentials.lab-snmp]` for SNMPv3 authPriv (SHA/AES, user nhnadmin).
pub fn snmp_v3_credential(auth: &str, privacy: &str) -> String {
    format!(
        "[credentials.lab-snmp]\nuser = \"nhnadmin\"\nauth_protocol = \"SHA\"\nauth_password = \"{auth}\"\npriv_protocol = \"AES\"\npriv_password = \"{privacy}\"\n"
    )
}

pub struct Switch<'lab> {
    pub name: &'static str,
    pub ns: Netns<'lab>,
    pub ovs: Ovs<'lab>,
    pub address: &'static str,
    pub persona: Persona,
    /// sshd (SSH personas) or snmpd (SNMP personas).
    pub daemon: Proc,
    /// The SSH host key's fingerprint (empty for SNMP personas).
    pub fingerprint: String,
    /// sshd_config or snmpd.conf.
    daemon_config: PathBuf,
}

pub struct Vm<'lab> {
    pub ns: Netns<'lab>,
    pub ip: String,
}

pub struct SeedLab<'lab> {
    pub lab: &'lab Lab,
    pub dir: PathBuf,
    pub mgmt: Netns<'lab>,
    pub switches: BTreeMap<&'static str, Switch<'lab>>,
    pub hypervisors: BTreeMap<String, (Netns<'lab>, Ovs<'lab>)>,
    pub vms: BTreeMap<String, Vm<'lab>>,
    pub client_key: PathBuf,
}

fn support_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/switch")
}

/// Makes `dir` and nhn's SSH client key in it (`id_ed25519`), and sshd's privilege separation
/// directory; returns the key's path.
pub fn ssh_client_key(dir: &Path) -> PathBuf {
    fs::create_dir_all("/run/sshd").expect("create /run/sshd (sshd's privilege separation dir)");
    fs::create_dir_all(dir).expect("create the lab dir");
    let key = dir.join("id_ed25519");
    run_checked(
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "nhn-lab"])
            .arg("-f")
            .arg(&key),
    );
    key
}

impl<'lab> SeedLab<'lab> {
    /// Builds the lab; `personas` overrides the default `ovs` per switch name.
    pub fn build(lab: &'lab Lab, dir: &Path, personas: &[(&str, Persona)], mac_table: u32) -> Self {
        let client_key = ssh_client_key(dir);
        let mgmt = lab.netns("mgmt");
        lab.bridge(&mgmt, "mbr");
        mgmt.addr("mbr", "10.99.0.1/24");
        let mut nodes = BTreeMap::new();
        for (node, name, ip) in SWITCHES {
            let ns = lab.netns(node);
            let m_if = format!("m-{node}");
            lab.veth((&ns, "mgmt0"), (&mgmt, &m_if));
            mgmt.enslave(&m_if, "mbr");
            ns.addr("mgmt0", &format!("{ip}/24"));
            nodes.insert(*node, (ns, *name, *ip));
        }
        let mut hvs = Vec::new();
        for i in 1..=3 {
            hvs.push(lab.netns(&format!("hv{i}")));
        }
        let get = |n: &str| &nodes[n].0;
        for i in 1..=3 {
            let (es, sw) = (format!("es{i}"), format!("swp{i}"));
            lab.veth((get("csa"), &sw), (get(&es), "swp1"));
            lab.veth((get("csb"), &sw), (get(&es), "swp2"));
            lab.veth((get(&es), "swp3"), (&hvs[i - 1], "up0"));
        }
        lab.veth((get("csa"), "swp4"), (get("csb"), "swp4"));
        let mut switches = BTreeMap::new();
        for (node, (ns, name, ip)) in nodes {
            let ovs = lab.ovs(&ns);
            let edge = node.starts_with("es");
            let ports: &[&str] = if edge {
                &["swp1", "swp2", "swp3"]
            } else {
                &["swp1", "swp2", "swp3", "swp4"]
            };
            let mut args: Vec<String> = vec![
                "add-br".into(),
                "br0".into(),
                "--".into(),
                "set".into(),
                "bridge".into(),
                "br0".into(),
                "datapath_type=netdev".into(),
                "external_ids:vlan-100=VLAN0100".into(),
                "external_ids:vlan-200=VLAN0200".into(),
            ];
            if edge {
                args.push(format!("other_config:mac-table-size={mac_table}"));
            }
            for p in ports {
                args.extend(
                    [
                        "--",
                        "add-port",
                        "br0",
                        p,
                        "--",
                        "set",
                        "port",
                        p,
                        "vlan_mode=trunk",
                        "trunks=100,200",
                    ]
                    .map(String::from),
                );
            }
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            ovs.vsctl(&a);
            // Standby loop breaking: the Core-B side and the core-core link are down.
            if edge {
                ns.ip(&["link", "set", "swp2", "down"]);
            }
            if node == "csa" {
                ns.ip(&["link", "set", "swp4", "down"]);
            }
            let persona = personas
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(Persona::Ovs, |(_, p)| *p);
            let (daemon, fingerprint, daemon_config) = if persona.is_snmp() {
                let conf = write_snmpd_conf(&ovs, dir, name, ip);
                (start_snmpd(&ns, dir, name, ip, &conf), String::new(), conf)
            } else {
                start_sshd(lab, &ns, &ovs, dir, node, name, ip, persona, &client_key)
            };
            switches.insert(
                name,
                Switch {
                    name,
                    ns,
                    ovs,
                    address: ip,
                    persona,
                    daemon,
                    fingerprint,
                    daemon_config,
                },
            );
        }
        let mut hypervisors = BTreeMap::new();
        for (i, ns) in hvs.into_iter().enumerate() {
            let ovs = lab.ovs(&ns);
            ovs.vsctl(&[
                "add-br",
                "br0",
                "--",
                "set",
                "bridge",
                "br0",
                "datapath_type=netdev",
                "--",
                "add-port",
                "br0",
                "up0",
                "--",
                "set",
                "port",
                "up0",
                "vlan_mode=trunk",
            ]);
            hypervisors.insert(format!("Hypervisor-{}", i + 1), (ns, ovs));
        }
        SeedLab {
            lab,
            dir: dir.to_owned(),
            mgmt,
            switches,
            hypervisors,
            vms: BTreeMap::new(),
            client_key,
        }
    }

    /// Starts a VM: a namespace on an access port (its VLAN) of its hypervisor's bridge.
    pub fn start_vm(&mut self, vm: &str, host: &str, vlan: u16, ip: &str) {
        let short = vm.to_lowercase().replace('-', "");
        let ns = self.lab.netns(&short);
        let (hv, ovs) = &self.hypervisors[host];
        self.lab.veth((hv, &short), (&ns, "eth0"));
        ovs.add_access_port("br0", &short, vlan);
        ns.addr("eth0", &format!("{ip}/24"));
        ns.tx_offload_off("eth0");
        self.vms.insert(
            vm.to_owned(),
            Vm {
                ns,
                ip: ip.to_owned(),
            },
        );
    }

    /// A machine's own NIC on hypervisor `host`: a namespace on a port of its bridge that
    /// sends and receives untagged (OVS VLAN 0, untagged on the uplink too), as the
    /// hypervisor's IP stack does on its boot network.
    pub fn start_host_nic(&mut self, name: &str, host: &str, ip: &str) {
        let ns = self.lab.netns(name);
        let (hv, ovs) = &self.hypervisors[host];
        self.lab.veth((hv, name), (&ns, "eth0"));
        ovs.add_access_port("br0", name, 0);
        ns.addr("eth0", &format!("{ip}/24"));
        ns.tx_offload_off("eth0");
        self.vms.insert(
            name.to_owned(),
            Vm {
                ns,
                ip: ip.to_owned(),
            },
        );
    }

    /// A bare-metal server: a namespace cabled to a new port `port` of `edge`, which starts as
    /// a factory-default access port in VLAN 1; the server sends untagged from `ip`.
    pub fn start_server(&mut self, name: &str, edge: &str, port: &str, ip: &str) {
        let ns = self.lab.netns(name);
        let sw = &self.switches[edge];
        self.lab.veth((&sw.ns, port), (&ns, "eth0"));
        sw.ovs.add_access_port("br0", port, 1);
        ns.addr("eth0", &format!("{ip}/24"));
        ns.tx_offload_off("eth0");
        self.vms.insert(
            name.to_owned(),
            Vm {
                ns,
                ip: ip.to_owned(),
            },
        );
    }

    /// Live-migrates a VM's network attachment: plugs it into `to` (same MAC, same IP), then
    /// unplugs it from `from`, as a hypervisor pair does at the end of a migration. The
    /// switches learn the new location from the VM's next frame.
    pub fn move_vm(&mut self, vm: &str, from: &str, to: &str, vlan: u16) {
        let short = vm.to_lowercase().replace('-', "");
        let v = &self.vms[vm];
        let (_, old_ovs) = &self.hypervisors[from];
        let (new_hv, new_ovs) = &self.hypervisors[to];
        let port = format!("{short}b");
        self.lab.veth((new_hv, &port), (&v.ns, "eth1"));
        new_ovs.add_access_port("br0", &port, vlan);
        let mac =
            v.ns.ip(&["-br", "link", "show", "eth0"])
                .split_whitespace()
                .nth(2)
                .unwrap_or_default()
                .to_owned();
        v.ns.ip(&["addr", "flush", "dev", "eth0"]);
        v.ns.ip(&["link", "set", "eth0", "down"]);
        v.ns.ip(&["link", "set", "eth1", "down"]);
        v.ns.ip(&["link", "set", "eth1", "address", &mac]);
        v.ns.ip(&["link", "set", "eth1", "up"]);
        v.ns.addr("eth1", &format!("{}/24", v.ip));
        v.ns.tx_offload_off("eth1");
        old_ovs.vsctl(&["del-port", "br0", &short]);
    }

    /// Kills a switch's sshd with SIGKILL: the sessions it forked first (any batch in flight
    /// dies with its connection), then the listener.
    pub fn kill_sshd(&mut self, name: &str) {
        let sw = self.switches.get(name).expect("known switch");
        assert!(!sw.persona.is_snmp(), "{name} runs snmpd, not sshd");
        let mut tree = descendants(sw.daemon.pid());
        tree.reverse();
        super::signal("KILL", &tree);
        sw.daemon.kill();
    }

    /// Kills an SNMP switch's snmpd (and its pass_persist script) with SIGKILL.
    pub fn kill_snmpd(&mut self, name: &str) {
        let sw = self.switches.get(name).expect("known switch");
        assert!(sw.persona.is_snmp(), "{name} does not run snmpd");
        let mut tree = descendants(sw.daemon.pid());
        tree.reverse();
        super::signal("KILL", &tree);
        sw.daemon.kill();
    }

    /// Starts an SNMP switch's snmpd again (same configuration, same engine).
    pub fn restart_snmpd(&mut self, name: &str) {
        let dir = self.dir.clone();
        let sw = self.switches.get_mut(name).expect("known switch");
        sw.daemon = start_snmpd(&sw.ns, &dir, sw.name, sw.address, &sw.daemon_config);
    }

    /// What the Q-BRIDGE script of an SNMP switch was asked (one line per request).
    pub fn qbridge_log(&self, name: &str) -> String {
        fs::read_to_string(self.dir.join(format!("{name}-qbridge.log"))).unwrap_or_default()
    }

    /// While `on`, the `ovs` switch `name` waits 10 s before running each exec request, so a
    /// test can act while a batch is in flight.
    pub fn slow(&self, name: &str, on: bool) {
        let marker = self.dir.join(format!("{name}-slow"));
        if on {
            fs::write(&marker, "").expect("create the slow marker");
        } else {
            let _ = fs::remove_file(&marker);
        }
    }

    /// Starts a switch's sshd again with the same host key.
    pub fn restart_sshd(&mut self, name: &str) {
        let sw = self.switches.get_mut(name).expect("known switch");
        let cfg = sw.daemon_config.display().to_string();
        let log = self.dir.join(format!("{}-sshd.log", sw.name));
        sw.daemon = sw.ns.spawn(
            "sshd",
            &[
                "/usr/sbin/sshd",
                "-D",
                "-e",
                "-f",
                &cfg,
                "-E",
                &log.display().to_string(),
            ],
        );
        wait_listening(&sw.ns, sw.address);
    }

    /// What each port of `name` carries, read from its OVS directly (not through nhn), as a
    /// plan prints it: `10,100` (a trunk), `native 20 + 10` (untagged 20), `access 300`.
    pub fn ports(&self, name: &str) -> BTreeMap<String, String> {
        self.port_plans(name)
            .into_iter()
            .map(|(p, s)| (p, s.to_string()))
            .collect()
    }

    /// What each `swpN` port of `name` carries, read from its OVS directly.
    pub fn port_plans(&self, name: &str) -> BTreeMap<String, nhn::switch::PortPlan> {
        let out = self.switches[name].ovs.vsctl(&[
            "--format=csv",
            "--data=bare",
            "--no-headings",
            "--columns=name,vlan_mode,tag,trunks",
            "list",
            "Port",
        ]);
        let st = nhn::switch::readback::openvswitch(&out).expect("parse ovs-vsctl output");
        st.ports
            .into_iter()
            .filter(|(p, _)| p.starts_with("swp"))
            .collect()
    }

    /// The seed site file with this lab's host keys pinned and the given `os` per switch.
    pub fn site_file(&self) -> String {
        let seed = fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/seed-site.toml"),
        )
        .expect("read the seed site");
        let mut out = String::new();
        let mut current: Option<&Switch> = None;
        for line in seed.lines() {
            if let Some(name) = line
                .strip_prefix("name = \"")
                .and_then(|r| r.strip_suffix('"'))
            {
                current = self.switches.get(name);
            }
            match current {
                Some(sw) if line.starts_with("os = ") => {
                    let os = match sw.persona {
                        Persona::Ovs | Persona::SnmpV2c | Persona::SnmpV3 => "openvswitch",
                        Persona::Ios => "cisco-ios",
                    };
                    out.push_str(&format!("os = \"{os}\"\n"));
                }
                Some(sw) if sw.persona.is_snmp() && line.starts_with("driver = ") => {
                    out.push_str("driver = \"snmp\"\n");
                }
                Some(sw) if sw.persona.is_snmp() && line.starts_with("credentials = ") => {
                    out.push_str("credentials = \"lab-snmp\"\n");
                }
                Some(sw) if line.starts_with("credentials = ") => {
                    out.push_str(line);
                    out.push_str(&format!("\nhost_key = \"{}\"\n", sw.fingerprint));
                }
                _ => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// An nhn configuration for this lab (HTTP inside the management namespace), with the
    /// right SNMP credential for the lab's SNMP switches.
    pub fn config(&self, readback_secs: u64) -> String {
        let v3 = self.switches.values().any(|s| s.persona == Persona::SnmpV3);
        let snmp = if v3 {
            snmp_v3_credential(V3_AUTH, V3_PRIV)
        } else {
            snmp_v2c_credential("private")
        };
        self.config_with(readback_secs, &snmp)
    }

    /// [`SeedLab::config`] with `snmp` as the `lab-snmp` credential.
    pub fn config_with(&self, readback_secs: u64, snmp: &str) -> String {
        format!(
            "[http]\nlisten = \"127.0.0.1:18080\"\n\n[switch]\nreadback_period_secs = {readback_secs}\nretry_initial_ms = 200\nretry_max_ms = 2000\nconnect_timeout_secs = 5\ncommand_timeout_secs = 20\nsnmp_timeout_ms = 500\nsnmp_retries = 1\n\n[credentials.lab-ssh]\nuser = \"root\"\nkey_file = \"{}\"\n\n{snmp}",
            self.client_key.display()
        )
    }

    /// Lines nhn sent to an `ovs` switch (one per exec request line).
    pub fn cli_log(&self, name: &str) -> String {
        fs::read_to_string(self.dir.join(format!("{name}-cli.log"))).unwrap_or_default()
    }
}

/// The seed site plus bare-metal Server-1, PXE booting on the `service` network through
/// Edge-Switch-2:swp4.
pub fn with_bare_metal_server(seed: &str) -> String {
    let edge2 = seed
        .find("name = \"Edge-Switch-2\"")
        .expect("Edge-Switch-2 in the seed");
    let ports = edge2
        + seed[edge2..]
            .find("ports = [\"swp1\", \"swp2\", \"swp3\"]")
            .expect("its ports");
    let mut site = seed.to_owned();
    site.replace_range(
        ports..ports + "ports = [\"swp1\", \"swp2\", \"swp3\"]".len(),
        "ports = [\"swp1\", \"swp2\", \"swp3\", \"swp4\"]",
    );
    site.push_str(
        "\n[[machines]]\nname = \"Server-1\"\nkind = \"bare-metal\"\n\n[[machines.nics]]\n\
         device = \"eth0\"\nmac = \"52:54:00:00:02:01\"\nport = \"Edge-Switch-2:swp4\"\n\
         network = \"service\"\nip = \"10.20.0.101\"\nboot = true\n",
    );
    site
}

/// Starts sshd for switch `name` on `ip` inside `ns` with a fresh host key; returns the
/// process, the host key's SHA-256 fingerprint and the sshd_config path.
#[allow(clippy::too_many_arguments)]
pub fn start_sshd(
    lab: &Lab,
    ns: &Netns,
    ovs: &Ovs,
    dir: &Path,
    node: &str,
    name: &str,
    ip: &str,
    persona: Persona,
    client_key: &Path,
) -> (Proc, String, PathBuf) {
    let key = dir.join(format!("{node}_host_ed25519"));
    run_checked(
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C"])
            .arg(format!("{name}-host"))
            .arg("-f")
            .arg(&key),
    );
    let fp_out = run_checked(
        std::process::Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(key.with_extension("pub")),
    );
    let fingerprint = fp_out
        .split_whitespace()
        .nth(1)
        .expect("ssh-keygen -l prints a fingerprint")
        .to_owned();
    let authorized = dir.join("authorized_keys");
    fs::copy(client_key.with_extension("pub"), &authorized).expect("copy the client key");
    let ovs_dir = ovs.dir().display().to_string();
    let env = format!(
        "OVS_RUNDIR={ovs_dir} OVS_DBDIR={ovs_dir} OVS_LOGDIR={ovs_dir} OVS_SYSCONFDIR={ovs_dir}"
    );
    let log = dir.join(format!("{name}-cli.log"));
    let command = match persona {
        Persona::SnmpV2c | Persona::SnmpV3 => panic!("{name}: an SNMP switch has no sshd"),
        Persona::Ovs => {
            let script = dir.join(format!("{node}-shell.sh"));
            fs::write(&script, format!(
                "#!/bin/sh\n# nhn lab: exec requests of switch {name}, run against its own OVS.\nexport {env}\nprintf '%s\\n' \"$SSH_ORIGINAL_COMMAND\" >> '{}'\n[ -f '{}' ] && sleep 10\nexec /bin/sh -ec \"$SSH_ORIGINAL_COMMAND\"\n",
                log.display(),
                dir.join(format!("{name}-slow")).display()
            )).expect("write the switch shell");
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&script, fs::Permissions::from_mode(0o755))
                .expect("chmod the switch shell");
            script.display().to_string()
        }
        Persona::Ios => format!(
            "/usr/bin/env {env} SW_NAME={name} SW_LOG={} /usr/bin/python3 {}",
            log.display(),
            support_dir().join("ios_cli.py").display()
        ),
    };
    // sshd runs the forced command through root's login shell, which reads $HOME/.bashrc: a
    // HOME of the lab's own keeps the machine's dotfiles (a pyenv rehash waiting on a stale
    // lock, seen here) out of every switch session.
    let cfg = dir.join(format!("{node}-sshd_config"));
    fs::write(&cfg, format!(
        "Port 22\nListenAddress {ip}\nHostKey {}\nPidFile none\nAuthorizedKeysFile {}\nPubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\nStrictModes no\nAllowTcpForwarding no\nX11Forwarding no\nPrintMotd no\nPrintLastLog no\nUseDNS no\nMaxStartups 50:30:100\nLogLevel VERBOSE\nSetEnv HOME={}\nForceCommand {command}\n",
        key.display(),
        authorized.display(),
        dir.display()
    )).expect("write sshd_config");
    let cfg_s = cfg.display().to_string();
    let sshd_log = dir.join(format!("{name}-sshd.log")).display().to_string();
    let proc = ns.spawn(
        "sshd",
        &["/usr/sbin/sshd", "-D", "-e", "-f", &cfg_s, "-E", &sshd_log],
    );
    wait_listening(ns, ip);
    let _ = lab;
    (proc, fingerprint, cfg)
}

/// Writes the snmpd.conf of an SNMP switch: v2c `private` (rw) and `public` (ro) from the
/// management subnet, SNMPv3 user `nhnadmin` (authPriv, rw), the Q-BRIDGE script on .17.
pub fn write_snmpd_conf(ovs: &Ovs, dir: &Path, name: &str, ip: &str) -> PathBuf {
    let ovs_dir = ovs.dir().display().to_string();
    let conf = dir.join(format!("{name}-snmpd.conf"));
    fs::write(
        &conf,
        format!(
            "# nhn lab: {name}, Q-BRIDGE-MIB over its own Open vSwitch\n\
             agentAddress udp:{ip}:161\n\
             rocommunity public 10.99.0.0/24\n\
             rwcommunity private 10.99.0.0/24\n\
             createUser nhnadmin SHA \"{V3_AUTH}\" AES \"{V3_PRIV}\"\n\
             rwuser nhnadmin priv\n\
             sysName {name}\n\
             pass_persist .1.3.6.1.2.1.17 /usr/bin/env OVS_RUNDIR={ovs_dir} OVS_DBDIR={ovs_dir} OVS_LOGDIR={ovs_dir} OVS_SYSCONFDIR={ovs_dir} QBRIDGE_TRACE={} /usr/bin/python3 {}\n",
            dir.join(format!("{name}-qbridge.log")).display(),
            support_dir().join("qbridge.py").display()
        ),
    )
    .expect("write snmpd.conf");
    conf
}

/// Starts snmpd in the foreground inside `ns` with its own persistent dir (engine id, boots,
/// users) under `dir`, and waits until it listens on `ip`:161.
pub fn start_snmpd(ns: &Netns, dir: &Path, name: &str, ip: &str, conf: &Path) -> Proc {
    let persist = dir.join(format!("{name}-snmp-persist"));
    fs::create_dir_all(&persist).expect("create the snmpd persistent dir");
    let log = dir.join(format!("{name}-snmpd.log"));
    let proc = ns.spawn(
        "snmpd",
        &[
            "/usr/bin/env",
            &format!("SNMP_PERSISTENT_DIR={}", persist.display()),
            "/usr/sbin/snmpd",
            "-f",
            "-C",
            "-c",
            &conf.display().to_string(),
            "-Lf",
            &log.display().to_string(),
            "-m",
            "",
            "-M",
            "/usr/share/snmp/mibs",
        ],
    );
    let ok = super::wait_until(
        std::time::Duration::from_secs(10),
        std::time::Duration::from_millis(50),
        || {
            let out = ns.try_run(&["ss", "-Hlun", &format!("src {ip}:161")]);
            !String::from_utf8_lossy(&out.stdout).trim().is_empty()
        },
    );
    assert!(
        ok,
        "snmpd did not start listening on {ip}:161 in {}: {}",
        ns.name(),
        fs::read_to_string(&log).unwrap_or_default()
    );
    proc
}

/// Waits until something listens on `ip`:22 inside `ns`.
fn wait_listening(ns: &Netns, ip: &str) {
    let ok = super::wait_until(
        std::time::Duration::from_secs(10),
        std::time::Duration::from_millis(50),
        || {
            let out = ns.try_run(&["ss", "-Hltn", &format!("src {ip}:22")]);
            !String::from_utf8_lossy(&out.stdout).trim().is_empty()
        },
    );
    assert!(
        ok,
        "sshd did not start listening on {ip}:22 in {}",
        ns.name()
    );
}

/// Pids of every descendant of `pid`, parents before children.
fn descendants(pid: u32) -> Vec<String> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(p) = name.parse::<u32>() else { continue };
            let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            // "pid (comm) S ppid ...": fields after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u32>().ok());
            if let Some(pp) = ppid {
                parent_of.push((p, pp));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(cur) = frontier.pop() {
        for (p, pp) in &parent_of {
            if *pp == cur {
                out.push(p.to_string());
                frontier.push(*p);
            }
        }
    }
    out
}

/// A benchmark switch: bridge br0 (userspace datapath) with `ports` as internal ports, each an
/// empty trunk (`trunks=4095`, OVS's "no VLAN"), all made in one ovs-vsctl transaction.
pub fn bridge_with_empty_trunks(ovs: &Ovs, ports: &[String]) {
    let mut args: Vec<String> = [
        "add-br",
        "br0",
        "--",
        "set",
        "bridge",
        "br0",
        "datapath_type=netdev",
    ]
    .map(String::from)
    .to_vec();
    for p in ports {
        args.extend(
            [
                "--",
                "add-port",
                "br0",
                p,
                "--",
                "set",
                "interface",
                p,
                "type=internal",
                "--",
                "set",
                "port",
                p,
                "vlan_mode=trunk",
                "trunks=4095",
            ]
            .map(String::from),
        );
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    ovs.vsctl(&a);
}
