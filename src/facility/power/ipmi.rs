//! IPMI 2.0 (RMCP+, "lanplus") through `ipmitool`, the client every BMC vendor tests with.
//!
//! One ipmitool run per request. The password goes through the environment (`-E`,
//! `IPMI_PASSWORD`, readable only by root and nhn's own user), never argv (world-readable in
//! /proc). The cipher suite is always given (`-C`): letting ipmitool probe for one hangs on
//! some BMCs (ipmitool #199, #363). `-N`/`-R` bound a dead BMC to a few seconds instead of
//! ipmitool's 20.
//!
//! ipmitool says little about why a session failed: a wrong password and a dead BMC both end
//! in "Unable to establish IPMI v2 / RMCP+ session". A refusal comes back at once, while a
//! dead BMC only fails after the first retransmit timeout, so [`classify`] also looks at how
//! long the run took.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::{Bmc, Command, Error, Login, PowerState};
use crate::config::{Credential, Power};
use crate::facility::BoxFuture;

/// IPMI's UDP port.
const DEFAULT_PORT: u16 = 623;
/// Cipher suite 17: HMAC-SHA256 authentication and integrity, AES-CBC-128.
const DEFAULT_CIPHER_SUITE: u8 = 17;

/// A BMC reached with ipmitool.
#[derive(Debug)]
pub struct Ipmi {
    machine: String,
    /// `host:port`, for messages and the per-BMC lock.
    address: String,
    host: String,
    port: u16,
    login: Login,
    cipher_suite: u8,
    program: PathBuf,
    retransmit_secs: u32,
    retransmits: u32,
    command_timeout: Duration,
}

impl Ipmi {
    pub fn new(
        machine: &str,
        bmc_address: &str,
        login: Login,
        cred: &Credential,
        power: &Power,
    ) -> Result<Ipmi, Error> {
        let (host, port) = parse_address(bmc_address).map_err(|problem| Error::Config {
            machine: machine.to_owned(),
            problem: format!("bmc_address {bmc_address:?}: {problem}"),
        })?;
        let address = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(Ipmi {
            machine: machine.to_owned(),
            address,
            host,
            port,
            login,
            cipher_suite: cred.ipmi_cipher_suite.unwrap_or(DEFAULT_CIPHER_SUITE),
            program: power.ipmitool.clone(),
            retransmit_secs: power.ipmi_retransmit_secs.max(1),
            retransmits: power.ipmi_retransmits,
            command_timeout: Duration::from_secs(power.command_timeout_secs.max(1)),
        })
    }

    /// ipmitool's arguments for `command`. The password is not among them: it travels in
    /// the `IPMI_PASSWORD` environment variable (`-E`).
    pub fn argv(&self, command: &[&str]) -> Vec<String> {
        let mut argv: Vec<String> = ["-I", "lanplus", "-H", &self.host, "-p"]
            .map(String::from)
            .to_vec();
        argv.push(self.port.to_string());
        if let Some(user) = &self.login.user {
            argv.extend(["-U".to_owned(), user.clone()]);
        }
        argv.extend([
            "-C".to_owned(),
            self.cipher_suite.to_string(),
            "-N".to_owned(),
            self.retransmit_secs.to_string(),
            "-R".to_owned(),
            self.retransmits.to_string(),
            "-E".to_owned(),
        ]);
        argv.extend(command.iter().map(|s| s.to_string()));
        argv
    }

