//! `nhn vm move` as a job: an operator's request with no customer (like [`super::machine`]'s
//! power requests), resource type `vm`, resource id the VM's name, work [`Work::Move`] or
//! [`Work::FinishMove`]. The job engine runs it itself rather than handing it to the
//! facility: its steps only change the inventory and watch the switches' read-backs, which is
//! what the engine's process (with the reconciler beside it) is for; no hypervisor is asked.
//!
//! The steps, make before break ([`crate::placement::store`]):
//! 1. **begin**: the VM holds a slot on both hosts and the planner keeps its VLANs on both;
//!    skipped if the VM is already moving to the destination (or already runs there);
//! 2. **wait** until every port the plan gives the VM's VLANs has reported them (`move_ready`
//!    through the inventory's async `read`, polled), at most `wait_secs`;
//! 3. **finish** (unless `--no-finish`): the VM runs on the destination only and the source's
//!    VLANs go; a VM that is no longer moving counts as finished.
//!
//! Every step is idempotent, so a request left `running` by a kill -9 is simply run again from
//! the start ([`super::Engine`] does at start, and for a move overdue that it is not running,
//! e.g. the CLI that ran it died). Its end never changes the VM's power state
//! ([`Work::sets_vm_state`]): the request ends with a result (`destination`, `host`) or an
//! error message. When no appliance runs, `nhn vm move` claims and runs its own request in its
//! process ([`claim`], [`execute`]): the same code, the same request row and audit trail.

use std::time::Duration;

use crate::codec::{Struct, s};
use crate::inventory::requests::{Job, OperatorRequest, Requests};
use crate::inventory::vms::Vms;
use crate::inventory::{self, Inventory, Tx, audit, record_event};
use crate::model::{EventKind, RequestStatus, Work};
use crate::placement::store;
use crate::switch::vlans::VlanSet;
use crate::util::unix_now;

use super::complete::{self, Outcome};

/// The request method of a move (`--host`, with or without `--no-finish`).
pub const MOVE: &str = "moveVm";
/// The request method of `--finish`.
pub const FINISH: &str = "finishVmMove";

/// Time a move request gets beyond its wait for its writes (begin, finish, the end).
const SLACK_SECS: u64 = 60;
/// How often the wait step looks at the switches' read-backs.
const POLL: Duration = Duration::from_millis(200);

/// A move request as its runner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveJob {
    pub id: String,
    /// The VM's name.
    pub vm: String,
    /// The destination (`None`: only finish the move under way).
    pub to: Option<String>,
    /// Finish once the destination is ready.
    pub finish: bool,
    pub wait_secs: u64,
}

impl MoveJob {
    /// Request `id` on VM `vm` as a move, if its work is one.
    pub fn of(id: &str, vm: &str, work: &Work) -> Option<MoveJob> {
        let (to, finish, wait_secs) = match work {
            Work::Move {
                to,
                finish,
                wait_secs,
            } => (Some(to.clone()), *finish, *wait_secs),
            Work::FinishMove => (None, true, 0),
            _ => return None,
        };
        Some(MoveJob {
            id: id.to_owned(),
            vm: vm.to_owned(),
            to,
            finish,
            wait_secs,
        })
    }

    /// A claimed request as a move, if it is one.
    pub fn of_job(job: &Job) -> Option<MoveJob> {
        MoveJob::of(&job.id, &job.resource_id, job.work.as_ref()?)
    }
}

/// Splits requests into moves (run by the engine) and the rest (for the facility).
pub fn split(jobs: Vec<Job>) -> (Vec<MoveJob>, Vec<Job>) {
    let mut moves = Vec::new();
    let mut rest = Vec::new();
    for job in jobs {
        match MoveJob::of_job(&job) {
            Some(m) => moves.push(m),
            None => rest.push(job),
        }
    }
    (moves, rest)
}

