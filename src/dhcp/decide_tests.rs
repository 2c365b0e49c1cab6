//! Table-style tests of the DHCP decision: one behaviour per test, named after it.

use super::*;
use dhcproto::v4::{Architecture, Flags};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
const KNOWN: Mac = Mac([0x52, 0x54, 0, 0, 1, 1]);
const STRANGER: Mac = Mac([0x52, 0x54, 0, 0x99, 0, 1]);
const NOW: i64 = 1_000_000;

fn snapshot() -> Snapshot {
    let net: Ipv4Net = "10.96.0.0/24".parse().unwrap();
    let mut statics = HashMap::new();
    statics.insert(
        KNOWN,
        Static {
            ip: Ipv4Addr::new(10, 96, 0, 11),
            net,
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
                net,
                pool: Some((Ipv4Addr::new(10, 96, 0, 100), Ipv4Addr::new(10, 96, 0, 102))),
                router: Some(SERVER),
                dns: vec![],
                domain: Some("lab.example".into()),
                lease_secs: 600,
            },
            Subnet {
                net: "10.97.0.0/24".parse().unwrap(),
                pool: Some((Ipv4Addr::new(10, 97, 0, 50), Ipv4Addr::new(10, 97, 0, 60))),
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
}

fn request(kind: MessageType, mac: Mac) -> Message {
    let mut m = Message::new_with_id(
        0x1234,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac.0,
    );
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    m
}

fn rx() -> Receiver {
    Receiver { server: SERVER }
}

fn reply_of(d: Decision) -> (Message, Dest, Option<LeaseChange>, bool) {
    match d {
        Decision::Reply {
            msg,
            dest,
            change,
            discovered,
        } => (*msg, dest, change, discovered),
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn opt(m: &Message, code: OptionCode) -> Option<&DhcpOption> {
    m.opts().get(code)
}

#[test]
fn known_mac_is_offered_its_reservation_with_network_parameters() {
    let (out, dest, change, discovered) = reply_of(decide(
        &snapshot(),
        &Leases::default(),
        &request(MessageType::Discover, KNOWN),
        &rx(),
        NOW,
    ));
    assert_eq!(out.opts().msg_type(), Some(MessageType::Offer));
    assert_eq!(out.yiaddr(), Ipv4Addr::new(10, 96, 0, 11));
    assert_eq!(out.siaddr(), SERVER);
    assert_eq!(
        opt(&out, OptionCode::SubnetMask),
        Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
    );
    assert_eq!(
        opt(&out, OptionCode::Router),
        Some(&DhcpOption::Router(vec![SERVER]))
    );
    assert_eq!(
        opt(&out, OptionCode::Hostname),
        Some(&DhcpOption::Hostname("Hypervisor-1".into()))
    );
    assert_eq!(
        opt(&out, OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER))
    );
    assert_eq!(
        opt(&out, OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(3600))
    );
    assert_eq!(
        dest,
        Dest::UnicastNoArp(Ipv4Addr::new(10, 96, 0, 11), KNOWN)
    );
    assert!(change.is_none() && !discovered);
}

#[test]
fn plain_client_gets_root_path_and_initiator_ipxe_gets_no_pxedhcp_instead() {
    let (plain, ..) = reply_of(decide(
        &snapshot(),
        &Leases::default(),
        &request(MessageType::Discover, KNOWN),
        &rx(),
        NOW,
    ));
    assert_eq!(
        opt(&plain, OptionCode::RootPath),
        Some(&DhcpOption::RootPath(
            "iscsi:10.96.0.1::3260:1:iqn.2026-11.jp.nhn:vol-1".into()
        ))
    );
    match opt(&plain, OptionCode::Unknown(OPTION_INITIATOR)) {
        Some(DhcpOption::Unknown(u)) => assert_eq!(u.data(), b"iqn.2026-11.jp.nhn:hypervisor-1"),
        other => panic!("no initiator option: {other:?}"),
    }
    assert!(
        plain.fname().is_none_or(|f| f.iter().all(|b| *b == 0)),
        "plain clients get no boot file"
    );

    let mut ipxe = request(MessageType::Discover, KNOWN);
    ipxe.opts_mut()
        .insert(DhcpOption::UserClass(b"iPXE".to_vec()));
    let (out, ..) = reply_of(decide(&snapshot(), &Leases::default(), &ipxe, &rx(), NOW));
    assert!(
        opt(&out, OptionCode::RootPath).is_none(),
        "iPXE must not get a root-path (it would SAN-boot it)"
    );
    assert!(opt(&out, OptionCode::Unknown(OPTION_INITIATOR)).is_none());
    match opt(&out, OptionCode::Unknown(OPTION_IPXE_ENCAP)) {
        Some(DhcpOption::Unknown(u)) => assert_eq!(u.data(), IPXE_NO_PXEDHCP),
        other => panic!("iPXE must get no-pxedhcp (no ProxyDHCP wait): {other:?}"),
    }
    assert!(
        opt(&plain, OptionCode::Unknown(OPTION_IPXE_ENCAP)).is_none(),
        "only iPXE gets its encapsulated options"
    );
    let url = "http://10.96.0.1:8080/boot/52-54-00-00-01-01.ipxe";
    assert_eq!(
        opt(&out, OptionCode::BootfileName),
        Some(&DhcpOption::BootfileName(url.as_bytes().to_vec()))
    );
    assert_eq!(
        out.fname_str().unwrap().unwrap().trim_end_matches('\0'),
        url
    );
}

#[test]
fn pxe_firmware_gets_the_boot_program_for_its_architecture() {
    for (arch, class, file) in [
        (Some(0), true, "undionly.kpxe"),
        (Some(7), true, "snponly.efi"),
        (Some(9), true, "snponly.efi"),
        (None, true, "undionly.kpxe"),
    ] {
        let mut m = request(MessageType::Discover, KNOWN);
        if let Some(a) = arch {
            m.opts_mut()
                .insert(DhcpOption::ClientSystemArchitecture(Architecture(a)));
        }
        if class {
            m.opts_mut().insert(DhcpOption::ClassIdentifier(
                b"PXEClient:Arch:00000:UNDI:002001".to_vec(),
            ));
        }
        let (out, ..) = reply_of(decide(&snapshot(), &Leases::default(), &m, &rx(), NOW));
        assert_eq!(
            out.fname_str().unwrap().unwrap().trim_end_matches('\0'),
            file,
            "arch {arch:?}"
        );
    }
}

#[test]
fn known_mac_request_for_its_reservation_is_acked_and_any_other_is_nakked() {
    let mut ok = request(MessageType::Request, KNOWN);
    ok.opts_mut()
        .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 96, 0, 11)));
    ok.opts_mut().insert(DhcpOption::ServerIdentifier(SERVER));
    let (out, ..) = reply_of(decide(&snapshot(), &Leases::default(), &ok, &rx(), NOW));
    assert_eq!(out.opts().msg_type(), Some(MessageType::Ack));

    let mut wrong = request(MessageType::Request, KNOWN);
    wrong
        .opts_mut()
        .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 96, 0, 12)));
    let (out, dest, ..) = reply_of(decide(&snapshot(), &Leases::default(), &wrong, &rx(), NOW));
    assert_eq!(out.opts().msg_type(), Some(MessageType::Nak));
    assert_eq!(dest, Dest::Broadcast);
}

