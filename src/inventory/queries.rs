//! Typed read queries used by several services (status page, metrics, CLI summaries).
//! Queries that belong to one service live next to that service.

use rusqlite::Connection;

use super::Result;

/// How much the inventory holds; shown on the status page, `/metrics` and `inventory show`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub switches: i64,
    pub core_switches: i64,
    pub edge_switches: i64,
    pub links: i64,
    pub machines: i64,
    pub hypervisors: i64,
    pub discovered: i64,
    pub nics: i64,
    pub vms: i64,
    pub networks: i64,
    pub volumes: i64,
    pub images: i64,
    pub customers: i64,
    pub leases: i64,
}

pub fn counts(conn: &Connection) -> Result<Counts> {
    Ok(conn.query_row(
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

/// The site's name, or "" before the first import.
pub fn site_name(conn: &Connection) -> Result<String> {
    let name: Option<String> = super::optional(conn.query_row(
        "SELECT name FROM sites ORDER BY id LIMIT 1",
        [],
        |r| r.get(0),
    ))?;
    Ok(name.unwrap_or_default())
}
