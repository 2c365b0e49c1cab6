//! The reconciler: keeps every switch in step with the plan, in `nhn serve`.
//!
//! - **Planner task.** On start and after every inventory change (VM placed, moved, stopped;
//!   site imported) it plans from one snapshot and turns the diff into *intents* in
//!   `switch_intents`, in one transaction, before anything is sent: new changes are inserted as
//!   `pending`, pending intents the plan no longer wants are `canceled` (an add then a remove of
//!   the same VLAN on the same port cancel out). Then it wakes the switches concerned.
//! - **One actor per switch.** An actor opens one driver session per batch (SSH or SNMP, see
//!   [`super::driver`]): read back, apply every pending intent that is not already true in one
//!   batch (adds before removes; a remove of VLAN v waits while an add of v is pending on
//!   another switch: make before break), read back again to verify, then marks exactly those
//!   intents `applied` together with the new read-back, in one transaction. A failure leaves
//!   the intents pending, is recorded for `nhn switch show`, and retries with exponential
//!   backoff; other switches are unaffected. An SSH batch that went through leaves its
//!   connection in the [`Pool`] for the next one (`[switch] ssh_idle_secs`).
//! - **Crash safety.** Intents live in the inventory, so a restart (kill -9 included) resumes them.
//!   Each session starts with a read-back, and intents already true on the switch are marked
//!   applied without being sent: a change is sent at most once per crash, and applied once.
//! - **Drift.** Every actor reads its switch back each `readback_period_secs`; a read-back that
//!   differs from the stored one makes the planner re-plan, which queues the repairs.
//!
//! This file is the planner task and the actors; [`store`] is what they keep in the inventory
//! (through the `SwitchIntents` repository) and [`credentials`] resolves a switch's
//! credential into an SSH or SNMP target.

mod credentials;
pub(crate) mod store;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::Config;
use crate::inventory::switches::SwitchIntents;
use crate::inventory::{self, Inventory};

use super::driver::{DriverError, DriverKind, SshDriver, SwitchDriver};
use super::plan::{Action, PortPlan};
use super::readback::SwitchState;
use super::snmp::SnmpDriver;
use super::ssh::{Pool, SshError};
use super::templates::{PortChange, TemplateError, Templates};
use super::vlans::{Vlan, VlanSet};

use crate::model::EventKind;
pub use credentials::describe_driver;
use store::{load_switch, plan_and_persist, record_status};

/// Event kind of the reconciler's own bookkeeping writes; the planner does not re-plan on it.
pub const STATUS_EVENT: EventKind = EventKind::SwitchStatus;

/// How long the planner waits for more events before planning (bursts become one plan).
const DEBOUNCE: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Inventory(#[from] inventory::Error),
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error("switch {switch}: {message}")]
    Switch { switch: String, message: String },
}

fn switch_err(switch: &str, message: impl Into<String>) -> Error {
    Error::Switch {
        switch: switch.to_owned(),
        message: message.into(),
    }
}

/// A pending intent as the actor sees it.
#[derive(Debug)]
struct Intent {
    id: i64,
    port: String,
    action: Action,
    vlan: Vlan,
}

/// The switch row the actor needs.
struct SwitchRow {
    id: i64,
    driver: DriverKind,
    os: String,
    address: String,
    credentials: String,
    host_key: Option<String>,
}

struct Shared {
    inv: Inventory,
    config: Config,
    templates: Templates,
    replan: Notify,
    /// SSH connections kept between batches (`[switch] ssh_idle_secs`).
    pool: Pool,
}