#[test]
fn unknown_mac_gets_a_pool_address_is_discovered_and_keeps_it() {
    let snap = snapshot();
    let mut leases = Leases::default();
    leases.add_pool(Ipv4Addr::new(10, 96, 0, 100));
    let (offer, _, change, discovered) = reply_of(decide(
        &snap,
        &leases,
        &request(MessageType::Discover, STRANGER),
        &rx(),
        NOW,
    ));
    assert!(discovered);
    let ip = offer.yiaddr();
    assert_eq!(ip, Ipv4Addr::new(10, 96, 0, 100));
    assert_eq!(
        opt(&offer, OptionCode::DomainName),
        Some(&DhcpOption::DomainName("lab.example".into()))
    );
    leases.apply(&change.unwrap());

    let mut req = request(MessageType::Request, STRANGER);
    req.opts_mut().insert(DhcpOption::RequestedIpAddress(ip));
    req.opts_mut().insert(DhcpOption::ServerIdentifier(SERVER));
    let (ack, _, change, discovered) = reply_of(decide(&snap, &leases, &req, &rx(), NOW));
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    assert!(discovered);
    let change = change.unwrap();
    assert!(
        matches!(change, LeaseChange::Bind { ip: i, until, .. } if i == ip && until == NOW + 600)
    );
    assert!(change.is_durable());
    leases.apply(&change);

    // Next boot, next day: the same address.
    let (again, ..) = reply_of(decide(
        &snap,
        &leases,
        &request(MessageType::Discover, STRANGER),
        &rx(),
        NOW + 86_400,
    ));
    assert_eq!(again.yiaddr(), ip);
}

