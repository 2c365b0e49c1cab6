//! The initrd's install mode (`restoreImage`, carried out inside the VM) in QEMU, started the
//! way the agent starts it: the image's archive file as a read-only virtio disk with serial
//! `nhn-payload`, a blank DISK1, the report channel on the second serial port. The installed
//! disk then boots in boot mode; a wrong checksum leaves DISK1 without a filesystem.
//!
//! Root, QEMU (TCG is enough) and the kernel of tests/fetch-kernel.sh; without them the test
//! prints SKIP and passes, except under CI=true. The boots run one after another.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::Lab;
use support::cli::Nhn;
use support::kernel::{boot_dir, busybox_tree, lab_with_kernel_and};

/// A boot under TCG takes 5-30 s; the machine may be busy compiling.
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

/// The installed image's /sbin/init: shows what the install wrote, then powers off.
const IMAGE_INIT: &str = "#!/bin/sh\n\
    mount -t proc proc /proc\n\
    echo IMAGE-MARKER\n\
    sha256sum /etc/known\n\
    cat /etc/fstab\n\
    echo END-OF-FSTAB\n\
    poweroff -f\n";

/// The image's fstab: a root line the install must replace, and a line it must keep.
const IMAGE_FSTAB: &str = "# the image's own fstab\n\
    /dev/sda1 / ext4 errors=remount-ro 0 1\n\
    proc /proc proc defaults 0 0\n";

/// What one QEMU run left: its console and its report channel.
struct Run {
    console: String,
    report: String,
}

struct Vm<'a> {
    lab: &'a Lab,
    kernel: PathBuf,
    initrd: PathBuf,
}

impl Vm<'_> {
    /// Boots with `append` and the disks (file, serial, read-only), waits for QEMU to exit.
    fn run(&self, name: &str, append: &str, disks: &[(&Path, &str, bool)]) -> Run {
        let console = self.lab.dir().join(format!("{name}-console.log"));
        let report = self.lab.dir().join(format!("{name}-report.log"));
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-m", "512", "-nodefaults", "-display", "none", "-no-reboot"])
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&self.initrd)
            .args(["-append", &format!("console=ttyS0 panic=-1 {append}")])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-serial")
            .arg(format!("file:{}", report.display()));
        for (i, (file, serial, read_only)) in disks.iter().enumerate() {
            let ro = if *read_only { ",read-only=on" } else { "" };
            cmd.arg("-blockdev")
                .arg(format!(
                    "driver=file,filename={},node-name=d{i}{ro}",
                    file.display()
                ))
                .arg("-device")
                .arg(format!("virtio-blk-pci,drive=d{i},serial={serial}"));
        }
        let qemu = self.lab.spawn(name, cmd);
        let status = qemu.wait_timeout(BOOT_TIMEOUT);
        let read =
            |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
        let run = Run {
            console: read(&console),
            report: read(&report),
        };
        let Some(status) = status else {
            qemu.kill();
            panic!(
                "{name}: QEMU still running after {BOOT_TIMEOUT:?}; console:\n{}\nreport:\n{}",
                run.console, run.report
            );
        };
        assert!(
            status.success(),
            "{name}: QEMU {status}: {}\nconsole:\n{}",
            qemu.log(),
            run.console
        );
        run
    }
}

