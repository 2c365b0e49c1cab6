//! Durable async requests (HAAS-API.md §3.2 layer 3, §3.3): the job engine.
//!
//! The `requests` table *is* the queue, so queued and running requests survive kill -9. The
//! engine wakes when a call queues a request (or a result frees a slot), picks the next
//! request **round-robin across customers** ([`pick`]) within each customer's `max_in_flight`
//! and the global `workers`, marks it `running` and hands it to the facility [`Driver`].
//! Results arrive through `reportRequestResult` ([`complete`]); the reconciler fails requests
//! whose deadline passed (asking the facility first) and purges old terminal requests. At
//! start, running requests are reconciled: finished ones are applied, unknown ones dispatched
//! again (dispatch is idempotent per request id on the facility side).
//!
//! VM moves ([`moves`], `nhn vm move`) are the one kind of work the engine runs itself: they
//! change only the inventory and wait for the switches' read-backs, so no facility is
//! involved. `claim` routes them to the moves runner instead of the driver, recovery at
//! start runs running moves again (their steps are idempotent), and the reconciler takes over
//! an overdue move that no runner of this engine holds.

pub mod boot;
pub mod complete;
pub mod edge;
pub mod hosts;
pub mod machine;
pub mod moves;
pub mod resolve;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::config;
use crate::facility::{Command, Dispatch, Driver, Error, Status};
use crate::inventory::requests::{Job, Requests};
use crate::inventory::vms::Vms;
use crate::inventory::{self, Inventory, Tx};
use crate::model::Work;
use crate::switch::vlans::VlanSet;
use crate::util::unix_now;
use boot::BootFiles;
use complete::Outcome;
use moves::MoveJob;
use resolve::VmBoot;

/// A fresh request id: five groups of eight hex digits (IIJ's form).
pub fn new_request_id() -> String {
    let mut b = [0u8; 20];
    rand::fill(&mut b);
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..16],
        &hex[16..24],
        &hex[24..32],
        &hex[32..40]
    )
}

