//! [`Requests`] on SQLite. Customers are `COALESCE(customer_id, 0)`; ties in acceptance time
//! (whole seconds) go by insertion order.

use rusqlite::{OptionalExtension, params};

use super::Tx;
use crate::inventory::Result;
use crate::inventory::requests::{
    ApiCall, CallRecord, Ending, Job, OperatorRequest, Pending, PendingCounts, Queue, RequestRow,
    Requests, Stored,
};
use crate::model::Work;
use crate::util::rfc3339;

/// Work as `requests.args` stores it: JSON, or "" for a synchronous call.
pub(super) fn work_text(work: Option<&Work>) -> String {
    work.and_then(|w| serde_json::to_string(w).ok())
        .unwrap_or_default()
}

/// The stored work (`None` if the text is not work).
fn work(text: String) -> Option<Work> {
    serde_json::from_str(&text).ok()
}

/// A request with the machine it goes to: the one it was handed to, the hypervisor its VM is
/// placed on, or the bare-metal machine it is about.
const JOB_COLUMNS: &str =
    "SELECT r.id, r.method, r.resource_id, r.args, r.command, COALESCE(h.name, m.name, b.name)
    FROM requests r
    LEFT JOIN machines h ON h.id = r.host_id
    LEFT JOIN vms v ON r.resource_type = 'vm' AND v.public_id = r.resource_id
    LEFT JOIN machines m ON m.id = v.hypervisor_id
    LEFT JOIN machines b ON r.resource_type = 'machine' AND b.name = r.resource_id";

fn job(r: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    Ok(Job {
        id: r.get(0)?,
        method: r.get(1)?,
        resource_id: r.get(2)?,
        work: work(r.get(3)?),
        command: r.get(4)?,
        host: r.get(5)?,
    })
}

impl Tx<'_> {
    fn jobs(&self, filter: &str, p: impl rusqlite::Params) -> Result<Vec<Job>> {
        let mut st = self
            .conn
            .prepare_cached(&format!("{JOB_COLUMNS} WHERE {filter}"))?;
        Ok(st.query_map(p, job)?.collect::<rusqlite::Result<_>>()?)
    }
}

