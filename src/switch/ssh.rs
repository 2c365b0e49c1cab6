//! The SSH switch driver (russh): host keys pinned, two ways of talking to a switch, and a
//! [`Pool`] that keeps a switch's authenticated connection for the next batch.
//!
//! - **exec** (Open vSwitch, Cumulus): each [`Session::run`] is one `exec` request with the
//!   lines joined by newlines; a non-zero exit status or an error pattern in the output fails.
//! - **pty** (IOS-like CLIs): one interactive shell per session on a wide PTY; the setup lines
//!   (`terminal length 0`) go first, then one line at a time, each finished by a prompt; an
//!   error pattern in a line's output (`% Invalid input`) fails the batch at that line.
//!
//! Host keys: the SHA-256 fingerprint pinned in the inventory must match, else the connection
//! is refused before authentication (nothing is sent). Without a pin the switch is refused,
//! unless trust-on-first-use is configured, in which case the key seen is returned for the
//! caller to pin. Legacy algorithms (SHA-1 and NIST KEX, CBC ciphers, hmac-sha1) are offered
//! only to switches configured for them. Passwords and keys are never logged.
//!
//! Connections: key exchange and authentication cost the switch far more CPU than applying a
//! batch (on a 2-core lab, most of a 50-switch change). A [`Pool`] hands a batch the
//! connection the previous batch left, if it is at most `idle` old and nothing went wrong on
//! it; a session that saw any error is closed, never reused. `idle` = 0 keeps no connection
//! (for CLIs with few vty lines).

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, Preferred, cipher, kex, mac};

use super::templates::{OsMeta, SessionMode};

/// How to authenticate.
#[derive(Clone)]
pub enum Auth {
    KeyFile(PathBuf),
    Password(String),
}

/// One switch to connect to.
#[derive(Clone)]
pub struct Target {
    pub switch: String,
    /// `host` or `host:port`.
    pub address: String,
    pub user: String,
    pub auth: Auth,
    /// Pinned host key fingerprint (`SHA256:…`).
    pub pinned: Option<String>,
    pub trust_on_first_use: bool,
    pub legacy_algorithms: bool,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error(
        "{switch}: host key mismatch: the switch presented {got}, the inventory pins {expected}; \
         nothing was sent. If the switch was replaced, update host_key in the site file and import it"
    )]
    HostKeyMismatch {
        switch: String,
        expected: String,
        got: String,
    },
    #[error(
        "{switch}: host key {got} is not pinned; nothing was sent. Put host_key = \"{got}\" in the \
         site file (after checking it on the console) or enable [switch] trust_on_first_use"
    )]
    HostKeyNotPinned { switch: String, got: String },
    #[error("{switch}: cannot connect to {address}: {message}")]
    Connect {
        switch: String,
        address: String,
        message: String,
    },
    #[error("{switch}: authentication as {user} refused; check the credential in the config")]
    Auth { switch: String, user: String },
    #[error("{switch}: cannot read SSH key {path}: {message}")]
    Key {
        switch: String,
        path: String,
        message: String,
    },
    #[error("{switch}: timed out after {secs} s while {doing}")]
    Timeout {
        switch: String,
        secs: u64,
        doing: String,
    },
    #[error("{switch}: the switch rejected {line:?}: {output}")]
    Command {
        switch: String,
        line: String,
        output: String,
    },
    #[error("{switch}: SSH session failed while {doing}: {message}")]
    Session {
        switch: String,
        doing: String,
        message: String,
    },
}

/// Checks the host key against the pin and records what the switch presented.
struct HostKeyCheck {
    pinned: Option<String>,
    tofu: bool,
    seen: Arc<Mutex<Option<String>>>,
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let fp = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                key.fingerprint(HashAlg::Sha256).to_string()
            }
            PublicKeyOrCertificate::Certificate(c) => {
                c.public_key().fingerprint(HashAlg::Sha256).to_string()
            }
        };
        let ok = match &self.pinned {
            Some(pin) => *pin == fp,
            None => self.tofu,
        };
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(fp);
        }
        Ok(ok)
    }
}

/// The algorithm set: russh's defaults, plus legacy ones when configured for this switch.
fn preferred(legacy: bool) -> Preferred {
    let mut p = Preferred::default();
    if legacy {
        let mut k = p.kex.to_vec();
        k.extend([
            kex::ECDH_SHA2_NISTP256,
            kex::DH_G14_SHA1,
            kex::DH_GEX_SHA1,
            kex::DH_G1_SHA1,
        ]);
        p.kex = Cow::Owned(k);
        let mut c = p.cipher.to_vec();
        c.extend([cipher::AES_128_CBC, cipher::AES_256_CBC]);
        p.cipher = Cow::Owned(c);
        let mut m = p.mac.to_vec();
        m.push(mac::HMAC_SHA1);
        p.mac = Cow::Owned(m);
    }
    p
}

