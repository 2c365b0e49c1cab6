//! Network-namespace test lab shared by nhn's integration tests.
//!
//! nhn boots machines over the network (DHCP, TFTP, HTTP) and moves switch ports between
//! VLANs. Testing that for real needs several hosts on separate layer-2 segments, which one
//! machine can provide with Linux network namespaces: each namespace is a "host" or a
//! "switch", veth pairs are the cables, a Linux bridge is a dumb switch, and Open vSwitch with
//! the userspace (`netdev`) datapath is an 802.1Q switch (the kernel here has no VLAN support;
//! OVS tags frames in software). One OVS instance (`ovsdb-server` + `ovs-vswitchd`) runs per
//! switch namespace with a private run directory, so nothing touches the system's OVS.
//!
//! Every [`Lab`] names its namespaces with a prefix unique to the test process and the lab
//! (`nt<pid>x<n>-<name>`), creates veths directly inside them (nothing appears in the host's
//! namespace) and keeps run directories and logs in `/tmp/nhnlab-<prefix>`, so tests run in
//! parallel, within one `cargo test` and across processes. Dropping the lab, also while a test
//! panics, stops every process it started, kills whatever else still runs in its namespaces,
//! deletes the namespaces and removes the directory (set `NHN_LAB_KEEP_LOGS=1` to keep it).
//!
//! The lab needs root and iproute2 (plus, depending on the test, `openvswitch-switch`,
//! `iputils-ping`, `curl`, `ethtool`). Without them [`lab_or_skip`] prints `SKIP <test>:
//! <reason>` and the test passes, except under `CI=true`, where the test fails instead.
#![allow(dead_code)]

pub mod api;
pub mod bmc;
pub mod cli;
pub mod facility;
pub mod image;
pub mod kernel;
pub mod switchlab;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

const OVS_SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";
const OVS_TOOLS: &[&str] = &["ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl"];
/// How long a dropped lab waits for its processes to exit after SIGTERM (and after SIGKILL).
const TERM_GRACE: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(10);
static NEXT_LAB: AtomicUsize = AtomicUsize::new(0);

/// A new [`Lab`] for `test`, or `None` (after printing `SKIP <test>: <reason>`) when not root
/// or a tool in `tools` is not in PATH; under `CI=true` a missing prerequisite panics.
/// `"ip"` and `"kill"` are always required; `"ovs-vswitchd"` implies the other OVS tools.
pub fn lab_or_skip(test: &str, tools: &[&str]) -> Option<Lab> {
    let Some(reason) = missing_prerequisite(tools) else {
        return Some(Lab::new(test));
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: lab prerequisite missing (CI=true: failing, not skipping): {reason}");
    }
    eprintln!("SKIP {test}: {reason}");
    None
}

fn missing_prerequisite(tools: &[&str]) -> Option<String> {
    if !is_root() {
        return Some("not running as root (network namespaces need root)".into());
    }
    let mut needed = vec!["ip", "kill"];
    needed.extend_from_slice(tools);
    if tools.contains(&"ovs-vswitchd") {
        needed.extend_from_slice(OVS_TOOLS);
    }
    let (mut missing, mut pkgs) = (Vec::new(), Vec::new());
    for tool in needed.into_iter().filter(|t| !in_path(t)) {
        let pkg = debian_package(tool);
        if !missing.contains(&tool) {
            missing.push(tool);
        }
        if !pkgs.contains(&pkg) {
            pkgs.push(pkg);
        }
    }
    if !missing.is_empty() {
        let (missing, pkgs) = (missing.join(", "), pkgs.join(" "));
        return Some(format!(
            "missing in PATH: {missing} (Debian: apt-get install {pkgs})"
        ));
    }
    if tools.contains(&"ovs-vswitchd") && !Path::new(OVS_SCHEMA).exists() {
        return Some(format!("missing {OVS_SCHEMA} (Debian: openvswitch-switch)"));
    }
    None
}

