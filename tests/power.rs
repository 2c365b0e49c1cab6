//! Bare-metal power against real BMC peers: `nhn power ...` runs in a management namespace
//! and drives, in a BMC namespace, pyghmi's IPMI BMC (tests/support/bmc/fakebmc.py, through
//! ipmitool) and sushy-tools' Redfish emulator (tests/support/bmc/redfish_emu.py). Each
//! BMC's "machine" is a shell that records its pid and `$BMC_BOOTDEV` and then sleeps, so the
//! tests see a power change in /proc, not only in what the BMC says.
//!
//! Needs root, ipmitool, openssl and a Python with pyghmi and sushy-tools: tests/run.sh makes
//! one in target/venv-bmc (`NHN_BMC_PYTHON` points elsewhere). Without them the tests print
//! SKIP, except under CI=true, where they fail.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use support::bmc::{bmc_python, support_file};
use support::cli::Nhn;
use support::{Lab, Netns, Proc, lab_or_skip, wait_until};

const TOOLS: &[&str] = &["ipmitool", "openssl"];
const MGR_IP: &str = "10.77.0.1";
const IPMI_IP: &str = "10.77.0.2";
const REDFISH_IP: &str = "10.77.0.3";
const IPMI_PORT: u16 = 623;
const REDFISH_PORT: u16 = 8000;
const PASSWORD: &str = "s3cret-Bmc-pw";

/// A lab with the appliance's management namespace and a BMC namespace, an nhn data dir
/// with two bare-metal machines (Server-1 on IPMI, Server-2 on Redfish), and the BMCs'
/// machines under `<lab>/machine-*`.
struct PowerLab<'l> {
    lab: &'l Lab,
    mgr: Netns<'l>,
    bmc: Netns<'l>,
    python: PathBuf,
    nhn: Nhn,
}

/// Where a BMC's machine records itself: `pid` (its main process) and `bootdev`.
struct Machine {
    dir: PathBuf,
}

impl Machine {
    fn new(lab: &Lab, name: &str) -> Machine {
        let dir = lab.dir().join(format!("machine-{name}"));
        std::fs::create_dir_all(&dir).expect("create the machine dir");
        Machine { dir }
    }

    /// A machine that records its pid and boot device and runs until killed.
    fn sleeper(&self) -> String {
        let d = self.dir.display();
        format!("echo \"$BMC_BOOTDEV\" > {d}/bootdev; echo $$ > {d}/pid; exec sleep 1000")
    }

    /// A machine whose OS shuts down on SIGTERM (ACPI soft-off), leaving a `shutdown` mark.
    fn graceful(&self) -> String {
        let d = self.dir.display();
        format!(
            "trap 'echo clean > {d}/shutdown; exit 0' TERM; echo $$ > {d}/pid; sleep 1000 & wait"
        )
    }

    /// A machine whose OS ignores the shutdown request.
    fn stubborn(&self) -> String {
        let d = self.dir.display();
        format!("trap '' TERM; echo $$ > {d}/pid; exec sleep 1000")
    }

    fn read(&self, file: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.dir.join(file)).ok()?;
        Some(text.trim().to_owned()).filter(|t| !t.is_empty())
    }

    /// The pid of the machine's process once it has written it (waits up to 5 s).
    fn started_pid(&self) -> u32 {
        let mut pid = None;
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            pid = self.read("pid").and_then(|p| p.parse().ok());
            pid.is_some()
        });
        pid.unwrap_or_else(|| panic!("no machine process wrote {}/pid", self.dir.display()))
    }

    /// Forgets the last power on (pid and boot device files).
    fn clear(&self) {
        for f in ["pid", "bootdev", "shutdown"] {
            let _ = std::fs::remove_file(self.dir.join(f));
        }
    }
}

/// True while `pid` exists in any state but zombie.
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state != "Z")
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const SITE: &str = r#"[site]
name = "powerlab"

[[machines]]
name = "Server-1"
kind = "bare-metal"
power_driver = "ipmi"
bmc_address = "10.77.0.2"
bmc_credentials = "bmc"

[[machines]]
name = "Server-2"
kind = "bare-metal"
power_driver = "redfish"
bmc_address = "http://10.77.0.3:8000"
bmc_credentials = "bmc"
"#;