/// Queues `work` (a [`Work::Move`] or [`Work::FinishMove`]) on VM `vm`; its request id. A move
/// that cannot be done is refused here, with the reason and before anything is written: the
/// destination must take the VM ([`store::check_move`]; a VM already moving there is fine),
/// and `--finish` needs a move under way.
pub fn enqueue(
    tx: &Tx<'_>,
    vm: &str,
    work: &Work,
    infra_vlans: &VlanSet,
) -> inventory::Result<String> {
    let method = match work {
        Work::Move { to, .. } => {
            if tx.move_target(vm)?.flatten().as_ref() != Some(to) {
                store::check_move(tx, vm, to, infra_vlans)?;
            }
            MOVE
        }
        Work::FinishMove => {
            store::move_destination(tx, vm)?;
            FINISH
        }
        other => {
            return Err(inventory::Error::Invalid(format!(
                "{other:?} is not a VM move"
            )));
        }
    };
    let id = super::new_request_id();
    tx.queue_operator(&OperatorRequest {
        id: &id,
        actor: "operator",
        method,
        resource_type: "vm",
        resource_id: vm,
        work,
        at: unix_now(),
    })?;
    record_event(tx, EventKind::Request, &id)?;
    audit(tx, "operator", method, vm, "queued")?;
    Ok(id)
}

/// Marks a move request running, with a deadline past its wait; again when it is run again.
pub fn start(tx: &Tx<'_>, job: &MoveJob) -> inventory::Result<()> {
    let now = unix_now();
    let deadline =
        now.saturating_add(i64::try_from(job.wait_secs + SLACK_SECS).unwrap_or(i64::MAX));
    tx.start(&job.id, now, deadline, "", None)?;
    record_event(tx, EventKind::Request, &job.id)
}

/// Claims move request `id` if it is still queued (the CLI running its own request when no
/// appliance runs); `None` if something else took it first.
pub fn claim(tx: &Tx<'_>, id: &str) -> inventory::Result<Option<MoveJob>> {
    let Some(pending) = tx.pending(id)? else {
        return Ok(None);
    };
    if pending.status != RequestStatus::Queued {
        return Ok(None);
    }
    let Some(job) = pending
        .work
        .as_ref()
        .and_then(|w| MoveJob::of(id, &pending.resource_id, w))
    else {
        return Ok(None);
    };
    start(tx, &job)?;
    Ok(Some(job))
}

/// Runs the request's steps and records how it ended (a request already ended is left
/// alone); the outcome.
pub async fn execute(
    inventory: &Inventory,
    infra_vlans: &VlanSet,
    job: &MoveJob,
    actor: &'static str,
) -> inventory::Result<Outcome> {
    let outcome = match steps(inventory, infra_vlans, job, actor).await {
        Ok(result) => Outcome::Succeeded(result),
        Err((error_type, message)) => Outcome::Failed {
            error_type: error_type.to_owned(),
            message,
        },
    };
    let (id, ended) = (job.id.clone(), outcome.clone());
    inventory
        .write(move |tx| complete::apply(tx, &id, &ended, actor))
        .await?;
    Ok(outcome)
}

