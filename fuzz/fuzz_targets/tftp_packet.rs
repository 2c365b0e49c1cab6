//! TFTP: one datagram through what `tftp::server` does with a client's first packet —
//! `packet::parse`; for a read request, `BootRoot::resolve` of the file name against a real boot
//! directory (one file, one symlink pointing out of it), `server::negotiate` of its options
//! (RFC 2347/2348/2349/7440) with the default limits, and the OACK / DATA / ERROR encoders.
//! Invariants checked: a resolved path stays inside the boot directory; negotiated block and
//! window sizes stay within the configured limits; the OACK encoder writes what the decoder
//! recognizes as an OACK.
//!
//! The per-transfer loop (ACKs, windows, retransmissions) lives in async socket code and is not
//! reachable as a pure function; the ACK and ERROR decoders it uses are covered here.
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use nhn::boot::files::BootRoot;
use nhn::config::Tftp;
use nhn::tftp::packet::{self, ErrorCode, Request};
use nhn::tftp::server;

/// A boot directory with `undionly.kpxe` and `escape` → `/etc/passwd`, made once per process.
static ROOT: LazyLock<(PathBuf, BootRoot)> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("nhn-fuzz-tftp-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("efi")).expect("a temporary directory");
    std::fs::write(dir.join("undionly.kpxe"), b"boot").expect("a boot file");
    std::fs::write(dir.join("efi/snponly.efi"), b"boot").expect("a boot file");
    let _ = std::os::unix::fs::symlink("/etc/passwd", dir.join("escape"));
    let canonical = dir.canonicalize().expect("the directory exists");
    (canonical, BootRoot::new(&dir))
});

fuzz_target!(|data: &[u8]| {
    let Ok(req) = packet::parse(data) else {
        return;
    };
    match req {
        Request::Read(t) | Request::Write(t) => {
            let (dir, root) = &*ROOT;
            match root.resolve(&t.filename) {
                Ok(path) => assert!(
                    path.starts_with(dir),
                    "{:?} escaped to {path:?}",
                    t.filename
                ),
                Err(e) => {
                    let _ = packet::error(ErrorCode::FileNotFound, &e.to_string());
                }
            }
            let cfg = Tftp::default();
            let (params, granted) = server::negotiate(&cfg, &t.options, 4);
            assert!((8..=usize::from(cfg.max_blksize)).contains(&params.blksize));
            assert!((1..=usize::from(cfg.max_windowsize)).contains(&params.windowsize));
            if !granted.is_empty() {
                let oack = packet::oack(&granted);
                assert_eq!(
                    packet::parse(&oack),
                    Ok(Request::Unexpected(packet::OP_OACK))
                );
            }
            let mut buf = Vec::new();
            packet::data(&mut buf, 1, &data[..data.len().min(params.blksize)]);
        }
        Request::Ack(_) | Request::Error(..) | Request::Unexpected(_) => {}
    }
});
