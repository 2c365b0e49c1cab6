//! Bare-metal power: switching a machine on and off through its BMC (DESIGN.md §6,
//! FACILITY.md), with IPMI (`ipmi.rs`, ipmitool lanplus) or Redfish (`redfish.rs`, HTTP).
//!
//! The rules the users of other systems learnt the hard way live here once, for both
//! protocols, in [`Controller`]:
//! - **No success before the state is observed** (metal3 #290): a command is issued, then the
//!   BMC is polled until it reports the new state; BMCs report late (sidero #257).
//! - **One command at a time per BMC**: every driver of the process that talks to the same
//!   BMC address shares one async mutex, held for a whole command-and-poll sequence.
//! - **Errors are retryable or fatal** (MAAS): no answer, HTTP 409/5xx and failed ipmitool
//!   runs are sent again a few times with backoff; refused logins, unknown systems and bad
//!   configuration fail at once. Every error names the machine and the BMC and says what to do.
//!
//! The protocols only implement [`Bmc`]: read the power, send one command, set the next boot.
//! [`for_machine`] builds a driver from a machine's inventory row and the configuration; the
//! job engine and `nhn power` call it.

pub mod ipmi;
pub mod redfish;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::config::{Config, Credential, Power};
use crate::facility::BoxFuture;
use crate::inventory::Tx;
use crate::inventory::machines::Machines;
use crate::inventory::site::PowerDriver as DriverKind;

/// What a BMC reports. Only a BMC that says "off" counts as off: a machine that is
/// powering off is still on (fencing must not trust it yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    On,
    Off,
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PowerState::On => "on",
            PowerState::Off => "off",
        })
    }
}

/// What the caller wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    On,
    /// Graceful shutdown (ACPI soft-off), forced after `[power] soft_off_secs`.
    Off,
    /// Cut the power at once.
    ForceOff,
    /// Hard reset of a running machine; a machine that is off is powered on.
    Reset,
}

impl PowerAction {
    /// The state that proves the action happened.
    pub fn target(self) -> PowerState {
        match self {
            PowerAction::On | PowerAction::Reset => PowerState::On,
            PowerAction::Off | PowerAction::ForceOff => PowerState::Off,
        }
    }
}

impl fmt::Display for PowerAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PowerAction::On => "power on",
            PowerAction::Off => "power off",
            PowerAction::ForceOff => "forced power off",
            PowerAction::Reset => "reset",
        })
    }
}

/// One command a BMC understands (the protocols' common ground).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    On,
    ForceOff,
    GracefulShutdown,
    ForceRestart,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Command::On => "power on",
            Command::ForceOff => "forced power off",
            Command::GracefulShutdown => "graceful shutdown",
            Command::ForceRestart => "reset",
        })
    }
}

/// A failed power operation. [`Error::is_retryable`] tells the job engine whether trying
/// again later may help.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("machine {machine}: {problem}")]
    Config { machine: String, problem: String },
    #[error(
        "machine {machine}: BMC {bmc} refused the login ({detail}); check user and password in \
         [credentials.{credential}]{hint}"
    )]
    AuthRefused {
        machine: String,
        bmc: String,
        credential: String,
        detail: String,
        /// Protocol-specific advice, e.g. about the IPMI cipher suite.
        hint: String,
    },
    #[error(
        "machine {machine}: BMC {bmc} did not answer ({detail}); check that the machine's \
         bmc_address is right and that the BMC is powered and reachable from the appliance"
    )]
    Unreachable {
        machine: String,
        bmc: String,
        detail: String,
    },
    #[error(
        "machine {machine}: BMC {bmc} failed {operation} ({detail}); it may be busy: try again \
         in a minute"
    )]
    Busy {
        machine: String,
        bmc: String,
        operation: String,
        detail: String,
    },
    #[error(
        "machine {machine}: BMC {bmc} has no system {system:?} ({detail}); set redfish_system in \
         [credentials.{credential}] to a system it has"
    )]
    UnknownSystem {
        machine: String,
        bmc: String,
        system: String,
        credential: String,
        detail: String,
    },
    #[error(
        "machine {machine}: BMC {bmc} refused {operation} ({detail}); the BMC may not support it"
    )]
    Refused {
        machine: String,
        bmc: String,
        operation: String,
        detail: String,
    },
    #[error(
        "machine {machine}: BMC {bmc} gave an answer to {operation} that nhn cannot read: {detail}"
    )]
    Protocol {
        machine: String,
        bmc: String,
        operation: String,
        detail: String,
    },
    #[error(
        "machine {machine}: TLS to BMC {bmc} failed ({detail}); set ca_file in \
         [credentials.{credential}] to the CA that signed the BMC's certificate (insecure = true \
         skips the check, which lets anyone on the path impersonate the BMC)"
    )]
    Tls {
        machine: String,
        bmc: String,
        credential: String,
        detail: String,
    },
    #[error(
        "machine {machine}: BMC {bmc} took the {action} command, but the machine still reads \
         {seen} after {waited_secs:.1} s; retry with a longer --timeout (or [power] timeout_secs), \
         or check the machine at its console"
    )]
    NotObserved {
        machine: String,
        bmc: String,
        action: PowerAction,
        /// The last state read, or the last error of the polls.
        seen: String,
        waited_secs: f64,
    },
}