    /// Runs ipmitool with `command`; its stdout on success.
    async fn run(&self, operation: &str, command: &[&str]) -> Result<String, Error> {
        let argv = self.argv(command);
        tracing::debug!(machine = %self.machine, program = %self.program.display(), ?argv, "ipmitool");
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&argv)
            .env("IPMI_PASSWORD", &self.login.password)
            .env_remove("IPMITOOL_PASSWORD")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let started = Instant::now();
        let child = cmd.spawn().map_err(|e| Error::Config {
            machine: self.machine.clone(),
            problem: format!(
                "cannot run {} ({e}); install ipmitool (Debian: apt-get install ipmitool) or set \
                 [power] ipmitool",
                self.program.display()
            ),
        })?;
        let out = match tokio::time::timeout(self.command_timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                return Err(self.busy(operation, format!("waiting for ipmitool failed: {e}")));
            }
            Err(_) => {
                return Err(Error::Unreachable {
                    machine: self.machine.clone(),
                    bmc: self.address.clone(),
                    detail: format!(
                        "ipmitool {operation} did not finish within {} s",
                        self.command_timeout.as_secs()
                    ),
                });
            }
        };
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            return Ok(stdout);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let detail = summary(&stderr, &stdout, out.status);
        let retransmit = Duration::from_secs(self.retransmit_secs.into());
        Err(match classify(&stderr, started.elapsed(), retransmit) {
            Failure::AuthRefused => self.auth_refused(
                detail,
                format!(
                    " (if they are right, the BMC may not offer cipher suite {}: set \
                     ipmi_cipher_suite; 3 is what older BMCs support)",
                    self.cipher_suite
                ),
            ),
            Failure::CipherSuite => self.auth_refused(
                detail,
                format!(
                    "; the BMC may not offer cipher suite {}: set ipmi_cipher_suite (3 is what \
                     older BMCs support)",
                    self.cipher_suite
                ),
            ),
            Failure::Unreachable => Error::Unreachable {
                machine: self.machine.clone(),
                bmc: self.address.clone(),
                detail,
            },
            Failure::Refused => Error::Refused {
                machine: self.machine.clone(),
                bmc: self.address.clone(),
                operation: operation.to_owned(),
                detail,
            },
            Failure::Busy => self.busy(operation, detail),
        })
    }

    fn auth_refused(&self, detail: String, hint: String) -> Error {
        Error::AuthRefused {
            machine: self.machine.clone(),
            bmc: self.address.clone(),
            credential: self.login.credential.clone(),
            detail,
            hint,
        }
    }

    fn busy(&self, operation: &str, detail: String) -> Error {
        Error::Busy {
            machine: self.machine.clone(),
            bmc: self.address.clone(),
            operation: operation.to_owned(),
            detail,
        }
    }
}

impl Bmc for Ipmi {
    fn address(&self) -> &str {
        &self.address
    }

    fn power_state(&self) -> BoxFuture<'_, Result<PowerState, Error>> {
        Box::pin(async move {
            let out = self.run("power status", &["power", "status"]).await?;
            parse_power_status(&out).ok_or_else(|| Error::Protocol {
                machine: self.machine.clone(),
                bmc: self.address.clone(),
                operation: "power status".into(),
                detail: format!("expected \"Chassis Power is on|off\", got {:?}", out.trim()),
            })
        })
    }

    fn send(&self, command: Command) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let verb = match command {
                Command::On => "on",
                Command::ForceOff => "off",
                Command::GracefulShutdown => "soft",
                Command::ForceRestart => "reset",
            };
            self.run(&command.to_string(), &["power", verb]).await?;
            Ok(())
        })
    }

    fn boot_once_pxe(&self) -> BoxFuture<'_, Result<(), Error>> {
        // Without options=persistent the override holds for the next boot only.
        Box::pin(async move {
            self.run("boot override", &["chassis", "bootdev", "pxe"])
                .await?;
            Ok(())
        })
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address; the port defaults to 623.
pub fn parse_address(addr: &str) -> Result<(String, u16), String> {
    let addr = addr.trim();
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("{p:?} is not a port number"))
    };
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address in [ ] needs the closing ]")?;
        match after {
            "" => (host, DEFAULT_PORT),
            p => (
                host,
                port(p.strip_prefix(':').ok_or("expected :port after ]")?)?,
            ),
        }
    } else {
        match addr.matches(':').count() {
            0 => (addr, DEFAULT_PORT),
            1 => {
                let (host, p) = addr.split_once(':').unwrap_or((addr, ""));
                (host, port(p)?)
            }
            _ => (addr, DEFAULT_PORT),
        }
    };
    if host.is_empty() || host.starts_with('-') || host.chars().any(char::is_whitespace) {
        return Err("expected host or host:port".into());
    }
    Ok((host.to_owned(), port))
}