/// How long the facility has for each async method (§3.3), counted from dispatch.
pub fn deadline_secs(config: &config::Api, method: &str) -> i64 {
    let secs = match method {
        "restoreImage" => config.restore_deadline_secs,
        "powerOnVm" | "powerOffVm" | "resetVm" => config.power_deadline_secs,
        m if crate::facility::command::MachineOp::from_method(m).is_some() => {
            config.power_deadline_secs
        }
        _ => config.init_deadline_secs,
    };
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// The customer to serve next: the first after `cursor` (in id order, wrapping) that has
/// queued work and a free in-flight slot.
pub fn pick(
    queued: &[i64],
    running: &HashMap<i64, u32>,
    cursor: Option<i64>,
    max_in_flight: u32,
) -> Option<i64> {
    let mut eligible: Vec<i64> = queued
        .iter()
        .copied()
        .filter(|c| running.get(c).copied().unwrap_or(0) < max_in_flight)
        .collect();
    eligible.sort_unstable();
    eligible.dedup();
    let after = cursor.and_then(|cur| eligible.iter().copied().find(|c| *c > cur));
    after.or_else(|| eligible.first().copied())
}

/// The job engine.
pub struct Engine {
    inventory: Inventory,
    config: Arc<config::Api>,
    driver: Arc<dyn Driver>,
    wake: Arc<Notify>,
    options: Options,
    misses: hosts::Misses,
    /// The move requests this engine's runners hold (none runs twice here).
    moving: Mutex<HashSet<String>>,
}

/// How the engine deals with machines.
pub struct Options {
    pub boot: BootFiles,
    /// The reconciler runs: a power-on waits for the edge to confirm the VM's VLANs.
    pub edge_gate: bool,
    /// A host whose agent is silent this long is `unreachable`.
    pub host_dead_secs: u64,
    /// `[switch] infra_vlans`: a move's readiness sees the edges as the planner does.
    pub infra_vlans: VlanSet,
}

/// A claimed request: for the facility, or a VM move the engine runs itself.
#[derive(Debug)]
enum Claimed {
    Facility(Box<Dispatch>),
    Move(MoveJob),
}

/// The request as a dispatch: its stored command, or (not claimed yet, or claimed by an nhn
/// that stored none) the command resolved now.
fn dispatch_of(tx: &Tx<'_>, job: Job, boot: &VmBoot) -> inventory::Result<Dispatch> {
    let stored = job
        .command
        .as_deref()
        .and_then(|c| serde_json::from_str::<Command>(c).ok());
    let command = match (stored, &job.work) {
        (Some(c), _) => c,
        (None, Some(work)) => resolve::command(tx, work, &job.resource_id, boot)?,
        (None, None) => {
            return Err(inventory::Error::Invalid(format!(
                "request {} stores no readable work",
                job.id
            )));
        }
    };
    Ok(Dispatch {
        request_id: job.id,
        method: job.method,
        resource_id: job.resource_id,
        host: job.host,
        command,
    })
}

/// Requests as the moves the engine runs and the dispatches for the facility.
fn split_dispatches(
    tx: &Tx<'_>,
    jobs: Vec<Job>,
    boot: &VmBoot,
) -> inventory::Result<(Vec<MoveJob>, Vec<Dispatch>)> {
    let (moving, rest) = moves::split(jobs);
    let dispatches = rest
        .into_iter()
        .map(|j| dispatch_of(tx, j, boot))
        .collect::<inventory::Result<_>>()?;
    Ok((moving, dispatches))
}

/// Claims the customer's oldest queued request: `running`, deadline from now, its command
/// resolved and stored with the machine it goes to; a move is only marked running.
fn claim(
    tx: &Tx<'_>,
    config: &config::Api,
    customer: i64,
    boot: &VmBoot,
    infra_vlans: &VlanSet,
) -> inventory::Result<Option<Claimed>> {
    let Some(found) = tx.oldest_queued(customer)? else {
        return Ok(None);
    };
    if found.work.is_none() {
        // Written by something other than this nhn: fail it rather than block the queue.
        let outcome = Outcome::Failed {
            error_type: "InternalError".into(),
            message: "the request's stored work cannot be read; make the call again".into(),
        };
        complete::apply(tx, &found.id, &outcome, "engine")?;
        return Ok(None);
    }
    if let Some(job) = MoveJob::of_job(&found) {
        moves::start(tx, &job)?;
        return Ok(Some(Claimed::Move(job)));
    }
    let mut found = found;
    if found.host.is_none() && found.work.as_ref().is_some_and(Work::boots_offline) {
        // An install or configure boot runs on a hypervisor for its duration: placed now,
        // when it runs, so queued work holds no slot.
        let vm_id = tx
            .vm_id_by_name(&found.resource_id)?
            .ok_or_else(|| inventory::Error::NotFound(format!("VM {}", found.resource_id)))?;
        match crate::placement::store::place_for_start(tx, vm_id, infra_vlans)? {
            Ok(choice) => found.host = Some(choice.host),
            Err(why) => {
                tracing::warn!(request_id = %found.id, %why, "no hypervisor can run an offline boot now");
                let outcome = Outcome::Failed {
                    error_type: "ResourceExhausted".into(),
                    message: format!(
                        "no hypervisor can boot VM {} for {} now (capacity or switch MAC budgets); try again later",
                        found.resource_id, found.method
                    ),
                };
                complete::apply(tx, &found.id, &outcome, "engine")?;
                return Ok(None);
            }
        }
    }
    let job = dispatch_of(tx, found, boot)?;
    let now = unix_now();
    tx.start(
        &job.request_id,
        now,
        now + deadline_secs(config, &job.method),
        &serde_json::to_string(&job.command).unwrap_or_default(),
        job.host.as_deref(),
    )?;
    inventory::record_event(tx, crate::model::EventKind::Request, &job.request_id)?;
    Ok(Some(Claimed::Facility(Box::new(job))))
}

impl Engine {
    pub fn new(
        inventory: Inventory,
        config: Arc<config::Api>,
        driver: Arc<dyn Driver>,
        wake: Arc<Notify>,
        options: Options,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            inventory,
            config,
            driver,
            wake,
            options,
            misses: hosts::Misses::default(),
            moving: Mutex::default(),
        })
    }

    /// Applies a host's report (see [`hosts`]).
    pub async fn host_report(
        self: &Arc<Self>,
        host_id: i64,
        report: hosts::HostReport,
    ) -> inventory::Result<()> {
        let engine = self.clone();
        self.inventory
            .write(move |c| hosts::apply(c, host_id, &report, &engine.misses))
            .await?;
        Ok(())
    }

    async fn sweep_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let dead = self.options.host_dead_secs.max(1);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if let Err(e) = self.inventory.write(move |c| hosts::sweep(c, dead)).await {
                tracing::warn!(error = %e, "cannot check for silent hypervisors");
            }
        }
    }

    /// Runs until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let driver = self.driver.clone();
        self.recover(&driver).await;
        let reconciler = tokio::spawn(self.clone().reconcile_loop(driver.clone(), stop.clone()));
        let sweeper = tokio::spawn(self.clone().sweep_loop(stop.clone()));
        let mut cursor = None;
        loop {
            if let Err(e) = self.dispatch_ready(&driver, &mut cursor).await {
                tracing::error!(error = %e, "job engine cannot read the queue; retrying");
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        reconciler.abort();
        sweeper.abort();
    }

    /// Dispatches until no customer has both queued work and a free slot.
    async fn dispatch_ready(
        self: &Arc<Self>,
        driver: &Arc<dyn Driver>,
        cursor: &mut Option<i64>,
    ) -> inventory::Result<()> {
        loop {
            let snap = self.inventory.read(|tx| tx.queue()).await?;
            if snap.running.values().sum::<u32>() >= self.config.workers {
                return Ok(());
            }
            let Some(customer) = pick(
                &snap.queued,
                &snap.running,
                *cursor,
                self.config.max_in_flight,
            ) else {
                return Ok(());
            };
            *cursor = Some(customer);
            let config = self.config.clone();
            let boot = self.options.boot.current().await;
            let infra = self.options.infra_vlans.clone();
            match self
                .inventory
                .write(move |c| claim(c, &config, customer, &boot, &infra))
                .await?
            {
                Some(Claimed::Facility(job)) => self.send(driver.clone(), *job),
                Some(Claimed::Move(job)) => self.run_move(job, false),
                None => {}
            }
        }
    }

    /// Runs a move request's steps ([`moves`]) in a task of its own, then frees the slot.
    /// `again`: a request already running (recovered, or overdue without a runner here) is
    /// marked running anew first, with a fresh deadline. A move this engine runs already is
    /// left to that run.
    fn run_move(self: &Arc<Self>, job: MoveJob, again: bool) {
        if !self.moving_set().insert(job.id.clone()) {
            return;
        }
        let engine = self.clone();
        tokio::spawn(async move {
            tracing::info!(request_id = %job.id, vm = %job.vm, to = ?job.to, again, "moving a VM");
            let restart = job.clone();
            let restarted = if again {
                engine
                    .inventory
                    .write(move |c| moves::start(c, &restart))
                    .await
            } else {
                Ok(())
            };
            let ran = match restarted {
                Ok(()) => {
                    moves::execute(
                        &engine.inventory,
                        &engine.options.infra_vlans,
                        &job,
                        "engine",
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            match ran {
                Ok(Outcome::Failed { message, .. }) => {
                    tracing::warn!(request_id = %job.id, %message, "VM move failed")
                }
                Ok(_) => tracing::info!(request_id = %job.id, vm = %job.vm, "VM move done"),
                Err(e) => tracing::error!(request_id = %job.id, error = %e,
                    "cannot record a VM move; it runs again at the next start"),
            }
            engine.moving_set().remove(&job.id);
            engine.wake.notify_one();
        });
    }

    fn moving_set(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.moving.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands a claimed request to the facility. While the facility is unreachable the
    /// dispatch is retried with backoff for `dispatch_retry_secs`; a refusal, or no answer for
    /// that long, fails the request with BackendError.
    fn send(self: &Arc<Self>, driver: Arc<dyn Driver>, job: Dispatch) {
        let engine = self.clone();
        tokio::spawn(async move {
            let id = job.request_id.clone();
            tracing::info!(request_id = %id, method = %job.method, vm = %job.resource_id, "dispatching");
            let window = Duration::from_secs(engine.config.dispatch_retry_secs);
            let started = tokio::time::Instant::now();
            let mut delay = Duration::from_millis(500);
            if engine.options.edge_gate
                && let Command::PowerOn(spec) = &job.command
                && let Some(host) = &job.host
            {
                let deadline = started + Duration::from_secs(engine.config.power_deadline_secs);
                if let Err(why) = edge::wait(&engine.inventory, host, spec, deadline).await {
                    tracing::warn!(request_id = %id, %why, "the edge did not confirm the VM's VLANs");
                    let outcome = Outcome::Failed {
                        error_type: "BackendError".into(),
                        message: why,
                    };
                    engine.finish(id, outcome, "engine").await;
                    return;
                }
            }
            let error = loop {
                match driver.dispatch(job.clone()).await {
                    Ok(()) => return,
                    Err(e @ Error::Unreachable { .. }) if started.elapsed() + delay <= window => {
                        tracing::warn!(request_id = %id, error = %e, retry_in_ms = delay.as_millis() as u64,
                            "facility unreachable; dispatch will be retried");
                        metrics::counter!("nhn_facility_dispatch_retries_total").increment(1);
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(8));
                    }
                    Err(e) => break e,
                }
            };
            tracing::warn!(request_id = %id, error = %error, "facility did not take the request");
            let outcome = Outcome::Failed {
                error_type: "BackendError".into(),
                message: error.to_string(),
            };
            engine.finish(id, outcome, "engine").await;
        });
    }

    /// Applies an outcome (idempotent) and frees the slot.
    pub async fn finish(&self, id: String, outcome: Outcome, actor: &'static str) {
        let applied = self
            .inventory
            .write(move |c| complete::apply(c, &id, &outcome, actor))
            .await;
        if let Err(e) = applied {
            tracing::error!(error = %e, "cannot record a request result");
        }
        self.wake.notify_one();
    }

    /// Applies the results of requests carried out in this process (bare-metal power,
    /// [`crate::facility::machine`]) until every sender is gone.
    pub async fn apply_results(
        self: Arc<Self>,
        mut results: tokio::sync::mpsc::UnboundedReceiver<crate::facility::machine::Finished>,
    ) {
        while let Some((id, status)) = results.recv().await {
            if let Some(outcome) = Outcome::from_status(status) {
                self.finish(id, outcome, "power").await;
            }
        }
    }

    /// A facility callback: applies the outcome; `Ok(false)` if the request was unknown or
    /// already terminal (callbacks are idempotent).
    pub async fn report(&self, id: String, outcome: Outcome) -> inventory::Result<bool> {
        let applied = self
            .inventory
            .write(move |c| complete::apply(c, &id, &outcome, "facility"))
            .await?;
        self.wake.notify_one();
        Ok(applied == complete::Applied::Applied)
    }

    /// At start: running requests from before a crash are applied, left to run, or re-sent;
    /// running moves are run again.
    async fn recover(self: &Arc<Self>, driver: &Arc<dyn Driver>) {
        let boot = self.options.boot.current().await;
        let (moving, running) = match self
            .inventory
            .read(move |tx| split_dispatches(tx, tx.running()?, &boot))
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read running requests at start");
                return;
            }
        };
        for job in moving {
            self.run_move(job, true);
        }
        for job in running {
            match driver.status(job.clone()).await {
                Ok(Status::Running) => {}
                Ok(Status::Unknown) => self.send(driver.clone(), job),
                Ok(status) => {
                    if let Some(outcome) = Outcome::from_status(status) {
                        self.finish(job.request_id, outcome, "reconciler").await;
                    }
                }
                Err(e) => tracing::warn!(request_id = %job.request_id, error = %e,
                    "cannot ask the facility about a running request; the reconciler will retry"),
            }
        }
    }

    async fn reconcile_loop(
        self: Arc<Self>,
        driver: Arc<dyn Driver>,
        mut stop: watch::Receiver<bool>,
    ) {
        let every = Duration::from_secs(self.config.reconcile_interval_secs.max(1));
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(every) => {}
            }
            self.reconcile(&driver).await;
        }
    }

    /// Fails running requests past their deadline (unless the facility has the answer), runs
    /// overdue moves that no runner here holds again, and purges terminal requests past the
    /// retention period.
    pub async fn reconcile(self: &Arc<Self>, driver: &Arc<dyn Driver>) {
        let now = unix_now();
        let boot = self.options.boot.current().await;
        let (moving, overdue) = match self
            .inventory
            .read(move |tx| split_dispatches(tx, tx.overdue(now)?, &boot))
            .await
        {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "reconciler cannot read the queue");
                return;
            }
        };
        for job in moving {
            self.run_move(job, true);
        }
        for job in overdue {
            let outcome = match driver.status(job.clone()).await {
                Ok(status) => Outcome::from_status(status),
                Err(_) => None,
            }
            .unwrap_or(Outcome::TimedOut);
            self.finish(job.request_id, outcome, "reconciler").await;
        }
        let days = self.config.request_retention_days;
        match self.inventory.write(move |tx| purge(tx, days)).await {
            Ok(n) if n > 0 => tracing::info!(purged = n, "old requests purged"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot purge old requests"),
        }
    }
}

