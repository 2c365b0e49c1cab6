//! The DHCP socket layer: one UDP socket per served interface, pinned to it with
//! SO_BINDTODEVICE (so a packet from any other interface never reaches us, and broadcasts leave
//! through the right one), IP_PKTINFO to learn which of our addresses a request reached, and
//! an ARP-table entry (SIOCSARP) to unicast an answer to a client that has no address yet.
//! The router advertiser's raw ICMPv6 socket lives here too: bound to the interface, hop limit
//! 255, member of ff02::2 (all routers, to hear solicitations), an ICMPv6 filter that lets only
//! router solicitations in, the received hop limit (IPV6_RECVHOPLIMIT) and the source address
//! chosen per packet (IPV6_PKTINFO).
//! This is the only unsafe code of the DHCP server; it is small and uses libc directly.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::net::Mac;

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;

/// An interface nhn serves, as the kernel reports it.
#[derive(Debug, Clone)]
pub struct Interface {
    pub name: String,
    /// Its IPv4 addresses with prefix lengths; the first is the default server identifier.
    pub addrs: Vec<(Ipv4Addr, u8)>,
}

/// Calls `f` with every getifaddrs entry of interface `name` (one per address family).
fn for_each_addr(name: &str, mut f: impl FnMut(&libc::ifaddrs)) -> io::Result<()> {
    // SAFETY: getifaddrs allocates a list we walk read-only and free with freeifaddrs.
    unsafe {
        let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut head) != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut cur = head;
        while !cur.is_null() {
            let ifa = &*cur;
            cur = ifa.ifa_next;
            if !ifa.ifa_name.is_null()
                && std::ffi::CStr::from_ptr(ifa.ifa_name).to_bytes() == name.as_bytes()
            {
                f(ifa);
            }
        }
        libc::freeifaddrs(head);
    }
    Ok(())
}

/// Looks an interface up by name (getifaddrs). Errors say what to fix.
pub fn interface(name: &str) -> io::Result<Interface> {
    let mut addrs = Vec::new();
    let mut found = false;
    for_each_addr(name, |ifa| {
        found = true;
        // SAFETY: getifaddrs' entries point at sockaddrs of the family they name.
        unsafe {
            if ifa.ifa_addr.is_null() || i32::from((*ifa.ifa_addr).sa_family) != libc::AF_INET {
                return;
            }
            let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            let len = if ifa.ifa_netmask.is_null() {
                32
            } else {
                let m = &*(ifa.ifa_netmask as *const libc::sockaddr_in);
                u32::from_be(m.sin_addr.s_addr).count_ones() as u8
            };
            addrs.push((ip, len));
        }
    })?;
    if !found {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no network interface named {name:?}; fix [dhcp] interfaces in the config"),
        ));
    }
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!(
                "interface {name:?} has no IPv4 address; the DHCP server answers from its own address on that network"
            ),
        ));
    }
    Ok(Interface {
        name: name.to_owned(),
        addrs,
    })
}

/// Opens the server socket for one interface: bound to port 67 on that device only.
pub fn open(iface: &Interface, port: u16) -> io::Result<UdpSocket> {
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_reuse_address(true)?;
    sock.bind_device(Some(iface.name.as_bytes())).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot bind to device {} (needs root or CAP_NET_RAW): {e}",
                iface.name
            ),
        )
    })?;
    sock.set_broadcast(true)?;
    let on: libc::c_int = 1;
    // SAFETY: a plain int option on our own socket.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            &on as *const libc::c_int as *const libc::c_void,
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    sock.set_recv_buffer_size(4 << 20)?;
    sock.set_send_buffer_size(4 << 20)?;
    sock.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot bind UDP port {port} on {}: {e}", iface.name),
            )
        })?;
    let sock: UdpSocket = sock.into();
    sock.set_read_timeout(Some(Duration::from_millis(250)))?;
    Ok(sock)
}

/// One received datagram: its length, sender, and the local address it was sent to.
pub struct Received {
    pub len: usize,
    pub from: SocketAddrV4,
    pub local: Option<Ipv4Addr>,
}

