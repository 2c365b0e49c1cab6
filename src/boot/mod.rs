//! What booting machines are served besides DHCP: the boot directory ([`files`], shared by
//! TFTP and HTTP) and the per-machine iPXE scripts ([`script`]).

pub mod files;
pub mod script;
