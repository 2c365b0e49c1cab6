//! The TFTP server: a listener per configured address on tokio, and a thread per transfer with
//! a blocking socket connected to the client (the RFC 1350 transfer ID). Read-only.
//!
//! Per transfer: negotiate options (blksize RFC 2348, tsize and timeout RFC 2349, windowsize
//! RFC 7440) with an OACK; a client that answers the OACK with an ERROR (the usual "tsize
//! probe") ends the transfer at once instead of being retransmitted to. Data goes out in
//! windows that slide on every ACK; a timeout resends from the first unacknowledged block,
//! at most `retries` times. Duplicate ACKs are ignored (no Sorcerer's Apprentice). Block numbers
//! roll over past 65535 so files of any size work. Concurrent transfers are capped; the files
//! come from [`BootRoot`]'s shared in-memory cache.
//!
//! Why a thread per transfer and not a task: a boot storm is lock-step clients, each waiting for
//! our next block, and the kernel's UDP send path is most of the server's cost (see
//! bench/README.md). With tasks, every transfer queued behind the runtime's two or so worker
//! threads, and on a busy machine the whole storm got the CPU share of those few threads; with a
//! thread each, a transfer whose ACK has arrived is runnable on its own, as in tftpd-hpa's
//! process per transfer. Per block the thread makes two system calls (send, then a blocking
//! recv); the receive timeout is re-armed only when a deadline needs it. The request, the file
//! load and errors before the data phase stay on the runtime.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use super::packet::{self, ErrorCode, Mode, Request, Transfer};
use crate::boot::files::{BootRoot, FileError};
use crate::config::Tftp as TftpConfig;

/// Negotiated parameters of one transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub blksize: usize,
    pub windowsize: usize,
    pub timeout: Duration,
}

/// Applies RFC 2347/2348/2349/7440 options: returns the parameters and the options to
/// acknowledge (empty: no OACK). Unknown or out-of-range options are ignored, as the RFCs say.
pub fn negotiate(
    cfg: &TftpConfig,
    options: &[(String, String)],
    size: u64,
) -> (Params, Vec<(String, String)>) {
    let mut p = Params {
        blksize: 512,
        windowsize: 1,
        timeout: Duration::from_millis(cfg.timeout_ms.max(10)),
    };
    let mut ack = Vec::new();
    for (name, value) in options {
        let Ok(n) = value.parse::<u64>() else {
            continue;
        };
        match name.as_str() {
            "blksize" if (8..=65464).contains(&n) => {
                p.blksize = n.min(u64::from(cfg.max_blksize.max(8))) as usize;
                ack.push((name.clone(), p.blksize.to_string()));
            }
            "windowsize" if (1..=65535).contains(&n) => {
                p.windowsize = n.min(u64::from(cfg.max_windowsize.max(1))) as usize;
                ack.push((name.clone(), p.windowsize.to_string()));
            }
            "timeout" if (1..=255).contains(&n) => {
                p.timeout = Duration::from_secs(n);
                ack.push((name.clone(), n.to_string()));
            }
            "tsize" => ack.push((name.clone(), size.to_string())),
            _ => {}
        }
    }
    (p, ack)
}

/// Converts a file to netascii (RFC 764): LF → CR LF, CR → CR NUL.
fn netascii(data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + data.len() / 16);
    for &b in data {
        match b {
            b'\n' => out.extend_from_slice(b"\r\n"),
            b'\r' => out.extend_from_slice(b"\r\0"),
            _ => out.push(b),
        }
    }
    Bytes::from(out)
}