/// Runs the planner and the switch actors until `shutdown` turns true.
pub async fn run(
    inv: Inventory,
    config: Config,
    templates: Templates,
    mut shutdown: watch::Receiver<bool>,
) {
    let shared = Arc::new(Shared {
        inv: inv.clone(),
        pool: Pool::new(Duration::from_secs(config.switch.ssh_idle_secs)),
        config,
        templates,
        replan: Notify::new(),
    });
    let sweeper = {
        let (shared, mut shutdown) = (shared.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                let stop = tokio::select! {
                    _ = shutdown.wait_for(|s| *s) => true,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => false,
                };
                if stop {
                    break;
                }
                shared.pool.sweep().await;
            }
        })
    };
    let mut events = inv.subscribe();
    let mut actors: HashMap<String, Arc<Notify>> = HashMap::new();
    let mut tasks = Vec::new();
    'plan: loop {
        match queue_intents(&shared).await {
            Ok(queued) => {
                for (name, pending) in queued {
                    let notify = actors.entry(name.clone()).or_insert_with(|| {
                        let n = Arc::new(Notify::new());
                        tasks.push(tokio::spawn(actor(
                            shared.clone(),
                            name.clone(),
                            n.clone(),
                            shutdown.clone(),
                        )));
                        n
                    });
                    metrics::gauge!("nhn_switch_pending_intents", "switch" => name.clone())
                        .set(pending as f64);
                    if pending > 0 {
                        notify.notify_one();
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "switch planning failed; intents unchanged"),
        }
        // Wait for a change that matters, then let a burst settle.
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => break 'plan,
                _ = shared.replan.notified() => break,
                ev = events.recv() => match ev {
                    Ok(ev) if ev.kind == STATUS_EVENT => continue,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        tracing::error!("inventory event stream closed; the reconciler stops");
                        return;
                    }
                },
            }
        }
        tokio::time::sleep(DEBOUNCE).await;
        while let Ok(ev) = events.try_recv() {
            tracing::trace!(kind = %ev.kind, object = %ev.object, "coalesced event");
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let _ = sweeper.await;
    shared.pool.clear().await;
}

/// Plans and persists intents; returns every managed switch with its pending intent count.
async fn queue_intents(shared: &Arc<Shared>) -> Result<Vec<(String, usize)>, Error> {
    let infra: VlanSet = shared.config.switch.infra_vlans.iter().copied().collect();
    let outcome = shared
        .inv
        .write(move |conn| plan_and_persist(conn, &infra))
        .await?;
    match outcome {
        Ok(queued) => Ok(queued),
        Err(refused) => {
            // `nhn switch plan` shows the same refusal to the operator.
            tracing::error!(reason = %refused, "switch plan refused; switches keep their VLANs");
            Ok(Vec::new())
        }
    }
}

/// One switch's actor: a session whenever intents are pending or a read-back is due.
async fn actor(
    shared: Arc<Shared>,
    name: String,
    notify: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let cfg = &shared.config.switch;
    let period = Duration::from_secs(cfg.readback_period_secs.max(1));
    let initial = Duration::from_millis(cfg.retry_initial_ms.max(10));
    let max = Duration::from_millis(cfg.retry_max_ms.max(cfg.retry_initial_ms));
    let mut next_readback = Instant::now();
    let mut retry: Option<(Instant, Duration)> = None;
    // The switch's state after our last verified session: a batch between read-backs starts
    // from it instead of reading the switch again. Forgotten on any error (and on restart).
    let mut last: Option<SwitchState> = None;
    loop {
        let wake = retry.map_or(next_readback, |(at, _)| at);
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = notify.notified() => {},
            _ = tokio::time::sleep_until(wake) => {},
        }
        let now = Instant::now();
        if let Some((at, _)) = retry
            && now < at
        {
            continue; // backing off; the retry timer will fire
        }
        let readback_due = now >= next_readback;
        let n = name.clone();
        let pending = shared
            .inv
            .read(move |c| c.pending_count(&n))
            .await
            .unwrap_or(1);
        if pending == 0 && !readback_due && retry.is_none() {
            continue;
        }
        let known = if readback_due { None } else { last.take() };
        let result = session(&shared, &name, known)
            .instrument(tracing::info_span!("switch", name = %name))
            .await;
        match result {
            Ok((sent, state)) => {
                last = Some(state);
                if sent > 0 {
                    tracing::info!(switch = %name, changes = sent, "switch batch applied");
                }
                metrics::counter!("nhn_switch_sessions_total", "switch" => name.clone(), "result" => "ok").increment(1);
                metrics::gauge!("nhn_switch_up", "switch" => name.clone()).set(1.0);
                metrics::gauge!("nhn_switch_last_success_timestamp_seconds", "switch" => name.clone())
                    .set(crate::util::unix_now() as f64);
                retry = None;
                next_readback = Instant::now() + period;
            }
            Err(e) => {
                let delay = retry.map_or(initial, |(_, d)| (d * 2).min(max));
                tracing::warn!(switch = %name, error = %e, retry_in_ms = delay.as_millis() as u64, "switch session failed");
                metrics::counter!("nhn_switch_sessions_total", "switch" => name.clone(), "result" => "error").increment(1);
                metrics::gauge!("nhn_switch_up", "switch" => name.clone()).set(0.0);
                let (n, msg) = (name.clone(), e.to_string());
                if let Err(e) = shared
                    .inv
                    .write(move |c| record_status(c, &n, Err(&msg)))
                    .await
                {
                    tracing::error!(switch = %name, error = %e, "cannot record the switch status");
                }
                retry = Some((Instant::now() + delay, delay));
            }
        }
        let n = name.clone();
        if let Ok(p) = shared.inv.read(move |c| c.pending_count(&n)).await {
            metrics::gauge!("nhn_switch_pending_intents", "switch" => name.clone()).set(p as f64);
        }
    }
}

