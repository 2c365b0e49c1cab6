//! Running the real `nhn` binary the way an operator does, each test on its own data dir.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The project's `examples/` folder.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// The test fixtures in `tests/data/`.
pub fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// The `nhn` binary on a private, temporary data dir.
pub struct Nhn {
    dir: tempfile::TempDir,
}

impl Nhn {
    pub fn new() -> Self {
        Nhn {
            dir: tempfile::Builder::new()
                .prefix("nhn-test-")
                .tempdir()
                .expect("create a temp data dir"),
        }
    }

    /// The data dir (also a scratch dir for the test's own files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `nhn --data-dir <dir> ARGS...`, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nhn"));
        cmd.arg("--data-dir")
            .arg(self.dir())
            .args(args)
            .env_remove("NHN_CONFIG")
            .env_remove("NHN_LOG");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run nhn")
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "nhn {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Runs a command that must fail; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "nhn {args:?} succeeded but should have failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// The inventory's last change-event sequence number: unchanged means nothing was written.
    pub fn events(&self) -> i64 {
        let db = rusqlite::Connection::open(self.dir().join("nhn.db")).expect("open nhn.db");
        db.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
            .expect("read events")
    }
}

impl Nhn {
    /// Writes `config` (TOML) next to the data dir and starts `nhn serve` with it inside `ns`,
    /// then waits until `http://<http>/healthz` answers from inside the namespace.
    pub fn serve_in(
        &self,
        lab: &super::Lab,
        ns: &super::Netns,
        config: &str,
        http: &str,
    ) -> super::Proc {
        let path = self.dir().join("nhn.toml");
        std::fs::write(&path, config).expect("write nhn.toml");
        let mut cmd = ns.cmd(env!("CARGO_BIN_EXE_nhn"));
        cmd.arg("--config")
            .arg(&path)
            .arg("--data-dir")
            .arg(self.dir())
            .arg("serve");
        cmd.env("NHN_LOG", "info,nhn=debug");
        let proc = lab.spawn("nhn-serve", cmd);
        let url = format!("http://{http}/healthz");
        let up = super::wait_until(
            std::time::Duration::from_secs(20),
            std::time::Duration::from_millis(100),
            || {
                proc.try_wait().is_none()
                    && ns
                        .try_run(&["curl", "-sf", "--max-time", "1", &url])
                        .status
                        .success()
            },
        );
        assert!(
            up,
            "nhn serve did not come up in {}; log:\n{}",
            ns.name(),
            proc.log()
        );
        proc
    }

    /// Opens the inventory database directly (test fixtures the CLI cannot create yet).
    pub fn db(&self) -> rusqlite::Connection {
        let db = rusqlite::Connection::open(self.dir().join("nhn.db")).expect("open nhn.db");
        db.busy_timeout(std::time::Duration::from_secs(10))
            .expect("busy timeout");
        db
    }
}

impl Nhn {
    /// Starts `nhn [GLOBAL...] serve` on loopback with ephemeral ports (no namespace, no root);
    /// waits until it holds the data dir's lock.
    pub fn serve_on_loopback(&self, global: &[&str]) -> Serving {
        let mut args = global.to_vec();
        args.extend([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--internal-listen",
            "127.0.0.1:0",
        ]);
        let child = self
            .command(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn nhn serve");
        let lock = self.dir().join("serve.lock");
        let pid = child.id().to_string();
        let serving = Serving(child);
        let locked = super::wait_until(
            std::time::Duration::from_secs(20),
            std::time::Duration::from_millis(50),
            || std::fs::read_to_string(&lock).is_ok_and(|s| s.trim() == pid),
        );
        assert!(locked, "nhn serve did not take the data dir lock");
        serving
    }
}

/// A `nhn serve` child process that is killed (and reaped) when dropped, also on panic.
pub struct Serving(pub std::process::Child);

impl Serving {
    /// SIGTERM, then the exit status.
    pub fn terminate(self) -> std::process::ExitStatus {
        self.terminate_with_log().0
    }

    /// SIGTERM, then the exit status and what it wrote to stderr (when piped).
    pub fn terminate_with_log(mut self) -> (std::process::ExitStatus, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let status = self.0.wait().expect("wait for nhn serve");
        let mut log = String::new();
        if let Some(mut err) = self.0.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut err, &mut log);
        }
        (status, log)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Nhn {
    /// A data dir with `examples/seed-site.toml` imported.
    pub fn with_seed_site() -> Nhn {
        let nhn = Nhn::new();
        let seed = examples().join("seed-site.toml");
        nhn.ok(&["inventory", "import", seed.to_str().expect("a UTF-8 path")]);
        nhn
    }

    /// A data dir with tests/data/boot-site.toml imported and a 1 GB boot volume for `machine`
    /// (target `iqn.2026-11.test.nhn:vol-<machine>`).
    pub fn with_boot_site(machine: &str) -> Nhn {
        let nhn = Nhn::new();
        nhn.ok(&[
            "inventory",
            "import",
            data().join("boot-site.toml").to_str().unwrap(),
        ]);
        nhn.ok(&["volume", "create", "--machine", machine, "--size-gb", "1"]);
        nhn
    }
}
