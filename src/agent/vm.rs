//! VMs as QEMU processes that outlive the agent (Ganeti's model): each VM has a directory
//! `<state_dir>/vm/<vm>/` holding `spec.json`, `argv.json`, `pid` (written by QEMU), `qmp.sock`
//! and `console.log`. QEMU daemonizes, so it is never the agent's child: a kill -9 of the agent
//! leaves it running, and the next agent re-adopts it when the pid still runs the recorded
//! command line and QMP answers.
//!
//! Disks use QEMU's own iSCSI initiator (`-blockdev driver=iscsi`), so neither the VM nor the
//! hypervisor's kernel sees the storage network's sessions; a CHAP secret reaches QEMU through
//! a 0600 file (`-object secret,file=`), never argv, and the file is removed once QEMU runs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::ovs;
use super::qmp::Qmp;
use crate::config::{Accel, Agent as AgentConfig};
use crate::facility::command::{Chap, VmSpec};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("VM {vm}: {reason}")]
    Vm { vm: String, reason: String },
}

fn err(vm: &str, reason: impl ToString) -> Error {
    Error::Vm {
        vm: vm.to_owned(),
        reason: reason.to_string(),
    }
}

/// One VM the agent runs.
#[derive(Debug, Clone)]
pub struct Vm {
    pub spec: VmSpec,
    pub pid: u32,
    pub argv: Vec<String>,
    pub dir: PathBuf,
}

impl Vm {
    pub fn qmp_path(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }

    /// The process still runs the command line the agent started (not a reused pid).
    pub fn alive(&self) -> bool {
        process_runs(self.pid, &self.argv)
    }
}

/// The pid runs `argv` and is not a zombie.
pub fn process_runs(pid: u32, argv: &[String]) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    if stat
        .rsplit(')')
        .next()
        .is_some_and(|s| s.trim_start().starts_with('Z'))
    {
        return false;
    }
    let running: Vec<&[u8]> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .collect();
    running.len() == argv.len() && running.iter().zip(argv).all(|(a, b)| *a == b.as_bytes())
}

/// The accelerator to use: `auto` probes KVM once (a QEMU that starts with `-accel kvm`).
pub fn choose_accel(config: &AgentConfig) -> &'static str {
    match config.accel {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
        Accel::Auto => {
            let works = std::fs::metadata("/dev/kvm").is_ok()
                && std::process::Command::new(&config.qemu)
                    .args(["-machine", "none", "-accel", "kvm", "-nodefaults"])
                    .args(["-display", "none", "-S", "-qmp", "stdio"])
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
            if works { "kvm" } else { "tcg" }
        }
    }
}

/// What QEMU boots: the kernel and initrd (verified copies), and for an install boot the
/// image archive it unpacks.
#[derive(Debug, Clone, Copy)]
pub struct Media<'a> {
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    /// The archive, attached read-only as a virtio disk with serial [`PAYLOAD_SERIAL`]; the
    /// boot then also gets a second serial port, its report channel (`report.log`).
    pub payload: Option<&'a Path>,
}

/// The serial number by which nhn's initrd finds the payload disk.
pub const PAYLOAD_SERIAL: &str = "nhn-payload";

/// The QEMU command line of a VM (without the program).
pub fn argv(
    config: &AgentConfig,
    accel: &str,
    spec: &VmSpec,
    dir: &Path,
    media: Media<'_>,
    chap: &[Chap],
) -> Vec<String> {
    let d = |f: &str| dir.join(f).display().to_string();
    let mut a: Vec<String> = vec![
        "-name".into(),
        format!("{},process=nhn-{}", spec.vm, spec.vm),
        "-machine".into(),
        format!("{},accel={accel}", config.machine),
        "-cpu".into(),
        config.cpu.clone(),
        "-smp".into(),
        spec.vcpus.max(1).to_string(),
        "-m".into(),
        spec.memory_mb.max(64).to_string(),
        "-nodefaults".into(),
        "-display".into(),
        "none".into(),
        "-serial".into(),
        format!("file:{}", d("console.log")),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", d("qmp.sock")),
        "-pidfile".into(),
        d("pid"),
        "-daemonize".into(),
        // A guest that powers off leaves QEMU in `shutdown`, so the agent can tell a guest's
        // own power-off from a QEMU that died.
        "-no-shutdown".into(),
        "-kernel".into(),
        media.kernel.display().to_string(),
        "-initrd".into(),
        media.initrd.display().to_string(),
        "-append".into(),
        spec.boot.cmdline.clone(),
    ];
    for (i, disk) in spec.disks.iter().enumerate() {
        let node = disk.device.to_ascii_lowercase();
        let (host, port) = disk
            .portal
            .rsplit_once(':')
            .unwrap_or((&disk.portal, "3260"));
        let mut blockdev = format!(
            "driver=iscsi,node-name={node},transport=tcp,portal={host}:{port},target={},lun={},initiator-name={},cache.direct=on",
            disk.target, disk.lun, disk.initiator
        );
        if let Some(c) = chap.iter().find(|c| c.target == disk.target) {
            a.push("-object".into());
            a.push(format!("secret,id=chap{i},file={}", d(&format!("chap{i}"))));
            blockdev.push_str(&format!(",user={},password-secret=chap{i}", c.user));
        }
        a.push("-blockdev".into());
        a.push(blockdev);
        a.push("-device".into());
        a.push(format!(
            "virtio-blk-pci,drive={node},serial={}",
            disk.device
        ));
    }
    // After DISK1 and DISK2, so that they keep their names (vda, vdb) in the guest.
    if let Some(payload) = media.payload {
        a.extend([
            // ttyS1: the offline boot's report channel.
            "-serial".into(),
            format!("file:{}", d("report.log")),
            // A kernel panic ends the run instead of booting the install again.
            "-no-reboot".into(),
            "-blockdev".into(),
            format!(
                "driver=file,node-name=payload,filename={},read-only=on",
                payload.display()
            ),
            "-device".into(),
            format!("virtio-blk-pci,drive=payload,serial={PAYLOAD_SERIAL}"),
        ]);
    }
    for nic in &spec.nics {
        let id = nic.device.to_ascii_lowercase();
        let tap = ovs::tap_name(&spec.vm, &nic.device);
        a.push("-netdev".into());
        a.push(format!("tap,id={id},ifname={tap},script=no,downscript=no"));
        a.push("-device".into());
        // csum=off: with checksum offload a guest's TCP crosses OVS's userspace datapath with
        // bad checksums (TESTBED.md §4).
        a.push(format!(
            "virtio-net-pci,netdev={id},mac={},csum=off",
            nic.mac
        ));
    }
    a
}