impl Error {
    /// True for failures that may go away by themselves (no answer, a busy BMC, a state
    /// change that is late); false for the ones that need an operator.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Unreachable { .. } | Error::Busy { .. } | Error::NotObserved { .. }
        )
    }
}

/// A BMC protocol: one request each, no retries, no waiting (the [`Controller`] does that).
pub trait Bmc: Send + Sync {
    /// The BMC's address as shown in errors and used as the lock key (`host:port`, a URL).
    fn address(&self) -> &str;
    fn power_state(&self) -> BoxFuture<'_, Result<PowerState, Error>>;
    fn send(&self, command: Command) -> BoxFuture<'_, Result<(), Error>>;
    /// The next boot (only) from the network.
    fn boot_once_pxe(&self) -> BoxFuture<'_, Result<(), Error>>;
}

/// The power driver of one bare-metal machine.
pub trait PowerDriver: Send + Sync {
    /// The machine's name (from the inventory).
    fn machine(&self) -> &str;
    /// The BMC's address, for messages.
    fn bmc(&self) -> &str;
    /// What the BMC reports now.
    fn get_state(&self) -> BoxFuture<'_, Result<PowerState, Error>>;
    /// Issues `action` and returns once the BMC reports its target state, or fails once
    /// `timeout` has passed without it. Already in the target state: nothing is sent.
    fn set_state(
        &self,
        action: PowerAction,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<PowerState, Error>>;
    /// The next boot (only) from the network (PXE); takes effect at the next power on or reset.
    fn set_boot_once_pxe(&self) -> BoxFuture<'_, Result<(), Error>>;
}

pub use crate::inventory::machines::MachineBmc;

/// The power settings of machine `name`, or `None` if the inventory has no such machine.
pub fn machine_bmc(tx: &Tx<'_>, name: &str) -> crate::inventory::Result<Option<MachineBmc>> {
    tx.bmc(name)
}

/// The power driver for `machine`, from its `power_driver`, `bmc_address` and
/// `bmc_credentials` and the configuration's `[credentials.NAME]` and `[power]`.
/// Nothing is sent to the BMC yet.
pub fn for_machine(machine: &MachineBmc, config: &Config) -> Result<Arc<dyn PowerDriver>, Error> {
    let name = &machine.name;
    let config_err = |problem: String| Error::Config {
        machine: name.clone(),
        problem,
    };
    let address = machine
        .address
        .as_deref()
        .filter(|a| !a.trim().is_empty())
        .ok_or_else(|| {
            config_err(
                "no bmc_address in the inventory; set it in the site file and import it".into(),
            )
        })?;
    let cred_name = machine.credential.as_deref().ok_or_else(|| {
        config_err(
            "no bmc_credentials in the inventory; name a [credentials.NAME] section in the \
             site file's machine and import it"
                .into(),
        )
    })?;
    let cred = config.credentials.get(cred_name).ok_or_else(|| {
        config_err(format!(
            "credential {cred_name:?} is not in the configuration; add [credentials.{cred_name}] \
             with user and password (or password_file)"
        ))
    })?;
    let login = Login::from_credential(cred_name, cred).map_err(config_err)?;
    let bmc: Box<dyn Bmc> = match machine.driver {
        DriverKind::Ipmi => Box::new(ipmi::Ipmi::new(name, address, login, cred, &config.power)?),
        DriverKind::Redfish => Box::new(redfish::Redfish::new(
            name,
            address,
            login,
            cred,
            &config.power,
        )?),
        DriverKind::None | DriverKind::Agent => {
            return Err(config_err(format!(
                "power_driver is {:?}, not a BMC; set power_driver = \"ipmi\" or \"redfish\" and \
                 bmc_address in the site file",
                crate::inventory::site::store::enum_str(&machine.driver)
            )));
        }
    };
    Ok(Arc::new(Controller::new(name, bmc, &config.power)))
}

/// The user and password of a `[credentials.NAME]` section, read once.
#[derive(Clone)]
pub struct Login {
    /// The section's name, for errors.
    pub credential: String,
    pub user: Option<String>,
    pub password: String,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("credential", &self.credential)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Login {
    fn from_credential(name: &str, cred: &Credential) -> Result<Login, String> {
        let password = Credential::secret(
            cred.password.as_ref(),
            cred.password_file.as_ref(),
            "password",
        )
        .map_err(|e| format!("credential {name:?}: {e}"))?
        .ok_or_else(|| {
            format!("credential {name:?} has no password; add password or password_file to [credentials.{name}]")
        })?;
        Ok(Login {
            credential: name.to_owned(),
            user: cred.user.clone(),
            password,
        })
    }
}

/// One async mutex per BMC address, shared by every driver of the process: a BMC gets one
/// command at a time, whoever sends it.
fn bmc_lock(key: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: LazyLock<Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>> =
        LazyLock::new(Mutex::default);
    let mut locks = LOCKS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(lock) = locks.get(key).and_then(Weak::upgrade) {
        return lock;
    }
    locks.retain(|_, w| w.strong_count() > 0);
    let lock = Arc::new(tokio::sync::Mutex::new(()));
    locks.insert(key.to_owned(), Arc::downgrade(&lock));
    lock
}

/// Waits and retries of [`Controller`], from `[power]`.
#[derive(Debug, Clone, Copy)]
struct Timing {
    soft_off: Duration,
    poll_initial: Duration,
    poll_max: Duration,
    retries: u32,
    retry_initial: Duration,
}

impl Timing {
    fn from_config(p: &Power) -> Timing {
        Timing {
            soft_off: Duration::from_secs(p.soft_off_secs),
            poll_initial: Duration::from_millis(p.poll_initial_ms.max(10)),
            poll_max: Duration::from_millis(p.poll_max_ms.max(p.poll_initial_ms).max(10)),
            retries: p.retries,
            retry_initial: Duration::from_millis(p.retry_initial_ms),
        }
    }