/// An authenticated connection to one switch.
pub struct Session {
    switch: String,
    handle: Handle<HostKeyCheck>,
    meta: OsMeta,
    timeout: Duration,
    shell: Option<russh::Channel<client::Msg>>,
    learned: Option<String>,
    /// The pool key of the target and OS it was opened for.
    key: String,
    /// Set by any failed run: the session's state is unknown, it is not reused.
    poisoned: bool,
}

impl Session {
    /// Connects, checks the host key, authenticates.
    pub async fn connect(t: &Target, meta: &OsMeta) -> Result<Session, SshError> {
        Session::open(t, meta, t.command_timeout * 2).await
    }

    async fn open(t: &Target, meta: &OsMeta, inactivity: Duration) -> Result<Session, SshError> {
        let seen = Arc::new(Mutex::new(None));
        let check = HostKeyCheck {
            pinned: t.pinned.clone(),
            tofu: t.trust_on_first_use,
            seen: seen.clone(),
        };
        let config = Arc::new(client::Config {
            preferred: preferred(t.legacy_algorithms),
            inactivity_timeout: Some(inactivity),
            ..client::Config::default()
        });
        let addr = if t.address.contains(':') {
            t.address.clone()
        } else {
            format!("{}:22", t.address)
        };
        let timeout = |doing: &str| SshError::Timeout {
            switch: t.switch.clone(),
            secs: t.connect_timeout.as_secs(),
            doing: doing.to_owned(),
        };
        let connected = tokio::time::timeout(
            t.connect_timeout,
            client::connect(config, addr.as_str(), check),
        )
        .await
        .map_err(|_| timeout("connecting"))?;
        let seen = seen.lock().ok().and_then(|s| s.clone());
        let mut handle = match connected {
            Ok(h) => h,
            Err(e) => {
                return Err(match (seen, &t.pinned) {
                    (Some(got), Some(expected)) if got != *expected => SshError::HostKeyMismatch {
                        switch: t.switch.clone(),
                        expected: expected.clone(),
                        got,
                    },
                    (Some(got), None) if !t.trust_on_first_use => SshError::HostKeyNotPinned {
                        switch: t.switch.clone(),
                        got,
                    },
                    _ => SshError::Connect {
                        switch: t.switch.clone(),
                        address: addr.clone(),
                        message: e.to_string(),
                    },
                });
            }
        };
        let session_err = |doing: &str, e: russh::Error| SshError::Session {
            switch: t.switch.clone(),
            doing: doing.to_owned(),
            message: e.to_string(),
        };
        let auth = async {
            match &t.auth {
                Auth::Password(pw) => handle
                    .authenticate_password(t.user.clone(), pw.clone())
                    .await
                    .map_err(|e| session_err("authenticating", e)),
                Auth::KeyFile(path) => {
                    let key =
                        russh::keys::load_secret_key(path, None).map_err(|e| SshError::Key {
                            switch: t.switch.clone(),
                            path: path.display().to_string(),
                            message: e.to_string(),
                        })?;
                    let hash = handle
                        .best_supported_rsa_hash()
                        .await
                        .map_err(|e| session_err("negotiating the key hash", e))?
                        .flatten();
                    handle
                        .authenticate_publickey(
                            t.user.clone(),
                            PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                        )
                        .await
                        .map_err(|e| session_err("authenticating", e))
                }
            }
        };
        let result = tokio::time::timeout(t.connect_timeout, auth)
            .await
            .map_err(|_| timeout("authenticating"))??;
        if !result.success() {
            return Err(SshError::Auth {
                switch: t.switch.clone(),
                user: t.user.clone(),
            });
        }
        let learned = if t.pinned.is_none() { seen } else { None };
        Ok(Session {
            switch: t.switch.clone(),
            handle,
            meta: meta.clone(),
            timeout: t.command_timeout,
            shell: None,
            learned,
            key: pool_key(t, meta),
            poisoned: false,
        })
    }

    /// The host key fingerprint accepted by trust-on-first-use, to be pinned by the caller.
    pub fn learned_host_key(&self) -> Option<&str> {
        self.learned.as_deref()
    }

    fn err(&self, doing: &str, e: impl ToString) -> SshError {
        SshError::Session {
            switch: self.switch.clone(),
            doing: doing.to_owned(),
            message: e.to_string(),
        }
    }

    fn timed_out(&self, doing: &str) -> SshError {
        SshError::Timeout {
            switch: self.switch.clone(),
            secs: self.timeout.as_secs(),
            doing: doing.to_owned(),
        }
    }