/// recvmsg into `buf` with the sender's address as a `A` (`sockaddr_in` or `sockaddr_in6`);
/// `on_cmsg` sees each control message (level, type, its data). `Ok(None)` on timeout.
///
/// # Safety
/// `A` must be a plain C socket address struct (all-zero is a valid value), and `on_cmsg` may
/// read from the data pointer only what the kernel writes for that level and type.
unsafe fn recv_msg<A>(
    sock: &UdpSocket,
    buf: &mut [u8],
    mut on_cmsg: impl FnMut(libc::c_int, libc::c_int, *const u8),
) -> io::Result<Option<(usize, A)>> {
    // SAFETY: recvmsg fills the buffers we own (the caller vouches for `A`); we read the
    // control messages it wrote, within `control`.
    unsafe {
        let mut from: A = zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        let mut control = [0u64; 16];
        let mut hdr: libc::msghdr = zeroed();
        hdr.msg_name = &mut from as *mut A as *mut libc::c_void;
        hdr.msg_namelen = size_of::<A>() as libc::socklen_t;
        hdr.msg_iov = &mut iov;
        hdr.msg_iovlen = 1;
        hdr.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        hdr.msg_controllen = size_of::<[u64; 16]>() as _;
        let n = libc::recvmsg(sock.as_raw_fd(), &mut hdr, 0);
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        let mut cmsg = libc::CMSG_FIRSTHDR(&hdr);
        while !cmsg.is_null() {
            on_cmsg(
                (*cmsg).cmsg_level,
                (*cmsg).cmsg_type,
                libc::CMSG_DATA(cmsg) as *const u8,
            );
            cmsg = libc::CMSG_NXTHDR(&hdr, cmsg);
        }
        Ok(Some((n as usize, from)))
    }
}

/// recvmsg with IP_PKTINFO. `Ok(None)` on timeout.
pub fn recv(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<Option<Received>> {
    let mut local = None;
    // SAFETY: sockaddr_in is a plain C struct; IP_PKTINFO data is an in_pktinfo.
    let got = unsafe {
        recv_msg::<libc::sockaddr_in>(sock, buf, |level, kind, data| {
            if level == libc::IPPROTO_IP && kind == libc::IP_PKTINFO {
                let info = std::ptr::read_unaligned(data as *const libc::in_pktinfo);
                local = Some(Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr)));
            }
        })?
    };
    Ok(got.map(|(len, from)| Received {
        len,
        from: SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(from.sin_addr.s_addr)),
            u16::from_be(from.sin_port),
        ),
        local,
    }))
}

/// Adds (or refreshes) an ARP entry `ip → mac` on `iface`, so that a unicast to a client that
/// cannot answer ARP yet reaches it. Needs CAP_NET_ADMIN.
pub fn set_arp(sock: &UdpSocket, iface: &str, ip: Ipv4Addr, mac: &Mac) -> io::Result<()> {
    // SAFETY: SIOCSARP reads the arpreq we fill in.
    unsafe {
        let mut req: libc::arpreq = zeroed();
        let pa = &mut req.arp_pa as *mut libc::sockaddr as *mut libc::sockaddr_in;
        (*pa).sin_family = libc::AF_INET as libc::sa_family_t;
        (*pa).sin_addr.s_addr = u32::from(ip).to_be();
        req.arp_ha.sa_family = libc::ARPHRD_ETHER;
        for (dst, src) in req.arp_ha.sa_data.iter_mut().zip(mac.0) {
            *dst = src as libc::c_char;
        }
        req.arp_flags = libc::ATF_COM;
        for (dst, src) in req.arp_dev.iter_mut().zip(iface.bytes().take(15)) {
            *dst = src as libc::c_char;
        }
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSARP, &req) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// An interface's IPv6 view, as the kernel reports it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Link {
    pub index: u32,
    pub mac: [u8; 6],
    /// Its link-local address (fe80::/10), `None` while it has none.
    pub link_local: Option<Ipv6Addr>,
}

/// Looks up `name`'s index, Ethernet address and link-local address (getifaddrs).
pub fn ipv6_link(name: &str) -> io::Result<Ipv6Link> {
    let cname = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name with NUL"))?;
    // SAFETY: if_nametoindex reads a NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no network interface named {name:?}; fix [dhcp] interfaces in the config"),
        ));
    }
    let (mut mac, mut link_local) = ([0u8; 6], None);
    for_each_addr(name, |ifa| {
        if ifa.ifa_addr.is_null() {
            return;
        }
        // SAFETY: getifaddrs' entries point at sockaddrs of the family they name.
        unsafe {
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_PACKET => {
                    let ll = &*(ifa.ifa_addr as *const libc::sockaddr_ll);
                    if ll.sll_halen == 6 {
                        mac.copy_from_slice(&ll.sll_addr[..6]);
                    }
                }
                libc::AF_INET6 => {
                    let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                    if ip.is_unicast_link_local() {
                        link_local.get_or_insert(ip);
                    }
                }
                _ => {}
            }
        }
    })?;
    Ok(Ipv6Link {
        index,
        mac,
        link_local,
    })
}

/// Whether IPv6 is switched off on `name` (`net.ipv6.conf.<name>.disable_ipv6 = 1`, or no
/// IPv6 in the kernel at all).
pub fn ipv6_disabled(name: &str) -> bool {
    std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"))
        .map_or(true, |v| v.trim() != "0")
}

