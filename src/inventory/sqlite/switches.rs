//! [`Switches`] on SQLite.

use super::Tx;
use crate::inventory::Result;
use crate::inventory::switches::{EdgePort, Switches};

impl Switches for Tx<'_> {
    fn edge_ports_of(&self, machine: &str) -> Result<Vec<EdgePort>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT s.name, p.name, a.vlans FROM nics n
                 JOIN machines m ON m.id = n.machine_id
                 JOIN switch_ports p ON p.id = n.switch_port_id
                 JOIN switches s ON s.id = p.switch_id
                 LEFT JOIN switch_applied a ON a.switch_id = s.id AND a.port = p.name
                 WHERE m.name = ?1 AND s.role = 'edge'",
            )?
            .query_map([machine], |r| {
                Ok(EdgePort {
                    switch: r.get(0)?,
                    port: r.get(1)?,
                    applied: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?)
    }
}