fn sh(script: &str) {
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sha256(file: &Path) -> String {
    let out = Command::new("sha256sum").arg(file).output().unwrap();
    String::from_utf8_lossy(&out.stdout)[..64].to_owned()
}

/// `tar … | <compress> > out`, padded through `tree/etc/pad` until its size is not a multiple
/// of 512 (the case where QEMU must round the disk up).
fn archive(tree: &Path, out: &Path, tar_flags: &str, compress: &str) -> u64 {
    for pad in 0..64 {
        std::fs::write(tree.join("etc/pad"), "x".repeat(pad)).unwrap();
        sh(&format!(
            "tar -c {tar_flags} --numeric-owner -C {} . | {compress} > {}",
            tree.display(),
            out.display()
        ));
        let len = std::fs::metadata(out).unwrap().len();
        if !len.is_multiple_of(512) {
            return len;
        }
    }
    panic!("{} stays a multiple of 512 bytes", out.display());
}

fn blank_disk(path: &Path) {
    let _ = std::fs::remove_file(path);
    let f = std::fs::File::create(path).unwrap();
    f.set_len(512 << 20).unwrap();
}

/// Whether the disk's first 4 MiB are zero, and whether it starts with an ext4 superblock
/// (magic 0xEF53 at byte 1024 + 0x38).
fn disk_start(path: &Path) -> (bool, bool) {
    use std::io::Read;
    let mut head = vec![0u8; 4 << 20];
    std::fs::File::open(path)
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    (
        head.iter().all(|&b| b == 0),
        head[1080..1082] == [0x53, 0xef],
    )
}

/// The report lines (the channel is raw: no `\r`, but tolerate one).
fn report_lines(report: &str) -> Vec<&str> {
    report.lines().map(|l| l.trim_end_matches('\r')).collect()
}

/// Checks an install's report: progress lines up to done=total, then `ok`; returns the UUID.
fn check_ok(name: &str, run: &Run, sha: &str, bytes: u64) -> String {
    let lines = report_lines(&run.report);
    let last = lines.last().copied().unwrap_or_default();
    let ok = last.strip_prefix("NHN-REPORT ok ").unwrap_or_else(|| {
        panic!(
            "{name}: the report does not end with ok:\n{}\nconsole:\n{}",
            run.report, run.console
        )
    });
    let fields: Vec<&str> = ok.split(' ').collect();
    assert_eq!(fields.len(), 3, "{name}: {last}");
    let uuid = fields[0].strip_prefix("uuid=").expect("uuid=");
    assert!(
        uuid.len() == 36 && uuid.chars().all(|c| c.is_ascii_hexdigit() || c == '-'),
        "{name}: {last}"
    );
    assert_eq!(fields[1], format!("sha256={sha}"), "{name}");
    assert_eq!(fields[2], format!("bytes={bytes}"), "{name}");
    let progress: Vec<(u64, u64)> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("NHN-REPORT progress "))
        .map(|p| {
            let (done, total) = p.split_once(' ').expect("progress <done> <total>");
            (done.parse().unwrap(), total.parse().unwrap())
        })
        .collect();
    assert!(
        !progress.is_empty(),
        "{name}: no progress lines:\n{}",
        run.report
    );
    assert!(
        progress.iter().all(|&(d, t)| t == bytes && d <= t),
        "{name}: {progress:?}"
    );
    assert_eq!(progress.last(), Some(&(bytes, bytes)), "{name}");
    assert!(
        lines.iter().all(|l| l.starts_with("NHN-REPORT ")),
        "{name}: stray lines on the report channel:\n{}",
        run.report
    );
    assert!(
        !run.console.contains("NHN-REPORT"),
        "{name}: report lines on the console"
    );
    uuid.to_owned()
}

/// Boots DISK1 in boot mode: the image's init runs and shows its fstab and /etc/known.
fn check_boots(vm: &Vm, name: &str, disk: &Path, uuid: &str, known_sha: &str) {
    let run = vm.run(
        name,
        "nhn.root=disk nhn.rootdev=/dev/vda nhn.mode=boot",
        &[(disk, "DISK1", false)],
    );
    let c = &run.console;
    assert!(
        c.contains("IMAGE-MARKER"),
        "{name}: the image did not boot:\n{c}"
    );
    assert!(
        c.contains(&format!("{known_sha}  /etc/known")),
        "{name}: /etc/known differs:\n{c}"
    );
    let fstab = c
        .split("IMAGE-MARKER")
        .nth(1)
        .and_then(|s| s.split("END-OF-FSTAB").next())
        .unwrap_or_default();
    assert!(
        fstab.contains(&format!("UUID={uuid} / ext4 defaults 0 1")),
        "{name}: no root line for {uuid}:\n{fstab}"
    );
    assert!(
        !fstab.contains("/dev/sda1"),
        "{name}: the old root line stayed:\n{fstab}"
    );
    assert!(
        fstab.contains("proc /proc proc defaults 0 0") && fstab.contains("# the image's own fstab"),
        "{name}: the image's other lines went:\n{fstab}"
    );
}

fn install_append(sha: &str, bytes: u64) -> String {
    format!(
        "nhn.root=disk nhn.rootdev=/dev/vda nhn.mode=install nhn.payload=disk \
         nhn.payload.sha256={sha} nhn.payload.bytes={bytes} nhn.report=/dev/ttyS1"
    )
}

