//! [`Overview`] on SQLite.

use super::Tx;
use crate::inventory::Result;
use crate::inventory::queries::{Counts, Overview};

impl Overview for Tx<'_> {
    fn counts(&self) -> Result<Counts> {
        Ok(self.conn.query_row(
            "SELECT
            (SELECT COUNT(*) FROM switches),
            (SELECT COUNT(*) FROM switches WHERE role = 'core'),
            (SELECT COUNT(*) FROM switches WHERE role = 'edge'),
            (SELECT COUNT(*) FROM links),
            (SELECT COUNT(*) FROM machines WHERE kind != 'discovered'),
            (SELECT COUNT(*) FROM machines WHERE kind = 'hypervisor'),
            (SELECT COUNT(*) FROM machines WHERE kind = 'discovered'),
            (SELECT COUNT(*) FROM nics),
            (SELECT COUNT(*) FROM vms),
            (SELECT COUNT(*) FROM networks),
            (SELECT COUNT(*) FROM volumes),
            (SELECT COUNT(*) FROM images),
            (SELECT COUNT(*) FROM customers),
            (SELECT COUNT(*) FROM leases)",
            [],
            |r| {
                Ok(Counts {
                    switches: r.get(0)?,
                    core_switches: r.get(1)?,
                    edge_switches: r.get(2)?,
                    links: r.get(3)?,
                    machines: r.get(4)?,
                    hypervisors: r.get(5)?,
                    discovered: r.get(6)?,
                    nics: r.get(7)?,
                    vms: r.get(8)?,
                    networks: r.get(9)?,
                    volumes: r.get(10)?,
                    images: r.get(11)?,
                    customers: r.get(12)?,
                    leases: r.get(13)?,
                })
            },
        )?)
    }
}