#[test]
fn an_exhausted_pool_is_dropped_not_double_booked() {
    let snap = snapshot();
    let mut leases = Leases::default();
    for i in 0..3u8 {
        let mac = Mac([2, 0, 0, 0, 0, i]);
        let (_, _, change, _) = reply_of(decide(
            &snap,
            &leases,
            &request(MessageType::Discover, mac),
            &rx(),
            NOW,
        ));
        leases.apply(&change.unwrap());
    }
    let ips: HashSet<_> = leases.iter().map(|l| l.ip).collect();
    assert_eq!(ips.len(), 3);
    assert_eq!(
        decide(
            &snap,
            &leases,
            &request(MessageType::Discover, STRANGER),
            &rx(),
            NOW
        ),
        Decision::Drop("pool_exhausted")
    );
    // Once the offers lapse, the addresses are free again.
    assert!(matches!(
        decide(
            &snap,
            &leases,
            &request(MessageType::Discover, STRANGER),
            &rx(),
            NOW + OFFER_HOLD_SECS + 1
        ),
        Decision::Reply { .. }
    ));
}

#[test]
fn relayed_request_gets_the_relay_subnet_and_its_agent_information_back() {
    let giaddr = Ipv4Addr::new(10, 97, 0, 1);
    let mut m = request(MessageType::Discover, STRANGER);
    m.set_giaddr(giaddr);
    let mut info = RelayAgentInformation::default();
    info.insert(RelayInfo::AgentCircuitId(b"swp7".to_vec()));
    info.insert(RelayInfo::AgentRemoteId(b"Edge-Switch-2".to_vec()));
    m.opts_mut()
        .insert(DhcpOption::RelayAgentInformation(info.clone()));
    let (out, dest, change, _) = reply_of(decide(&snapshot(), &Leases::default(), &m, &rx(), NOW));
    assert_eq!(out.yiaddr(), Ipv4Addr::new(10, 97, 0, 50));
    assert_eq!(out.giaddr(), giaddr);
    assert_eq!(dest, Dest::Relay(giaddr));
    assert_eq!(
        opt(&out, OptionCode::Router),
        Some(&DhcpOption::Router(vec![giaddr]))
    );
    assert_eq!(
        opt(&out, OptionCode::RelayAgentInformation),
        Some(&DhcpOption::RelayAgentInformation(info))
    );
    let mut leases = Leases::default();
    leases.apply(&change.unwrap());
    let mut req = request(MessageType::Request, STRANGER);
    req.set_giaddr(giaddr);
    req.opts_mut()
        .insert(DhcpOption::RequestedIpAddress(out.yiaddr()));
    let mut info = RelayAgentInformation::default();
    info.insert(RelayInfo::AgentCircuitId(b"swp7".to_vec()));
    req.opts_mut()
        .insert(DhcpOption::RelayAgentInformation(info));
    let (_, _, change, _) = reply_of(decide(&snapshot(), &leases, &req, &rx(), NOW));
    assert!(
        matches!(change, Some(LeaseChange::Bind { giaddr: Some(g), circuit_id: Some(c), .. }) if g == giaddr && c == b"swp7")
    );
}

