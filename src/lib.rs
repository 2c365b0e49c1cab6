//! nhn as a library: every module of the appliance, so that integration tests and benchmarks can
//! call the pure cores (site validation, later DHCP decisions and switch plans) directly. The
//! `nhn` binary (`src/main.rs` and `src/cli/`) is the command line over this library.

pub mod agent;
pub mod api;
pub mod boot;
pub mod codec;
pub mod config;
pub mod dhcp;
pub mod facility;
pub mod http;
pub mod images;
pub mod initrd;
pub mod inventory;
pub mod jobs;
pub mod model;
pub mod net;
pub mod placement;
pub mod secret;
pub mod serve;
pub mod sign;
pub mod storage;
pub mod switch;
pub mod tftp;
pub mod util;
