//! The HTTP facility transport: XML-RPC calls `dispatchRequest(struct)` and
//! `getRequestStatus(requestId)` POSTed to `[api] facility_url`, over a plain HTTP/1.1
//! connection per call (a few calls per VM operation; no client library needed).

use std::time::Duration;

use dxr::{FaultResponse, MethodCall, MethodResponse, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{BoxFuture, Dispatch, Driver, Error, Status};
use crate::api::args::{s, st};

/// Per-call time limit (connect, send, answer).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer accepted from the facility.
const MAX_ANSWER: u64 = 1 << 20;

pub struct HttpDriver {
    url: String,
    /// `host:port` and path, parsed from `url`.
    authority: String,
    path: String,
}

impl HttpDriver {
    /// `url` must be `http://host:port/path`.
    pub fn new(url: &str) -> Result<Self, String> {
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
        })
    }

    fn unreachable(&self, reason: impl ToString) -> Error {
        Error::Unreachable {
            url: self.url.clone(),
            reason: reason.to_string(),
        }
    }

    async fn call(&self, method: &str, params: Vec<Value>) -> Result<Value, Error> {
        let body = MethodCall {
            name: method.into(),
            params,
        }
        .to_xml()
        .map_err(|e| self.unreachable(format!("cannot encode {method}: {e}")))?;
        let exchange = async {
            let mut conn = TcpStream::connect(&self.authority).await?;
            let head = format!(
                "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                self.path,
                self.authority,
                body.len() + 22
            );
            conn.write_all(head.as_bytes()).await?;
            conn.write_all(b"<?xml version=\"1.0\"?>\n").await?;
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
            let payload = st([
                ("requestId", s(job.request_id)),
                ("method", s(job.method)),
                ("resourceId", s(job.resource_id)),
                ("args", Value::Struct(job.args)),
            ]);
            self.call("dispatchRequest", vec![Value::Struct(payload)])
                .await
                .map(|_| ())
        })
    }

    fn status(&self, request_id: String) -> BoxFuture<'_, Result<Status, Error>> {
        Box::pin(async move {
            let v = self.call("getRequestStatus", vec![s(request_id)]).await?;
            let Value::Struct(m) = v else {
                return Ok(Status::Unknown);
            };
            let text = |k: &str| match m.get(k) {
                Some(Value::String(s)) => s.clone(),
                _ => String::new(),
            };
            Ok(match text("status").as_str() {
                "running" | "queued" => Status::Running,
                "succeeded" => Status::Succeeded(match m.get("result") {
                    Some(Value::Struct(r)) => r.clone(),
                    _ => Default::default(),
                }),
                "failed" => Status::Failed {
                    error_type: text("errorType"),
                    message: text("errorMessage"),
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
        let d = HttpDriver::new("http://127.0.0.1:9000/RPC2").unwrap();
        assert_eq!(
            (d.authority.as_str(), d.path.as_str()),
            ("127.0.0.1:9000", "/RPC2")
        );
        let d = HttpDriver::new("http://agent").unwrap();
        assert_eq!((d.authority.as_str(), d.path.as_str()), ("agent:80", "/"));
        assert!(HttpDriver::new("https://x/").is_err());
    }
}
