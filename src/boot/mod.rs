//! What booting machines are served besides DHCP: the boot directory ([`files`], shared by
//! TFTP and HTTP), the per-machine iPXE scripts ([`script`]) and the one-time tokens with which
//! an initrd fetches its boot secrets ([`secrets`]).

pub mod files;
pub mod script;
pub mod secrets;
