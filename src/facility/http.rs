//! The legacy facility transport: XML-RPC calls `dispatchRequest({requestId, method, resourceId,
//! command, hypervisor?})` (`command` is the typed [`Command`](super::Command) as JSON) and
//! `getRequestStatus(requestId)` POSTed to `[api] facility_url`, over a plain HTTP/1.1
//! connection per call. It serves sites whose hypervisors have no `nhn agent` yet (and the API
//! tests' facility stand-in); VMs on a hypervisor with an enrolled agent go to that agent.
//!
//! Every call is signed ([`crate::sign`]), the key being the SHA-256 of the facility credential
//! (`[api] facility_credential_sha256`; the facility holds the credential itself and hashes it).

use std::time::Duration;

use dxr::{FaultResponse, MethodCall, MethodResponse, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{BoxFuture, Dispatch, Driver, Error, Status};
use crate::codec::{s, st, text};
use crate::sign::sign;
use crate::util::unix_now;

/// Per-call time limit (connect, send, answer).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer accepted from the facility.
const MAX_ANSWER: u64 = 1 << 20;

pub struct HttpDriver {
    url: String,
    /// `host:port` and path, parsed from `url`.
    authority: String,
    path: String,
    /// The signing key: SHA-256 of the facility credential.
    key: [u8; 32],
}

impl HttpDriver {
    /// `url` must be `http://host:port/path`; `key` signs every call (see the module docs).
    pub fn new(url: &str, key: [u8; 32]) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("facility_url {url:?} must start with http://"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("facility_url {url:?} has no host"));
        }
        let authority = if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(HttpDriver {
            url: url.to_owned(),
            authority,
            path: path.to_owned(),
            key,
        })
    }

    fn unreachable(&self, reason: impl ToString) -> Error {
        Error::Unreachable {
            url: self.url.clone(),
            reason: reason.to_string(),
        }
    }

    async fn call(&self, method: &str, params: Vec<Value>) -> Result<Value, Error> {
        let call = MethodCall {
            name: method.into(),
            params,
        }
        .to_xml()
        .map_err(|e| self.unreachable(format!("cannot encode {method}: {e}")))?;
        let body = format!("<?xml version=\"1.0\"?>\n{call}");
        let signature = sign(&self.key, unix_now(), body.as_bytes());
        let exchange = async {
            let mut conn = TcpStream::connect(&self.authority).await?;
            let head = format!(
                "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nX-Nhn-Signature: {signature}\r\nConnection: close\r\n\r\n",
                self.path,
                self.authority,
                body.len()
            );
            conn.write_all(head.as_bytes()).await?;
            conn.write_all(body.as_bytes()).await?;
            let mut answer = Vec::new();
            conn.take(MAX_ANSWER).read_to_end(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        let answer = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                self.unreachable(format!("no answer to {method} within {CALL_TIMEOUT:?}"))
            })?
            .map_err(|e| self.unreachable(e))?;
        let text = String::from_utf8_lossy(&answer);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| self.unreachable("answer is not HTTP"))?;
        let status_ok = head
            .split_whitespace()
            .nth(1)
            .is_some_and(|code| code == "200");
        let refused = |reason: String| Error::Refused {
            url: self.url.clone(),
            method: method.to_owned(),
            reason,
        };
        if !status_ok {
            return Err(refused(head.lines().next().unwrap_or_default().to_owned()));
        }
        if let Ok(resp) = MethodResponse::from_xml(body.trim()) {
            return Ok(resp.value);
        }
        match FaultResponse::from_xml(body.trim()) {
            Ok(f) => Err(refused(format!(
                "fault {}: {}",
                f.fault.code(),
                f.fault.string()
            ))),
            Err(_) => Err(refused("answer is not an XML-RPC response".into())),
        }
    }
}

impl Driver for HttpDriver {
    fn dispatch(&self, job: Dispatch) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let command = serde_json::to_string(&job.command).unwrap_or_default();
            let mut payload = st([
                ("requestId", s(job.request_id)),
                ("method", s(job.method)),
                ("resourceId", s(job.resource_id)),
                ("command", s(command)),
            ]);
            if let Some(h) = job.host {
                payload.insert("hypervisor".into(), s(h));
            }
            self.call("dispatchRequest", vec![Value::Struct(payload)])
                .await
                .map(|_| ())
        })
    }

    fn status(&self, job: Dispatch) -> BoxFuture<'_, Result<Status, Error>> {
        Box::pin(async move {
            let v = self
                .call("getRequestStatus", vec![s(job.request_id)])
                .await?;
            let Value::Struct(m) = v else {
                return Ok(Status::Unknown);
            };
            Ok(match text(&m, "status").as_str() {
                "running" | "queued" => Status::Running,
                "succeeded" => Status::Succeeded(match m.get("result") {
                    Some(Value::Struct(r)) => r.clone(),
                    _ => Default::default(),
                }),
                "failed" => Status::Failed {
                    error_type: text(&m, "errorType"),
                    message: text(&m, "errorMessage"),
                },
                _ => Status::Unknown,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed_into_authority_and_path() {
        let d = HttpDriver::new("http://127.0.0.1:9000/RPC2", [0; 32]).unwrap();
        assert_eq!(
            (d.authority.as_str(), d.path.as_str()),
            ("127.0.0.1:9000", "/RPC2")
        );
        let d = HttpDriver::new("http://agent", [0; 32]).unwrap();
        assert_eq!((d.authority.as_str(), d.path.as_str()), ("agent:80", "/"));
        assert!(HttpDriver::new("https://x/", [0; 32]).is_err());
    }
}
