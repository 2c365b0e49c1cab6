//! Network value types shared by the inventory, DHCP and the switch plane: MAC addresses and
//! IPv4 prefixes, parsed once at the edge ("parse, don't validate") and printed canonically.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An Ethernet MAC address, printed as lower-case `aa:bb:cc:dd:ee:ff`.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// True for group (multicast/broadcast) addresses, which no NIC may own.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split([':', '-']).collect();
        let bad =
            || format!("invalid MAC address {s:?}: expected six hex bytes like 52:54:00:12:34:56");
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut out = [0u8; 6];
        for (byte, part) in out.iter_mut().zip(&parts) {
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        Ok(Mac(out))
    }
}

impl TryFrom<String> for Mac {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Mac> for String {
    fn from(m: Mac) -> String {
        m.to_string()
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An IPv4 prefix such as `10.20.0.0/24`. The address must be the network address.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    len: u8,
}

impl Ipv4Net {
    pub fn new(addr: Ipv4Addr, len: u8) -> Result<Self, String> {
        if len > 32 {
            return Err(format!("prefix length /{len} is longer than 32"));
        }
        let net = Ipv4Net { addr, len };
        if net.network() != addr {
            return Err(format!(
                "{addr}/{len} has host bits set; the network address is {}/{len}",
                net.network()
            ));
        }
        Ok(net)
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    fn mask_bits(&self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.len))
        }
    }

    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask_bits())
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask_bits())
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask_bits())
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask_bits() == u32::from(self.network())
    }

    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }
}

impl FromStr for Ipv4Net {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, l) = s.split_once('/').ok_or_else(|| {
            format!("invalid prefix {s:?}: expected address/length like 10.0.0.0/24")
        })?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("invalid prefix {s:?}: {a:?} is not an IPv4 address"))?;
        let len: u8 = l
            .parse()
            .map_err(|_| format!("invalid prefix {s:?}: {l:?} is not a length"))?;
        Ipv4Net::new(addr, len).map_err(|e| format!("invalid prefix {s:?}: {e}"))
    }
}

impl TryFrom<String> for Ipv4Net {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Ipv4Net> for String {
    fn from(n: Ipv4Net) -> String {
        n.to_string()
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl fmt::Debug for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parses_both_separators_and_prints_lower_case() {
        let m: Mac = "52-54-00-AB-cd-01".parse().unwrap();
        assert_eq!(m.to_string(), "52:54:00:ab:cd:01");
        assert!(!m.is_multicast());
        assert!("01:00:5e:00:00:01".parse::<Mac>().unwrap().is_multicast());
    }

    #[test]
    fn mac_rejects_malformed_text() {
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:01:02",
            "5:54:00:ab:cd:01",
            "zz:54:00:ab:cd:01",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn prefix_arithmetic() {
        let n: Ipv4Net = "10.20.0.0/24".parse().unwrap();
        assert_eq!(n.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(n.broadcast(), Ipv4Addr::new(10, 20, 0, 255));
        assert!(n.contains(Ipv4Addr::new(10, 20, 0, 9)));
        assert!(!n.contains(Ipv4Addr::new(10, 20, 1, 9)));
        let sup: Ipv4Net = "10.20.0.0/16".parse().unwrap();
        assert!(n.overlaps(&sup) && sup.overlaps(&n));
        assert!(!n.overlaps(&"10.21.0.0/24".parse().unwrap()));
        assert!(
            "0.0.0.0/0"
                .parse::<Ipv4Net>()
                .unwrap()
                .contains(Ipv4Addr::new(1, 2, 3, 4))
        );
    }

    #[test]
    fn prefix_rejects_host_bits_and_bad_lengths() {
        assert!(
            "10.20.0.1/24"
                .parse::<Ipv4Net>()
                .unwrap_err()
                .contains("host bits")
        );
        assert!("10.20.0.0/33".parse::<Ipv4Net>().is_err());
        assert!("10.20.0.0".parse::<Ipv4Net>().is_err());
    }
}
