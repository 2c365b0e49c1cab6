//! The DHCPv4 server of the boot plane.
//!
//! - [`decide`]: the pure decision (what to answer, to whom, which lease change), unit-tested
//!   with tables of cases;
//! - [`snapshot`]: builds the decision's view of the inventory (static reservations, iSCSI
//!   root-paths, known MACs);
//! - [`ra`]: IPv6 router advertisements (router lifetime 0, no prefix) so that iPXE ends its
//!   IPv6 autoconfiguration at once;
//! - `socket`: per-interface sockets (SO_BINDTODEVICE, IP_PKTINFO, ARP entries; the raw
//!   ICMPv6 socket of the advertiser);
//! - [`service`]: threads around them — workers, the batching lease persister, the snapshot
//!   refresher.
//!
//! The server answers (and advertises) only on interfaces the configuration names; with none it
//! does not start.

pub mod decide;
pub mod ra;
pub mod service;
pub mod snapshot;
mod socket;