/// One session with the switch's driver: read back (unless `known` holds the state our last
/// session left), apply the pending batch, verify. Returns how many changes were sent and
/// the switch's state.
async fn session(
    shared: &Arc<Shared>,
    name: &str,
    known: Option<SwitchState>,
) -> Result<(usize, SwitchState), Error> {
    let n = name.to_owned();
    let row = shared.inv.read(move |c| load_switch(c, &n)).await?;
    match row.driver {
        DriverKind::Snmp => {
            let t = credentials::snmp_target(&shared.config, name, &row)?;
            let mut d = SnmpDriver::connect(&t).await.map_err(DriverError::from)?;
            let result = session_body(shared, name, &row, &mut d, known).await;
            d.close().await;
            result
        }
        DriverKind::Ssh => {
            let t = credentials::target(&shared.config, name, &row)?;
            let set = shared.templates.get(&row.os)?;
            let s = shared.pool.checkout(&t, &set.meta).await?;
            let learned = s.learned_host_key().map(str::to_owned);
            let mut d = SshDriver::new(s, set, name);
            let result = match pin_host_key(shared, name, &row, learned).await {
                Ok(()) => session_body(shared, name, &row, &mut d, known).await,
                Err(e) => Err(e),
            };
            // A connection is kept for the next batch only if this one went through.
            if result.is_ok() {
                shared.pool.checkin(d.into_session()).await;
            } else {
                d.close().await;
            }
            result
        }
    }
}

/// Trust on first use: pins the host key an unpinned switch showed.
async fn pin_host_key(
    shared: &Arc<Shared>,
    name: &str,
    row: &SwitchRow,
    learned: Option<String>,
) -> Result<(), Error> {
    let Some(fp) = learned else {
        return Ok(());
    };
    tracing::warn!(switch = %name, host_key = %fp, "trust on first use: pinning the switch's host key");
    let id = row.id;
    let n = name.to_owned();
    shared
        .inv
        .write(move |c| store::pin_host_key(c, &n, id, &fp))
        .await?;
    Ok(())
}

/// Reads the switch back (or, without a parser, takes the stored read-back as its state);
/// the flag says whether the switch itself was read.
async fn read_back<D: SwitchDriver>(
    d: &mut D,
    shared: &Shared,
    name: &str,
) -> Result<(SwitchState, bool), Error> {
    if let Some(state) = d.read_back().await? {
        return Ok((state, true));
    }
    let n = name.to_owned();
    let stored = shared
        .inv
        .read(move |c| Ok(super::snapshot::applied(c)?.remove(&n).unwrap_or_default()))
        .await?;
    Ok((
        SwitchState {
            ports: stored,
            vlans: VlanSet::new(),
        },
        false,
    ))
}