/// The state in `power status` output: "Chassis Power is on|off" on any line, in any case,
/// with any surrounding space (rufio #13, #64: exact matching broke on trailing newlines).
pub fn parse_power_status(out: &str) -> Option<PowerState> {
    out.lines().find_map(|line| {
        let line = line.trim().to_ascii_lowercase();
        match line.strip_prefix("chassis power is")?.trim() {
            "on" => Some(PowerState::On),
            "off" => Some(PowerState::Off),
            _ => None,
        }
    })
}

/// Why an ipmitool run failed, as far as its messages and duration tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The BMC answered and refused the user or password: fatal.
    AuthRefused,
    /// The BMC does not do the requested cipher suite: fatal.
    CipherSuite,
    /// No answer: retryable.
    Unreachable,
    /// The BMC refused the command itself (unsupported, no privilege): fatal.
    Refused,
    /// Anything else: retryable.
    Busy,
}

/// Classifies a failed run from its stderr and how long it took; `retransmit` is `-N`.
pub fn classify(stderr: &str, elapsed: Duration, retransmit: Duration) -> Failure {
    let text = stderr.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    if has(&[
        "is not what we requested",
        "unable to get channel cipher suites",
        "unsupported cipher suite",
        "invalid cipher suite",
    ]) {
        return Failure::CipherSuite;
    }
    if has(&[
        "rakp 2 hmac is invalid",
        "rakp 2 message indicates an error",
        "unauthorized name",
        "invalid integrity check",
        "invalid role",
        "no response from rakp 1",
        "no response from rakp 3",
        "password is incorrect",
    ]) {
        return Failure::AuthRefused;
    }
    if has(&[
        "invalid command",
        "invalid data field",
        "not supported",
        "insufficient privilege",
        "command not supported",
    ]) {
        return Failure::Refused;
    }
    if text.contains("unable to establish ipmi v2 / rmcp+ session") {
        // Without an answer ipmitool waits at least one retransmit timeout before giving up.
        return if elapsed < retransmit {
            Failure::AuthRefused
        } else {
            Failure::Unreachable
        };
    }
    if has(&[
        "no response",
        "timeout",
        "timed out",
        "get auth capabilities error",
        "unable to get channel authentication capabilities",
        "address lookup",
        "network is unreachable",
        "no route to host",
    ]) {
        return Failure::Unreachable;
    }
    Failure::Busy
}