/// Deletes terminal requests older than the retention period.
pub fn purge(tx: &Tx<'_>, retention_days: u32) -> inventory::Result<usize> {
    tx.purge_finished_before(unix_now() - i64::from(retention_days) * 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Inventory;
    use crate::model::Work;

    #[test]
    fn pick_goes_round_robin_over_customers_with_free_slots() {
        let running = HashMap::from([(1, 4), (2, 1)]);
        // Customer 1 is full; 2 and 3 alternate.
        assert_eq!(pick(&[1, 2, 3], &running, None, 4), Some(2));
        assert_eq!(pick(&[1, 2, 3], &running, Some(2), 4), Some(3));
        assert_eq!(pick(&[1, 2, 3], &running, Some(3), 4), Some(2));
        assert_eq!(pick(&[1], &running, None, 4), None);
        assert_eq!(pick(&[], &running, None, 4), None);
    }

    #[test]
    fn a_customer_with_many_queued_does_not_starve_one_with_one() {
        // A (1) has 200 queued, B (2) one: after serving A, B is next.
        let running = HashMap::from([(1, 1)]);
        assert_eq!(pick(&[1, 2], &running, Some(1), 4), Some(2));
    }

    #[test]
    fn terminal_requests_are_purged_after_the_retention_period_and_pending_ones_never() {
        use crate::inventory::requests::{Ending, OperatorRequest};
        let dir = tempfile::tempdir().unwrap();
        let inv = Inventory::open(&dir.path().join("nhn.db")).unwrap();
        let days_ago = |d: i64| unix_now() - d * 86_400;
        let rows = [
            ("old", "succeeded", Some(8)),
            ("old-failed", "failed", Some(8)),
            ("recent", "succeeded", Some(6)),
            ("old-queued", "queued", None),
        ];
        let (purged, left) = inv
            .write_blocking(move |tx| {
                for (id, status, finished) in rows {
                    tx.queue_operator(&OperatorRequest {
                        id,
                        actor: "test",
                        method: "resetMachine",
                        resource_type: "machine",
                        resource_id: "m1",
                        work: &Work::Machine {
                            op: crate::model::MachineOp::Reset,
                            timeout_secs: 0,
                        },
                        at: days_ago(9),
                    })?;
                    if let Some(d) = finished {
                        tx.end(
                            id,
                            &Ending {
                                status,
                                result: "",
                                error_type: "",
                                error_message: "",
                                at: days_ago(d),
                            },
                        )?;
                    }
                }
                let purged = purge(tx, 7)?;
                let left: Vec<&str> = rows
                    .iter()
                    .map(|r| r.0)
                    .filter(|id| tx.stored(id).is_ok_and(|s| s.is_some()))
                    .collect();
                Ok((purged, left))
            })
            .unwrap();
        assert_eq!(purged, 2);
        assert_eq!(left, ["recent", "old-queued"]);
    }
}
