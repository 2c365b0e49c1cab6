//! The agent's calls to the appliance's internal listener (XML-RPC, HAAS-API.md §3.3):
//! `reportRequestResult` after each request and `reportHostState` every `[agent] report_secs`,
//! both with the agent's own credential. Also the download of VM kernels, initrds and image
//! archives, streamed to `<state_dir>/cache/<sha256>` and verified before use.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dxr::{FaultResponse, MethodCall, MethodResponse, Value};
use sha2::{Digest, Sha256};

use crate::facility::agent::HostReport;
use crate::facility::agent::RequestStatus;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The appliance could not be reached: try again later.
    #[error("appliance at {url} unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    /// The appliance answered with a fault: trying again will not help.
    #[error("appliance refused {method}: {reason}")]
    Refused { method: String, reason: String },
}

/// The longest a download (a kernel, an initrd, an image archive) may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

pub struct Appliance {
    url: String,
    credential: String,
    client: reqwest::Client,
}

fn json_to_value(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::String(String::new()),
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => match n.as_i64().and_then(|i| i32::try_from(i).ok()) {
            Some(i) => Value::Integer(i),
            None => Value::Double(n.as_f64().unwrap_or_default()),
        },
        J::String(s) => Value::String(s.clone()),
        J::Array(a) => Value::Array(a.iter().map(json_to_value).collect()),
        J::Object(m) => Value::Struct(
            m.iter()
                .map(|(k, v)| (k.clone(), json_to_value(v)))
                .collect(),
        ),
    }
}

impl Appliance {
    pub fn new(url: &str, credential: String) -> Self {
        Appliance {
            url: url.to_owned(),
            credential,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
        }
    }

    async fn call(&self, method: &str, params: Vec<Value>) -> Result<Value, Error> {
        let unreachable = |reason: String| Error::Unreachable {
            url: self.url.clone(),
            reason,
        };
        let call = MethodCall {
            name: method.into(),
            params,
        }
        .to_xml()
        .map_err(|e| unreachable(format!("cannot encode {method}: {e}")))?;
        let resp = self
            .client
            .post(&self.url)
            .header("content-type", "text/xml")
            .body(format!("<?xml version=\"1.0\"?>\n{call}"))
            .send()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(unreachable(resp.status().to_string()));
        }
        let body = resp.text().await.map_err(|e| unreachable(e.to_string()))?;
        if let Ok(r) = MethodResponse::from_xml(body.trim()) {
            return Ok(r.value);
        }
        match FaultResponse::from_xml(body.trim()) {
            Ok(f) => Err(Error::Refused {
                method: method.to_owned(),
                reason: format!("fault {}: {}", f.fault.code(), f.fault.string()),
            }),
            Err(_) => Err(unreachable("the answer is not XML-RPC".into())),
        }
    }

    /// Reports a request's outcome.
    pub async fn report_result(&self, request_id: &str, st: &RequestStatus) -> Result<(), Error> {
        let mut result = st.result.clone();
        if st.status == "failed" {
            result.insert("errorType".into(), st.error_type.clone().into());
            result.insert("errorMessage".into(), st.error_message.clone().into());
        }
        self.call(
            "reportRequestResult",
            vec![
                Value::String(self.credential.clone()),
                Value::String(request_id.to_owned()),
                Value::String(st.status.clone()),
                json_to_value(&serde_json::Value::Object(result)),
            ],
        )
        .await
        .map(|_| ())
    }

    /// Sends the periodic host report.
    pub async fn report_host(&self, report: &HostReport) -> Result<(), Error> {
        let v = serde_json::to_value(report).unwrap_or_default();
        self.call(
            "reportHostState",
            vec![Value::String(self.credential.clone()), json_to_value(&v)],
        )
        .await
        .map(|_| ())
    }

    /// A verified local copy of `url` whose SHA-256 must be `sha256`.
    pub async fn cached(&self, cache: &Path, url: &str, sha256: &str) -> Result<PathBuf, String> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "the appliance has no file at {url} (no checksum): put the VM kernel and initrd in its boot directory"
            ));
        }
        let path = cache.join(sha256);
        if path.exists() {
            return Ok(path);
        }
        std::fs::create_dir_all(cache)
            .map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
        let mut resp = self
            .client
            .get(url)
            .timeout(DOWNLOAD_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("cannot fetch {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("cannot fetch {url}: {}", resp.status()));
        }
        // Streamed to a part file while hashing: an image archive can be gigabytes.
        let tmp = cache.join(format!("{sha256}.part"));
        let write_err = |e: std::io::Error| format!("cannot write {}: {e}", tmp.display());
        let mut file = std::fs::File::create(&tmp).map_err(write_err)?;
        let mut hash = Sha256::new();
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(format!("cannot fetch {url}: {e}"));
                }
            };
            hash.update(&chunk);
            if let Err(e) = std::io::Write::write_all(&mut file, &chunk) {
                let _ = std::fs::remove_file(&tmp);
                return Err(write_err(e));
            }
        }
        drop(file);
        let got = crate::sign::hex(&hash.finalize());
        if got != sha256 {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!(
                "{url} has SHA-256 {got}, not the {sha256} the appliance announced; it changed during the download, try again"
            ));
        }
        std::fs::rename(&tmp, &path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }
}