fn debian_package(tool: &str) -> &str {
    match tool {
        "ip" => "iproute2",
        "kill" => "procps",
        "ping" => "iputils-ping",
        "ovs-vswitchd" | "ovs-vsctl" | "ovs-appctl" | "ovs-ofctl" => "openvswitch-switch",
        "ovsdb-tool" | "ovsdb-server" => "openvswitch-common",
        "/usr/bin/python3" | "python3" => "python3",
        "mke2fs" => "e2fsprogs",
        "xz" => "xz-utils",
        "qemu-system-x86_64" => "qemu-system-x86",
        other => other,
    }
}

fn is_root() -> bool {
    // "Uid:\t<real>\t<effective>\t<saved>\t<fs>": the effective uid decides.
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        .unwrap_or(false)
}

fn in_path(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if tool.contains('/') {
        return executable(Path::new(tool));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| executable(&dir.join(tool)))
}

/// Polls `f` every `poll` until it returns true (then true) or `timeout` has passed (false).
pub fn wait_until(timeout: Duration, poll: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(poll.min(deadline.saturating_duration_since(Instant::now())));
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `cmd` to completion with stdin closed; panics if it cannot be started.
fn output_of(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs `cmd`, panics with its stderr unless it succeeds, returns its stdout.
fn run_checked(cmd: &mut Command) -> String {
    let out = output_of(cmd);
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sends `signal` (e.g. "TERM") to `pids`; errors (already gone) are ignored.
fn signal<S: AsRef<std::ffi::OsStr>>(signal: &str, pids: &[S]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-s", signal, "--"])
        .args(pids)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn netns_pids(ns: &str) -> Vec<String> {
    let out = output_of(Command::new("ip").args(["netns", "pids", ns]));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect()
}

fn existing_netns() -> Vec<String> {
    let Ok(dir) = fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect()
}

/// One test's network: namespaces, links, switches and processes, all removed on drop.
pub struct Lab {
    test: String,
    prefix: String,
    dir: PathBuf,
    namespaces: Mutex<Vec<String>>,
    procs: Mutex<Vec<Proc>>,
}

impl Lab {
    fn new(test: &str) -> Lab {
        // Skip prefixes left behind by a killed run of an earlier process with our pid.
        let pid = std::process::id();
        let (prefix, dir) = loop {
            let prefix = format!("nt{pid}x{}", NEXT_LAB.fetch_add(1, Ordering::Relaxed));
            let dir = PathBuf::from(format!("/tmp/nhnlab-{prefix}"));
            let ns_prefix = format!("{prefix}-");
            if !dir.exists() && !existing_netns().iter().any(|n| n.starts_with(&ns_prefix)) {
                break (prefix, dir);
            }
        };
        fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("creating lab dir {}: {e}", dir.display()));
        eprintln!("lab {prefix} for {test}: logs in {}", dir.display());
        let (test, namespaces, procs) = (test.to_string(), Mutex::default(), Mutex::default());
        Lab {
            test,
            prefix,
            dir,
            namespaces,
            procs,
        }
    }

    /// Directory for this lab's run dirs and logs (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Prefix of this lab's namespace names (`nt<pid>x<n>`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Creates namespace `<prefix>-<name>` with `lo` up.
    pub fn netns(&self, name: &str) -> Netns<'_> {
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        assert!(
            !name.is_empty() && name.chars().all(valid),
            "netns name {name:?}: use [A-Za-z0-9_-]+"
        );
        let full = format!("{}-{name}", self.prefix);
        run_checked(Command::new("ip").args(["netns", "add", &full]));
        lock(&self.namespaces).push(full.clone());
        let (lab, short) = (self, name.to_string());
        let ns = Netns {
            lab,
            name: full,
            short,
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// A veth pair from `a_if` in `a` to `b_if` in `b`, created inside the namespaces, both up.
    pub fn veth(&self, (a, a_if): (&Netns, &str), (b, b_if): (&Netns, &str)) {
        run_checked(
            Command::new("ip")
                .args(["link", "add", a_if, "netns", a.name()])
                .args(["type", "veth", "peer", "name", b_if, "netns", b.name()]),
        );
        a.ip(&["link", "set", a_if, "up"]);
        b.ip(&["link", "set", b_if, "up"]);
    }

    /// A Linux bridge (no VLANs) named `name` in `ns`, up; add ports with [`Netns::enslave`].
    pub fn bridge(&self, ns: &Netns, name: &str) {
        ns.ip(&["link", "add", name, "type", "bridge"]);
        ns.ip(&["link", "set", name, "up"]);
    }

    /// Starts `cmd` with stdout and stderr in `<lab dir>/<log_name>.log`, tracked by the lab.
    pub fn spawn(&self, log_name: &str, mut cmd: Command) -> Proc {
        let (log, file) = (1..)
            .map(|n| match n {
                1 => self.dir.join(format!("{log_name}.log")),
                n => self.dir.join(format!("{log_name}-{n}.log")),
            })
            .find_map(|p| File::create_new(&p).ok().map(|f| (p, f)))
            .expect("a free log file name");
        let stderr = file.try_clone().expect("duplicating the log file handle");
        cmd.stdin(Stdio::null()).stdout(file).stderr(stderr);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        let (pid, child) = (child.id(), Arc::new(Mutex::new(child)));
        let proc = Proc { pid, child, log };
        lock(&self.procs).push(proc.clone());
        proc
    }

    /// Starts a private Open vSwitch (ovsdb-server + ovs-vswitchd) inside `ns`.
    pub fn ovs(&self, ns: &Netns) -> Ovs<'_> {
        let dir = self.dir.join(format!("ovs-{}", ns.short));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let db = dir.join("conf.db").display().to_string();
        let sock = dir.join("db.sock");
        run_checked(Command::new("ovsdb-tool").args(["create", &db, OVS_SCHEMA]));
        let mut ovs = Ovs {
            lab: self,
            dir,
            procs: Vec::new(),
        };
        let remote = format!("--remote=punix:{}", sock.display());
        ovs.start_daemon(ns, "ovsdb-server", &[&db, &remote], &sock);
        ovs.vsctl(&["--no-wait", "init"]);
        let db_sock = format!("unix:{}", sock.display());
        let pidfile = ovs.dir.join("ovs-vswitchd.pid");
        ovs.start_daemon(ns, "ovs-vswitchd", &[&db_sock], &pidfile);
        ovs
    }

    /// Kills what still runs in `ns` (e.g. daemons forked by our processes), so that deleting
    /// it does not leave an anonymous namespace alive. These are not our children: they leave
    /// `ip netns pids` when they exit, but their reaping is up to init.
    fn empty_netns(&self, ns: &str) {
        for (sig, grace) in [("TERM", Duration::from_secs(1)), ("KILL", TERM_GRACE)] {
            signal(sig, &netns_pids(ns));
            if wait_until(grace, POLL * 2, || netns_pids(ns).is_empty()) {
                return;
            }
        }
        let (prefix, test, left) = (&self.prefix, &self.test, netns_pids(ns));
        eprintln!("lab {prefix} ({test}): pids {left:?} survive in netns {ns}");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let procs = std::mem::take(&mut *lock(&self.procs));
        if std::thread::panicking() {
            procs.iter().for_each(Proc::print_log_tail);
        }
        // Our own children: SIGTERM, SIGKILL after the grace period, always reaped.
        procs.iter().for_each(Proc::terminate);
        let deadline = Instant::now() + TERM_GRACE;
        for p in &procs {
            let left = deadline.saturating_duration_since(Instant::now());
            if !wait_until(left, POLL, || p.ended()) {
                p.kill();
            }
        }
        let namespaces = std::mem::take(&mut *lock(&self.namespaces));
        for ns in &namespaces {
            self.empty_netns(ns);
        }
        for ns in &namespaces {
            let out = output_of(Command::new("ip").args(["netns", "del", ns]));
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                eprintln!("lab {}: ip netns del {ns}: {err}", self.prefix);
            }
        }
        let dir = self.dir.display();
        if std::env::var_os("NHN_LAB_KEEP_LOGS").is_some() {
            eprintln!(
                "lab {}: NHN_LAB_KEEP_LOGS is set, keeping {dir}",
                self.prefix
            );
        } else if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("lab {}: removing {dir}: {e}", self.prefix);
        }
    }
}

/// A network namespace of a [`Lab`]; deleted when the lab is dropped.
pub struct Netns<'lab> {
    lab: &'lab Lab,
    name: String,
    short: String,
}

