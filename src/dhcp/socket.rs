//! The DHCP socket layer: one UDP socket per served interface, pinned to it with
//! SO_BINDTODEVICE (so a packet from any other interface never reaches us, and broadcasts leave
//! through the right one), IP_PKTINFO to learn which of our addresses a request reached, and
//! an ARP-table entry (SIOCSARP) to unicast an answer to a client that has no address yet.
//! This is the only unsafe code of the DHCP server; it is small and uses libc directly.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
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

/// Looks an interface up by name (getifaddrs). Errors say what to fix.
pub fn interface(name: &str) -> io::Result<Interface> {
    let mut addrs = Vec::new();
    let mut found = false;
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
            if ifa.ifa_name.is_null()
                || std::ffi::CStr::from_ptr(ifa.ifa_name).to_bytes() != name.as_bytes()
            {
                continue;
            }
            found = true;
            if ifa.ifa_addr.is_null() || i32::from((*ifa.ifa_addr).sa_family) != libc::AF_INET {
                continue;
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
        libc::freeifaddrs(head);
    }
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

/// recvmsg with IP_PKTINFO. `Ok(None)` on timeout.
pub fn recv(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<Option<Received>> {
    // SAFETY: recvmsg fills the buffers we own; we read the control messages it wrote.
    unsafe {
        let mut from: libc::sockaddr_in = zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        let mut control = [0u64; 16];
        let mut hdr: libc::msghdr = zeroed();
        hdr.msg_name = &mut from as *mut libc::sockaddr_in as *mut libc::c_void;
        hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
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
        let mut local = None;
        let mut cmsg = libc::CMSG_FIRSTHDR(&hdr);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::IPPROTO_IP && (*cmsg).cmsg_type == libc::IP_PKTINFO {
                let info = &*(libc::CMSG_DATA(cmsg) as *const libc::in_pktinfo);
                local = Some(Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr)));
            }
            cmsg = libc::CMSG_NXTHDR(&hdr, cmsg);
        }
        Ok(Some(Received {
            len: n as usize,
            from: SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(from.sin_addr.s_addr)),
                u16::from_be(from.sin_port),
            ),
            local,
        }))
    }
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