impl<'l> PowerLab<'l> {
    fn new(lab: &'l Lab, python: PathBuf) -> PowerLab<'l> {
        Self::with_site(lab, python, SITE)
    }

    fn with_site(lab: &'l Lab, python: PathBuf, site: &str) -> PowerLab<'l> {
        let (mgr, bmc) = (lab.netns("mgr"), lab.netns("bmc"));
        lab.veth((&mgr, "eth0"), (&bmc, "eth0"));
        mgr.addr("eth0", &format!("{MGR_IP}/24"));
        bmc.addr("eth0", &format!("{IPMI_IP}/24"));
        bmc.addr("eth0", &format!("{REDFISH_IP}/24"));
        let nhn = Nhn::new();
        let site_file = nhn.dir().join("site.toml");
        std::fs::write(&site_file, site).expect("write the site file");
        nhn.ok(&[
            "inventory",
            "import",
            site_file.to_str().expect("utf-8 path"),
        ]);
        let pl = PowerLab {
            lab,
            mgr,
            bmc,
            python,
            nhn,
        };
        pl.config("");
        pl
    }

    /// Writes nhn.toml: fast polls, a short soft-off grace, the BMC credential (cipher
    /// suite 3, the one pyghmi speaks) plus `extra` lines in [credentials.bmc].
    fn config(&self, extra: &str) {
        self.config_with("", extra);
    }

    fn config_with(&self, power: &str, extra: &str) {
        let text = format!(
            "[power]\ntimeout_secs = 30\nsoft_off_secs = 2\npoll_initial_ms = 100\npoll_max_ms = 500\n\
             retry_initial_ms = 200\n{power}\n\
             [credentials.bmc]\nuser = \"admin\"\nipmi_cipher_suite = 3\n{extra}\n"
        );
        let text = if extra.contains("password") {
            text
        } else {
            text.replace(
                "ipmi_cipher_suite = 3\n",
                &format!("ipmi_cipher_suite = 3\npassword = \"{PASSWORD}\"\n"),
            )
        };
        std::fs::write(self.nhn.dir().join("nhn.toml"), text).expect("write nhn.toml");
    }

    /// `nhn power --direct ARGS` in the management namespace (no appliance runs), with how
    /// long it took.
    fn power(&self, args: &[&str]) -> (Output, Duration) {
        self.power_via(true, args)
    }

    /// `nhn power ARGS`, through the appliance unless `direct`.
    fn power_via(&self, direct: bool, args: &[&str]) -> (Output, Duration) {
        let mut cmd = self.mgr.cmd(env!("CARGO_BIN_EXE_nhn"));
        cmd.arg("--data-dir")
            .arg(self.nhn.dir())
            .arg("--config")
            .arg(self.nhn.dir().join("nhn.toml"))
            .arg("power")
            .args(direct.then_some("--direct"))
            .args(args)
            .env_remove("NHN_CONFIG")
            .env_remove("NHN_LOG");
        let started = Instant::now();
        let out = cmd.output().expect("run nhn power");
        (out, started.elapsed())
    }

    /// `nhn power --direct ARGS`, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        self.ok_via(true, args)
    }

    /// `nhn power --direct ARGS`, which must fail; its stderr and how long it took.
    fn fails(&self, args: &[&str]) -> (String, Duration) {
        self.fails_via(true, args)
    }

    /// `nhn power ARGS` through the appliance, which must succeed; its stdout.
    fn request_ok(&self, args: &[&str]) -> String {
        self.ok_via(false, args)
    }

    /// `nhn power ARGS` through the appliance, which must fail; its stderr and duration.
    fn request_fails(&self, args: &[&str]) -> (String, Duration) {
        self.fails_via(false, args)
    }

    fn ok_via(&self, direct: bool, args: &[&str]) -> String {
        let (out, _) = self.power_via(direct, args);
        assert!(
            out.status.success(),
            "nhn power {args:?} failed:\n{}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    fn fails_via(&self, direct: bool, args: &[&str]) -> (String, Duration) {
        let (out, took) = self.power_via(direct, args);
        assert!(
            !out.status.success(),
            "nhn power {args:?} succeeded:\n{}",
            stdout(&out)
        );
        eprintln!(
            "nhn power {args:?} failed after {took:?}:\n{}",
            stderr(&out)
        );
        (stderr(&out), took)
    }

    /// `nhn serve` in the management namespace, on the lab's nhn.toml.
    fn serve(&self) -> Proc {
        let config = std::fs::read_to_string(self.nhn.dir().join("nhn.toml")).expect("nhn.toml");
        self.nhn
            .serve_in(self.lab, &self.mgr, &config, "127.0.0.1:8080")
    }

    /// The machine requests in the inventory, oldest first: (method, status, error).
    fn machine_requests(&self) -> Vec<(String, String, String)> {
        let db = self.nhn.db();
        let mut st = db
            .prepare(
                "SELECT method, status, error_message FROM requests
                 WHERE resource_type = 'machine' ORDER BY accepted_at, rowid",
            )
            .expect("prepare");
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    /// pyghmi's BMC on 10.77.0.2:623 powering `cmd`.
    fn ipmi_bmc(&self, cmd: &str) -> Proc {
        let port = IPMI_PORT.to_string();
        let script = support_file("fakebmc.py");
        let args = [
            self.python.to_str().expect("utf-8 path"),
            &script,
            "--address",
            IPMI_IP,
            "--port",
            &port,
            "--user",
            "admin",
            "--password",
            PASSWORD,
            "--grace",
            "30",
            "--cmd",
            cmd,
        ];
        let proc = self.bmc.spawn("fakebmc", &args);
        wait_log(&proc, "LISTEN");
        proc
    }

    /// The Redfish emulator on 10.77.0.3:8000 powering `cmd`; `env` such as
    /// FAKE_POWER_DELAY; `tls` = (certificate, key) for HTTPS.
    fn redfish_bmc(&self, cmd: &str, env: &[(&str, &str)], tls: Option<(&Path, &Path)>) -> Proc {
        let state = self.lab.dir().join("redfish-state");
        let mut c = self.bmc.cmd(self.python.to_str().expect("utf-8 path"));
        c.arg(support_file("redfish_emu.py"))
            .args(["--address", REDFISH_IP, "--port"])
            .arg(REDFISH_PORT.to_string())
            .args(["--user", "admin", "--password", PASSWORD, "--cmd", cmd])
            .arg("--state-dir")
            .arg(&state)
            .envs(env.iter().copied());
        if let Some((cert, key)) = tls {
            c.arg("--ssl-certificate")
                .arg(cert)
                .arg("--ssl-key")
                .arg(key);
        }
        let proc = self.lab.spawn("bmc-redfish", c);
        wait_log(&proc, "Running on");
        proc
    }
}

/// Waits until `proc` has logged `text` (at most 20 s); panics with its log otherwise.
fn wait_log(proc: &Proc, text: &str) {
    let up = wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        proc.log().contains(text) || proc.try_wait().is_some()
    });
    assert!(
        up && proc.log().contains(text),
        "BMC emulator did not log {text:?}:\n{}",
        proc.log()
    );
}

/// Sets up the lab and the BMC python, or returns from the test (SKIP).
macro_rules! power_lab {
    ($lab:ident, $pl:ident, $test:expr) => {
        let Some($lab) = lab_or_skip($test, TOOLS) else {
            return;
        };
        let Some(python) = bmc_python($test) else {
            return;
        };
        let $pl = PowerLab::new(&$lab, python);
    };
}

// ---- Through the appliance ------------------------------------------------------------------

#[test]
fn power_requests_go_through_the_running_appliance_and_are_recorded() {
    power_lab!(
        lab,
        pl,
        "power_requests_go_through_the_running_appliance_and_are_recorded"
    );
    let m = Machine::new(&lab, "ipmi");
    let _bmc = pl.ipmi_bmc(&m.sleeper());
    let serve = pl.serve();

    let out = pl.request_ok(&["pxe", "Server-1"]);
    assert!(
        out.starts_with("Server-1: next boot from the network (PXE), once; now off (request "),
        "{out}"
    );
    let out = pl.request_ok(&["on", "Server-1"]);
    assert!(
        out.starts_with("Server-1: on (powerOnMachine observed after"),
        "{out}"
    );
    let pid = m.started_pid();
    assert_eq!(m.read("bootdev").as_deref(), Some("network"));
    let out = pl.request_ok(&["off", "--force", "Server-1"]);
    assert!(out.starts_with("Server-1: off"), "{out}");
    assert!(!alive(pid), "the machine still runs after a forced off");

    let done = |m: &str| (m.to_owned(), "succeeded".to_owned(), String::new());
    assert_eq!(
        pl.machine_requests(),
        [
            done("pxeBootMachine"),
            done("powerOnMachine"),
            done("forcePowerOffMachine")
        ]
    );
    assert!(
        serve.log().contains("machine power done"),
        "{}",
        serve.log()
    );
}

#[test]
fn a_dead_bmc_fails_the_request_saying_it_did_not_answer() {
    power_lab!(
        lab,
        pl,
        "a_dead_bmc_fails_the_request_saying_it_did_not_answer"
    );
    let m = Machine::new(&lab, "ipmi");
    let bmc = pl.ipmi_bmc(&m.sleeper());
    bmc.kill();
    let _serve = pl.serve();
    let (err, took) = pl.request_fails(&["on", "Server-1"]);
    assert!(
        err.contains("powerOnMachine failed (request ")
            && err.contains("machine Server-1: BMC 10.77.0.2:623 did not answer"),
        "{err}"
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let requests = pl.machine_requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].1, "failed");
    assert!(requests[0].2.contains("did not answer"), "{requests:?}");
}

