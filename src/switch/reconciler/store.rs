//! What the reconciler keeps in the inventory, through the [`SwitchIntents`] repository: the
//! plan's intents (queued before anything is sent, canceled when the plan no longer wants
//! them, marked applied once the switch has them), each switch's last read-back, its status
//! (last success, read-back, error, plan refusal) and its pinned host key. Every write records
//! the change event the planner and the status views follow.

use std::collections::BTreeMap;

use crate::inventory::switches::{AppliedPort, NewIntent, StatusUpdate, SwitchIntents, Switches};
use crate::inventory::{self, Tx, record_event};
use crate::switch::plan::{Action, Change, PortPlan};
use crate::switch::readback::SwitchState;
use crate::switch::vlans::{Vlan, VlanSet};
use crate::switch::{PlanError, Planned, plan_inventory};
use crate::util::unix_now;

use super::{Intent, STATUS_EVENT, SwitchRow};
use crate::model::EventKind;

/// Plans and persists the intents in one transaction; `Ok(Err(reason))` when the plan is
/// refused (the refusal is recorded on the edges concerned and nothing else changes).
pub(super) fn plan_and_persist(
    tx: &Tx<'_>,
    infra: &VlanSet,
) -> inventory::Result<Result<Vec<(String, usize)>, String>> {
    let planned = match plan_inventory(tx, infra) {
        Ok(p) => p,
        Err(crate::switch::Error::Plan(e)) => {
            record_refusal(tx, &e)?;
            return Ok(Err(e.to_string()));
        }
        Err(crate::switch::Error::Inventory(e)) => return Err(e),
    };
    if clear_refusals(tx, &[])? {
        record_event(tx, STATUS_EVENT, "plan")?;
    }
    persist_intents(tx, &planned).map(Ok)
}

/// Marks every edge over its MAC budget with the refusal (the operator sees it per switch);
/// edges no longer over budget lose their mark.
fn record_refusal(tx: &Tx<'_>, e: &PlanError) -> inventory::Result<()> {
    let PlanError::MacBudget(over) = e;
    let now = unix_now();
    let names: Vec<&str> = over.iter().map(|o| o.edge.as_str()).collect();
    let mut changed = false;
    for o in over {
        let reason = format!(
            "plan refused: {o}; move VMs of those VLANs onto fewer edges or raise max_macs"
        );
        changed |= tx.refuse_plan(&o.edge, &reason, now)?;
        metrics::gauge!("nhn_switch_plan_refused", "switch" => o.edge.clone()).set(1.0);
    }
    changed |= clear_refusals(tx, &names)?;
    if changed {
        record_event(tx, STATUS_EVENT, "plan")?;
    }
    Ok(())
}

/// Clears the refusal mark of every edge not in `keep`; true if any was cleared.
fn clear_refusals(tx: &Tx<'_>, keep: &[&str]) -> inventory::Result<bool> {
    let mut cleared = false;
    for name in tx.plan_refused()? {
        if keep.contains(&name.as_str()) {
            continue;
        }
        tx.clear_plan_refusal(&name)?;
        metrics::gauge!("nhn_switch_plan_refused", "switch" => name).set(0.0);
        cleared = true;
    }
    Ok(cleared)
}

/// Inserts the plan's new changes as pending intents and cancels pending ones it no longer
/// wants; returns (switch, pending count) for every switch with managed ports.
pub(super) fn persist_intents(
    tx: &Tx<'_>,
    planned: &Planned,
) -> inventory::Result<Vec<(String, usize)>> {
    let mut wanted: BTreeMap<&str, Vec<&Change>> = BTreeMap::new();
    for c in &planned.changes {
        wanted.entry(c.switch.as_str()).or_default().push(c);
    }
    let now = unix_now();
    let mut out = Vec::new();
    for switch in planned.desired.ports.keys() {
        let id = switch_id(tx, switch)?;
        let pending: Vec<(i64, String, Option<Action>, Vlan)> = tx
            .pending_intents(switch)?
            .into_iter()
            .map(|p| (p.id, p.port, Action::from_row(&p.action, p.native), p.vlan))
            .collect();
        let want = wanted.get(switch.as_str()).cloned().unwrap_or_default();
        let mut changed = false;
        for (pid, port, action, vlan) in &pending {
            let still = want
                .iter()
                .any(|c| c.port == *port && Some(c.action) == *action && c.vlan == *vlan);
            if !still {
                tx.cancel_intent(*pid, now)?;
                changed = true;
            }
        }
        let mut count = 0;
        for c in want {
            count += 1;
            let known = pending.iter().any(|(_, port, action, vlan)| {
                c.port == *port && Some(c.action) == *action && c.vlan == *vlan
            });
            if !known {
                let (action, native) = c.action.to_row();
                let intent = NewIntent {
                    port: c.port.clone(),
                    action: action.to_owned(),
                    native,
                    vlan: c.vlan,
                    reason: c.reason.clone(),
                };
                tx.queue_intent(id, &intent, now)?;
                changed = true;
            }
        }
        if changed {
            record_event(tx, STATUS_EVENT, switch)?;
        }
        out.push((switch.clone(), count));
    }
    Ok(out)
}

