//! The SQLite backend of the inventory (see the parent module for the rules it keeps): one
//! writer thread with group commit, a pool of read-only connections, change events published
//! after each commit and polled from other processes through `PRAGMA data_version`, and the
//! schema migrations. [`Tx`] is what read and write closures get.

mod boot;
mod hosts;
mod images;
mod intents;
mod keys;
mod leases;
mod machines;
mod networks;
mod queries;
mod quotas;
mod requests;
mod resources;
mod site;
mod switches;
mod vms;
mod volumes;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, params};
use rusqlite_migration::{M, Migrations};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::{Error, Event, Result};
use crate::model::EventKind;
use crate::util;

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Backend(Box::new(e))
    }
}

/// Model values are stored as their text (`VmState::Running` as `running`).
macro_rules! stored_as_text {
    ($($ty:ty),+) => {$(
        impl rusqlite::types::ToSql for $ty {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }

        impl rusqlite::types::FromSql for $ty {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                v.as_str()?
                    .parse()
                    .map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
            }
        }
    )+};
}

stored_as_text!(
    crate::model::VmState,
    crate::model::RequestStatus,
    crate::model::NetworkKind,
    crate::model::EventKind,
    crate::model::DriverKind
);

impl From<rusqlite_migration::Error> for Error {
    fn from(e: rusqlite_migration::Error) -> Self {
        Error::Migration(Box::new(e))
    }
}

/// The transaction (in a write) or read snapshot (in a read) a closure works in. Repository
/// methods are implemented on it, one file per aggregate in this module.
pub struct Tx<'c> {
    conn: &'c Connection,
}

impl<'c> Tx<'c> {
    /// A transaction handle over `conn` (tests that build their own connection).
    pub fn new(conn: &'c Connection) -> Self {
        Tx { conn }
    }
}

impl Tx<'_> {
    /// Runs `f` in a nested transaction: its changes stay if it returns `Ok`, and are undone
    /// (alone) if it returns `Err`. The outer `Result` is the database's.
    pub fn nested<T, E>(
        &self,
        f: impl FnOnce() -> std::result::Result<T, E>,
    ) -> Result<std::result::Result<T, E>> {
        exec_cached(self.conn, "SAVEPOINT nested")?;
        let out = f();
        match &out {
            Ok(_) => exec_cached(self.conn, "RELEASE nested")?,
            Err(_) => self
                .conn
                .execute_batch("ROLLBACK TO nested; RELEASE nested")?,
        }
        Ok(out)
    }

    /// Runs the reads of `f` in one read transaction: one consistent snapshot (and one lock)
    /// for all of them. For a read closure, whose connection otherwise reads per statement.
    pub fn snapshot<T>(&self, f: impl FnOnce(&Self) -> T) -> Result<T> {
        exec_cached(self.conn, "BEGIN DEFERRED")?;
        let out = f(self);
        if let Err(e) = exec_cached(self.conn, "COMMIT") {
            // Never hand a connection back to the pool inside a transaction.
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
        Ok(out)
    }

    /// The connection itself, for test fixtures that set up rows no repository writes (a
    /// request in an odd state, a row from an older nhn). Never in production code.
    #[cfg(test)]
    pub fn raw(&self) -> &Connection {
        self.conn
    }

    /// Whether the database answers (the health check).
    pub fn ping(&self) -> Result<()> {
        self.conn
            .prepare_cached("SELECT 1")?
            .query_row([], |r| r.get::<_, i64>(0))?;
        Ok(())
    }
}

/// Records a change event inside the current transaction. Call it from every mutation.
pub fn record_event(tx: &Tx<'_>, kind: EventKind, object: &str) -> Result<()> {
    tx.conn
        .prepare_cached("INSERT INTO events (at, kind, object) VALUES (?1, ?2, ?3)")?
        .execute(params![util::now_rfc3339(), kind, object])?;
    Ok(())
}

/// Appends to the audit trail inside the current transaction: who (`actor`: a key id or
/// `cli`), did what to which object, with what result. Never pass secrets.
pub fn audit(tx: &Tx<'_>, actor: &str, action: &str, object: &str, result: &str) -> Result<()> {
    tx.conn
        .prepare_cached(
            "INSERT INTO audit (at, actor, action, object, result) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![util::now_rfc3339(), actor, action, object, result])?;
    Ok(())
}

/// The schema migrations, in order. Append; never edit a released migration.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_switch_plane.sql"),
    include_str!("migrations/0003_api.sql"),
    include_str!("migrations/0004_plan_refusals.sql"),
    include_str!("migrations/0005_boot_tokens.sql"),
    include_str!("migrations/0006_facility.sql"),
    include_str!("migrations/0007_port_native.sql"),
    include_str!("migrations/0008_work_json.sql"),
    include_str!("migrations/0009_image_content.sql"),
    include_str!("migrations/0010_image_boot.sql"),
];