/// Starts a VM: plugs its taps, writes its files, runs QEMU (which daemonizes) and waits until
/// QMP says it runs.
pub async fn start(
    config: &AgentConfig,
    accel: &str,
    spec: &VmSpec,
    chap: &[Chap],
    media: Media<'_>,
) -> Result<Vm, Error> {
    let vm = &spec.vm;
    let dir = config.state_dir.join("vm").join(vm);
    std::fs::create_dir_all(&dir)
        .map_err(|e| err(vm, format!("cannot create {}: {e}", dir.display())))?;
    for f in ["pid", "qmp.sock", "report.log"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    for nic in &spec.nics {
        let tap = ovs::tap_name(vm, &nic.device);
        ovs::plug(&config.bridge, &tap, nic.vlan, spec.bandwidth_mbps, vm)
            .map_err(|e| err(vm, e))?;
    }
    for (i, disk) in spec.disks.iter().enumerate() {
        if let Some(c) = chap.iter().find(|c| c.target == disk.target) {
            write_private(&dir.join(format!("chap{i}")), &c.secret).map_err(|e| err(vm, e))?;
        }
    }
    let argv = argv(config, accel, spec, &dir, media, chap);
    let write = |name: &str, v: String| {
        std::fs::write(dir.join(name), v).map_err(|e| err(vm, format!("cannot write {name}: {e}")))
    };
    write(
        "spec.json",
        serde_json::to_string_pretty(spec).unwrap_or_default(),
    )?;
    let mut full = vec![config.qemu.clone()];
    full.extend(argv.iter().cloned());
    write(
        "argv.json",
        serde_json::to_string(&full).unwrap_or_default(),
    )?;
    let out = tokio::process::Command::new(&config.qemu)
        .args(&argv)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| err(vm, format!("cannot run {}: {e}", config.qemu)))?;
    remove_secrets(&dir);
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        cleanup_taps(config, spec);
        return Err(err(vm, format!("QEMU did not start: {why}")));
    }
    let pid: u32 = std::fs::read_to_string(dir.join("pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| err(vm, "QEMU wrote no pid file"))?;
    let vm_state = Vm {
        spec: spec.clone(),
        pid,
        argv: full,
        dir,
    };
    let status = Qmp::connect(&vm_state.qmp_path())
        .await
        .map_err(|e| err(vm, e))?
        .status()
        .await
        .map_err(|e| err(vm, e))?;
    if status != "running" {
        return Err(err(vm, format!("QEMU runs but the VM is {status}")));
    }
    Ok(vm_state)
}

/// Writes a file only its owner can read (CHAP secrets, settings bundles).
pub fn write_private(path: &Path, secret: impl AsRef<[u8]>) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(secret.as_ref())
}

