//! The TFTP server: a listener per configured address and one tokio task per transfer, each on
//! its own socket connected to the client (the RFC 1350 transfer ID). Read-only.
//!
//! Per transfer: negotiate options (blksize RFC 2348, tsize and timeout RFC 2349, windowsize
//! RFC 7440) with an OACK; a client that answers the OACK with an ERROR (the usual "tsize
//! probe") ends the transfer at once instead of being retransmitted to. Data goes out in
//! windows that slide on every ACK; a timeout resends from the first unacknowledged block,
//! at most `retries` times. Duplicate ACKs are ignored (no Sorcerer's Apprentice). Block numbers
//! roll over past 65535 so files of any size work. Concurrent transfers are capped; the files
//! come from [`BootRoot`]'s shared in-memory cache.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::{Semaphore, watch};
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
        let sock = UdpSocket::bind(addr).await.map_err(|e| {
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
                        let (cfg, root, shutdown) = (cfg.clone(), root.clone(), shutdown.clone());
                        tokio::spawn(async move {
                            metrics::gauge!("nhn_tftp_active_sessions").increment(1.0);
                            transfer(&cfg, &root, local, peer, t, shutdown).await;
                            metrics::gauge!("nhn_tftp_active_sessions").decrement(1.0);
                            drop(permit);
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

async fn transfer(
    cfg: &TftpConfig,
    root: &BootRoot,
    local: Option<SocketAddr>,
    peer: SocketAddr,
    req: Transfer,
    shutdown: watch::Receiver<bool>,
) {
    metrics::counter!("nhn_tftp_sessions_total").increment(1);
    // A fresh port per transfer, on the address the request reached.
    let bind: SocketAddr = match local {
        Some(l) => SocketAddr::new(l.ip(), 0),
        None => SocketAddr::from(([0, 0, 0, 0], 0)),
    };
    let Ok(sock) = UdpSocket::bind(bind).await else {
        return;
    };
    if sock.connect(peer).await.is_err() {
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
            let _ = sock.send(&packet::error(code, &e.to_string())).await;
            return;
        }
    };
    let (params, acked) = negotiate(cfg, &req.options, data.len() as u64);
    let end = send_file(&sock, &data, params, &acked, cfg.retries, shutdown).await;
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
}

/// Receives the next ACK (or learns the transfer is over) within `wait`; `None` on timeout.
/// Other packets from the client's port are ignored.
async fn next_ack(sock: &UdpSocket, buf: &mut [u8], wait: Duration) -> Option<Result<u16, End>> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, sock.recv(buf)).await {
            Err(_) => return None,
            Ok(Err(_)) => return Some(Err(End::ClientError)),
            Ok(Ok(n)) => match packet::parse(&buf[..n]) {
                Ok(Request::Ack(b)) => return Some(Ok(b)),
                Ok(Request::Error(..)) => return Some(Err(End::ClientError)),
                _ => continue,
            },
        }
    }
}

async fn send_file(
    sock: &UdpSocket,
    data: &Bytes,
    p: Params,
    oack: &[(String, String)],
    retries: u32,
    mut shutdown: watch::Receiver<bool>,
) -> End {
    let mut rbuf = vec![0u8; 1024];
    let mut tries = 0;
    // Option acknowledgement: wait for ACK 0 (or the client's ERROR, e.g. after a tsize probe).
    if !oack.is_empty() {
        let pkt = packet::oack(oack);
        let mut resend = true;
        loop {
            if resend && sock.send(&pkt).await.is_err() {
                return End::ClientError;
            }
            resend = true;
            match next_ack(sock, &mut rbuf, p.timeout).await {
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
            if sock.send(&pkt).await.is_err() {
                return End::ClientError;
            }
            sent_bytes += (end - start) as u64;
            next += 1;
        } else if want > 1 {
            // A window in one sendmmsg(2): one system call instead of `want`.
            match send_blocks(sock, data, p.blksize, next, want).await {
                Ok((n, bytes)) => {
                    next += n as u64;
                    sent_bytes += bytes;
                }
                Err(_) => return End::ClientError,
            }
        }
        let got = tokio::select! {
            _ = shutdown.changed() => return End::Shutdown,
            g = next_ack(sock, &mut rbuf, p.timeout) => g,
        };
        match got {
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
async fn send_blocks(
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
    loop {
        sock.writable().await?;
        let sent = sock.try_io(tokio::io::Interest::WRITABLE, || {
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
            // SAFETY: every pointer refers to `headers`, `data` or `iov`, all alive for the call;
            // the socket is connected, so the messages need no address.
            let mut msgs: Vec<libc::mmsghdr> = iov
                .iter_mut()
                .map(|v| {
                    let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                    m.msg_hdr.msg_iov = v.as_mut_ptr();
                    m.msg_hdr.msg_iovlen = 2;
                    m
                })
                .collect();
            let rc = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    msgs.len() as libc::c_uint,
                    0,
                )
            };
            if rc < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(rc as usize)
            }
        });
        match sent {
            Ok(n) => return Ok((n, ranges[..n].iter().map(|(s, e)| (e - s) as u64).sum())),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
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

    #[test]
    fn netascii_expands_line_ends() {
        assert_eq!(&netascii(b"a\nb\rc")[..], b"a\r\nb\r\0c");
    }
}