impl Netns<'_> {
    /// Full namespace name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec <ns> <program>`: add arguments, then run or spawn it.
    pub fn cmd(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `args` in the namespace; whatever the outcome, returns its output.
    pub fn try_run(&self, args: &[&str]) -> Output {
        let (program, rest) = args.split_first().expect("try_run needs a program");
        output_of(self.cmd(program).args(rest))
    }

    /// Runs `args` in the namespace, panics with its stderr unless it succeeds, returns stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let (program, rest) = args.split_first().expect("run needs a program");
        run_checked(self.cmd(program).args(rest))
    }

    /// `ip -n <ns> <args>`, checked; returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        run_checked(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// Starts `args` in the namespace as a tracked [`Proc`] logging to `<ns>-<log_name>.log`.
    pub fn spawn(&self, log_name: &str, args: &[&str]) -> Proc {
        let (program, rest) = args.split_first().expect("spawn needs a program");
        let mut cmd = self.cmd(program);
        cmd.args(rest);
        self.lab.spawn(&format!("{}-{log_name}", self.short), cmd)
    }

    /// Adds `cidr` (e.g. "10.0.0.1/24") to interface `ifname`.
    pub fn addr(&self, ifname: &str, cidr: &str) {
        self.ip(&["addr", "add", cidr, "dev", ifname]);
    }

    /// Makes `port` a port of the Linux bridge `bridge` (see [`Lab::bridge`]).
    pub fn enslave(&self, port: &str, bridge: &str) {
        self.ip(&["link", "set", port, "master", bridge]);
    }

    /// One ICMP echo to `ip` (1 s timeout): true if answered.
    pub fn ping(&self, ip: &str) -> bool {
        self.try_run(&["ping", "-c1", "-W1", "-q", ip])
            .status
            .success()
    }

    /// Turns off TX checksum offload on `ifname` (needs ethtool). Required on veths whose
    /// peer is an OVS userspace-datapath port, else TCP/UDP arrive with bad checksums.
    pub fn tx_offload_off(&self, ifname: &str) {
        self.run(&["ethtool", "-K", ifname, "tx", "off"]);
    }
}