/// The migration whose rows a hook converts, by its index in [`MIGRATIONS`].
const WORK_JSON: usize = 7;

fn migrations() -> Migrations<'static> {
    Migrations::new(
        MIGRATIONS
            .iter()
            .enumerate()
            .map(|(i, sql)| match i {
                WORK_JSON => M::up_with_hook(sql, work_from_xml),
                _ => M::up(sql),
            })
            .collect(),
    )
}

/// Migration 8: every request's XML-RPC arguments become its work, as JSON (`""` for a call
/// that queued no work).
fn work_from_xml(tx: &rusqlite::Transaction<'_>) -> rusqlite_migration::HookResult {
    let rows: Vec<(String, String, String)> = tx
        .prepare("SELECT id, method, args FROM requests WHERE args != ''")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut update = tx.prepare("UPDATE requests SET args = ?2 WHERE id = ?1")?;
    for (id, method, xml) in rows {
        let args = crate::codec::to_json(&dxr::Value::Struct(crate::codec::decode(&xml)));
        let work = crate::model::Work::from_call(&method, &args);
        update.execute(params![id, requests::work_text(work.as_ref())])?;
    }
    Ok(())
}

/// The schema version this build writes: one per migration.
pub fn schema_version() -> usize {
    MIGRATIONS.len()
}

/// How many jobs one group commit may hold; bounds the latency a burst adds to its last job.
const MAX_BATCH: usize = 512;
/// Read-only connections kept for reuse.
const READ_POOL: usize = 8;
/// How often `nhn serve` looks for commits made by other processes.
const EXTERNAL_POLL: Duration = Duration::from_millis(250);

type Finish = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;
/// A queued mutation. Called with `None` when no transaction could be opened, so that the job
/// reports the failure instead of vanishing.
type Job = Box<dyn FnOnce(Option<&Connection>) -> (bool, Finish) + Send>;

struct Shared {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    published: Mutex<i64>,
    events: broadcast::Sender<Event>,
}

/// Handle to the inventory. Cheap to clone; the writer thread stops when the last clone drops.
#[derive(Clone)]
pub struct Inventory {
    jobs: mpsc::Sender<Job>,
    shared: Arc<Shared>,
}

impl Inventory {
    /// Opens (creating if needed) the database at `path`, migrates it to the current schema and
    /// starts the writer thread.
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = open_conn(path, false)?;
        let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let found = usize::try_from(found).unwrap_or(usize::MAX);
        if found > schema_version() {
            return Err(Error::TooNew {
                path: path.to_owned(),
                found,
                supported: schema_version(),
            });
        }
        migrations().to_latest(&mut conn)?;
        let published: i64 =
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
        let (events, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            path: path.to_owned(),
            readers: Mutex::new(Vec::new()),
            published: Mutex::new(published),
            events,
        });
        let (jobs, rx) = mpsc::channel::<Job>(4096);
        let writer_shared = Arc::downgrade(&shared);
        thread::Builder::new()
            .name("inventory-writer".into())
            .spawn(move || writer_loop(conn, rx, writer_shared))
            .map_err(|e| {
                Error::Invalid(format!("cannot start the inventory writer thread: {e}"))
            })?;
        Ok(Inventory { jobs, shared })
    }

    /// The database file this handle works on.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Runs `f` in the writer's transaction (its own savepoint); `Err` rolls back only `f`'s
    /// changes. Returns once the batch holding `f` is durably committed.
    pub async fn write<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<R> + Send + 'static,
    {
        let (job, rx) = make_job(f);
        self.jobs.send(job).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// [`Inventory::write`] for synchronous callers (the CLI). Do not call on a tokio worker.
    pub fn write_blocking<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<R> + Send + 'static,
    {
        let (job, rx) = make_job(f);
        self.jobs.blocking_send(job).map_err(|_| Error::Closed)?;
        rx.blocking_recv().map_err(|_| Error::Closed)?
    }

    /// Runs a read-only query on a pooled connection, off the async runtime.
    pub async fn read<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<R> + Send + 'static,
    {
        let inv = self.clone();
        tokio::task::spawn_blocking(move || inv.read_blocking(f))
            .await
            .map_err(|e| Error::Invalid(format!("read task failed: {e}")))?
    }

    /// [`Inventory::read`] for synchronous callers.
    pub fn read_blocking<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&Tx<'_>) -> Result<R>,
    {
        let pooled = self.shared.readers.lock().ok().and_then(|mut p| p.pop());
        let conn = match pooled {
            Some(c) => c,
            None => open_conn(&self.shared.path, true)?,
        };
        let out = f(&Tx::new(&conn));
        if let Ok(mut pool) = self.shared.readers.lock()
            && pool.len() < READ_POOL
        {
            pool.push(conn);
        }
        out
    }

    /// Change events committed from now on (by this process, and by others once
    /// [`Inventory::follow_external_writers`] runs). A lagging receiver should rebuild its state.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// Publishes events committed by other processes (e.g. `nhn inventory import` while the
    /// appliance runs). Polls SQLite's `data_version`, which is a cheap in-memory check.
    pub fn follow_external_writers(&self) -> Result<()> {
        let conn = open_conn(&self.shared.path, true)?;
        let weak = Arc::downgrade(&self.shared);
        thread::Builder::new()
            .name("inventory-follow".into())
            .spawn(move || {
                let mut last = None;
                loop {
                    thread::sleep(EXTERNAL_POLL);
                    let Some(shared) = weak.upgrade() else { return };
                    let version: Option<i64> =
                        conn.query_row("PRAGMA data_version", [], |r| r.get(0)).ok();
                    if version != last {
                        last = version;
                        if let Err(e) = publish(&conn, &shared) {
                            tracing::warn!(error = %e, "cannot read inventory events");
                        }
                    }
                }
            })
            .map_err(|e| Error::Invalid(format!("cannot start the event follower thread: {e}")))?;
        Ok(())
    }
}

