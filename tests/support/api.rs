//! An appliance for API tests: `nhn serve` (the real binary) on a temp data dir with the seed
//! site imported, API keys made with `nhn key create`, loopback listeners on free ports, and
//! optionally the Python facility stub (`tests/api/facility.py`) that plays the facility
//! layer: it takes dispatched requests over HTTP and reports back on the internal listener.
//! The API client of record is Python's stock `xmlrpc.client` (scripts in `tests/api/`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::cli::{Nhn, examples};
use super::wait_until;

/// The facility credential the tests configure (its hash goes into the config).
pub const FACILITY_SECRET: &str = "facility-test-credential-0123456789";

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}

pub fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api")
}

pub fn field(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no {name:?} in:\n{out}"))
}

/// How to set the appliance up.
pub struct Options {
    /// Lines added to the `[api]` table of the config.
    pub api_config: String,
    /// Site file text to import instead of `examples/seed-site.toml`.
    pub site: Option<String>,
    /// Start the facility stub with this per-request delay in seconds.
    pub facility_delay: Option<f64>,
    /// Configure nhn with another facility credential than the stub's (its signatures fail).
    pub wrong_facility_credential: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            api_config: "mutating_per_second = 10000\nmutating_burst = 10000\nread_per_second = 10000\nread_burst = 10000\n".into(),
            site: None,
            facility_delay: Some(0.05),
            wrong_facility_credential: false,
        }
    }
}

pub struct Appliance {
    pub nhn: Nhn,
    serve: Option<Child>,
    facility: Option<Child>,
    config: PathBuf,
    pub url: String,
    pub internal_url: String,
    pub facility_url: String,
    /// `"id:secret"` by name: acme_full, acme_operate, acme_read, globex_full.
    pub keys: HashMap<&'static str, String>,
}

impl Appliance {
    pub fn start(opts: Options) -> Appliance {
        let nhn = Nhn::new();
        let site = match &opts.site {
            Some(text) => {
                let p = nhn.dir().join("site.toml");
                std::fs::write(&p, text).expect("write site file");
                p
            }
            None => examples().join("seed-site.toml"),
        };
        nhn.ok(&["inventory", "import", site.to_str().expect("utf-8 path")]);
        let mut keys = HashMap::new();
        for (name, customer, scope) in [
            ("acme_full", "acme", "full"),
            ("acme_operate", "acme", "operate"),
            ("acme_read", "acme", "read"),
            ("globex_full", "globex", "full"),
        ] {
            let out = nhn.ok(&["key", "create", "--customer", customer, "--scope", scope]);
            keys.insert(
                name,
                format!("{}:{}", field(&out, "key id:"), field(&out, "secret:")),
            );
        }
        let port = free_port();
        let internal = free_port();
        let url = format!("http://127.0.0.1:{port}/RPC2");
        let internal_url = format!("http://127.0.0.1:{internal}/RPC2");
        let (facility, facility_url) = match opts.facility_delay {
            Some(delay) => {
                let (child, url) = start_facility(&nhn, &internal_url, delay, 0);
                (Some(child), url)
            }
            None => (None, String::new()),
        };
        let secret = if opts.wrong_facility_credential {
            "not-the-facility-secret"
        } else {
            FACILITY_SECRET
        };
        let hash: String = Sha256::digest(secret.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let config = nhn.dir().join("nhn.toml");
        std::fs::write(
            &config,
            format!(
                "[http]\nlisten = \"127.0.0.1:{port}\"\n\n[api]\ninternal_listen = \"127.0.0.1:{internal}\"\n\
                 facility_url = \"{facility_url}\"\nfacility_credential_sha256 = \"{hash}\"\n\
                 reconcile_interval_secs = 1\n{}\n",
                opts.api_config
            ),
        )
        .expect("write config");
        let mut app = Appliance {
            nhn,
            serve: None,
            facility,
            config,
            url,
            internal_url,
            facility_url,
            keys,
        };
        app.start_serve();
        app
    }

    /// The serve log (stderr of every `nhn serve` run so far).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.nhn.dir().join("serve.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.serve.as_ref().map_or(0, Child::id)
    }