/// A process started by a [`Lab`]; stopped and reaped when the lab is dropped.
#[derive(Clone)]
pub struct Proc {
    pid: u32,
    child: Arc<Mutex<Child>>,
    log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The exit status if the process has ended (reaping it), else `None`.
    pub fn try_wait(&self) -> Option<ExitStatus> {
        lock(&self.child)
            .try_wait()
            .expect("waitpid on a lab process")
    }

    /// Sends SIGTERM unless the process has already ended.
    pub fn terminate(&self) {
        let mut child = lock(&self.child);
        // Only signal an unreaped child: its pid cannot have been reused.
        if matches!(child.try_wait(), Ok(None)) {
            signal("TERM", &[self.pid.to_string()]);
        }
    }

    /// Waits up to `timeout` for the process to end; `None` if it is still running.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(timeout, POLL, || {
            status = self.try_wait();
            status.is_some()
        });
        status
    }

    /// SIGKILL and reap (no-op if already ended).
    pub fn kill(&self) {
        let mut child = lock(&self.child);
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Whether the process has ended and been reaped (a wait error counts as ended).
    fn ended(&self) -> bool {
        !matches!(lock(&self.child).try_wait(), Ok(None))
    }

    fn print_log_tail(&self) {
        let log = self.log();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        eprintln!(
            "--- {} (pid {}), last lines ---",
            self.log.display(),
            self.pid
        );
        tail.iter().rev().for_each(|l| eprintln!("{l}"));
    }

    /// What the process wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

/// A private Open vSwitch in one namespace: 802.1Q switching on the userspace datapath.
pub struct Ovs<'lab> {
    lab: &'lab Lab,
    dir: PathBuf,
    procs: Vec<Proc>,
}