fn make_job<R, F>(f: F) -> (Job, oneshot::Receiver<Result<R>>)
where
    R: Send + 'static,
    F: FnOnce(&Tx<'_>) -> Result<R> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move |conn| match conn.map(|c| f(&Tx::new(c))) {
        None => {
            let finish: Finish = Box::new(move |failed| {
                let _ = tx.send(Err(Error::Commit(failed.err().unwrap_or_default())));
            });
            (false, finish)
        }
        Some(Ok(value)) => {
            let finish: Finish = Box::new(move |committed| {
                let _ = tx.send(committed.map(|()| value).map_err(Error::Commit));
            });
            (true, finish)
        }
        Some(Err(e)) => {
            let finish: Finish = Box::new(move |_| {
                let _ = tx.send(Err(e));
            });
            (false, finish)
        }
    });
    (job, rx)
}

/// Runs a statement without parameters or rows (BEGIN, COMMIT, SAVEPOINT...) from the
/// connection's statement cache: these run on every call, and parsing them each time showed.
fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

fn open_conn(path: &Path, read_only: bool) -> Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(|source| Error::Open {
        path: path.to_owned(),
        source: Box::new(source),
    })?;
    conn.busy_timeout(Duration::from_secs(10))?;
    if !read_only {
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Invalid(format!(
                "{} cannot use WAL journaling (got {mode}); put the data dir on a local filesystem",
                path.display()
            )));
        }
    }
    conn.execute_batch("PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL;")?;
    // Query-planner stability: without it SQLite re-prepares a cached statement every time a
    // parameter it could plan on is bound anew (`LIMIT ?`, `x = ?` with STAT4), which was a
    // sixth of the API's CPU on list calls. We keep no statistics, so plans do not change.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    // Every API method and service has its statements; rusqlite's default cache of 16 would
    // evict (and re-parse) them under a mixed load.
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

/// A migrated in-memory database for unit tests: the real schema and repositories, no file,
/// no writer thread. Statements run in autocommit; `Tx::nested` still isolates a call.
#[cfg(test)]
pub struct Memory(Connection);

#[cfg(test)]
impl Default for Memory {
    fn default() -> Memory {
        Memory::new()
    }
}

#[cfg(test)]
impl Memory {
    pub fn new() -> Memory {
        let mut conn = Connection::open_in_memory().expect("open an in-memory database");
        conn.execute_batch("PRAGMA foreign_keys=ON;")
            .expect("enable foreign keys");
        migrations()
            .to_latest(&mut conn)
            .expect("migrate the in-memory database");
        Memory(conn)
    }

    pub fn tx(&self) -> Tx<'_> {
        Tx::new(&self.0)
    }
}

