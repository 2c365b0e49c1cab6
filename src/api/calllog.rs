//! The record of read calls and refused calls (HAAS-API.md §2.0: every call gets a request id
//! that `getRequestIdInfo` knows). Writing one row per get* call through the writer would put a
//! thread handoff and a savepoint on the API's hottest path, so these records wait here in
//! memory and a flusher writes them in batches (one writer job each, every few milliseconds).
//! `getRequestIdInfo` looks here when the row is not in the table yet, so an id is queryable
//! the moment its answer is sent. Write calls do not come here: their rows commit with them.
//! A crash loses at most the last flush interval of *read* records, never a change. The same
//! flusher stamps `api_keys.last_used_at` for every key that authenticated a call (`nhn key list`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dxr::Value;
use tokio::sync::{Notify, watch};

use super::args::{Struct, s, st};
use super::fault::ApiError;
use crate::inventory::Inventory;
use crate::inventory::keys::Keys;
use crate::inventory::requests::{CallRecord, Requests};
use crate::util::{now_rfc3339, unix_now};

/// How often pending records are written.
const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// Records held before a flush is started at once.
const FLUSH_AT: usize = 2048;

#[derive(Debug, Clone)]
pub struct Record {
    pub customer_id: i64,
    pub key_id: String,
    pub method: &'static str,
    pub error: Option<ApiError>,
    pub at: String,
}

#[derive(Default)]
pub struct CallLog {
    pending: Mutex<HashMap<String, Record>>,
    /// Keys used since the last flush, with when (unix seconds): `api_keys.last_used_at`.
    used: Mutex<HashMap<String, i64>>,
    full: Notify,
}

impl CallLog {
    /// Records a call answered now.
    pub fn push(
        &self,
        request_id: &str,
        customer_id: i64,
        key_id: &str,
        method: &'static str,
        error: Option<ApiError>,
    ) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.insert(
            request_id.to_owned(),
            Record {
                customer_id,
                key_id: key_id.to_owned(),
                method,
                error,
                at: now_rfc3339(),
            },
        );
        if pending.len() >= FLUSH_AT {
            self.full.notify_one();
        }
    }

    /// The `RequestInfo` of a recorded call not yet in the table.
    /// Notes that a key authenticated a call (any call: read, write or refused).
    pub fn touch(&self, key_id: &str) {
        let now = unix_now();
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        match used.get_mut(key_id) {
            Some(at) => *at = now,
            None => {
                used.insert(key_id.to_owned(), now);
            }
        }
    }

    pub fn info(&self, request_id: &str, customer_id: i64) -> Option<Struct> {
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let r = pending
            .get(request_id)
            .filter(|r| r.customer_id == customer_id)?;
        let (status, kind, message) = match &r.error {
            None => ("succeeded", "", String::new()),
            Some(e) => ("failed", e.kind.as_str(), e.message.clone()),
        };
        Some(st([
            ("requestId", s(request_id)),
            ("method", s(r.method)),
            ("resourceType", s("none")),
            ("resourceId", s("")),
            ("status", s(status)),
            ("acceptedAt", s(&r.at)),
            ("startedAt", s("")),
            ("finishedAt", s(&r.at)),
            ("errorType", s(kind)),
            ("errorMessage", s(message)),
            ("result", Value::Struct(Struct::new())),
        ]))
    }

    /// Writes pending records in one writer job; they leave memory once committed.
    pub async fn flush(&self, inventory: &Inventory) {
        let batch: Vec<(String, Record)> = {
            let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let used: Vec<(String, i64)> =
            std::mem::take(&mut *self.used.lock().unwrap_or_else(|p| p.into_inner()))
                .into_iter()
                .collect();
        if batch.is_empty() && used.is_empty() {
            return;
        }
        let ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
        let touched = used.clone();
        let written = inventory
            .write(move |tx| {
                for (id, r) in &batch {
                    let (status, error_type, error_message) = match &r.error {
                        None => ("succeeded", "", ""),
                        Some(e) => ("failed", e.kind.as_str(), e.message.as_str()),
                    };
                    tx.record_call(&CallRecord {
                        id,
                        customer_id: Some(r.customer_id),
                        key_id: Some(&r.key_id),
                        method: r.method,
                        status,
                        error_type,
                        error_message,
                        at: &r.at,
                    })?;
                }
                for (key, at) in &touched {
                    tx.touch_key(key, *at)?;
                }
                Ok(())
            })
            .await;
        match written {
            Ok(()) => {
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                for id in ids {
                    pending.remove(&id);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot record API calls; retrying");
                let mut again = self.used.lock().unwrap_or_else(|p| p.into_inner());
                for (key, at) in used {
                    again.entry(key).or_insert(at);
                }
            }
        }
    }

    /// Flushes every few milliseconds (or when many are pending) until `stop`, then once more.
    pub async fn run(self: Arc<Self>, inventory: Inventory, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                _ = self.full.notified() => {}
                _ = tokio::time::sleep(FLUSH_EVERY) => {}
            }
            self.flush(&inventory).await;
        }
        self.flush(&inventory).await;
    }
}