fn switch_id(tx: &Tx<'_>, name: &str) -> inventory::Result<i64> {
    tx.switch_id(name)?
        .ok_or_else(|| inventory::Error::NotFound(format!("switch {name}")))
}

/// The switch row the actor needs.
pub(super) fn load_switch(tx: &Tx<'_>, name: &str) -> inventory::Result<SwitchRow> {
    let row = tx
        .switch_access(name)?
        .ok_or_else(|| inventory::Error::NotFound(format!("switch {name}")))?;
    Ok(SwitchRow {
        id: row.id,
        driver: row.driver,
        os: row.os,
        address: row.address,
        credentials: row.credentials,
        host_key: row.host_key,
    })
}

/// Starts a batch on switch `switch` (id `id`) seen in `state` (`parsed`: read from the switch
/// itself, so stored as its read-back): intents already true on the switch are marked applied
/// and never sent. Returns whether the read-back differs from the stored one, the pending intents left
/// (adds before removes, oldest first) and the VLANs whose removes must wait for adds on other
/// switches.
pub(super) fn start_batch(
    tx: &Tx<'_>,
    switch: &str,
    id: i64,
    state: &SwitchState,
    parsed: bool,
) -> inventory::Result<(bool, Vec<Intent>, VlanSet)> {
    let changed = if parsed {
        store_readback(tx, id, state)?
    } else {
        false
    };
    tx.record_status(id, StatusUpdate::ReadBack, unix_now())?;
    let mut todo = Vec::new();
    let empty = PortPlan::default();
    for i in load_intents(tx, switch)? {
        let port = state.ports.get(&i.port).unwrap_or(&empty);
        if i.action.holds(i.vlan, port) {
            tx.mark_applied(i.id, unix_now())?;
        } else {
            todo.push(i);
        }
    }
    let held = tx.vlans_added_elsewhere(id)?.into_iter().collect();
    record_event(tx, STATUS_EVENT, &format!("switch {id}"))?;
    Ok((changed, todo, held))
}

/// Ends a batch on switch `switch`: stores the `verified` read-back, marks the intents `done`
/// applied and records the success.
pub(super) fn finish_batch(
    tx: &Tx<'_>,
    switch: &str,
    id: i64,
    verified: &SwitchState,
    done: &[i64],
) -> inventory::Result<()> {
    store_readback(tx, id, verified)?;
    for &intent in done {
        tx.mark_applied(intent, unix_now())?;
    }
    record_status(tx, switch, Ok(()))
}

/// Switch `switch`'s pending intents nhn can send, adds before removes, oldest first.
fn load_intents(tx: &Tx<'_>, switch: &str) -> inventory::Result<Vec<Intent>> {
    let mut pending = tx.pending_intents(switch)?;
    pending.sort_by_key(|p| p.action == "remove");
    Ok(pending
        .into_iter()
        .filter_map(|p| {
            Some(Intent {
                id: p.id,
                action: Action::from_row(&p.action, p.native)?,
                port: p.port,
                vlan: p.vlan,
            })
        })
        .collect())
}

/// Stores a read-back in `switch_applied`; true if it differs from the stored one.
pub(crate) fn store_readback(
    tx: &Tx<'_>,
    switch_id: i64,
    st: &SwitchState,
) -> inventory::Result<bool> {
    let old: BTreeMap<String, AppliedPort> = tx
        .applied_ports(switch_id)?
        .into_iter()
        .map(|p| (p.port.clone(), p))
        .collect();
    let new: Vec<AppliedPort> = st
        .ports
        .iter()
        .map(|(port, s)| AppliedPort {
            port: port.clone(),
            mode: s.mode.as_str().to_owned(),
            vlans: s.carried().to_string(),
            native: s.native,
        })
        .collect();
    tx.replace_applied(switch_id, &new, unix_now())?;
    Ok(!old.values().eq(new.iter()))
}

/// Records how a session with switch `switch` went.
pub(super) fn record_status(
    tx: &Tx<'_>,
    switch: &str,
    result: Result<(), &str>,
) -> inventory::Result<()> {
    let id = switch_id(tx, switch)?;
    let update = match result {
        Ok(()) => StatusUpdate::Success,
        Err(msg) => StatusUpdate::Error(msg),
    };
    tx.record_status(id, update, unix_now())?;
    record_event(tx, STATUS_EVENT, switch)
}

/// Pins the host key switch `switch` showed (trust on first use).
pub(super) fn pin_host_key(
    tx: &Tx<'_>,
    switch: &str,
    id: i64,
    host_key: &str,
) -> inventory::Result<()> {
    tx.pin_host_key(id, host_key)?;
    record_event(tx, EventKind::Switch, switch)
}