impl Requests for Tx<'_> {
    fn earlier_call(
        &self,
        customer_id: i64,
        method: &str,
        token: &str,
        since: i64,
    ) -> Result<Option<(Option<String>, Option<String>)>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT args_digest, response FROM requests
                 WHERE customer_id = ?1 AND method = ?2 AND client_token = ?3 AND accepted_at > ?4",
            )?
            .query_row(params![customer_id, method, token, rfc3339(since)], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?)
    }

    fn insert_call(&self, c: &ApiCall<'_>) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO requests (id, customer_id, key_id, method, resource_type, resource_id, status,
                    args, client_token, args_digest, response, previous_state, accepted_at, finished_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?
            .execute(params![
                c.id,
                c.customer_id,
                c.key_id,
                c.method,
                c.resource_type,
                c.resource_id,
                c.status,
                work_text(c.work),
                c.client_token,
                c.args_digest,
                c.response,
                c.previous_state,
                c.accepted_at,
                c.finished_at
            ])?;
        Ok(())
    }

    fn pending_counts(&self, customer_id: i64) -> Result<PendingCounts> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT
                    (SELECT COUNT(*) FROM requests INDEXED BY requests_status
                      WHERE status IN ('queued', 'running') AND status = 'queued' AND customer_id = ?1),
                    (SELECT COUNT(*) FROM requests INDEXED BY requests_status
                      WHERE status IN ('queued', 'running') AND customer_id = ?1),
                    (SELECT pending_requests FROM quotas WHERE customer_id = ?1)",
            )?
            .query_row([customer_id], |r| {
                Ok(PendingCounts {
                    queued: r.get(0)?,
                    pending: r.get(1)?,
                    quota: r.get(2)?,
                })
            })?)
    }

    fn request_of(&self, customer_id: i64, id: &str) -> Result<Option<RequestRow>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT method, resource_type, resource_id, status, accepted_at, started_at, finished_at,
                        error_type, error_message, result, progress_done, progress_total
                 FROM requests WHERE id = ?1 AND customer_id = ?2",
            )?
            .query_row(params![id, customer_id], |r| {
                Ok(RequestRow {
                    method: r.get(0)?,
                    resource_type: r.get(1)?,
                    resource_id: r.get(2)?,
                    status: r.get(3)?,
                    accepted_at: r.get(4)?,
                    started_at: r.get(5)?,
                    finished_at: r.get(6)?,
                    error_type: r.get(7)?,
                    error_message: r.get(8)?,
                    result: r.get(9)?,
                    progress: match (r.get::<_, Option<i64>>(10)?, r.get::<_, Option<i64>>(11)?) {
                        (Some(d), Some(t)) => Some((d.max(0) as u64, t.max(0) as u64)),
                        _ => None,
                    },
                })
            })
            .optional()?)
    }

    fn set_progress(&self, id: &str, host_id: i64, done: u64, total: u64) -> Result<()> {
        let big = |n: u64| n.min(i64::MAX as u64) as i64;
        self.conn
            .prepare_cached(
                "UPDATE requests SET progress_done = ?3, progress_total = ?4
                 WHERE id = ?1 AND host_id = ?2 AND status = 'running'",
            )?
            .execute(params![id, host_id, big(done), big(total)])?;
        Ok(())
    }

    fn latest_vm_request(&self, vm: &str) -> Result<Option<(String, String, String)>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, method, status FROM requests
                 WHERE resource_type = 'vm' AND resource_id = ?1 AND previous_state IS NOT NULL
                 ORDER BY accepted_at DESC, rowid DESC LIMIT 1",
            )?
            .query_row([vm], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?)
    }

    fn record_call(&self, c: &CallRecord<'_>) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO requests (id, customer_id, key_id, method, status, error_type,
                    error_message, accepted_at, finished_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
            )?
            .execute(params![
                c.id,
                c.customer_id,
                c.key_id,
                c.method,
                c.status,
                c.error_type,
                c.error_message,
                c.at
            ])?;
        Ok(())
    }

    fn dispatched_to(&self, id: &str) -> Result<Option<Option<i64>>> {
        Ok(self
            .conn
            .query_row("SELECT host_id FROM requests WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?)
    }

    fn queue(&self) -> Result<Queue> {
        let queued = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT COALESCE(customer_id, 0) FROM requests WHERE status = 'queued'",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<i64>>>()?;
        let running = self
            .conn
            .prepare_cached(
                "SELECT COALESCE(customer_id, 0), COUNT(*) FROM requests WHERE status = 'running'
                 GROUP BY COALESCE(customer_id, 0)",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Queue { queued, running })
    }

    fn oldest_queued(&self, customer: i64) -> Result<Option<Job>> {
        Ok(self
            .jobs(
                "COALESCE(r.customer_id, 0) = ?1 AND r.status = 'queued'
                 ORDER BY r.accepted_at, r.rowid LIMIT 1",
                [customer],
            )?
            .pop())
    }

    fn running(&self) -> Result<Vec<Job>> {
        self.jobs("r.status = 'running' ORDER BY r.started_at", [])
    }

    fn overdue(&self, now: i64) -> Result<Vec<Job>> {
        self.jobs(
            "r.status = 'running' AND r.deadline_at < ?1",
            [rfc3339(now)],
        )
    }

    fn start(
        &self,
        id: &str,
        at: i64,
        deadline: i64,
        command: &str,
        host: Option<&str>,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE requests SET status = 'running', started_at = ?2, deadline_at = ?3, command = ?4,
                host_id = (SELECT id FROM machines WHERE name = ?5)
             WHERE id = ?1",
            params![id, rfc3339(at), rfc3339(deadline), command, host],
        )?;
        Ok(())
    }

    fn pending(&self, id: &str) -> Result<Option<Pending>> {
        Ok(self
            .conn
            .query_row(
                "SELECT method, resource_id, status, previous_state, args FROM requests WHERE id = ?1",
                [id],
                |r| {
                    Ok(Pending {
                        method: r.get(0)?,
                        resource_id: r.get(1)?,
                        status: r.get(2)?,
                        previous_state: r.get(3)?,
                        work: work(r.get(4)?),
                    })
                },
            )
            .optional()?)
    }

    fn end(&self, id: &str, e: &Ending<'_>) -> Result<()> {
        self.conn.execute(
            "UPDATE requests SET status = ?2, result = ?3, error_type = ?4, error_message = ?5, finished_at = ?6,
                started_at = COALESCE(started_at, ?6)
             WHERE id = ?1",
            params![
                id,
                e.status,
                e.result,
                e.error_type,
                e.error_message,
                rfc3339(e.at)
            ],
        )?;
        Ok(())
    }

    fn stored(&self, id: &str) -> Result<Option<Stored>> {
        Ok(self
            .conn
            .query_row(
                "SELECT status, result, error_message FROM requests WHERE id = ?1",
                [id],
                |r| {
                    Ok(Stored {
                        status: r.get(0)?,
                        result: r.get(1)?,
                        error_message: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    fn queue_operator(&self, r: &OperatorRequest<'_>) -> Result<()> {
        self.conn.execute(
            "INSERT INTO requests (id, key_id, method, resource_type, resource_id, status, args, accepted_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7)",
            params![
                r.id,
                r.actor,
                r.method,
                r.resource_type,
                r.resource_id,
                work_text(Some(r.work)),
                rfc3339(r.at)
            ],
        )?;
        Ok(())
    }

    fn cancel_queued(&self, id: &str, why: &str, at: i64) -> Result<bool> {
        let n = self.conn.execute(
            "UPDATE requests SET status = 'canceled', error_type = 'Canceled', error_message = ?2,
                finished_at = ?3 WHERE id = ?1 AND status = 'queued'",
            params![id, why, rfc3339(at)],
        )?;
        Ok(n > 0)
    }

    fn purge_finished_before(&self, cutoff: i64) -> Result<usize> {
        Ok(self.conn.execute(
            "DELETE FROM requests WHERE status IN ('succeeded', 'failed', 'canceled') AND finished_at < ?1",
            [rfc3339(cutoff)],
        )?)
    }
}