fn remove_secrets(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("chap") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

fn cleanup_taps(config: &AgentConfig, spec: &VmSpec) {
    for nic in &spec.nics {
        let tap = ovs::tap_name(&spec.vm, &nic.device);
        if let Err(e) = ovs::unplug(&config.bridge, &tap) {
            tracing::warn!(vm = %spec.vm, error = %e, "cannot remove a tap");
        }
    }
}

/// Stops a VM: ACPI power-down and up to `grace` for the guest, then QMP `quit` (or at once
/// when `force`), then SIGKILL if QEMU still runs; returns once the process is gone, and removes
/// its taps and directory.
pub async fn stop(
    config: &AgentConfig,
    vm: &Vm,
    force: bool,
    grace: Duration,
) -> Result<(), Error> {
    let id = &vm.spec.vm;
    if vm.alive() {
        if !force && let Ok(mut q) = Qmp::connect(&vm.qmp_path()).await {
            let _ = q.execute("system_powerdown", json!({})).await;
            let deadline = tokio::time::Instant::now() + grace;
            while tokio::time::Instant::now() < deadline && vm.alive() {
                // -no-shutdown: a guest that powered off leaves QEMU in `shutdown`.
                if q.status().await.is_ok_and(|s| s == "shutdown") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        if vm.alive()
            && let Ok(mut q) = Qmp::connect(&vm.qmp_path()).await
        {
            let _ = q.execute("quit", json!({})).await;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while vm.alive() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if vm.alive() {
            // SAFETY: kill(2) on a pid whose command line we just checked is our QEMU.
            unsafe { libc::kill(vm.pid as i32, libc::SIGKILL) };
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while vm.alive() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if vm.alive() {
            return Err(err(id, format!("QEMU (pid {}) did not exit", vm.pid)));
        }
    }
    forget(config, vm);
    Ok(())
}

/// Removes what the agent made for a VM whose QEMU is gone: taps and the VM's directory (the
/// console log is kept beside it as `<vm>.console.log` for the operator).
pub fn forget(config: &AgentConfig, vm: &Vm) {
    cleanup_taps(config, &vm.spec);
    let _ = std::fs::rename(
        vm.dir.join("console.log"),
        vm.dir.with_extension("console.log"),
    );
    let _ = std::fs::remove_dir_all(&vm.dir);
}

/// Hard reset; returns once QMP reports the VM running again.
pub async fn reset(vm: &Vm) -> Result<(), Error> {
    let id = &vm.spec.vm;
    let mut q = Qmp::connect(&vm.qmp_path()).await.map_err(|e| err(id, e))?;
    q.execute("system_reset", json!({}))
        .await
        .map_err(|e| err(id, e))?;
    let status = q.status().await.map_err(|e| err(id, e))?;
    if status != "running" {
        return Err(err(id, format!("after the reset the VM is {status}")));
    }
    Ok(())
}

/// Re-adopts the VMs recorded under `<state_dir>/vm/`: those whose pid still runs the recorded
/// command line are returned as running; the others are returned as gone (with the reason) and
/// their leftovers are removed.
pub async fn adopt(config: &AgentConfig) -> (HashMap<String, Vm>, Vec<(VmSpec, String)>) {
    let mut running = HashMap::new();
    let mut gone = Vec::new();
    let Ok(entries) = std::fs::read_dir(config.state_dir.join("vm")) else {
        return (running, gone);
    };
    for e in entries.flatten() {
        let dir = e.path();
        if !dir.is_dir() {
            continue;
        }
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
        let spec: Option<VmSpec> = read("spec.json").and_then(|s| serde_json::from_str(&s).ok());
        let argv: Option<Vec<String>> =
            read("argv.json").and_then(|s| serde_json::from_str(&s).ok());
        let pid: Option<u32> = read("pid").and_then(|p| p.trim().parse().ok());
        let (Some(spec), Some(argv)) = (spec, argv) else {
            tracing::warn!(dir = %dir.display(), "a VM directory without spec or argv; left alone");
            continue;
        };
        let vm = Vm {
            spec: spec.clone(),
            pid: pid.unwrap_or(0),
            argv,
            dir: dir.clone(),
        };
        let status = if vm.alive() {
            match Qmp::connect(&vm.qmp_path()).await {
                Ok(mut q) => q.status().await.ok(),
                Err(_) => None,
            }
        } else {
            None
        };
        match status {
            Some(s) => {
                tracing::info!(vm = %spec.vm, pid = vm.pid, status = %s, "re-adopted a running VM");
                running.insert(spec.vm.clone(), vm);
            }
            None => {
                let why = format!("QEMU (pid {}) is no longer running", vm.pid);
                tracing::warn!(vm = %spec.vm, %why, "a VM vanished while the agent was down");
                forget(config, &vm);
                gone.push((spec, why));
            }
        }
    }
    (running, gone)
}

/// QEMU processes in this host's network namespace that the agent did not start (it never
/// kills them; it reports them).
pub fn unknown_processes(config: &AgentConfig, known: &[u32]) -> Vec<String> {
    let own_ns = std::fs::read_link("/proc/self/ns/net").ok();
    let program = Path::new(&config.qemu)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if known.contains(&pid) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        if !String::from_utf8_lossy(argv0).ends_with(&program) {
            continue;
        }
        if std::fs::read_link(format!("/proc/{pid}/ns/net")).ok() != own_ns {
            continue;
        }
        let name = cmdline
            .split(|b| *b == 0)
            .skip_while(|a| *a != b"-name")
            .nth(1)
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        found.push(format!("pid {pid} {name}").trim().to_owned());
    }
    found
}
