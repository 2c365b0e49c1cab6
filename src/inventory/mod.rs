//! The inventory: nhn's single source of truth, an SQLite database in WAL mode.
//!
//! Everything the appliance does is derived from these tables (DHCP answers, switch plans,
//! API responses), so this module is deliberately small and strict:
//!
//! - **One writer.** All mutations go through [`Inventory::write`], which hands a closure to a
//!   dedicated writer thread. The thread drains whatever jobs are queued and runs them in *one*
//!   transaction, each inside its own savepoint (group commit): a failing job rolls back alone,
//!   and a burst of small writes (DHCP leases, API calls) costs one fsync instead of hundreds.
//! - **Many readers.** [`Inventory::read`] borrows a read-only connection from a small pool;
//!   WAL lets readers run while the writer commits.
//! - **Change events.** Every mutation appends rows to the `events` table in its own
//!   transaction. After each commit the writer publishes the new rows on a broadcast channel;
//!   [`Inventory::follow_external_writers`] also publishes rows committed by other processes
//!   (the CLI importing a site while `nhn serve` runs). Services subscribe with
//!   [`Inventory::subscribe`] and rebuild their in-memory snapshots; nobody polls tables.
//! - **Schema** migrations live in `sqlite/migrations/`. A database
//!   written by a newer nhn is refused with a clear message instead of being "migrated"
//!   backwards.
//! - **Backends.** Everything that speaks SQL lives in [`sqlite`]: the writer thread, the
//!   reader pool and the repositories. Closures get a [`Tx`], the transaction (or read
//!   snapshot) of the backend; the rest of nhn calls the repository methods on it and cannot
//!   reach the database (`Tx` hands out its connection only to test fixtures).

pub mod boot;
pub mod hosts;
pub mod images;
pub mod keys;
pub mod leases;
pub mod machines;
pub mod networks;
pub mod queries;
pub mod quotas;
pub mod requests;
pub mod resources;
pub mod site;
pub mod sqlite;
pub mod switches;
pub mod vms;
pub mod volumes;

use std::path::PathBuf;

#[cfg(test)]
pub use sqlite::Memory;
pub use sqlite::{Inventory, Tx, audit, record_event, schema_version};

/// A backend's own error, kept whole (its message and source chain).
pub type BackendError = Box<dyn std::error::Error + Send + Sync>;

/// Errors of the inventory layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// What the backend reported (converted from its own error type in its module).
    #[error("database error: {0}")]
    Backend(BackendError),
    #[error("cannot open the inventory at {path}: {source}")]
    Open { path: PathBuf, source: BackendError },
    #[error(
        "the inventory at {path} has schema version {found}, but this nhn only knows versions up to {supported}; \
         it was written by a newer nhn: run that version (or restore a backup), do not downgrade"
    )]
    TooNew {
        path: PathBuf,
        found: usize,
        supported: usize,
    },
    #[error("schema migration failed: {0}")]
    Migration(BackendError),
    #[error("the inventory writer has stopped (is the appliance shutting down?)")]
    Closed,
    #[error("{0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The batch this job belonged to could not be committed.
    #[error("commit failed: {0}")]
    Commit(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which part of a list to return: skip `offset` rows, return at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub offset: i64,
    pub limit: i64,
}

/// One page of a list and the number of rows the whole list has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub total: i64,
    pub items: Vec<T>,
}

/// One committed change, as recorded in the `events` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub seq: i64,
    pub kind: crate::model::EventKind,
    pub object: String,
}
