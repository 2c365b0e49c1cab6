//! `nhn agent`: runs on a hypervisor (placeholder while it is written).