fn writer_loop(conn: Connection, mut rx: mpsc::Receiver<Job>, shared: Weak<Shared>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (finishes, committed) = match exec_cached(&conn, "BEGIN IMMEDIATE") {
            Ok(()) => {
                let finishes = run_batch(&conn, batch);
                let committed = exec_cached(&conn, "COMMIT").map_err(|e| {
                    let _ = conn.execute_batch("ROLLBACK");
                    tracing::error!(error = %e, "inventory commit failed");
                    e.to_string()
                });
                (finishes, committed)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start an inventory transaction");
                let finishes = batch.into_iter().map(|job| job(None).1).collect();
                (finishes, Err(format!("cannot start a transaction: {e}")))
            }
        };
        for finish in finishes {
            finish(committed.clone());
        }
        if let Some(shared) = shared.upgrade()
            && let Err(e) = publish(&conn, &shared)
        {
            tracing::warn!(error = %e, "cannot publish inventory events");
        }
    }
}

/// Runs each job in its own savepoint inside one open transaction; returns their completions.
fn run_batch(conn: &Connection, batch: Vec<Job>) -> Vec<Finish> {
    batch
        .into_iter()
        .map(|job| {
            if let Err(e) = exec_cached(conn, "SAVEPOINT job") {
                tracing::error!(error = %e, "cannot open a savepoint");
            }
            // A panicking job must not take the writer (and every later write) down with it.
            let Ok((ok, finish)) =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(Some(conn))))
            else {
                tracing::error!("an inventory job panicked; its changes are rolled back");
                let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
                let finish: Finish = Box::new(|_| {});
                return finish;
            };
            let end = if ok {
                exec_cached(conn, "RELEASE job")
            } else {
                conn.execute_batch("ROLLBACK TO job; RELEASE job")
            };
            if let Err(e) = end {
                tracing::error!(error = %e, "cannot close a savepoint");
            }
            finish
        })
        .collect()
}

/// Broadcasts events committed since the last publication, in order, exactly once per process.
fn publish(conn: &Connection, shared: &Shared) -> Result<()> {
    let mut published = shared
        .published
        .lock()
        .map_err(|_| Error::Invalid("event lock poisoned".into()))?;
    let mut stmt =
        conn.prepare_cached("SELECT seq, kind, object FROM events WHERE seq > ?1 ORDER BY seq")?;
    let rows = stmt.query_map([*published], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get(2)?))
    })?;
    for row in rows {
        let (seq, kind, object) = row?;
        *published = seq;
        let Ok(kind) = kind.parse() else {
            tracing::warn!(%kind, %object, "ignoring a change event of a kind this nhn does not know");
            continue;
        };
        let ev = Event { seq, kind, object };
        // No subscribers is fine: nothing follows the inventory in CLI commands.
        let _ = shared.events.send(ev);
    }
    Ok(())
}