    /// Starts `nhn serve` and waits until /healthz answers.
    pub fn start_serve(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.nhn.dir().join("serve.log"))
            .expect("open serve.log");
        let child = self
            .nhn
            .command(&["--config", self.config.to_str().expect("utf-8"), "serve"])
            .env("NHN_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn nhn serve");
        self.serve = Some(child);
        let addr = self
            .url
            .trim_start_matches("http://")
            .trim_end_matches("/RPC2")
            .to_owned();
        let up = wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
            http_get(&addr, "/healthz").is_some_and(|b| b.ends_with("ok\n"))
        });
        assert!(up, "nhn serve did not come up; log:\n{}", self.log());
    }

    /// kill -9, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.serve.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the facility stub (by its PID), as an outage would.
    pub fn stop_facility(&mut self) {
        if let Some(mut c) = self.facility.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the facility stub again on its old address.
    pub fn restart_facility(&mut self, delay: f64) {
        let port: u16 = self
            .facility_url
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches("/RPC2").parse().ok())
            .expect("facility port");
        let (child, _) = start_facility(&self.nhn, &self.internal_url, delay, port);
        self.facility = Some(child);
    }

    /// The facility stub's stderr so far.
    pub fn facility_log(&self) -> String {
        std::fs::read_to_string(self.nhn.dir().join("facility.log")).unwrap_or_default()
    }

    /// Runs `python3 tests/api/<script> ARGS` with the appliance's URLs and keys (and `env`)
    /// in the environment; the script must succeed. Returns its stdout, also printed.
    pub fn python_env(&self, script: &str, args: &[&str], env: &[(&str, &str)]) -> String {
        let mut cmd = Command::new("python3");
        cmd.arg(scripts().join(script))
            .args(args)
            .current_dir(scripts())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("NHN_URL", &self.url)
            .env("NHN_INTERNAL_URL", &self.internal_url)
            .env("NHN_FACILITY_URL", &self.facility_url)
            .env("NHN_FACILITY_SECRET", FACILITY_SECRET)
            .env("NHN_PID", self.pid().to_string());
        for (name, key) in &self.keys {
            cmd.env(format!("NHN_KEY_{}", name.to_uppercase()), key);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run python3");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!("{stdout}{stderr}");
        assert!(
            out.status.success(),
            "{script} failed:\n{stdout}\n{stderr}\nnhn serve log (tail):\n{}",
            tail(&self.log(), 60)
        );
        stdout
    }

    pub fn python_ok(&self, script: &str, args: &[&str]) -> String {
        self.python_env(script, args, &[])
    }

    /// The inventory, read directly (for assertions on what DHCP and the switch planner see).
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.nhn.dir().join("nhn.db")).expect("open nhn.db")
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for Appliance {
    fn drop(&mut self) {
        for c in [self.serve.take(), self.facility.take()]
            .into_iter()
            .flatten()
        {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts the facility stub (on `port`, or a free one if 0); returns it and its dispatch URL.
fn start_facility(nhn: &Nhn, internal_url: &str, delay: f64, port: u16) -> (Child, String) {
    let mut child = Command::new("python3")
        .arg(scripts().join("facility.py"))
        .args(["--internal", internal_url, "--delay", &delay.to_string()])
        .args(["--port", &port.to_string()])
        .env("NHN_FACILITY_SECRET", FACILITY_SECRET)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdout(Stdio::piped())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(nhn.dir().join("facility.log"))
                .expect("open facility.log"),
        )
        .spawn()
        .expect("spawn the facility stub");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("facility stdout");
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the facility port");
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .unwrap_or_else(|| panic!("facility stub said {line:?}"));
    (child, format!("http://127.0.0.1:{port}/RPC2"))
}

/// A minimal HTTP GET; `None` if nothing answers.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}