/// Why a step failed: an error type and a message for the operator.
type Failure = (&'static str, String);

async fn steps(
    inv: &Inventory,
    infra: &VlanSet,
    job: &MoveJob,
    actor: &'static str,
) -> Result<Struct, Failure> {
    let vm = &job.vm;
    let mut result = Struct::new();
    if let Some(to) = &job.to {
        if !begin(inv, infra, vm, to, actor).await? {
            wait(inv, infra, vm, job.wait_secs).await?;
        }
        result.insert("destination".into(), s(to));
        if !job.finish {
            return Ok(result);
        }
    }
    let host = finish(inv, vm, actor).await?;
    result.insert("host".into(), s(host));
    Ok(result)
}

/// Begins the move unless it is under way; `true` if the VM already runs on `to` alone (the
/// move finished before this run).
async fn begin(
    inv: &Inventory,
    infra: &VlanSet,
    vm: &str,
    to: &str,
    actor: &'static str,
) -> Result<bool, Failure> {
    let (name, dest, infra) = (vm.to_owned(), to.to_owned(), infra.clone());
    inv.write(move |tx| {
        match tx.move_target(&name)? {
            Some(Some(moving)) if moving == dest => return Ok(false),
            Some(None) if tx.host_of_vm(&name)?.flatten().as_ref() == Some(&dest) => {
                return Ok(true);
            }
            _ => {}
        }
        store::begin_move(tx, &name, &dest, &infra, actor).map(|_| false)
    })
    .await
    .map_err(|e| ("BackendError", format!("cannot move VM {vm} to {to}: {e}")))
}

/// Waits until the switches report the destination's VLANs, for at most `secs`.
async fn wait(inv: &Inventory, infra: &VlanSet, vm: &str, secs: u64) -> Result<(), Failure> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let (name, vlans) = (vm.to_owned(), infra.clone());
        let ready = inv
            .read(move |tx| store::move_ready(tx, &name, &vlans))
            .await
            .map_err(|e| {
                (
                    "BackendError",
                    format!("cannot read the move of VM {vm}: {e}"),
                )
            })?;
        if ready {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err((
                "Timeout",
                format!(
                    "the destination's VLANs for {vm} were not confirmed within {secs} s \
                     (is `nhn serve` running? see `nhn switch show`); {vm} stays on both hosts: \
                     run `nhn vm move {vm} --finish` once the switches are ready"
                ),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Finishes the move; the VM's host. A VM no longer moving has finished already.
async fn finish(inv: &Inventory, vm: &str, actor: &'static str) -> Result<String, Failure> {
    let name = vm.to_owned();
    inv.write(move |tx| match tx.move_target(&name)? {
        Some(None) => Ok(tx.host_of_vm(&name)?.flatten().unwrap_or_default()),
        _ => store::finish_move(tx, &name, actor),
    })
    .await
    .map_err(|e| ("BackendError", format!("cannot finish moving VM {vm}: {e}")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::{Notify, watch};

    use super::*;
    use crate::config::Config;
    use crate::facility::{BoxFuture, Dispatch, Driver, Error, Status};
    use crate::inventory::site;
    use crate::inventory::switches::SwitchIntents;
    use crate::jobs::machine::{Progress, progress};
    use crate::jobs::{Engine, Options};
    use crate::placement::store::{PlaceArgs, place};
    use crate::switch::readback::SwitchState;
    use crate::switch::reconciler::store::store_readback;

    /// A facility that takes nothing: moves never reach it.
    struct NoFacility;

    impl Driver for NoFacility {
        fn dispatch(&self, _: Dispatch) -> BoxFuture<'_, Result<(), Error>> {
            Box::pin(async {
                Err(Error::NoRoute {
                    what: "anything".into(),
                    fix: "this is a test".into(),
                })
            })
        }
        fn status(&self, _: Dispatch) -> BoxFuture<'_, Result<Status, Error>> {
            Box::pin(async { Ok(Status::Unknown) })
        }
    }

    fn engine(inv: &Inventory) -> (Arc<Engine>, Arc<dyn Driver>) {
        let config = Config::default();
        let driver: Arc<dyn Driver> = Arc::new(NoFacility);
        let engine = Engine::new(
            inv.clone(),
            Arc::new(config.api.clone()),
            driver.clone(),
            Arc::new(Notify::new()),
            Options {
                boot: crate::jobs::boot::BootFiles::from_config(&config),
                edge_gate: false,
                host_dead_secs: 60,
                infra_vlans: VlanSet::new(),
            },
        );
        (engine, driver)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// The seed site with VM1-1 (VLAN 100) on Hypervisor-1.
    fn seeded() -> (tempfile::TempDir, Inventory) {
        let dir = tempfile::tempdir().unwrap();
        let inv = Inventory::open(&dir.path().join("nhn.db")).unwrap();
        let file = site::parse("seed", include_str!("../../examples/seed-site.toml")).unwrap();
        let args = PlaceArgs {
            name: "VM1-1".into(),
            networks: vec!["100".into()],
            host: Some("Hypervisor-1".into()),
            vm_type: "V10".into(),
        };
        inv.write_blocking(move |c| {
            site::store::import(c, &file)?;
            place(c, &args, &VlanSet::new()).map(|_| ())
        })
        .unwrap();
        (dir, inv)
    }

    /// Every switch reports every port as planned: what the reconciler does once it applied
    /// the plan.
    fn switches_confirm_the_plan(tx: &Tx<'_>) -> inventory::Result<()> {
        let planned = crate::switch::plan_inventory(tx, &VlanSet::new())
            .map_err(|e| inventory::Error::Invalid(e.to_string()))?;
        for (switch, ports) in planned.desired.ports {
            let id = tx.switch_id(&switch)?.expect("a planned switch exists");
            let vlans = VlanSet::new();
            store_readback(tx, id, &SwitchState { ports, vlans })?;
        }
        Ok(())
    }

    fn moving_to(inv: &Inventory) -> Option<String> {
        inv.read_blocking(|c| c.move_target("VM1-1"))
            .unwrap()
            .flatten()
    }

    #[test]
    fn a_move_left_running_by_a_killed_engine_is_finished_by_the_next_ones_recovery() {
        let (_dir, inv) = seeded();
        let work = Work::Move {
            to: "Hypervisor-3".into(),
            finish: true,
            wait_secs: 30,
        };
        let id = inv
            .write_blocking(move |c| enqueue(c, "VM1-1", &work, &VlanSet::new()))
            .unwrap();
        // The first engine claims the move and begins it; nothing confirms the destination's
        // VLANs, so it waits, and dies there (its runtime dropped: kill -9).
        let first = runtime();
        let stop = watch::channel(false);
        first.block_on(async {
            let (engine, _) = engine(&inv);
            tokio::spawn(engine.run(stop.1.clone()));
            for _ in 0..200 {
                if moving_to(&inv).is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        drop(first);
        assert_eq!(moving_to(&inv).as_deref(), Some("Hypervisor-3"));
        let rid = id.clone();
        assert_eq!(
            inv.read_blocking(move |c| progress(c, &rid)).unwrap(),
            Some(Progress::Running)
        );
        // The switches catch up while no appliance runs; the next engine's recovery runs the
        // move again: begin is skipped, the wait passes, the move finishes.
        inv.write_blocking(switches_confirm_the_plan).unwrap();
        let ended = runtime().block_on(async {
            let (engine, driver) = engine(&inv);
            engine.recover(&driver).await;
            for _ in 0..200 {
                let rid = id.clone();
                match inv.read(move |c| progress(c, &rid)).await.unwrap() {
                    Some(Progress::Running) => {}
                    other => return other,
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            None
        });
        let Some(Progress::Succeeded(result)) = ended else {
            panic!("the recovered move did not succeed: {ended:?}");
        };
        assert_eq!(crate::codec::text(&result, "host"), "Hypervisor-3");
        assert_eq!(crate::codec::text(&result, "destination"), "Hypervisor-3");
        assert!(!result.contains_key("state"), "{result:?}");
        let (host, moving, state, begun) = inv
            .read_blocking(|c| {
                let row = c.raw().query_row(
                    "SELECT state, (SELECT COUNT(*) FROM audit WHERE action = 'vm.move.begin')
                     FROM vms WHERE name = 'VM1-1'",
                    [],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
                )?;
                Ok((
                    c.host_of_vm("VM1-1")?,
                    c.move_target("VM1-1")?,
                    row.0,
                    row.1,
                ))
            })
            .unwrap();
        assert_eq!(host, Some(Some("Hypervisor-3".into())));
        assert_eq!(moving, Some(None));
        assert_eq!(state, "running", "a move does not change the VM's power");
        assert_eq!(begun, 1, "the recovered run began the move again");
    }

    #[test]
    fn refused_moves_are_not_queued() {
        let (_dir, inv) = seeded();
        let refused = inv
            .write_blocking(|c| {
                let to_nowhere = Work::Move {
                    to: "Hypervisor-9".into(),
                    finish: true,
                    wait_secs: 1,
                };
                let same = Work::Move {
                    to: "Hypervisor-1".into(),
                    finish: true,
                    wait_secs: 1,
                };
                let none = VlanSet::new();
                Ok([
                    enqueue(c, "VM1-1", &to_nowhere, &none).is_err(),
                    enqueue(c, "VM1-1", &same, &none).is_err(),
                    enqueue(c, "VM1-1", &Work::FinishMove, &none).is_err(),
                    enqueue(c, "VM1-1", &Work::Reset, &none).is_err(),
                    c.queue()?.queued.is_empty(),
                ])
            })
            .unwrap();
        assert_eq!(refused, [true; 5]);
    }
}