    fn check_errors(&self, line: &str, output: &str) -> Result<(), SshError> {
        if self.meta.errors.iter().any(|p| output.contains(p.as_str())) {
            return Err(SshError::Command {
                switch: self.switch.clone(),
                line: line.to_owned(),
                output: output.trim().to_owned(),
            });
        }
        Ok(())
    }

    /// Sends `lines` and returns what the switch printed (stdout, or the PTY transcript).
    pub async fn run(&mut self, lines: &[String]) -> Result<String, SshError> {
        let out = self.run_lines(lines).await;
        self.poisoned |= out.is_err();
        out
    }

    async fn run_lines(&mut self, lines: &[String]) -> Result<String, SshError> {
        if lines.is_empty() {
            return Ok(String::new());
        }
        match self.meta.mode {
            SessionMode::Exec => self.exec(lines).await,
            SessionMode::Pty => {
                let mut out = String::new();
                for line in lines {
                    out.push_str(&self.pty_line(line).await?);
                }
                Ok(out)
            }
        }
    }

    async fn exec(&mut self, lines: &[String]) -> Result<String, SshError> {
        let command = lines.join("\n");
        let first = lines.first().cloned().unwrap_or_default();
        let work = async {
            let mut ch = self
                .handle
                .channel_open_session()
                .await
                .map_err(|e| self.err("opening a channel", e))?;
            ch.exec(true, command.as_bytes())
                .await
                .map_err(|e| self.err("starting the command", e))?;
            let (mut stdout, mut stderr, mut status) = (Vec::new(), Vec::new(), None);
            // Drain everything: russh applies backpressure to unread channels.
            while let Some(msg) = ch.wait().await {
                match msg {
                    ChannelMsg::Data { data } => stdout.extend_from_slice(&data),
                    ChannelMsg::ExtendedData { data, .. } => stderr.extend_from_slice(&data),
                    ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                    _ => {}
                }
            }
            Ok::<_, SshError>((stdout, stderr, status))
        };
        let (stdout, stderr, status) = tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| self.timed_out("running a command batch"))??;
        let stdout = String::from_utf8_lossy(&stdout).into_owned();
        let stderr = String::from_utf8_lossy(&stderr).into_owned();
        let all = format!("{stdout}{stderr}");
        match status {
            Some(0) => {}
            Some(rc) => {
                return Err(SshError::Command {
                    switch: self.switch.clone(),
                    line: first,
                    output: format!("exit status {rc}: {}", all.trim()),
                });
            }
            None => return Err(self.err("running a command batch", "no exit status")),
        }
        self.check_errors(&first, &all)?;
        Ok(stdout)
    }

    /// Opens the interactive shell (once per session) and waits for the first prompt.
    async fn shell(&mut self) -> Result<(), SshError> {
        if self.shell.is_some() {
            return Ok(());
        }
        let ch = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| self.err("opening a channel", e))?;
        ch.request_pty(true, "vt100", 512, 64, 0, 0, &[])
            .await
            .map_err(|e| self.err("requesting a PTY", e))?;
        ch.request_shell(true)
            .await
            .map_err(|e| self.err("starting the shell", e))?;
        self.shell = Some(ch);
        self.read_to_prompt("waiting for the first prompt").await?;
        for line in self.meta.setup.clone() {
            self.send_line(&line).await?;
        }
        Ok(())
    }

    /// Reads new output until its last line ends with a prompt suffix.
    async fn read_to_prompt(&mut self, doing: &str) -> Result<String, SshError> {
        let suffixes = self.meta.prompt_suffixes.clone();
        let timeout = self.timeout;
        let Some(ch) = self.shell.as_mut() else {
            return Err(self.err(doing, "no shell"));
        };
        let mut out = Vec::new();
        let read = async {
            loop {
                match ch.wait().await {
                    Some(ChannelMsg::Data { data })
                    | Some(ChannelMsg::ExtendedData { data, .. }) => {
                        out.extend_from_slice(&data);
                        let text = String::from_utf8_lossy(&out);
                        let last = text.rsplit('\n').next().unwrap_or("").trim_end();
                        if !last.is_empty() && suffixes.iter().any(|s| last.ends_with(s.trim_end()))
                        {
                            return Ok(());
                        }
                    }
                    Some(ChannelMsg::Eof | ChannelMsg::Close) | None => {
                        return Err("the switch closed the shell");
                    }
                    Some(_) => {}
                }
            }
        };
        let result = tokio::time::timeout(timeout, read).await;
        let text = String::from_utf8_lossy(&out).replace('\r', "");
        match result {
            Ok(Ok(())) => Ok(text),
            Ok(Err(why)) => Err(self.err(doing, format!("{why}; output: {}", text.trim()))),
            Err(_) => Err(self.timed_out(doing)),
        }
    }

    async fn pty_line(&mut self, line: &str) -> Result<String, SshError> {
        self.shell().await?;
        self.send_line(line).await
    }

    /// Sends one line on the open shell; returns its output up to the next prompt.
    async fn send_line(&mut self, line: &str) -> Result<String, SshError> {
        if let Some(ch) = self.shell.as_ref() {
            ch.data_bytes(format!("{line}\n").into_bytes())
                .await
                .map_err(|e| self.err("sending a line", e))?;
        }
        let out = self.read_to_prompt(&format!("running {line:?}")).await?;
        self.check_errors(line, &out)?;
        Ok(out)
    }

    /// Leaves the shell and disconnects.
    pub async fn close(mut self) {
        if let Some(ch) = self.shell.take() {
            let _ = ch.data_bytes(&b"exit\n"[..]).await;
            let _ = ch.eof().await;
        }
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

/// What a pooled connection is for: the switch, how we reach and authenticate to it, its pin
/// and its OS's session settings. Hashed, so that no password sits in a map key.
fn pool_key(t: &Target, meta: &OsMeta) -> String {
    let auth = match &t.auth {
        Auth::KeyFile(p) => format!("key:{}", p.display()),
        Auth::Password(pw) => format!("password:{pw}"),
    };
    let text = format!(
        "{}\0{}\0{}\0{auth}\0{:?}\0{}\0{:?}",
        t.switch, t.address, t.user, t.pinned, t.legacy_algorithms, meta
    );
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Authenticated connections kept between batches (see the module docs).
pub struct Pool {
    idle: Duration,
    held: Mutex<HashMap<String, (Session, Instant)>>,
}

impl Pool {
    /// Keeps a connection at most `idle` after its last batch (zero: never).
    pub fn new(idle: Duration) -> Pool {
        Pool {
            idle,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// The connection left for this target, if fresh and alive; else a new one.
    pub async fn checkout(&self, t: &Target, meta: &OsMeta) -> Result<Session, SshError> {
        if self.idle.is_zero() {
            return Session::connect(t, meta).await;
        }
        let key = pool_key(t, meta);
        let held = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        if let Some((s, at)) = held {
            if at.elapsed() < self.idle && !s.handle.is_closed() {
                metrics::counter!("nhn_switch_ssh_connections_total", "switch" => t.switch.clone(), "kind" => "reused").increment(1);
                return Ok(s);
            }
            s.close().await;
        }
        metrics::counter!("nhn_switch_ssh_connections_total", "switch" => t.switch.clone(), "kind" => "new").increment(1);
        // The connection outlives a batch: let russh keep it until the pool lets it go.
        Session::open(t, meta, self.idle + t.command_timeout * 2).await
    }

    /// Gives a session back after its batch: kept for the next one unless it failed.
    pub async fn checkin(&self, mut s: Session) {
        if self.idle.is_zero() || s.poisoned || s.handle.is_closed() {
            s.close().await;
            return;
        }
        s.learned = None;
        let old = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(s.key.clone(), (s, Instant::now()));
        if let Some((old, _)) = old {
            old.close().await;
        }
    }

    /// Closes connections idle for longer than `idle` (call it every second or so).
    pub async fn sweep(&self) {
        let expired: Vec<Session> = {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            let keys: Vec<String> = held
                .iter()
                .filter(|(_, (s, at))| at.elapsed() >= self.idle || s.handle.is_closed())
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter()
                .filter_map(|k| held.remove(k).map(|(s, _)| s))
                .collect()
        };
        for s in expired {
            s.close().await;
        }
    }

    /// Closes every held connection (at shutdown).
    pub async fn clear(&self) {
        let all: Vec<Session> = {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            held.drain().map(|(_, (s, _))| s).collect()
        };
        for s in all {
            s.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(auth: Auth) -> Target {
        Target {
            switch: "Edge-Switch-1".into(),
            address: "10.99.0.21".into(),
            user: "nhn".into(),
            auth,
            pinned: Some("SHA256:abc".into()),
            trust_on_first_use: false,
            legacy_algorithms: false,
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn pool_keys_separate_targets_and_hold_no_password() {
        let meta: OsMeta =
            toml::from_str("mode = \"exec\"\nparser = \"openvswitch\"\nerrors = []\n")
                .expect("os.toml");
        let a = pool_key(&target(Auth::Password("hunter2-secret".into())), &meta);
        let b = pool_key(&target(Auth::Password("other".into())), &meta);
        let mut moved = target(Auth::Password("hunter2-secret".into()));
        moved.address = "10.99.0.22".into();
        assert_ne!(a, b, "a changed password must not reuse the old connection");
        assert_ne!(a, pool_key(&moved, &meta));
        assert_eq!(
            a,
            pool_key(&target(Auth::Password("hunter2-secret".into())), &meta)
        );
        assert!(!a.contains("hunter2") && a.len() == 64);
    }
}
