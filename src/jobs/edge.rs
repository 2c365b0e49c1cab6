//! The power-on gate (FACILITY.md: "confirm the edge VLAN before power-on"): a VM starts only
//! once every edge port cabled to its hypervisor has been read back carrying the VLANs of the
//! VM's NICs. The reconciler writes that read-back (`switch_applied`) in the same transaction
//! that marks its intents applied, so this is a plain query, polled until it holds.

use std::time::Duration;

use tokio::time::Instant;

use crate::facility::command::VmSpec;
use crate::inventory::switches::{EdgePort, Switches};
use crate::inventory::{self, Inventory, Tx};
use crate::switch::vlans::VlanSet;

/// How often the gate looks again.
const POLL: Duration = Duration::from_millis(10);

/// What still keeps the VM from starting on `host` (`None`: every edge port confirmed it).
pub fn missing(tx: &Tx<'_>, host: &str, vlans: &[u16]) -> inventory::Result<Option<String>> {
    if vlans.is_empty() {
        return Ok(None);
    }
    for EdgePort {
        switch,
        port,
        applied,
    } in tx.edge_ports_of(host)?
    {
        let have: VlanSet = applied
            .as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or_default();
        let lacking: Vec<String> = vlans
            .iter()
            .filter(|v| !have.contains(**v))
            .map(u16::to_string)
            .collect();
        if !lacking.is_empty() {
            return Ok(Some(format!(
                "edge {switch} port {port} has not confirmed VLAN {}",
                lacking.join(",")
            )));
        }
    }
    Ok(None)
}

/// Waits until the edge carries the VM's VLANs, or fails at `deadline` saying which port lacks
/// which VLAN.
pub async fn wait(
    inventory: &Inventory,
    host: &str,
    spec: &VmSpec,
    deadline: Instant,
) -> Result<(), String> {
    let vlans: Vec<u16> = spec.nics.iter().filter_map(|n| n.vlan).collect();
    let started = Instant::now();
    loop {
        let (h, v) = (host.to_owned(), vlans.clone());
        let missing = inventory
            .read(move |c| missing(c, &h, &v))
            .await
            .map_err(|e| format!("cannot read the switch state: {e}"))?;
        let Some(why) = missing else {
            metrics::histogram!("nhn_power_on_edge_wait_seconds")
                .record(started.elapsed().as_secs_f64());
            return Ok(());
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "{why} within the power deadline; check `nhn switch show` for that switch"
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}