#[test]
fn relay_from_an_unknown_subnet_is_dropped() {
    let mut m = request(MessageType::Discover, STRANGER);
    m.set_giaddr(Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(
        decide(&snapshot(), &Leases::default(), &m, &rx(), NOW),
        Decision::Drop("no_subnet")
    );
}

#[test]
fn choosing_another_server_frees_our_offer() {
    let snap = snapshot();
    let mut leases = Leases::default();
    let (offer, _, change, _) = reply_of(decide(
        &snap,
        &leases,
        &request(MessageType::Discover, STRANGER),
        &rx(),
        NOW,
    ));
    leases.apply(&change.unwrap());
    let mut req = request(MessageType::Request, STRANGER);
    req.opts_mut()
        .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(
            10, 96, 0, 200,
        )));
    req.opts_mut()
        .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 96, 0, 2)));
    let d = decide(&snap, &leases, &req, &rx(), NOW);
    assert_eq!(
        d,
        Decision::Silent {
            change: LeaseChange::Release {
                mac: STRANGER,
                ip: offer.yiaddr()
            },
            discovered: true
        }
    );
}

#[test]
fn init_reboot_on_the_wrong_network_is_nakked_and_without_a_record_is_silent() {
    let mut wrong = request(MessageType::Request, STRANGER);
    wrong
        .opts_mut()
        .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(
            192, 168, 1, 5,
        )));
    let (out, ..) = reply_of(decide(&snapshot(), &Leases::default(), &wrong, &rx(), NOW));
    assert_eq!(out.opts().msg_type(), Some(MessageType::Nak));

    let mut outside_pool = request(MessageType::Request, STRANGER);
    outside_pool
        .opts_mut()
        .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 96, 0, 42)));
    assert_eq!(
        decide(&snapshot(), &Leases::default(), &outside_pool, &rx(), NOW),
        Decision::Drop("no_record")
    );
}