async fn session_body<D: SwitchDriver>(
    shared: &Arc<Shared>,
    name: &str,
    row: &SwitchRow,
    d: &mut D,
    known: Option<SwitchState>,
) -> Result<(usize, SwitchState), Error> {
    let (state, parsed) = match known {
        Some(state) => (state, false),
        None => read_back(d, shared, name).await?,
    };
    let (id, n, stored) = (row.id, name.to_owned(), state.clone());
    // Intents already true on the switch are done: never sent again.
    let (changed, intents, held) = shared
        .inv
        .write(move |c| store::start_batch(c, &n, id, &stored, parsed))
        .await?;
    if changed {
        tracing::info!(switch = %name, "read-back differs from the last one: re-planning");
        shared.replan.notify_one();
    }
    let (send, waiting): (Vec<Intent>, Vec<Intent>) = intents
        .into_iter()
        .partition(|i| i.action.makes() || !held.contains(i.vlan));
    if !waiting.is_empty() {
        tracing::info!(switch = %name, removes = waiting.len(), "removes wait for adds on other switches (make before break)");
    }
    if send.is_empty() {
        let n = name.to_owned();
        shared
            .inv
            .write(move |c| record_status(c, &n, Ok(())))
            .await?;
        return Ok((0, state));
    }
    let changes: Vec<PortChange> = send
        .iter()
        .map(|i| PortChange {
            port: i.port.clone(),
            action: i.action,
            vlan: i.vlan,
        })
        .collect();
    let verified = d.apply(&state, &changes).await?;
    let empty = PortPlan::default();
    let (done, missed): (Vec<&Intent>, Vec<&Intent>) = send.iter().partition(|i| {
        let port = verified.ports.get(&i.port).unwrap_or(&empty);
        i.action.holds(i.vlan, port)
    });
    let missing: Vec<String> = missed
        .iter()
        .map(|i| format!("{} VLAN {} on {}", i.action.as_str(), i.vlan, i.port))
        .collect();
    let done: Vec<i64> = done.iter().map(|i| i.id).collect();
    let applied = done.len();
    let (id, n, stored) = (row.id, name.to_owned(), verified.clone());
    shared
        .inv
        .write(move |c| store::finish_batch(c, &n, id, &stored, &done))
        .await?;
    metrics::counter!("nhn_switch_changes_applied_total", "switch" => name.to_owned())
        .increment(applied as u64);
    // Other switches may have removes waiting for these adds.
    shared.replan.notify_one();
    if !missing.is_empty() {
        return Err(switch_err(
            name,
            format!(
                "the batch was accepted but the read-back lacks: {}",
                missing.join(", ")
            ),
        ));
    }
    Ok((applied, verified))
}

#[cfg(test)]
mod tests {
    use super::store::{persist_intents, store_readback};
    use super::*;
    use crate::inventory::site;
    use crate::placement::store::{PlaceArgs, place, remove_vm};
    use crate::switch::plan_inventory;

    fn seeded() -> (tempfile::TempDir, Inventory) {
        let dir = tempfile::tempdir().unwrap();
        let inv = Inventory::open(&dir.path().join("nhn.db")).unwrap();
        let text = include_str!("../../../examples/seed-site.toml");
        let file = site::parse("seed", text).unwrap();
        inv.write_blocking(move |c| site::store::import(c, &file).map(|_| ()))
            .unwrap();
        (dir, inv)
    }

    /// Plans, persists, and lists Edge-Switch-1's intents: (port, action, state, VLAN).
    fn queue(inv: &Inventory) -> Vec<(String, String, String, u16)> {
        inv.write_blocking(|c| {
            let planned = plan_inventory(c, &VlanSet::new())
                .map_err(|e| inventory::Error::Invalid(e.to_string()))?;
            persist_intents(c, &planned)?;
            let mut st = c.raw().prepare(
                "SELECT s.name || ':' || i.port, i.action || IIF(i.native, ' untagged', ''),
                        i.state, i.vlan FROM switch_intents i
                 JOIN switches s ON s.id = i.switch_id WHERE s.name = 'Edge-Switch-1' ORDER BY i.id",
            )?;
            Ok(st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<Result<_, _>>()?)
        })
        .unwrap()
    }

    fn place_vm(inv: &Inventory, name: &str, host: &str, vlan: &str) {
        let args = PlaceArgs {
            name: name.into(),
            networks: vec![vlan.into()],
            host: Some(host.into()),
            vm_type: "V10".into(),
        };
        inv.write_blocking(move |c| place(c, &args, &VlanSet::new()).map(|_| ()))
            .unwrap();
    }

    #[test]
    fn intents_are_persisted_once_and_an_add_then_remove_cancels() {
        let (_d, inv) = seeded();
        // The machine ports first: Hypervisor-1's boot network untagged, storage tagged, and
        // both on the uplinks.
        let machines = queue(&inv);
        let row = |port: &str, action: &str, vlan| {
            (
                format!("Edge-Switch-1:{port}"),
                action.to_owned(),
                "pending".to_owned(),
                vlan,
            )
        };
        assert_eq!(
            machines,
            [
                row("swp1", "add", 10),
                row("swp1", "add", 20),
                row("swp2", "add", 10),
                row("swp2", "add", 20),
                row("swp3", "add untagged", 20),
                row("swp3", "add", 10),
            ]
        );
        place_vm(&inv, "VM1-1", "Hypervisor-1", "100");
        let first = queue(&inv);
        let vm: Vec<_> = first[machines.len()..].to_vec();
        assert_eq!(vm.len(), 3, "{first:?}");
        assert!(
            vm.iter()
                .all(|(_, a, s, v)| a == "add" && s == "pending" && *v == 100)
        );
        // Planning again queues nothing new.
        assert_eq!(queue(&inv), first);
        // The VM goes away before anything was sent: the adds are canceled, not undone.
        inv.write_blocking(|c| remove_vm(c, "VM1-1").map(|_| ()))
            .unwrap();
        let after = queue(&inv);
        assert_eq!(after[..machines.len()], machines[..]);
        assert!(
            after[machines.len()..]
                .iter()
                .all(|(_, _, s, _)| s == "canceled"),
            "{after:?}"
        );
    }