#[test]
fn install_mode_unpacks_a_verified_image_that_boots_and_wipes_the_disk_on_failure() {
    let test = "install_mode_unpacks_a_verified_image_that_boots_and_wipes_the_disk_on_failure";
    let Some((lab, kroot, kver)) = lab_with_kernel_and(
        test,
        &[
            "qemu-system-x86_64",
            "busybox",
            "tar",
            "zstd",
            "xz",
            "gzip",
            "mke2fs",
        ],
    ) else {
        return;
    };
    let nhn = Nhn::new();
    let (boot, _) = boot_dir(&nhn, &kroot, &kver);
    let vm = Vm {
        lab: &lab,
        kernel: boot.join("vmlinuz"),
        initrd: boot.join("initrd.img"),
    };
    let dir = lab.dir();

    // The image: busybox, an fstab to rewrite, a file whose contents must survive (not
    // compressible: the archive spans several reads).
    let tree = busybox_tree(
        dir,
        "image",
        &["sh", "mount", "cat", "echo", "sha256sum", "poweroff"],
        IMAGE_INIT,
    );
    std::fs::write(tree.join("etc/fstab"), IMAGE_FSTAB).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let known: Vec<u8> = (0..1_500_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(tree.join("etc/known"), &known).unwrap();
    let known_sha = sha256(&tree.join("etc/known"));
    let zst = dir.join("image.tar.zst");
    let zst_bytes = archive(&tree, &zst, "--xattrs", "zstd -q -c");
    let zst_sha = sha256(&zst);
    let disk = dir.join("disk1.raw");
    blank_disk(&disk);

    // (a) install the tar.zst onto a blank DISK1; (b) it boots.
    let run = vm.run(
        "install-zst",
        &install_append(&zst_sha, zst_bytes),
        &[(&disk, "DISK1", false), (&zst, "nhn-payload", true)],
    );
    let uuid = check_ok("install-zst", &run, &zst_sha, zst_bytes);
    // QEMU rounds the archive file up to whole sectors (zeros past its end), so the partial
    // last sector is readable; the install reads exactly nhn.payload.bytes of it.
    let rounded = zst_bytes.div_ceil(512) * 512;
    assert!(
        run.console.contains(&format!(
            "{zst_bytes} bytes of zstd on a {rounded}-byte disk"
        )),
        "{}",
        run.console
    );
    check_boots(&vm, "boot-zst", &disk, &uuid, &known_sha);

    // (c) a wrong checksum: the install fails, says why, and DISK1 keeps no filesystem (it
    // held the good install before).
    let wrong = "0".repeat(64);
    let run = vm.run(
        "install-wrong-sha",
        &install_append(&wrong, zst_bytes),
        &[(&disk, "DISK1", false), (&zst, "nhn-payload", true)],
    );
    let last = report_lines(&run.report)
        .last()
        .copied()
        .unwrap_or_default()
        .to_owned();
    assert!(
        last.starts_with("NHN-REPORT failed unpack the image: sha256 mismatch")
            && last.contains(&zst_sha),
        "{}\nconsole:\n{}",
        run.report,
        run.console
    );
    assert_eq!(
        disk_start(&disk),
        (true, false),
        "DISK1's start is not zeroed"
    );

    // A tar.xz made without xattrs (tar --xattrs on extraction copes), onto the wiped disk.
    let xz = dir.join("image.tar.xz");
    let xz_bytes = archive(&tree, &xz, "", "xz -1 -c");
    let xz_sha = sha256(&xz);
    let run = vm.run(
        "install-xz",
        &install_append(&xz_sha, xz_bytes),
        &[(&disk, "DISK1", false), (&xz, "nhn-payload", true)],
    );
    let uuid_xz = check_ok("install-xz", &run, &xz_sha, xz_bytes);
    assert_ne!(uuid, uuid_xz, "every install makes a fresh filesystem UUID");
    check_boots(&vm, "boot-xz", &disk, &uuid_xz, &known_sha);

    // A tar.gz over that install: mke2fs replaces the existing filesystem without asking.
    let gz = dir.join("image.tar.gz");
    let gz_bytes = archive(&tree, &gz, "", "gzip -c");
    let gz_sha = sha256(&gz);
    let run = vm.run(
        "install-gz",
        &install_append(&gz_sha, gz_bytes),
        &[(&disk, "DISK1", false), (&gz, "nhn-payload", true)],
    );
    let uuid_gz = check_ok("install-gz", &run, &gz_sha, gz_bytes);
    assert_ne!(uuid_xz, uuid_gz);

    // No payload disk: an early failure still reaches the agent, and DISK1 is left alone
    // (nothing was made yet).
    let run = vm.run(
        "install-no-payload",
        &install_append(&xz_sha, xz_bytes),
        &[(&disk, "DISK1", false)],
    );
    assert_eq!(
        report_lines(&run.report),
        [
            "NHN-REPORT failed find the payload disk: no disk with serial nhn-payload (is the payload attached to the VM?)"
        ],
        "console:\n{}",
        run.console
    );
    assert_eq!(disk_start(&disk), (false, true), "DISK1 was touched");
}
