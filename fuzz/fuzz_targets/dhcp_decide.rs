//! DHCP: one datagram through the path `dhcp::service` takes for every packet —
//! `decide::parse` (the option sanitizer, then dhcproto's decoder), `decide::client_mac`,
//! `decide::decide` against a snapshot with a reservation (iSCSI root-path), a local pool and a
//! relayed subnet (giaddr, option 82), `Leases::apply` of the implied change, and
//! `decide::encode` of any reply. The same datagram is then decided again against the changed
//! leases (a retransmission, or the REQUEST after the client's own OFFER), so the lease state
//! machine is driven too. Invariants checked: an encoded reply decodes again.
#![no_main]

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use nhn::dhcp::decide::{
    self, BootFiles, Decision, IscsiBoot, Leases, Receiver, Snapshot, Static, Subnet,
};
use nhn::net::{Ipv4Net, Mac};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
/// The reserved NIC; the seed corpus uses this MAC and a stranger's.
const KNOWN: Mac = Mac([0x52, 0x54, 0, 0, 1, 1]);
const NOW: i64 = 1_000_000;

static SNAPSHOT: LazyLock<Snapshot> = LazyLock::new(|| {
    let local: Ipv4Net = "10.96.0.0/24".parse().expect("a prefix");
    let relayed: Ipv4Net = "10.97.0.0/24".parse().expect("a prefix");
    let mut statics = HashMap::new();
    statics.insert(
        KNOWN,
        Static {
            ip: Ipv4Addr::new(10, 96, 0, 11),
            net: local,
            router: Some(SERVER),
            dns: vec![SERVER],
            hostname: "Hypervisor-1".into(),
            boot: Some(IscsiBoot {
                root_path: "iscsi:10.96.0.1::3260:1:iqn.2026-11.jp.nhn:vol-1".into(),
                initiator: "iqn.2026-11.jp.nhn:hypervisor-1".into(),
            }),
        },
    );
    Snapshot {
        statics,
        known: [KNOWN].into_iter().collect(),
        subnets: vec![
            Subnet {
                net: local,
                pool: Some((Ipv4Addr::new(10, 96, 0, 100), Ipv4Addr::new(10, 96, 0, 102))),
                router: Some(SERVER),
                dns: vec![SERVER],
                domain: Some("lab.example".into()),
                lease_secs: 600,
            },
            Subnet {
                net: relayed,
                pool: Some((Ipv4Addr::new(10, 97, 0, 50), Ipv4Addr::new(10, 97, 0, 51))),
                router: Some(Ipv4Addr::new(10, 97, 0, 1)),
                dns: vec![],
                domain: None,
                lease_secs: 600,
            },
        ],
        boot: BootFiles {
            bios: "undionly.kpxe".into(),
            efi: "snponly.efi".into(),
            http_base: None,
            http_port: 8080,
        },
        static_lease_secs: 3600,
    }
});

fuzz_target!(|data: &[u8]| {
    let Some(msg) = decide::parse(data) else {
        return;
    };
    if decide::client_mac(&msg).is_none() {
        return;
    }
    let snap = &*SNAPSHOT;
    let mut leases = Leases::default();
    for s in &snap.subnets {
        if let Some((first, _)) = s.pool {
            leases.add_pool(first);
        }
    }
    let rx = Receiver { server: SERVER };
    for now in [NOW, NOW + 1] {
        let d = decide::decide(snap, &leases, &msg, &rx, now);
        match &d {
            Decision::Reply {
                change: Some(c), ..
            }
            | Decision::Silent { change: c, .. } => leases.apply(c),
            _ => {}
        }
        if let Decision::Reply { msg: out, .. } = &d
            && let Some(bytes) = decide::encode(out)
        {
            assert!(
                decide::parse(&bytes).is_some(),
                "an encoded reply does not decode: {out:?}"
            );
        }
    }
});