/// Serves TFTP on every configured address until `shutdown` flips. Returns once all
/// listeners are bound, with their tasks, which end when `shutdown` flips (transfers run in
/// tasks of their own and end on it too).
pub async fn start(
    cfg: &TftpConfig,
    root: Arc<BootRoot>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<JoinSet<()>> {
    let mut listeners = JoinSet::new();
    let sessions = Arc::new(Semaphore::new(cfg.max_sessions.max(1)));
    for addr in &cfg.listen {
        let sock = tokio::net::UdpSocket::bind(addr).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot listen for TFTP on {addr}: {e}"))
        })?;
        tracing::info!(%addr, "TFTP listening");
        let (cfg, root, sessions, mut shutdown) = (
            cfg.clone(),
            root.clone(),
            sessions.clone(),
            shutdown.clone(),
        );
        listeners.spawn(async move {
            let mut buf = vec![0u8; 2048];
            loop {
                let (n, peer) = tokio::select! {
                    _ = shutdown.wait_for(|s| *s) => return,
                    r = sock.recv_from(&mut buf) => match r {
                        Ok(x) => x,
                        Err(e) => { tracing::debug!(error = %e, "TFTP receive failed"); continue; }
                    },
                };
                let local = sock.local_addr().ok();
                match packet::parse(&buf[..n]) {
                    Ok(Request::Read(t)) => {
                        let Ok(permit) = sessions.clone().try_acquire_owned() else {
                            metrics::counter!("nhn_tftp_errors_total", "reason" => "busy")
                                .increment(1);
                            let _ = sock
                                .send_to(
                                    &packet::error(
                                        ErrorCode::NotDefined,
                                        "server busy, retry later",
                                    ),
                                    peer,
                                )
                                .await;
                            continue;
                        };
                        let session = Session::new(permit);
                        let (cfg, root, shutdown) = (cfg.clone(), root.clone(), shutdown.clone());
                        tokio::spawn(async move {
                            transfer(&cfg, &root, local, peer, t, shutdown, session).await;
                        });
                    }
                    Ok(Request::Write(_)) => {
                        metrics::counter!("nhn_tftp_errors_total", "reason" => "write_refused")
                            .increment(1);
                        let _ = sock
                            .send_to(
                                &packet::error(ErrorCode::AccessViolation, "read-only server"),
                                peer,
                            )
                            .await;
                    }
                    // Stray ACK/ERROR/DATA on the listening port: not a transfer of ours.
                    Ok(_) => {
                        metrics::counter!("nhn_tftp_errors_total", "reason" => "stray").increment(1)
                    }
                    Err(e) => {
                        metrics::counter!("nhn_tftp_errors_total", "reason" => "malformed")
                            .increment(1);
                        let _ = sock
                            .send_to(
                                &packet::error(ErrorCode::IllegalOperation, &e.to_string()),
                                peer,
                            )
                            .await;
                    }
                }
            }
        });
    }
    Ok(listeners)
}

/// How a transfer ended (for metrics and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Done,
    ClientError,
    TimedOut,
    Shutdown,
}

/// One admitted transfer: holds its place under `max_sessions` and counts in the
/// active-sessions gauge until dropped, wherever the transfer ends.
struct Session {
    _permit: OwnedSemaphorePermit,
}

impl Session {
    fn new(permit: OwnedSemaphorePermit) -> Session {
        metrics::gauge!("nhn_tftp_active_sessions").increment(1.0);
        Session { _permit: permit }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        metrics::gauge!("nhn_tftp_active_sessions").decrement(1.0);
    }
}