    /// The wait before poll `n` (0-based): `poll_initial`, growing by half up to `poll_max`.
    fn poll_interval(&self, n: u32) -> Duration {
        let grown = self.poll_initial.as_secs_f64() * 1.5f64.powi(n.min(32) as i32);
        Duration::from_secs_f64(grown.min(self.poll_max.as_secs_f64()))
    }
}

/// The [`PowerDriver`] over a [`Bmc`]: the per-BMC lock, retries and polling.
struct Controller {
    machine: String,
    bmc: Box<dyn Bmc>,
    lock: Arc<tokio::sync::Mutex<()>>,
    timing: Timing,
}

impl Controller {
    fn new(machine: &str, bmc: Box<dyn Bmc>, power: &Power) -> Controller {
        Controller {
            machine: machine.to_owned(),
            lock: bmc_lock(bmc.address()),
            bmc,
            timing: Timing::from_config(power),
        }
    }

    async fn read(&self) -> Result<PowerState, Error> {
        let bmc = &*self.bmc;
        self.retrying("power status", || bmc.power_state()).await
    }

    async fn send(&self, command: Command) -> Result<(), Error> {
        let bmc = &*self.bmc;
        tracing::info!(machine = %self.machine, bmc = %bmc.address(), "sending {command}");
        self.retrying(&command.to_string(), || bmc.send(command))
            .await
    }

