//! The TFTP server of the boot plane (RFC 1350 with RFC 2347 options, 2348 blksize, 2349 tsize
//! and timeout, 7440 windowsize), read-only over the boot directory. Written here rather
//! than taken from async-tftp, which ignores client ERROR packets (a firmware "tsize probe"
//! would be retransmitted to for minutes) and runs every transfer on one task.
//!
//! [`packet`] is the pure wire format; [`server`] the listener and per-transfer threads.

pub mod packet;
pub mod server;