/// ipmitool's messages in one line, for an error.
fn summary(stderr: &str, stdout: &str, status: std::process::ExitStatus) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .chain(stdout.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut text = if lines.is_empty() {
        format!("ipmitool failed ({status}) without a message")
    } else {
        lines.join("; ")
    };
    if text.len() > 300 {
        let cut = (0..=300)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn driver(user: Option<&str>, address: &str, suite: Option<u8>) -> Ipmi {
        let login = Login {
            credential: "bmc".into(),
            user: user.map(String::from),
            password: "s3cret-pw".into(),
        };
        let cred: Credential = toml::from_str("").unwrap();
        let cred = Credential {
            ipmi_cipher_suite: suite,
            ..cred
        };
        Ipmi::new("Server-1", address, login, &cred, &Power::default()).unwrap()
    }

    #[test]
    fn argv_names_interface_host_port_user_suite_and_retries_but_never_the_password() {
        let d = driver(Some("admin"), "10.0.0.5:6230", Some(3));
        let argv = d.argv(&["power", "status"]);
        assert_eq!(
            argv.join(" "),
            "-I lanplus -H 10.0.0.5 -p 6230 -U admin -C 3 -N 1 -R 1 -E power status"
        );
        assert!(!argv.iter().any(|a| a.contains("s3cret")));
        assert!(!argv.iter().any(|a| a == "-P"));
    }

    #[test]
    fn argv_defaults_to_port_623_and_cipher_suite_17_and_omits_a_missing_user() {
        let argv = driver(None, "bmc-7.example", None).argv(&["chassis", "bootdev", "pxe"]);
        assert_eq!(
            argv.join(" "),
            "-I lanplus -H bmc-7.example -p 623 -C 17 -N 1 -R 1 -E chassis bootdev pxe"
        );
    }

    #[test]
    fn bmc_address_is_host_or_host_port_or_ipv6() {
        let ok = |a: &str| parse_address(a).unwrap();
        assert_eq!(ok("10.0.0.5"), ("10.0.0.5".into(), 623));
        assert_eq!(ok(" 10.0.0.5:6230 "), ("10.0.0.5".into(), 6230));
        assert_eq!(ok("fd00::5"), ("fd00::5".into(), 623));
        assert_eq!(ok("[fd00::5]"), ("fd00::5".into(), 623));
        assert_eq!(ok("[fd00::5]:6230"), ("fd00::5".into(), 6230));
        for bad in [
            "",
            ":623",
            "10.0.0.5:x",
            "10.0.0.5:0",
            "[fd00::5",
            "-oops",
            "a b",
        ] {
            assert!(parse_address(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            driver(None, "[fd00::5]:6230", None).address,
            "[fd00::5]:6230"
        );
    }

    #[test]
    fn power_status_is_read_from_any_line_in_any_case() {
        use PowerState::*;
        let cases = [
            ("Chassis Power is on\n", Some(On)),
            ("Chassis Power is off", Some(Off)),
            ("  chassis power is ON \r\n", Some(On)),
            (
                "Get HPM.x Capabilities request failed\nChassis Power is off\n",
                Some(Off),
            ),
            ("Chassis Power Control: Up/On\n", None),
            ("Chassis Power is unknown\n", None),
            ("", None),
        ];
        for (out, want) in cases {
            assert_eq!(parse_power_status(out), want, "{out:?}");
        }
    }

    #[test]
    fn failures_are_classified_from_messages_and_duration() {
        let n = Duration::from_secs(1);
        let fast = Duration::from_millis(80);
        let slow = Duration::from_millis(2200);
        let session = "Error: Unable to establish IPMI v2 / RMCP+ session\n";
        let cases = [
            (session, fast, Failure::AuthRefused),
            (session, slow, Failure::Unreachable),
            (
                "Authentication algorithm 0x01 is not what we requested 0x03\n\nError: Unable to establish IPMI v2 / RMCP+ session",
                fast,
                Failure::CipherSuite,
            ),
            (
                "> Error: no response from RAKP 1 message\nSet Session Privilege Level to ADMINISTRATOR failed\nError: Unable to establish IPMI v2 / RMCP+ session",
                Duration::from_secs(5),
                Failure::AuthRefused,
            ),
            ("RAKP 2 HMAC is invalid\n", fast, Failure::AuthRefused),
            (
                "RAKP 2 message indicates an error : unauthorized name\n",
                fast,
                Failure::AuthRefused,
            ),
            (
                "Set Chassis Power Control to Cycle failed: Invalid data field in request\n",
                fast,
                Failure::Refused,
            ),
            ("Get Auth Capabilities error\n", slow, Failure::Unreachable),
            ("Close Session command failed\n", fast, Failure::Busy),
            ("", fast, Failure::Busy),
        ];
        for (stderr, elapsed, want) in cases {
            assert_eq!(classify(stderr, elapsed, n), want, "{stderr:?}");
        }
    }

    #[test]
    fn error_summary_is_one_bounded_line() {
        use std::os::unix::process::ExitStatusExt;
        let status = std::process::ExitStatus::from_raw(256);
        assert_eq!(summary("a\n\n b \n", "c\n", status), "a; b; c");
        assert_eq!(
            summary("", "", status),
            "ipmitool failed (exit status: 1) without a message"
        );
        assert!(summary(&"é".repeat(400), "", status).chars().count() <= 301);
    }
}