impl Ovs<'_> {
    /// Run dir of this instance: conf.db, db.sock, pid files, control sockets.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `OVS_*` variables that point OVS tools at this instance.
    pub fn env(&self) -> Vec<(&'static str, &Path)> {
        ["OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR", "OVS_SYSCONFDIR"]
            .map(|k| (k, self.dir.as_path()))
            .to_vec()
    }

    /// `program` (e.g. "ovs-ofctl") with the environment for this instance.
    pub fn cmd(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.envs(self.env());
        cmd
    }

    /// The ovsdb-server and ovs-vswitchd processes.
    pub fn daemons(&self) -> &[Proc] {
        &self.procs
    }

    /// `ovs-vsctl <args>`, checked; returns stdout.
    pub fn vsctl(&self, args: &[&str]) -> String {
        run_checked(self.cmd("ovs-vsctl").arg("--timeout=20").args(args))
    }

    /// `ovs-appctl <args>` against ovs-vswitchd (e.g. `fdb/show br0`), checked.
    pub fn appctl(&self, args: &[&str]) -> String {
        run_checked(self.cmd("ovs-appctl").args(["--timeout=20"]).args(args))
    }

    /// A bridge on the userspace datapath.
    pub fn add_bridge(&self, bridge: &str) {
        let args = [
            "add-br",
            bridge,
            "--",
            "set",
            "bridge",
            bridge,
            "datapath_type=netdev",
        ];
        self.vsctl(&args);
    }

    /// `port` (an interface in this namespace) as untagged member of `vlan`.
    pub fn add_access_port(&self, bridge: &str, port: &str, vlan: u16) {
        self.add_port(bridge, port, &["vlan_mode=access", &format!("tag={vlan}")]);
    }

    /// `port` as 802.1Q trunk carrying `vlans` tagged.
    pub fn add_trunk_port(&self, bridge: &str, port: &str, vlans: &[u16]) {
        let list: Vec<String> = vlans.iter().map(u16::to_string).collect();
        let trunks = format!("trunks={}", list.join(","));
        self.add_port(bridge, port, &["vlan_mode=trunk", &trunks]);
    }

    /// `port` on `bridge` with Port table `settings` (e.g. "tag=100").
    pub fn add_port(&self, bridge: &str, port: &str, settings: &[&str]) {
        let mut args = vec!["add-port", bridge, port, "--", "set", "port", port];
        args.extend_from_slice(settings);
        self.vsctl(&args);
    }

    /// Starts `program` in `ns` (foreground, so the lab reaps it) and waits until it has
    /// created `ready`; panics with its log if it exits or takes longer than 10 s.
    fn start_daemon(&mut self, ns: &Netns, program: &str, args: &[&str], ready: &Path) {
        let mut cmd = ns.cmd(program);
        cmd.args(args)
            .args(["--pidfile", "--no-chdir", "-vconsole:info", "-vsyslog:off"])
            .envs(self.env());
        let proc = self.lab.spawn(&format!("{}-{program}", ns.short), cmd);
        // A socket file appears at bind(), before listen(): a socket is ready when it accepts.
        let is_ready = || match ready.extension() {
            Some(ext) if ext == "sock" => std::os::unix::net::UnixStream::connect(ready).is_ok(),
            _ => ready.exists(),
        };
        wait_until(Duration::from_secs(10), POLL, || is_ready() || proc.ended());
        if !is_ready() {
            panic!(
                "{program} (pid {}) did not create {}:\n{}",
                proc.pid,
                ready.display(),
                proc.log()
            );
        }
        self.procs.push(proc);
    }
}

/// Runs `f` on a new thread inside network namespace `ns` (a lab's namespace name), e.g. to
/// open sockets from a switch's management network.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    use std::os::fd::AsRawFd;
    let path = Path::new("/run/netns").join(ns);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open the netns file");
        unsafe extern "C" {
            fn setns(fd: i32, nstype: i32) -> i32;
        }
        const CLONE_NEWNET: i32 = 0x4000_0000;
        // SAFETY: setns only switches this thread's network namespace; the fd is open.
        let rc = unsafe { setns(file.as_raw_fd(), CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("netns thread")
}

/// How many QEMU processes (argv[0] `qemu-system-x86_64`; not, say, a BMC whose command line
/// names one) run with `needle` in their command line, on the whole machine.
pub fn qemu_processes(needle: &str) -> usize {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                let argv0 = c.split(|b| *b == 0).next().unwrap_or_default();
                String::from_utf8_lossy(argv0).ends_with("qemu-system-x86_64")
                    && String::from_utf8_lossy(&c).contains(needle)
            })
        })
        .count()
}