#[test]
fn renewal_is_unicast_to_the_client_and_release_frees_the_address() {
    let snap = snapshot();
    let mut leases = Leases::default();
    let ip = Ipv4Addr::new(10, 96, 0, 100);
    leases.apply(&LeaseChange::Bind {
        mac: STRANGER,
        ip,
        until: NOW + 600,
        hostname: String::new(),
        client_id: None,
        giaddr: None,
        circuit_id: None,
        remote_id: None,
    });
    let mut renew = request(MessageType::Request, STRANGER);
    renew.set_ciaddr(ip);
    let (out, dest, change, _) = reply_of(decide(&snap, &leases, &renew, &rx(), NOW + 300));
    assert_eq!(out.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(dest, Dest::Unicast(ip));
    assert!(matches!(change, Some(LeaseChange::Bind { until, .. }) if until == NOW + 900));

    let mut rel = request(MessageType::Release, STRANGER);
    rel.set_ciaddr(ip);
    let d = decide(&snap, &leases, &rel, &rx(), NOW + 400);
    let Decision::Silent { change, .. } = d else {
        panic!("{d:?}")
    };
    leases.apply(&change);
    assert_eq!(leases.get_ip(ip).unwrap().state, LeaseState::Released);
}

#[test]
fn a_declined_address_is_not_offered_again() {
    let snap = snapshot();
    let mut leases = Leases::default();
    let (offer, _, change, _) = reply_of(decide(
        &snap,
        &leases,
        &request(MessageType::Discover, STRANGER),
        &rx(),
        NOW,
    ));
    leases.apply(&change.unwrap());
    let mut decline = request(MessageType::Decline, STRANGER);
    decline
        .opts_mut()
        .insert(DhcpOption::RequestedIpAddress(offer.yiaddr()));
    let Decision::Silent { change, .. } = decide(&snap, &leases, &decline, &rx(), NOW) else {
        panic!()
    };
    leases.apply(&change);
    let (again, ..) = reply_of(decide(
        &snap,
        &leases,
        &request(MessageType::Discover, STRANGER),
        &rx(),
        NOW + 1,
    ));
    assert_ne!(again.yiaddr(), offer.yiaddr());
}

#[test]
fn broadcast_flag_and_inform_are_answered_by_broadcast_or_unicast() {
    let mut m = request(MessageType::Discover, KNOWN);
    m.set_flags(Flags::default().set_broadcast());
    let (out, dest, ..) = reply_of(decide(&snapshot(), &Leases::default(), &m, &rx(), NOW));
    assert_eq!(dest, Dest::Broadcast);
    assert!(out.flags().broadcast());

    let mut inform = request(MessageType::Inform, STRANGER);
    inform.set_ciaddr(Ipv4Addr::new(10, 96, 0, 77));
    let (out, dest, change, _) =
        reply_of(decide(&snapshot(), &Leases::default(), &inform, &rx(), NOW));
    assert_eq!(dest, Dest::Unicast(Ipv4Addr::new(10, 96, 0, 77)));
    assert_eq!(out.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert!(opt(&out, OptionCode::AddressLeaseTime).is_none());
    assert!(change.is_none());
}

#[test]
fn replies_are_padded_to_the_bootp_minimum_and_parse_back() {
    let (out, ..) = reply_of(decide(
        &snapshot(),
        &Leases::default(),
        &request(MessageType::Discover, KNOWN),
        &rx(),
        NOW,
    ));
    let bytes = encode(&out).unwrap();
    assert!(bytes.len() >= 300);
    let back = parse(&bytes).unwrap();
    assert_eq!(back.yiaddr(), out.yiaddr());
}

#[test]
fn non_requests_and_foreign_hardware_are_dropped() {
    let mut reply = request(MessageType::Discover, KNOWN);
    reply.set_opcode(Opcode::BootReply);
    assert_eq!(
        decide(&snapshot(), &Leases::default(), &reply, &rx(), NOW),
        Decision::Drop("not_a_request")
    );
    let mut no_type = request(MessageType::Discover, KNOWN);
    no_type.opts_mut().remove(OptionCode::MessageType);
    assert_eq!(
        decide(&snapshot(), &Leases::default(), &no_type, &rx(), NOW),
        Decision::Drop("no_message_type")
    );
    assert!(parse(&[0u8; 100]).is_none());
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn valid_discover() -> Vec<u8> {
        let mut m = request(MessageType::Discover, STRANGER);
        m.opts_mut().insert(DhcpOption::Hostname("fuzz".into()));
        m.opts_mut().insert(DhcpOption::ParameterRequestList(vec![
            OptionCode::SubnetMask,
            OptionCode::RootPath,
        ]));
        dhcproto::Encodable::to_vec(&m).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever arrives, parsing and deciding never panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
            if let Some(m) = parse(&bytes) {
                let _ = decide(&snapshot(), &Leases::default(), &m, &rx(), NOW);
            }
        }

        /// A valid packet with a few bytes changed (lengths, codes, hlen) never panics either.
        #[test]
        fn mutated_packets_never_panic(edits in proptest::collection::vec((0usize..400, any::<u8>()), 1..8), cut in 0usize..400) {
            let mut bytes = valid_discover();
            for (at, b) in edits {
                if let Some(x) = bytes.get_mut(at) {
                    *x = b;
                }
            }
            bytes.truncate(bytes.len().saturating_sub(cut % 40));
            if let Some(m) = parse(&bytes)
                && let Decision::Reply { msg, .. } = decide(&snapshot(), &Leases::default(), &m, &rx(), NOW)
            {
                prop_assert!(encode(&msg).is_some());
            }
        }
    }
}