/// Linux's ICMP6_FILTER socket option (linux/icmpv6.h); a set bit blocks that type.
const ICMP6_FILTER: libc::c_int = 1;
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// The router advertiser's socket on one interface: raw ICMPv6 that receives only router
/// solicitations (`only_type`), with hop limit 255 on everything it sends.
pub fn open_icmpv6(name: &str, index: u32, only_type: u8) -> io::Result<UdpSocket> {
    let sock = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot open a raw ICMPv6 socket (needs root or CAP_NET_RAW): {e}"),
        )
    })?;
    sock.bind_device(Some(name.as_bytes()))?;
    sock.set_multicast_if_v6(index)?;
    sock.set_multicast_hops_v6(255)?;
    sock.set_unicast_hops_v6(255)?;
    sock.set_multicast_loop_v6(false)?;
    sock.join_multicast_v6(&ALL_ROUTERS, index)?;
    let mut filter = [u32::MAX; 8];
    filter[usize::from(only_type >> 5)] &= !(1u32 << (only_type & 31));
    let on: libc::c_int = 1;
    // SAFETY: fixed-size option values on our own socket.
    unsafe {
        for (level, name, value, len) in [
            (
                libc::IPPROTO_ICMPV6,
                ICMP6_FILTER,
                filter.as_ptr() as *const libc::c_void,
                size_of::<[u32; 8]>(),
            ),
            (
                libc::IPPROTO_IPV6,
                libc::IPV6_RECVHOPLIMIT,
                &on as *const libc::c_int as *const libc::c_void,
                size_of::<libc::c_int>(),
            ),
        ] {
            if libc::setsockopt(sock.as_raw_fd(), level, name, value, len as libc::socklen_t) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    // UdpSocket is just a datagram fd with timeouts; std has no raw-socket type.
    let sock: UdpSocket = UdpSocket::from(std::os::fd::OwnedFd::from(sock));
    Ok(sock)
}

/// One received ICMPv6 message: length, source, and the IPv6 hop limit it arrived with.
pub struct ReceivedV6 {
    pub len: usize,
    pub from: Ipv6Addr,
    pub hop_limit: Option<u8>,
}

/// recvmsg with IPV6_HOPLIMIT. `Ok(None)` on timeout.
pub fn recv_icmpv6(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<Option<ReceivedV6>> {
    let mut hop_limit = None;
    // SAFETY: sockaddr_in6 is a plain C struct; IPV6_HOPLIMIT data is a c_int.
    let got = unsafe {
        recv_msg::<libc::sockaddr_in6>(sock, buf, |level, kind, data| {
            if level == libc::IPPROTO_IPV6 && kind == libc::IPV6_HOPLIMIT {
                let v = std::ptr::read_unaligned(data as *const libc::c_int);
                hop_limit = u8::try_from(v).ok();
            }
        })?
    };
    Ok(got.map(|(len, from)| ReceivedV6 {
        len,
        from: Ipv6Addr::from(from.sin6_addr.s6_addr),
        hop_limit,
    }))
}

/// Sends an ICMPv6 message from `source` (IPV6_PKTINFO) to `to` on interface `index`; the
/// kernel fills in the checksum.
pub fn send_icmpv6(
    sock: &UdpSocket,
    msg: &[u8],
    source: Ipv6Addr,
    to: Ipv6Addr,
    index: u32,
) -> io::Result<()> {
    let dest = SocketAddrV6::new(to, 0, 0, index);
    let dest = socket2::SockAddr::from(dest);
    // SAFETY: sendmsg reads the buffers we own; the control buffer is aligned and sized for
    // one in6_pktinfo message.
    unsafe {
        let mut iov = libc::iovec {
            iov_base: msg.as_ptr() as *mut libc::c_void,
            iov_len: msg.len(),
        };
        let mut control = [0u64; 8];
        let mut hdr: libc::msghdr = zeroed();
        hdr.msg_name = dest.as_ptr() as *mut libc::c_void;
        hdr.msg_namelen = dest.len();
        hdr.msg_iov = &mut iov;
        hdr.msg_iovlen = 1;
        hdr.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        hdr.msg_controllen = libc::CMSG_SPACE(size_of::<libc::in6_pktinfo>() as libc::c_uint) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&hdr);
        (*cmsg).cmsg_level = libc::IPPROTO_IPV6;
        (*cmsg).cmsg_type = libc::IPV6_PKTINFO;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::in6_pktinfo>() as libc::c_uint) as _;
        let info = libc::in6_pktinfo {
            ipi6_addr: libc::in6_addr {
                s6_addr: source.octets(),
            },
            ipi6_ifindex: index,
        };
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut libc::in6_pktinfo, info);
        if libc::sendmsg(sock.as_raw_fd(), &hdr, 0) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
