//! A minimal QMP client (QEMU Machine Protocol, JSON lines over the VM's unix socket): connect,
//! negotiate capabilities, run one command, skip asynchronous events. One connection per
//! operation: QEMU serves one QMP client per socket at a time, and an operation is rare.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("QMP socket {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("QMP {command} failed: {reason}")]
    Command { command: String, reason: String },
}

pub struct Qmp {
    path: String,
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl Qmp {
    /// Connects and leaves capabilities negotiation mode.
    pub async fn connect(path: &Path) -> Result<Qmp, Error> {
        let p = path.display().to_string();
        let io = |e: std::io::Error| Error::Io {
            path: p.clone(),
            reason: e.to_string(),
        };
        let stream = tokio::time::timeout(TIMEOUT, UnixStream::connect(path))
            .await
            .map_err(|_| io(std::io::ErrorKind::TimedOut.into()))?
            .map_err(io)?;
        let (r, w) = stream.into_split();
        let mut qmp = Qmp {
            path: p,
            reader: BufReader::new(r),
            writer: w,
        };
        qmp.line().await?; // the greeting
        qmp.execute("qmp_capabilities", json!({})).await?;
        Ok(qmp)
    }

    async fn line(&mut self) -> Result<Value, Error> {
        let mut line = String::new();
        let n = tokio::time::timeout(TIMEOUT, self.reader.read_line(&mut line))
            .await
            .map_err(|_| self.io("no answer within 5 s"))?
            .map_err(|e| self.io(e))?;
        if n == 0 {
            return Err(self.io("QEMU closed the connection"));
        }
        serde_json::from_str(&line).map_err(|e| self.io(format!("not JSON: {e}")))
    }

    fn io(&self, reason: impl ToString) -> Error {
        Error::Io {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }

    /// Runs `command`; its `return` value, or the error QEMU gave.
    pub async fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, Error> {
        let mut msg = json!({ "execute": command });
        if arguments.as_object().is_some_and(|a| !a.is_empty()) {
            msg["arguments"] = arguments;
        }
        let mut text = msg.to_string();
        text.push('\n');
        self.writer
            .write_all(text.as_bytes())
            .await
            .map_err(|e| self.io(e))?;
        loop {
            let v = self.line().await?;
            if v.get("event").is_some() {
                continue;
            }
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            let reason = v
                .pointer("/error/desc")
                .and_then(Value::as_str)
                .unwrap_or("unknown error")
                .to_owned();
            return Err(Error::Command {
                command: command.to_owned(),
                reason,
            });
        }
    }

    /// `query-status`'s `status`: running, paused, shutdown, ...
    pub async fn status(&mut self) -> Result<String, Error> {
        let r = self.execute("query-status", json!({})).await?;
        Ok(r.get("status")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned())
    }
}