#[test]
fn without_a_running_appliance_a_request_is_canceled_and_says_what_to_do() {
    power_lab!(
        lab,
        pl,
        "without_a_running_appliance_a_request_is_canceled_and_says_what_to_do"
    );
    let m = Machine::new(&lab, "ipmi");
    let _bmc = pl.ipmi_bmc(&m.sleeper());
    let (err, took) = pl.request_fails(&["on", "Server-1"]);
    assert!(
        err.contains("was not picked up within 10 s and is canceled")
            && err.contains("is `nhn serve` running")
            && err.contains("--direct"),
        "{err}"
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert_eq!(pl.machine_requests()[0].1, "canceled");
    assert!(m.read("pid").is_none(), "the machine was powered on");
    // Starting the appliance later does not run the canceled request.
    let _serve = pl.serve();
    std::thread::sleep(Duration::from_secs(2));
    assert!(m.read("pid").is_none(), "a canceled request ran");
}

// ---- IPMI -------------------------------------------------------------------------------

#[test]
fn ipmi_on_reset_and_off_are_observed_on_the_machine() {
    power_lab!(lab, pl, "ipmi_on_reset_and_off_are_observed_on_the_machine");
    let m = Machine::new(&lab, "ipmi");
    let _bmc = pl.ipmi_bmc(&m.sleeper());

    assert_eq!(
        pl.ok(&["status", "Server-1"]).trim(),
        "Server-1: off (BMC 10.77.0.2:623)"
    );
    let out = pl.ok(&["on", "Server-1"]);
    assert!(
        out.starts_with("Server-1: on (BMC 10.77.0.2:623, power on observed after"),
        "{out}"
    );
    let first = m.started_pid();
    assert!(cmdline(first).contains("sleep 1000"), "{}", cmdline(first));
    assert!(pl.ok(&["status", "Server-1"]).starts_with("Server-1: on"));

    m.clear();
    assert!(pl.ok(&["reset", "Server-1"]).starts_with("Server-1: on"));
    let second = m.started_pid();
    assert_ne!(first, second, "reset did not restart the machine");
    assert!(!alive(first) && alive(second));

    let out = pl.ok(&["off", "--force", "Server-1"]);
    assert!(out.starts_with("Server-1: off"), "{out}");
    assert!(!alive(second), "the machine still runs after a forced off");
    assert!(pl.ok(&["status", "Server-1"]).starts_with("Server-1: off"));
}

#[test]
fn ipmi_off_asks_the_os_to_shut_down_first() {
    power_lab!(lab, pl, "ipmi_off_asks_the_os_to_shut_down_first");
    let m = Machine::new(&lab, "ipmi");
    let bmc = pl.ipmi_bmc(&m.graceful());
    pl.ok(&["on", "Server-1"]);
    let pid = m.started_pid();
    assert!(pl.ok(&["off", "Server-1"]).starts_with("Server-1: off"));
    assert!(!alive(pid));
    assert_eq!(
        m.read("shutdown").as_deref(),
        Some("clean"),
        "{}",
        bmc.log()
    );
    assert!(bmc.log().contains("POWER-SOFT"), "{}", bmc.log());
}

#[test]
fn ipmi_pxe_override_reaches_the_next_power_on_only() {
    power_lab!(lab, pl, "ipmi_pxe_override_reaches_the_next_power_on_only");
    let m = Machine::new(&lab, "ipmi");
    let _bmc = pl.ipmi_bmc(&m.sleeper());
    let out = pl.ok(&["pxe", "Server-1"]);
    assert_eq!(
        out.trim(),
        "Server-1: next boot from the network (PXE), once (BMC 10.77.0.2:623)"
    );
    pl.ok(&["on", "Server-1"]);
    m.started_pid();
    assert_eq!(m.read("bootdev").as_deref(), Some("network"));
    m.clear();
    pl.ok(&["reset", "Server-1"]);
    m.started_pid();
    assert_eq!(
        m.read("bootdev").as_deref(),
        Some("default"),
        "the override was not once"
    );
}

#[test]
fn ipmi_wrong_password_fails_fast_as_a_refused_login() {
    power_lab!(lab, pl, "ipmi_wrong_password_fails_fast_as_a_refused_login");
    let m = Machine::new(&lab, "ipmi");
    let _bmc = pl.ipmi_bmc(&m.sleeper());
    pl.config("password = \"wrong\"");
    let (err, took) = pl.fails(&["on", "Server-1"]);
    assert!(
        err.contains("machine Server-1: BMC 10.77.0.2:623 refused the login"),
        "{err}"
    );
    assert!(
        err.contains("check user and password in [credentials.bmc]"),
        "{err}"
    );
    assert!(
        !err.contains("retrying"),
        "a refused login was retried: {err}"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(m.read("pid").is_none(), "the machine was powered on");
}

#[test]
fn ipmi_dead_bmc_fails_within_bounded_time_saying_it_did_not_answer() {
    power_lab!(
        lab,
        pl,
        "ipmi_dead_bmc_fails_within_bounded_time_saying_it_did_not_answer"
    );
    let m = Machine::new(&lab, "ipmi");
    let bmc = pl.ipmi_bmc(&m.sleeper());
    bmc.kill();
    let (err, took) = pl.fails(&["on", "Server-1"]);
    assert!(
        err.contains("machine Server-1: BMC 10.77.0.2:623 did not answer"),
        "{err}"
    );
    assert!(
        err.contains("check that the machine's bmc_address is right"),
        "{err}"
    );
    // [power] retries = 2: three ipmitool runs of ~2 s (-N 1 -R 1) and 0.2 + 0.4 s backoff.
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

#[test]
fn ipmi_password_never_reaches_ipmitools_command_line() {
    power_lab!(
        lab,
        pl,
        "ipmi_password_never_reaches_ipmitools_command_line"
    );
    let m = Machine::new(&lab, "ipmi");
    let _bmc = pl.ipmi_bmc(&m.sleeper());
    // A wrapper in front of the real ipmitool records the argv and environment it gets.
    let dir = lab.dir();
    let log = dir.join("ipmitool-argv.log");
    let wrapper = dir.join("ipmitool-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf 'argv: %s\\n' \"$*\" >> {log}\n\
             [ -n \"$IPMI_PASSWORD\" ] && echo 'env: IPMI_PASSWORD set' >> {log}\n\
             exec ipmitool \"$@\"\n",
            log = log.display()
        ),
    )
    .expect("write the wrapper");
    std::process::Command::new("chmod")
        .arg("755")
        .arg(&wrapper)
        .status()
        .expect("chmod");
    let password_file = dir.join("bmc.password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).expect("write the password file");
    pl.config_with(
        &format!("ipmitool = \"{}\"", wrapper.display()),
        &format!("password_file = \"{}\"", password_file.display()),
    );

    pl.ok(&["on", "Server-1"]);
    pl.ok(&["status", "Server-1"]);
    let seen = std::fs::read_to_string(&log).expect("the wrapper ran");
    let argvs: Vec<&str> = seen.lines().filter(|l| l.starts_with("argv: ")).collect();
    assert!(argvs.len() >= 3, "{seen}");
    for argv in &argvs {
        assert!(
            !argv.contains(PASSWORD),
            "password on the command line: {argv}"
        );
        assert!(!argv.contains(" -P "), "{argv}");
        assert!(argv.contains(" -E ") && argv.contains("-C 3"), "{argv}");
    }
    assert_eq!(
        seen.matches("env: IPMI_PASSWORD set").count(),
        argvs.len(),
        "{seen}"
    );
}

// ---- Redfish ----------------------------------------------------------------------------

#[test]
fn redfish_on_and_off_succeed_only_once_a_slow_bmc_shows_them() {
    power_lab!(
        lab,
        pl,
        "redfish_on_and_off_succeed_only_once_a_slow_bmc_shows_them"
    );
    let m = Machine::new(&lab, "redfish");
    let bmc = pl.redfish_bmc(&m.sleeper(), &[("FAKE_POWER_DELAY", "2")], None);
    let (out, took) = pl.power(&["on", "Server-2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The emulator starts the machine 2 s after the command; success comes only after that.
    assert!(
        bmc.log().contains("POWER-ON"),
        "success before power on:\n{}",
        bmc.log()
    );
    assert!(took >= Duration::from_secs(2), "took {took:?}");
    let pid = m.started_pid();
    assert!(alive(pid));

    let (out, took) = pl.power(&["off", "--force", "Server-2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!alive(pid), "success before the power went off");
    assert!(took >= Duration::from_secs(2), "took {took:?}");
}

#[test]
fn redfish_reset_restarts_the_machine() {
    power_lab!(lab, pl, "redfish_reset_restarts_the_machine");
    let m = Machine::new(&lab, "redfish");
    let bmc = pl.redfish_bmc(&m.sleeper(), &[], None);
    pl.ok(&["on", "Server-2"]);
    let first = m.started_pid();
    m.clear();
    assert!(pl.ok(&["reset", "Server-2"]).starts_with("Server-2: on"));
    let second = m.started_pid();
    assert_ne!(first, second);
    assert!(!alive(first) && alive(second));
    assert!(bmc.log().contains("ForceRestart"), "{}", bmc.log());
}

#[test]
fn redfish_off_is_graceful_and_forced_after_the_grace_period() {
    power_lab!(
        lab,
        pl,
        "redfish_off_is_graceful_and_forced_after_the_grace_period"
    );
    let m = Machine::new(&lab, "redfish");
    // The emulator would wait 60 s before killing; nhn's [power] soft_off_secs is 2.
    let bmc = pl.redfish_bmc(&m.stubborn(), &[("FAKE_POWER_GRACE", "60")], None);
    pl.ok(&["on", "Server-2"]);
    let pid = m.started_pid();
    let (out, took) = pl.power(&["off", "Server-2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!alive(pid));
    assert!(
        took >= Duration::from_secs(2),
        "not graceful first: {took:?}"
    );
    let log = bmc.log();
    let graceful = log
        .find("GracefulShutdown")
        .expect("no graceful shutdown sent");
    let forced = log
        .find("RESET name=node1 ForceOff")
        .expect("no forced off sent");
    assert!(graceful < forced, "{log}");
}

#[test]
fn redfish_off_stops_at_the_graceful_shutdown_when_the_os_obeys() {
    power_lab!(
        lab,
        pl,
        "redfish_off_stops_at_the_graceful_shutdown_when_the_os_obeys"
    );
    let m = Machine::new(&lab, "redfish");
    let bmc = pl.redfish_bmc(&m.graceful(), &[], None);
    pl.ok(&["on", "Server-2"]);
    let pid = m.started_pid();
    pl.ok(&["off", "Server-2"]);
    assert!(!alive(pid));
    assert_eq!(m.read("shutdown").as_deref(), Some("clean"));
    assert!(!bmc.log().contains("ForceOff"), "{}", bmc.log());
}

#[test]
fn redfish_pxe_override_is_seen_by_the_machine() {
    power_lab!(lab, pl, "redfish_pxe_override_is_seen_by_the_machine");
    let m = Machine::new(&lab, "redfish");
    let _bmc = pl.redfish_bmc(&m.sleeper(), &[], None);
    pl.ok(&["pxe", "Server-2"]);
    pl.ok(&["on", "Server-2"]);
    m.started_pid();
    assert_eq!(m.read("bootdev").as_deref(), Some("Pxe"));
}

#[test]
fn redfish_wrong_password_is_a_refused_login_and_not_retried() {
    power_lab!(
        lab,
        pl,
        "redfish_wrong_password_is_a_refused_login_and_not_retried"
    );
    let m = Machine::new(&lab, "redfish");
    let bmc = pl.redfish_bmc(&m.sleeper(), &[], None);
    pl.config("password = \"wrong\"");
    let (err, took) = pl.fails(&["on", "Server-2"]);
    assert!(
        err.contains("machine Server-2: BMC http://10.77.0.3:8000 refused the login"),
        "{err}"
    );
    assert!(err.contains("HTTP 401"), "{err}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(!bmc.log().contains("RESET"), "{}", bmc.log());
}

#[test]
fn redfish_unknown_system_names_the_setting_to_fix() {
    power_lab!(lab, pl, "redfish_unknown_system_names_the_setting_to_fix");
    let m = Machine::new(&lab, "redfish");
    let _bmc = pl.redfish_bmc(&m.sleeper(), &[], None);
    pl.config("redfish_system = \"node9\"");
    let (err, _) = pl.fails(&["status", "Server-2"]);
    assert!(err.contains("has no system \"node9\""), "{err}");
    assert!(
        err.contains("set redfish_system in [credentials.bmc]"),
        "{err}"
    );
    // The system's name works as well as its id (the emulator redirects to the id).
    pl.config("redfish_system = \"node1\"");
    assert!(pl.ok(&["status", "Server-2"]).starts_with("Server-2: off"));
}

#[test]
fn redfish_dead_bmc_fails_within_bounded_time_saying_it_did_not_answer() {
    power_lab!(
        lab,
        pl,
        "redfish_dead_bmc_fails_within_bounded_time_saying_it_did_not_answer"
    );
    let (err, took) = pl.fails(&["off", "Server-2"]);
    assert!(
        err.contains("machine Server-2: BMC http://10.77.0.3:8000 did not answer"),
        "{err}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

/// A CA and a certificate it signed for the Redfish address, made with openssl.
fn make_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let p = |f: &str| dir.join(format!("{name}-{f}"));
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
    };
    let ext = p("ext.cnf");
    std::fs::write(
        &ext,
        format!(
            "subjectAltName=IP:{REDFISH_IP}\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .expect("write the extensions");
    let s = |p: &PathBuf| p.display().to_string();
    let (ca, ca_key, cert, key, csr) = (
        p("ca.pem"),
        p("ca.key"),
        p("bmc.pem"),
        p("bmc.key"),
        p("bmc.csr"),
    );
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            &s(&ca_key),
            "-out",
            &s(&ca),
            "-days",
            "2",
            "-subj",
            &format!("/CN=nhn test CA {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            &s(&key),
            "-out",
            &s(&csr),
            "-subj",
            &format!("/CN={REDFISH_IP}"),
        ],
    ]
    .concat());
    run(&[
        "x509",
        "-req",
        "-in",
        &s(&csr),
        "-CA",
        &s(&ca),
        "-CAkey",
        &s(&ca_key),
        "-CAcreateserial",
        "-out",
        &s(&cert),
        "-days",
        "2",
        "-extfile",
        &s(&ext),
    ]);
    (ca, cert, key)
}

#[test]
fn redfish_https_trusts_only_the_configured_ca_unless_insecure() {
    let test = "redfish_https_trusts_only_the_configured_ca_unless_insecure";
    let Some(lab) = lab_or_skip(test, TOOLS) else {
        return;
    };
    let Some(python) = bmc_python(test) else {
        return;
    };
    let site = SITE.replace("http://10.77.0.3:8000", "10.77.0.3:8000");
    let pl = PowerLab::with_site(&lab, python, &site);
    let (ca, cert, key) = make_ca(lab.dir(), "bmc");
    let (other_ca, _, _) = make_ca(lab.dir(), "other");
    let m = Machine::new(&lab, "redfish");
    let _bmc = pl.redfish_bmc(&m.sleeper(), &[], Some((&cert, &key)));

    pl.config(&format!("ca_file = \"{}\"", ca.display()));
    let out = pl.ok(&["on", "Server-2"]);
    assert!(
        out.starts_with("Server-2: on (BMC https://10.77.0.3:8000"),
        "{out}"
    );
    m.started_pid();

    for refused in [
        String::new(),
        format!("ca_file = \"{}\"", other_ca.display()),
    ] {
        pl.config(&refused);
        let (err, took) = pl.fails(&["status", "Server-2"]);
        assert!(
            err.contains("TLS to BMC https://10.77.0.3:8000 failed"),
            "{refused}: {err}"
        );
        assert!(err.contains("set ca_file in [credentials.bmc]"), "{err}");
        assert!(
            took < Duration::from_secs(3),
            "a TLS refusal was retried: {took:?}"
        );
    }

    pl.config("insecure = true");
    let (out, _) = pl.power(&["status", "Server-2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("Server-2: on"));
    assert!(
        stderr(&out).contains("TLS certificate verification is OFF"),
        "no warning: {}",
        stderr(&out)
    );
}

/// A child process killed and reaped when dropped, also when the test panics.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The inode of network namespace `ns` (as `/proc/<pid>/ns/net` shows it: `net:[inode]`).
fn netns_inode(ns: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(Path::new("/run/netns").join(ns))
        .expect("stat the netns file")
        .ino()
}

/// Running ipmitool processes in the namespace with inode `net`: (pid, argv, environment).
fn ipmitools_in(net: u64) -> Vec<(u32, String, String)> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let ns = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap_or_default();
        if comm.trim() != "ipmitool" || ns.to_string_lossy() != format!("net:[{net}]") {
            continue;
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', "\n"))
            .unwrap_or_default();
        found.push((pid, cmdline(pid), environ));
    }
    found
}

#[test]
fn ipmi_password_is_in_the_running_ipmitools_environment_not_its_argv() {
    power_lab!(
        lab,
        pl,
        "ipmi_password_is_in_the_running_ipmitools_environment_not_its_argv"
    );
    // No BMC answers, so each ipmitool run lasts about two seconds: long enough to read its
    // /proc entry while it runs.
    let net = netns_inode(pl.mgr.name());
    let mut cmd = pl.mgr.cmd(env!("CARGO_BIN_EXE_nhn"));
    cmd.arg("--data-dir")
        .arg(pl.nhn.dir())
        .arg("--config")
        .arg(pl.nhn.dir().join("nhn.toml"))
        .args(["power", "status", "Server-1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut nhn = KillOnDrop(cmd.spawn().expect("start nhn power status"));
    let mut seen = Vec::new();
    wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        seen = ipmitools_in(net);
        !seen.is_empty()
    });
    let status = nhn.0.wait().expect("wait for nhn");
    assert!(!status.success(), "status of a dead BMC succeeded");
    let (pid, argv, environ) = seen.first().expect("no running ipmitool found in /proc");
    assert!(
        argv.starts_with("ipmitool -I lanplus -H 10.77.0.2"),
        "{pid}: {argv}"
    );
    assert!(
        !argv.contains(PASSWORD),
        "password on the command line: {argv}"
    );
    assert!(
        environ
            .lines()
            .any(|l| l == format!("IPMI_PASSWORD={PASSWORD}")),
        "{pid}: no IPMI_PASSWORD in the environment"
    );
}

#[test]
fn a_bmc_address_nobody_answers_fails_within_bounded_time() {
    let test = "a_bmc_address_nobody_answers_fails_within_bounded_time";
    let Some(lab) = lab_or_skip(test, TOOLS) else {
        return;
    };
    let Some(python) = bmc_python(test) else {
        return;
    };
    // 10.77.0.9 is on the management network, but no host has it: ARP gets no answer.
    let site = SITE
        .replace("\"10.77.0.2\"", "\"10.77.0.9\"")
        .replace("http://10.77.0.3:8000", "http://10.77.0.9:8000");
    let pl = PowerLab::with_site(&lab, python, &site);
    let (ipmi, redfish) = std::thread::scope(|s| {
        let ipmi = s.spawn(|| pl.fails(&["on", "Server-1"]));
        let redfish = s.spawn(|| pl.fails(&["on", "Server-2"]));
        (ipmi.join(), redfish.join())
    });
    let (ipmi, redfish) = (ipmi.expect("ipmi thread"), redfish.expect("redfish thread"));
    for ((err, took), bmc) in [(ipmi, "10.77.0.9:623"), (redfish, "http://10.77.0.9:8000")] {
        assert!(err.contains(&format!("BMC {bmc} did not answer")), "{err}");
        assert!(took < Duration::from_secs(20), "{bmc}: took {took:?}");
    }
}