    #[test]
    fn a_refused_plan_marks_the_edges_over_budget_until_it_goes_through() {
        let (_d, inv) = seeded();
        place_vm(&inv, "VM1-1", "Hypervisor-1", "100");
        place_vm(&inv, "VM1-2", "Hypervisor-1", "100");
        let run = |max_macs: i64| {
            inv.write_blocking(move |c| {
                c.raw().execute(
                    "UPDATE switches SET max_macs = ?1 WHERE name = 'Edge-Switch-1'",
                    [max_macs],
                )?;
                let out = plan_and_persist(c, &VlanSet::new())?;
                Ok((out, super::super::status::all(c)?))
            })
            .unwrap()
        };
        let (out, status) = run(1);
        let reason = out.unwrap_err();
        assert!(reason.contains("over its budget of 1"), "{reason}");
        let edge1 = status.iter().find(|s| s.name == "Edge-Switch-1").unwrap();
        assert_eq!(edge1.health(), "plan refused");
        let refusal = edge1.plan_refusal.as_deref().unwrap();
        assert!(
            refusal.starts_with("plan refused: Edge-Switch-1 would hold 8 MACs"),
            "{refusal}"
        );
        assert!(status.iter().filter(|s| s.plan_refusal.is_some()).count() == 1);
        // Nothing was queued while refused; once the budget allows it, the mark goes.
        let intents = |inv: &Inventory| {
            inv.read_blocking(|c| {
                Ok(c.raw()
                    .query_row("SELECT COUNT(*) FROM switch_intents", [], |r| {
                        r.get::<_, i64>(0)
                    })?)
            })
            .unwrap()
        };
        assert_eq!(intents(&inv), 0);
        let (out, status) = run(64);
        assert!(out.is_ok());
        assert!(
            status.iter().all(|s| s.plan_refusal.is_none()),
            "{status:?}"
        );
        assert!(intents(&inv) > 0);
    }

    #[test]
    fn a_readback_is_stored_and_reports_whether_it_changed() {
        let (_d, inv) = seeded();
        let st = crate::switch::readback::openvswitch("swp1,trunk,,100 200\nswp3,access,100,\n")
            .unwrap();
        let (first, second) = inv
            .write_blocking(move |c| {
                let id: i64 = c.raw().query_row(
                    "SELECT id FROM switches WHERE name = 'Edge-Switch-1'",
                    [],
                    |r| r.get(0),
                )?;
                Ok((store_readback(c, id, &st)?, store_readback(c, id, &st)?))
            })
            .unwrap();
        assert!(first && !second);
        let applied = inv.read_blocking(crate::switch::snapshot::applied).unwrap();
        assert_eq!(applied["Edge-Switch-1"]["swp1"].to_string(), "100,200");
        assert_eq!(applied["Edge-Switch-1"]["swp3"].to_string(), "access 100");
    }

    #[test]
    fn readbacks_stored_before_native_vlans_were_planned_still_load() {
        let (_d, inv) = seeded();
        let applied = inv
            .write_blocking(|c| {
                // As nhn wrote them before: every VLAN carried in `vlans` (an OVS native VLAN
                // included), an access port's VLAN without native_vlan.
                for (port, mode, vlans, native) in [
                    ("swp1", "trunk", "10,20,100", None),
                    ("swp2", "access", "20", None),
                    ("swp3", "trunk", "10,20", Some(20)),
                ] {
                    c.raw().execute(
                        "INSERT INTO switch_applied (switch_id, port, mode, vlans, native_vlan, read_at)
                         SELECT id, ?1, ?2, ?3, ?4, 'x' FROM switches WHERE name = 'Edge-Switch-1'",
                        (port, mode, vlans, native),
                    )?;
                }
                crate::switch::snapshot::applied(c)
            })
            .unwrap();
        let show: Vec<String> = applied["Edge-Switch-1"]
            .iter()
            .map(|(p, s)| format!("{p}={s}"))
            .collect();
        assert_eq!(
            show,
            ["swp1=10,20,100", "swp2=access 20", "swp3=native 20 + 10"]
        );
    }
}