/// Opens the transfer's socket and loads the file on the runtime, then hands the data phase
/// to a thread of its own (see the module docs for why).
async fn transfer(
    cfg: &TftpConfig,
    root: &BootRoot,
    local: Option<SocketAddr>,
    peer: SocketAddr,
    req: Transfer,
    shutdown: watch::Receiver<bool>,
    session: Session,
) {
    metrics::counter!("nhn_tftp_sessions_total").increment(1);
    // A fresh port per transfer, on the address the request reached. Binding and connecting a
    // UDP socket do not block.
    let bind: SocketAddr = match local {
        Some(l) => SocketAddr::new(l.ip(), 0),
        None => SocketAddr::from(([0, 0, 0, 0], 0)),
    };
    let Ok(sock) = UdpSocket::bind(bind) else {
        return;
    };
    if sock.connect(peer).is_err() {
        return;
    }
    let data = match root.load(&req.filename).await {
        Ok(d) if req.mode == Mode::Netascii => netascii(&d),
        Ok(d) => d,
        Err(e) => {
            let (code, reason) = match &e {
                FileError::NotFound => (ErrorCode::FileNotFound, "not_found"),
                FileError::Denied(_) => (ErrorCode::AccessViolation, "denied"),
                FileError::Io(_) => (ErrorCode::NotDefined, "io"),
            };
            metrics::counter!("nhn_tftp_errors_total", "reason" => reason).increment(1);
            tracing::info!(%peer, file = %req.filename, error = %e, "TFTP request refused");
            let _ = sock.send(&packet::error(code, &e.to_string()));
            return;
        }
    };
    let (params, acked) = negotiate(cfg, &req.options, data.len() as u64);
    let retries = cfg.retries;
    let spawned = std::thread::Builder::new()
        .name("tftp-transfer".into())
        .stack_size(TRANSFER_STACK)
        .spawn(move || {
            let end = send_file(&sock, &data, params, &acked, retries, &shutdown);
            drop(session);
            match end {
                End::Done => {
                    tracing::debug!(%peer, file = %req.filename, bytes = data.len(), "TFTP transfer done")
                }
                other => {
                    let reason = match other {
                        End::ClientError => "client_aborted",
                        End::TimedOut => "timeout",
                        _ => "shutdown",
                    };
                    metrics::counter!("nhn_tftp_errors_total", "reason" => reason).increment(1);
                    tracing::debug!(%peer, file = %req.filename, ?other, "TFTP transfer ended early");
                }
            }
        });
    if let Err(e) = spawned {
        metrics::counter!("nhn_tftp_errors_total", "reason" => "no_thread").increment(1);
        tracing::warn!(%peer, error = %e, "cannot start a TFTP transfer thread; lower [tftp] max_sessions");
    }
}

/// Stack of a transfer thread: the data phase keeps a receive buffer and one window's
/// headers; the rest is room for logging.
const TRANSFER_STACK: usize = 256 * 1024;

/// Longest a transfer blocks in `recv` before it looks at the shutdown flag again.
const SHUTDOWN_POLL: Duration = Duration::from_millis(250);

/// The receiving side of one transfer's blocking socket: ACKs within a deadline, with the
/// socket's receive timeout changed only when the deadline or the shutdown poll needs it (not
/// once per block).
struct Acks<'a> {
    sock: &'a UdpSocket,
    shutdown: &'a watch::Receiver<bool>,
    buf: Vec<u8>,
    /// The socket's current SO_RCVTIMEO (None: not set yet).
    armed: Option<Duration>,
}

impl<'a> Acks<'a> {
    fn new(sock: &'a UdpSocket, shutdown: &'a watch::Receiver<bool>) -> Acks<'a> {
        Acks {
            sock,
            shutdown,
            buf: vec![0u8; 1024],
            armed: None,
        }
    }

    /// Receives the next ACK (or learns the transfer is over) within `wait`; `None` on timeout.
    /// Other packets from the client's port are ignored.
    fn next(&mut self, wait: Duration) -> Option<Result<u16, End>> {
        let deadline = Instant::now() + wait;
        loop {
            if *self.shutdown.borrow() {
                return Some(Err(End::Shutdown));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left < Duration::from_millis(1) {
                return None;
            }
            let slice = left.min(SHUTDOWN_POLL);
            // Never block past the deadline; re-arm a longer wait only when the armed one has
            // become much shorter than the slice (it was cut for an earlier deadline).
            if self.armed.is_none_or(|a| a > left || a < slice / 2) {
                if self.sock.set_read_timeout(Some(slice)).is_err() {
                    return Some(Err(End::ClientError));
                }
                self.armed = Some(slice);
            }
            match self.sock.recv(&mut self.buf) {
                Ok(n) => match packet::parse(&self.buf[..n]) {
                    Ok(Request::Ack(b)) => return Some(Ok(b)),
                    Ok(Request::Error(..)) => return Some(Err(End::ClientError)),
                    _ => continue,
                },
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) =>
                {
                    continue;
                }
                Err(_) => return Some(Err(End::ClientError)),
            }
        }
    }
}