/// One page of a list: `from_where` is the query after `SELECT <columns>` up to its `WHERE`
/// clause, taking `filter` as its parameters; `columns` and `order` complete the row query,
/// which gets `LIMIT`/`OFFSET` appended. Every API list goes through here.
pub(crate) fn page<T>(
    conn: &Connection,
    columns: &str,
    from_where: &str,
    order: &str,
    filter: &[&dyn rusqlite::ToSql],
    window: super::Window,
    row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<super::Page<T>> {
    let total: i64 = conn
        .prepare_cached(&format!("SELECT COUNT(*) {from_where}"))?
        .query_row(filter, |r| r.get(0))?;
    let n = filter.len();
    let sql = format!(
        "SELECT {columns} {from_where} ORDER BY {order} LIMIT ?{} OFFSET ?{}",
        n + 1,
        n + 2
    );
    let mut all: Vec<&dyn rusqlite::ToSql> = filter.to_vec();
    all.push(&window.limit);
    all.push(&window.offset);
    let items = conn
        .prepare_cached(&sql)?
        .query_map(all.as_slice(), row)?
        .collect::<rusqlite::Result<_>>()?;
    Ok(super::Page { total, items })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_db() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nhn.db");
        (dir, path)
    }

    fn add_customer(name: &'static str) -> impl FnOnce(&Tx<'_>) -> Result<()> + Send + 'static {
        move |c| {
            c.raw().execute(
                "INSERT INTO customers (name, created_at) VALUES (?1, 'now')",
                [name],
            )?;
            record_event(c, EventKind::Customer, name)
        }
    }

    fn customers(inv: &Inventory) -> Vec<String> {
        inv.read_blocking(|c| {
            let mut st = c
                .raw()
                .prepare("SELECT name FROM customers ORDER BY name")?;
            Ok(st
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?)
        })
        .unwrap()
    }

    #[test]
    fn migration_8_turns_stored_xml_arguments_into_work() {
        let (_dir, path) = temp_db();
        let mut conn = Connection::open(&path).unwrap();
        migrations().to_version(&mut conn, WORK_JSON).unwrap();
        let xml = |v: &[(&str, dxr::Value)]| {
            crate::codec::encode(
                &v.iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect(),
            )
        };
        for (id, method, args) in [
            (
                "r1",
                "powerOffVm",
                xml(&[
                    ("vmId", dxr::Value::String("vm-1".into())),
                    ("force", dxr::Value::Boolean(true)),
                ]),
            ),
            (
                "r2",
                "restoreImage",
                xml(&[("imageId", dxr::Value::String("img-1".into()))]),
            ),
            (
                "r3",
                "resetMachine",
                xml(&[("timeoutSecs", dxr::Value::Integer(30))]),
            ),
            (
                "r4",
                "allocateVm",
                xml(&[("vmType", dxr::Value::String("V1".into()))]),
            ),
            ("r5", "getVmInfo", String::new()),
        ] {
            conn.execute(
                "INSERT INTO requests (id, method, status, args, accepted_at) VALUES (?1, ?2, 'queued', ?3, 'now')",
                params![id, method, args],
            )
            .unwrap();
        }
        migrations().to_latest(&mut conn).unwrap();
        let stored: Vec<String> = conn
            .prepare("SELECT args FROM requests ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            stored,
            [
                r#"{"work":"power_off","force":true}"#,
                r#"{"work":"restore","image":"img-1"}"#,
                r#"{"work":"machine","op":"reset","timeout_secs":30}"#,
                "",
                "",
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_job_rolls_back_alone_in_a_group_commit() {
        let (_dir, path) = temp_db();
        let inv = Inventory::open(&path).unwrap();
        let mut tasks = Vec::new();
        for i in 0..200 {
            let inv = inv.clone();
            tasks.push(tokio::spawn(async move {
                inv.write(move |c| {
                    c.raw().execute(
                        "INSERT INTO customers (name, created_at) VALUES (?1, 'now')",
                        [format!("c{i}")],
                    )?;
                    if i % 10 == 0 {
                        // Half-done work that must vanish with the error.
                        return Err(Error::Invalid(format!("job {i} refuses")));
                    }
                    Ok(i)
                })
                .await
            }));
        }
        let mut failed = 0;
        for t in tasks {
            if t.await.unwrap().is_err() {
                failed += 1;
            }
        }
        assert_eq!(failed, 20);
        let names = customers(&inv);
        assert_eq!(names.len(), 180);
        assert!(!names.contains(&"c10".to_owned()) && names.contains(&"c11".to_owned()));
    }

    #[tokio::test]
    async fn subscribers_see_each_committed_change_once_in_order() {
        let (_dir, path) = temp_db();
        let inv = Inventory::open(&path).unwrap();
        let mut rx = inv.subscribe();
        inv.write(add_customer("acme")).await.unwrap();
        assert!(
            inv.write(|_| Err::<(), _>(Error::Invalid("no".into())))
                .await
                .is_err()
        );
        inv.write(add_customer("globex")).await.unwrap();
        let a = rx.recv().await.unwrap();
        let b = rx.recv().await.unwrap();
        assert_eq!((a.kind.as_str(), a.object.as_str()), ("customer", "acme"));
        assert_eq!(b.object, "globex");
        assert!(b.seq > a.seq);
        assert!(rx.try_recv().is_err(), "a rolled-back job must not publish");
    }

    #[tokio::test]
    async fn changes_committed_by_another_process_are_published() {
        let (_dir, path) = temp_db();
        let serving = Inventory::open(&path).unwrap();
        serving.follow_external_writers().unwrap();
        let mut rx = serving.subscribe();
        // A second handle stands in for the CLI: its own connection and writer thread.
        let cli = Inventory::open(&path).unwrap();
        cli.write(add_customer("initech")).await.unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ev.object, "initech");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let (_dir, path) = temp_db();
        drop(Inventory::open(&path).unwrap());
        let newer = schema_version() as i64 + 1;
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", newer)
            .unwrap();
        let err = Inventory::open(&path).err().unwrap().to_string();
        assert!(
            err.contains(&format!("schema version {newer}")) && err.contains("newer nhn"),
            "{err}"
        );
    }
}