    /// Runs `op` until it succeeds, fails fatally, or has been retried `[power] retries` times.
    async fn retrying<'a, T, F>(&'a self, what: &str, mut op: F) -> Result<T, Error>
    where
        F: FnMut() -> BoxFuture<'a, Result<T, Error>>,
    {
        let mut delay = self.timing.retry_initial;
        let mut attempt = 0;
        loop {
            match op().await {
                Err(e) if e.is_retryable() && attempt < self.timing.retries => {
                    attempt += 1;
                    tracing::warn!(machine = %self.machine, bmc = %self.bmc.address(), attempt,
                        "{what} failed, retrying in {delay:?}: {e}");
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                }
                other => return other,
            }
        }
    }

    /// Polls until the BMC reports `target` or `deadline` passes. Transient poll failures
    /// are polled through; a fatal one ends the wait.
    async fn wait_for(
        &self,
        action: PowerAction,
        target: PowerState,
        started: Instant,
        deadline: Instant,
    ) -> Result<PowerState, Error> {
        let mut seen = "no answer yet".to_owned();
        for n in 0.. {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            tokio::time::sleep(self.timing.poll_interval(n).min(deadline - now)).await;
            match self.bmc.power_state().await {
                Ok(state) if state == target => {
                    tracing::info!(machine = %self.machine, bmc = %self.bmc.address(),
                        "{action}: {state} after {:.1} s", started.elapsed().as_secs_f64());
                    return Ok(state);
                }
                Ok(state) => seen = state.to_string(),
                Err(e) if e.is_retryable() => seen = format!("a failed poll: {e}"),
                Err(e) => return Err(e),
            }
        }
        Err(Error::NotObserved {
            machine: self.machine.clone(),
            bmc: self.bmc.address().to_owned(),
            action,
            seen,
            waited_secs: started.elapsed().as_secs_f64(),
        })
    }

    async fn change(&self, action: PowerAction, timeout: Duration) -> Result<PowerState, Error> {
        let _one_at_a_time = self.lock.lock().await;
        let started = Instant::now();
        let deadline = started + timeout;
        let target = action.target();
        let now = self.read().await?;
        if action != PowerAction::Reset && now == target {
            tracing::info!(machine = %self.machine, "{action}: already {now}, nothing sent");
            return Ok(now);
        }
        let command = match (action, now) {
            (PowerAction::On, _) | (PowerAction::Reset, PowerState::Off) => Command::On,
            (PowerAction::Reset, PowerState::On) => Command::ForceRestart,
            (PowerAction::ForceOff, _) => Command::ForceOff,
            (PowerAction::Off, _) => Command::GracefulShutdown,
        };
        if command != Command::GracefulShutdown {
            self.send(command).await?;
            return self.wait_for(action, target, started, deadline).await;
        }
        // Graceful first; forced once the grace period is over, keeping a quarter of the
        // timeout for the forced off to be observed.
        let graceful = match self.send(Command::GracefulShutdown).await {
            Ok(()) => {
                let soft_deadline =
                    (deadline - timeout / 4).min(Instant::now() + self.timing.soft_off);
                self.wait_for(action, target, started, soft_deadline).await
            }
            Err(e) => Err(e),
        };
        match graceful {
            Ok(state) => Ok(state),
            Err(e @ (Error::NotObserved { .. } | Error::Refused { .. })) => {
                tracing::warn!(machine = %self.machine, bmc = %self.bmc.address(),
                    "graceful shutdown did not finish ({e}); forcing the power off");
                self.send(Command::ForceOff).await?;
                self.wait_for(action, target, started, deadline).await
            }
            Err(e) => Err(e),
        }
    }
}

impl PowerDriver for Controller {
    fn machine(&self) -> &str {
        &self.machine
    }