/// The data phase of one transfer, on its own thread with a blocking socket.
fn send_file(
    sock: &UdpSocket,
    data: &[u8],
    p: Params,
    oack: &[(String, String)],
    retries: u32,
    shutdown: &watch::Receiver<bool>,
) -> End {
    let mut acks = Acks::new(sock, shutdown);
    let mut tries = 0;
    // Option acknowledgement: wait for ACK 0 (or the client's ERROR, e.g. after a tsize probe).
    if !oack.is_empty() {
        let pkt = packet::oack(oack);
        let mut resend = true;
        loop {
            if resend && sock.send(&pkt).is_err() {
                return End::ClientError;
            }
            resend = true;
            match acks.next(p.timeout) {
                Some(Ok(0)) => break,
                Some(Ok(_)) => resend = false,
                Some(Err(e)) => return e,
                None => {
                    tries += 1;
                    if tries > retries {
                        return End::TimedOut;
                    }
                }
            }
        }
    }
    // Block n (1-based) covers data[(n-1)*blksize ..]; the last block is short (maybe empty).
    let blocks = data.len() as u64 / p.blksize as u64 + 1;
    let mut base: u64 = 1; // first unacknowledged block
    let mut next: u64 = 1; // next block to send
    let mut pkt = Vec::with_capacity(p.blksize + 4);
    let mut sent_bytes = 0u64;
    tries = 0;
    loop {
        if *shutdown.borrow() {
            return End::Shutdown;
        }
        let want = (base + p.windowsize as u64)
            .min(blocks + 1)
            .saturating_sub(next) as usize;
        if want == 1 {
            let (start, end) = block_range(data.len(), p.blksize, next);
            packet::data(&mut pkt, next as u16, &data[start..end]);
            if sock.send(&pkt).is_err() {
                return End::ClientError;
            }
            sent_bytes += (end - start) as u64;
            next += 1;
        } else if want > 1 {
            // A window in one sendmmsg(2): one system call instead of `want`.
            match send_blocks(sock, data, p.blksize, next, want) {
                Ok((n, bytes)) => {
                    next += n as u64;
                    sent_bytes += bytes;
                }
                Err(_) => return End::ClientError,
            }
        }
        match acks.next(p.timeout) {
            Some(Ok(b)) => {
                // The ACK's block number, placed within the outstanding window (rollover-safe).
                let offset = b.wrapping_sub((base - 1) as u16) as u64;
                if offset == 0 || offset > p.windowsize as u64 || base - 1 + offset >= next {
                    continue; // a duplicate or stale ACK: ignore
                }
                base += offset;
                tries = 0;
                if base > blocks {
                    metrics::counter!("nhn_tftp_bytes_total").increment(sent_bytes);
                    return End::Done;
                }
            }
            Some(Err(e)) => return e,
            None => {
                tries += 1;
                if tries > retries {
                    return End::TimedOut;
                }
                next = base; // resend the window
            }
        }
    }
}

/// Byte range of block `n` (1-based); the last block may be short or empty.
fn block_range(len: usize, blksize: usize, n: u64) -> (usize, usize) {
    let start = (((n - 1) * blksize as u64) as usize).min(len);
    (start, (start + blksize).min(len))
}