    fn bmc(&self) -> &str {
        self.bmc.address()
    }

    fn get_state(&self) -> BoxFuture<'_, Result<PowerState, Error>> {
        Box::pin(async move {
            let _one_at_a_time = self.lock.lock().await;
            self.read().await
        })
    }

    fn set_state(
        &self,
        action: PowerAction,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<PowerState, Error>> {
        Box::pin(self.change(action, timeout))
    }

    fn set_boot_once_pxe(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let _one_at_a_time = self.lock.lock().await;
            let bmc = &*self.bmc;
            self.retrying("boot override", || bmc.boot_once_pxe())
                .await?;
            tracing::info!(machine = %self.machine, bmc = %bmc.address(), "next boot: network (PXE), once");
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A BMC in memory: a command takes effect after `delay_polls` state reads.
    #[derive(Default)]
    struct Fake {
        address: String,
        s: Mutex<FakeState>,
    }

    #[derive(Default)]
    struct FakeState {
        on: bool,
        pending: Option<(bool, u32)>,
        delay_polls: u32,
        ignore_graceful: bool,
        sent: Vec<Command>,
        failures: VecDeque<Error>,
        reads: u32,
        in_flight: u32,
        max_in_flight: u32,
    }

    impl Fake {
        fn new(address: &str, on: bool, delay_polls: u32) -> Arc<Fake> {
            let fake = Fake {
                address: address.into(),
                ..Fake::default()
            };
            {
                let mut s = fake.state();
                s.on = on;
                s.delay_polls = delay_polls;
            }
            Arc::new(fake)
        }

        fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
            self.s.lock().unwrap()
        }

        /// Counts a request in flight for a few ms; the next queued failure, if any.
        async fn request(&self) -> Result<(), Error> {
            {
                let mut s = self.state();
                s.in_flight += 1;
                s.max_in_flight = s.max_in_flight.max(s.in_flight);
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
            let mut s = self.state();
            s.in_flight -= 1;
            s.failures.pop_front().map_or(Ok(()), Err)
        }
    }

    impl Bmc for Arc<Fake> {
        fn address(&self) -> &str {
            &self.address
        }

        fn power_state(&self) -> BoxFuture<'_, Result<PowerState, Error>> {
            Box::pin(async move {
                self.request().await?;
                let mut s = self.state();
                s.reads += 1;
                if let Some((on, left)) = s.pending {
                    if left == 0 {
                        s.on = on;
                        s.pending = None;
                    } else {
                        s.pending = Some((on, left - 1));
                    }
                }
                Ok(if s.on {
                    PowerState::On
                } else {
                    PowerState::Off
                })
            })
        }

        fn send(&self, command: Command) -> BoxFuture<'_, Result<(), Error>> {
            Box::pin(async move {
                self.request().await?;
                let mut s = self.state();
                s.sent.push(command);
                let delay = s.delay_polls;
                match command {
                    Command::On | Command::ForceRestart => s.pending = Some((true, delay)),
                    Command::ForceOff => s.pending = Some((false, delay)),
                    Command::GracefulShutdown if !s.ignore_graceful => {
                        s.pending = Some((false, delay))
                    }
                    Command::GracefulShutdown => {}
                }
                Ok(())
            })
        }

        fn boot_once_pxe(&self) -> BoxFuture<'_, Result<(), Error>> {
            Box::pin(async move { self.request().await })
        }
    }

    fn power() -> Power {
        Power {
            soft_off_secs: 1,
            poll_initial_ms: 10,
            poll_max_ms: 20,
            retries: 2,
            retry_initial_ms: 5,
            ..Power::default()
        }
    }

    fn controller(fake: &Arc<Fake>, power: &Power) -> Controller {
        Controller::new("Server-1", Box::new(fake.clone()), power)
    }

    fn busy() -> Error {
        Error::Busy {
            machine: "Server-1".into(),
            bmc: "fake".into(),
            operation: "power on".into(),
            detail: "HTTP 409".into(),
        }
    }

    fn auth() -> Error {
        Error::AuthRefused {
            machine: "Server-1".into(),
            bmc: "fake".into(),
            credential: "bmc".into(),
            detail: "HTTP 401".into(),
            hint: String::new(),
        }
    }

    const LONG: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn power_on_returns_only_once_the_bmc_reports_on() {
        let fake = Fake::new("fake-on", false, 4);
        let c = controller(&fake, &power());
        assert_eq!(
            c.set_state(PowerAction::On, LONG).await.unwrap(),
            PowerState::On
        );
        let s = fake.state();
        assert_eq!(s.sent, [Command::On]);
        assert!(s.on);
        // One read before the command, then polls until the fifth read after it showed on.
        assert_eq!(s.reads, 1 + 5);
    }

    #[tokio::test]
    async fn a_machine_already_in_the_target_state_gets_no_command() {
        let fake = Fake::new("fake-noop", true, 0);
        let c = controller(&fake, &power());
        assert_eq!(
            c.set_state(PowerAction::On, LONG).await.unwrap(),
            PowerState::On
        );
        assert!(fake.state().sent.is_empty());
    }

    #[tokio::test]
    async fn reset_restarts_a_running_machine_and_powers_on_a_stopped_one() {
        let running = Fake::new("fake-reset-on", true, 1);
        controller(&running, &power())
            .set_state(PowerAction::Reset, LONG)
            .await
            .unwrap();
        assert_eq!(running.state().sent, [Command::ForceRestart]);
        let stopped = Fake::new("fake-reset-off", false, 1);
        controller(&stopped, &power())
            .set_state(PowerAction::Reset, LONG)
            .await
            .unwrap();
        assert_eq!(stopped.state().sent, [Command::On]);
    }

    #[tokio::test]
    async fn off_is_graceful_when_the_os_shuts_down() {
        let fake = Fake::new("fake-soft", true, 2);
        let c = controller(&fake, &power());
        assert_eq!(
            c.set_state(PowerAction::Off, LONG).await.unwrap(),
            PowerState::Off
        );
        assert_eq!(fake.state().sent, [Command::GracefulShutdown]);
    }

    #[tokio::test]
    async fn off_forces_the_power_off_after_the_grace_period() {
        let fake = Fake::new("fake-hard", true, 1);
        fake.state().ignore_graceful = true;
        let c = controller(&fake, &power());
        let started = Instant::now();
        assert_eq!(
            c.set_state(PowerAction::Off, LONG).await.unwrap(),
            PowerState::Off
        );
        assert_eq!(
            fake.state().sent,
            [Command::GracefulShutdown, Command::ForceOff]
        );
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn off_keeps_time_for_the_forced_off_when_the_timeout_is_shorter_than_the_grace() {
        let fake = Fake::new("fake-short", true, 1);
        fake.state().ignore_graceful = true;
        let c = controller(
            &fake,
            &Power {
                soft_off_secs: 60,
                ..power()
            },
        );
        let off = c.set_state(PowerAction::Off, Duration::from_secs(1)).await;
        assert_eq!(off.unwrap(), PowerState::Off);
        assert_eq!(
            fake.state().sent,
            [Command::GracefulShutdown, Command::ForceOff]
        );
    }

    #[tokio::test]
    async fn a_state_never_reached_fails_retryably_after_the_timeout_naming_what_was_seen() {
        let fake = Fake::new("fake-stuck", true, 1_000_000);
        let c = controller(&fake, &power());
        let started = Instant::now();
        let e = c
            .set_state(PowerAction::ForceOff, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(e.is_retryable());
        let text = e.to_string();
        assert!(text.contains("still reads on"), "{text}");
        assert!(
            text.contains("Server-1") && text.contains("fake-stuck"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn transient_failures_are_retried_and_fatal_ones_are_not() {
        let fake = Fake::new("fake-busy", false, 0);
        fake.state().failures = [busy(), busy()].into();
        let c = controller(&fake, &power());
        assert_eq!(c.get_state().await.unwrap(), PowerState::Off);

        let fake = Fake::new("fake-very-busy", false, 0);
        fake.state().failures = [busy(), busy(), busy()].into();
        let e = controller(&fake, &power()).get_state().await.unwrap_err();
        assert!(matches!(e, Error::Busy { .. }), "{e}");

        let fake = Fake::new("fake-auth", false, 0);
        fake.state().failures = [auth(), busy()].into();
        let e = controller(&fake, &power()).get_state().await.unwrap_err();
        assert!(matches!(e, Error::AuthRefused { .. }), "{e}");
        assert!(!e.is_retryable());
        assert_eq!(
            fake.state().failures.len(),
            1,
            "the fatal error was retried"
        );
    }

    #[tokio::test]
    async fn one_command_at_a_time_per_bmc_across_drivers() {
        let fake = Fake::new("fake-shared", false, 3);
        let a = controller(&fake, &power());
        let b = controller(&fake, &power());
        let (x, y, z) = tokio::join!(
            a.set_state(PowerAction::On, LONG),
            b.get_state(),
            b.set_boot_once_pxe()
        );
        x.unwrap();
        y.unwrap();
        z.unwrap();
        assert_eq!(fake.state().max_in_flight, 1);
    }

    #[test]
    fn polls_start_fast_and_slow_down_to_the_configured_maximum() {
        let t = Timing::from_config(&Power {
            poll_initial_ms: 250,
            poll_max_ms: 3000,
            ..Power::default()
        });
        let ms: Vec<u128> = (0..9).map(|n| t.poll_interval(n).as_millis()).collect();
        assert_eq!(ms, [250, 375, 562, 843, 1265, 1898, 2847, 3000, 3000]);
    }

    #[test]
    fn retryable_errors_are_the_ones_that_may_pass() {
        assert!(busy().is_retryable());
        assert!(!auth().is_retryable());
        let config = Error::Config {
            machine: "m".into(),
            problem: "p".into(),
        };
        assert!(!config.is_retryable());
    }

    fn machine(driver: DriverKind, address: Option<&str>, credential: Option<&str>) -> MachineBmc {
        MachineBmc {
            name: "Server-1".into(),
            driver,
            address: address.map(String::from),
            credential: credential.map(String::from),
        }
    }

    #[test]
    fn for_machine_says_what_is_missing_in_the_site_or_the_configuration() {
        let config = Config::parse(
            std::path::Path::new("x.toml"),
            "[credentials.bmc]\nuser = \"admin\"\npassword = \"pw\"\n[credentials.nopw]\nuser = \"admin\"\n",
        )
        .unwrap();
        let err = |m: MachineBmc| match for_machine(&m, &config) {
            Ok(_) => panic!("{m:?} accepted"),
            Err(e) => {
                assert!(!e.is_retryable());
                e.to_string()
            }
        };
        let e = err(machine(DriverKind::None, Some("10.0.0.5"), Some("bmc")));
        assert!(e.contains("power_driver is \"none\""), "{e}");
        let e = err(machine(DriverKind::Ipmi, None, Some("bmc")));
        assert!(e.contains("no bmc_address"), "{e}");
        let e = err(machine(DriverKind::Ipmi, Some("10.0.0.5"), None));
        assert!(e.contains("no bmc_credentials"), "{e}");
        let e = err(machine(DriverKind::Ipmi, Some("10.0.0.5"), Some("other")));
        assert!(e.contains("add [credentials.other]"), "{e}");
        let e = err(machine(DriverKind::Redfish, Some("10.0.0.5"), Some("nopw")));
        assert!(e.contains("has no password"), "{e}");
        let ok = for_machine(
            &machine(DriverKind::Ipmi, Some("10.0.0.5"), Some("bmc")),
            &config,
        );
        assert_eq!(
            ok.map(|d| d.bmc().to_owned()).ok().as_deref(),
            Some("10.0.0.5:623")
        );
        let ok = for_machine(
            &machine(DriverKind::Redfish, Some("10.0.0.5"), Some("bmc")),
            &config,
        );
        assert_eq!(
            ok.map(|d| d.bmc().to_owned()).ok().as_deref(),
            Some("https://10.0.0.5")
        );
    }
}