/// Sends blocks `first..first + count` with sendmmsg(2), each as a 4-byte header plus a slice
/// of the file (no copy). Returns how many were sent and their payload bytes.
fn send_blocks(
    sock: &UdpSocket,
    data: &[u8],
    blksize: usize,
    first: u64,
    count: usize,
) -> std::io::Result<(usize, u64)> {
    use std::os::fd::AsRawFd;
    let headers: Vec<[u8; 4]> = (0..count as u64)
        .map(|i| {
            let b = ((first + i) as u16).to_be_bytes();
            [0, packet::OP_DATA as u8, b[0], b[1]]
        })
        .collect();
    let ranges: Vec<(usize, usize)> = (0..count as u64)
        .map(|i| block_range(data.len(), blksize, first + i))
        .collect();
    let mut iov: Vec<[libc::iovec; 2]> = headers
        .iter()
        .zip(&ranges)
        .map(|(h, (s, e))| {
            [
                libc::iovec {
                    iov_base: h.as_ptr() as *mut libc::c_void,
                    iov_len: 4,
                },
                libc::iovec {
                    iov_base: data[*s..*e].as_ptr() as *mut libc::c_void,
                    iov_len: e - s,
                },
            ]
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iov
        .iter_mut()
        .map(|v| {
            // SAFETY: mmsghdr is plain C data for which all-zero bytes are a valid value.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = v.as_mut_ptr();
            m.msg_hdr.msg_iovlen = 2;
            m
        })
        .collect();
    loop {
        // SAFETY: every pointer refers to `headers`, `data`, `iov` or `msgs`, all alive for the
        // call; the socket is connected, so the messages need no address.
        let rc = unsafe {
            libc::sendmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                msgs.len() as libc::c_uint,
                0,
            )
        };
        if rc >= 0 {
            let n = rc as usize;
            return Ok((n, ranges[..n].iter().map(|(s, e)| (e - s) as u64).sum()));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options_are_clamped_and_acknowledged() {
        let cfg = TftpConfig {
            max_blksize: 1468,
            max_windowsize: 16,
            ..TftpConfig::default()
        };
        let (p, ack) = negotiate(
            &cfg,
            &opts(&[
                ("blksize", "65464"),
                ("tsize", "0"),
                ("windowsize", "64"),
                ("timeout", "3"),
            ]),
            1234,
        );
        assert_eq!(p.blksize, 1468);
        assert_eq!(p.windowsize, 16);
        assert_eq!(p.timeout, Duration::from_secs(3));
        assert_eq!(
            ack,
            opts(&[
                ("blksize", "1468"),
                ("tsize", "1234"),
                ("windowsize", "16"),
                ("timeout", "3")
            ])
        );
    }

    #[test]
    fn invalid_or_unknown_options_are_ignored() {
        let (p, ack) = negotiate(
            &TftpConfig::default(),
            &opts(&[
                ("blksize", "4"),
                ("timeout", "0"),
                ("multicast", "1"),
                ("windowsize", "x"),
            ]),
            1,
        );
        assert_eq!((p.blksize, p.windowsize), (512, 1));
        assert!(ack.is_empty());
    }

    /// A transfer of `data` to a client socket on loopback, on its own thread as the server runs
    /// it; returns the client socket, the shutdown sender and the transfer's thread.
    fn transfer_to_loopback(
        data: &'static [u8],
        timeout: Duration,
    ) -> (UdpSocket, watch::Sender<bool>, std::thread::JoinHandle<End>) {
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.connect(client.local_addr().unwrap()).unwrap();
        client.connect(sock.local_addr().unwrap()).unwrap();
        let (stop, shutdown) = watch::channel(false);
        let p = Params {
            blksize: 512,
            windowsize: 1,
            timeout,
        };
        let t = std::thread::spawn(move || send_file(&sock, data, p, &[], 5, &shutdown));
        (client, stop, t)
    }

    #[test]
    fn shutdown_ends_a_transfer_that_waits_for_a_silent_client() {
        let (client, stop, t) = transfer_to_loopback(b"data", Duration::from_secs(60));
        let mut buf = [0u8; 600];
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"\0\x03\0\x01data");
        let asked = Instant::now();
        stop.send(true).unwrap();
        assert_eq!(t.join().unwrap(), End::Shutdown);
        assert!(asked.elapsed() < SHUTDOWN_POLL * 2, "{:?}", asked.elapsed());
    }

    #[test]
    fn an_unacknowledged_block_is_resent_after_the_timeout_not_the_shutdown_poll() {
        // 300 ms: one 250 ms receive slice, then one cut to the deadline.
        let (client, _stop, t) = transfer_to_loopback(b"data", Duration::from_millis(300));
        let mut buf = [0u8; 600];
        client.recv(&mut buf).unwrap();
        let sent = Instant::now();
        let n = client.recv(&mut buf).unwrap();
        let gap = sent.elapsed();
        assert_eq!(&buf[..n], b"\0\x03\0\x01data", "the same block again");
        assert!(
            gap >= Duration::from_millis(290) && gap < Duration::from_millis(600),
            "{gap:?}"
        );
        client.send(&[0, 4, 0, 1]).unwrap();
        assert_eq!(t.join().unwrap(), End::Done);
    }

    #[test]
    fn netascii_expands_line_ends() {
        assert_eq!(&netascii(b"a\nb\rc")[..], b"a\r\nb\r\0c");
    }
}
