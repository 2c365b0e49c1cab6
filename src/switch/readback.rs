//! Read-back parsers: a switch's own description of its VLAN configuration (the output of the
//! `show` template) turned into the structure the planner emits, so that "what is on the
//! switch" and "what should be" compare directly. One parser per CLI family: `openvswitch`
//! (`ovs-vsctl` CSV) and `cisco-ios` (`show running-config`, also Arista EOS).

use std::collections::BTreeMap;
use std::fmt;

use super::vlans::{Vlan, VlanSet};

/// How a port forwards VLANs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 802.1Q trunk: tagged VLANs (`vlans`), optional untagged native VLAN.
    Trunk,
    /// Untagged member of one VLAN.
    Access,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Trunk => "trunk",
            Mode::Access => "access",
        }
    }
}

/// One port as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortState {
    pub mode: Mode,
    /// Trunk: allowed VLANs; access: the access VLAN.
    pub vlans: VlanSet,
    pub native: Option<Vlan>,
}

/// A switch's VLAN configuration as read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwitchState {
    pub ports: BTreeMap<String, PortState>,
    /// The VLAN database (VLANs defined on the switch).
    pub vlans: VlanSet,
}

impl SwitchState {
    /// Per port, the VLANs it carries (the planner's view).
    pub fn port_vlans(&self) -> BTreeMap<String, VlanSet> {
        self.ports
            .iter()
            .map(|(p, s)| (p.clone(), s.vlans.clone()))
            .collect()
    }
}

/// Which parser a template set uses for its `show` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Parser {
    Openvswitch,
    CiscoIos,
    /// No parser yet: the switch can be configured but not read back (no drift repair).
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    pub line: usize,
    pub text: String,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot parse the switch's read-back at line {} ({:?}): {}",
            self.line, self.text, self.message
        )
    }
}

pub fn parse(parser: Parser, output: &str) -> Result<Option<SwitchState>, ParseError> {
    match parser {
        Parser::Openvswitch => openvswitch(output).map(Some),
        Parser::CiscoIos => cisco_ios(output).map(Some),
        Parser::None => Ok(None),
    }
}

fn err(line: usize, text: &str, message: impl Into<String>) -> ParseError {
    ParseError {
        line: line + 1,
        text: text.to_owned(),
        message: message.into(),
    }
}

/// OVS: `ovs-vsctl --format=csv --data=bare --no-headings --columns=name,vlan_mode,tag,trunks
/// list Port` (one `name,mode,tag,trunks` line per port) and `ovs-vsctl get bridge br0
/// external_ids` (`{vlan-100=...}`: the VLAN names the openvswitch templates keep).
///
/// OVS semantics: an empty `trunks` means *all* VLANs; 4095 is the "no VLAN" placeholder
/// that the templates write for an empty trunk; an empty `vlan_mode` means access if a tag is
/// set, else trunk.
pub fn openvswitch(output: &str) -> Result<SwitchState, ParseError> {
    let mut st = SwitchState::default();
    for (i, line) in output.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(map) = line.strip_prefix('{') {
            for kv in map.trim_end_matches('}').split(',') {
                let key = kv.split('=').next().unwrap_or("").trim();
                if let Some(v) = key.strip_prefix("vlan-") {
                    let v: Vlan = v
                        .parse()
                        .map_err(|_| err(i, line, format!("bad VLAN key {key:?}")))?;
                    st.vlans.insert(v);
                }
            }
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        let [name, mode, tag, trunks] = f[..] else {
            return Err(err(i, line, "expected name,vlan_mode,tag,trunks"));
        };
        let tag: Option<Vlan> = match tag {
            "" => None,
            t => Some(t.parse().map_err(|_| err(i, line, "bad tag"))?),
        };
        let mut set = VlanSet::new();
        for t in trunks.split_whitespace() {
            let v: Vlan = t.parse().map_err(|_| err(i, line, "bad trunks"))?;
            set.insert(v); // 4095 (the "none" placeholder) is not a VLAN and is dropped
        }
        let state = match (mode, tag) {
            ("access", Some(t)) | ("", Some(t)) => PortState {
                mode: Mode::Access,
                vlans: [t].into_iter().collect(),
                native: None,
            },
            ("access", None) => return Err(err(i, line, "access port without a tag")),
            ("trunk" | "", None) | ("native-tagged" | "native-untagged", _) => {
                let all = trunks.trim().is_empty();
                let mut vlans = if all { VlanSet::all() } else { set };
                if let Some(t) = tag {
                    vlans.insert(t);
                }
                PortState {
                    mode: Mode::Trunk,
                    vlans,
                    native: tag,
                }
            }
            ("trunk", Some(_)) => return Err(err(i, line, "trunk port with a tag")),
            (other, _) => return Err(err(i, line, format!("unknown vlan_mode {other:?}"))),
        };
        st.ports.insert(name.to_owned(), state);
    }
    Ok(st)
}

/// Cisco IOS (and Arista EOS) `show running-config`: `vlan` lines define the database,
/// `interface` blocks carry `switchport mode`, `switchport access vlan`, `switchport trunk
/// allowed vlan [add] LIST|all|none` and `switchport trunk native vlan`. A trunk without an
/// allowed list carries all VLANs; a port without a mode line is an access port in VLAN 1.
pub fn cisco_ios(output: &str) -> Result<SwitchState, ParseError> {
    #[derive(Default)]
    struct Iface {
        mode: Option<Mode>,
        access: Option<Vlan>,
        allowed: Option<VlanSet>,
        native: Option<Vlan>,
    }
    let mut st = SwitchState::default();
    let mut ifaces: Vec<(String, Iface)> = Vec::new();
    let mut in_iface = false;
    let vlist = |i: usize, line: &str, s: &str| -> Result<VlanSet, ParseError> {
        match s.trim() {
            "all" => Ok(VlanSet::all()),
            "none" => Ok(VlanSet::new()),
            s => s.parse().map_err(|e: String| err(i, line, e)),
        }
    };
    for (i, raw) in output.lines().enumerate() {
        let line = raw.trim_end();
        let indented = line.starts_with(' ');
        let t = line.trim();
        if !indented {
            in_iface = false;
            if let Some(name) = t.strip_prefix("interface ") {
                ifaces.push((name.trim().to_owned(), Iface::default()));
                in_iface = true;
            } else if let Some(list) = t.strip_prefix("vlan ") {
                let set = vlist(i, line, list)?;
                st.vlans.union_with(&set);
            }
            continue;
        }
        let Some((_, cur)) = ifaces.last_mut().filter(|_| in_iface) else {
            continue;
        };
        if let Some(m) = t.strip_prefix("switchport mode ") {
            cur.mode = match m.trim() {
                "trunk" => Some(Mode::Trunk),
                "access" => Some(Mode::Access),
                other => return Err(err(i, line, format!("unsupported mode {other:?}"))),
            };
        } else if let Some(v) = t.strip_prefix("switchport access vlan ") {
            cur.access = Some(v.trim().parse().map_err(|_| err(i, line, "bad VLAN"))?);
        } else if let Some(l) = t.strip_prefix("switchport trunk allowed vlan add ") {
            let add = vlist(i, line, l)?;
            cur.allowed
                .get_or_insert_with(VlanSet::new)
                .union_with(&add);
        } else if let Some(l) = t.strip_prefix("switchport trunk allowed vlan ") {
            cur.allowed = Some(vlist(i, line, l)?);
        } else if let Some(v) = t.strip_prefix("switchport trunk native vlan ") {
            cur.native = Some(v.trim().parse().map_err(|_| err(i, line, "bad VLAN"))?);
        }
    }
    for (name, f) in ifaces {
        let state = match f.mode {
            Some(Mode::Trunk) => PortState {
                mode: Mode::Trunk,
                vlans: f.allowed.unwrap_or_else(VlanSet::all),
                native: f.native,
            },
            Some(Mode::Access) | None => PortState {
                mode: Mode::Access,
                vlans: [f.access.unwrap_or(1)].into_iter().collect(),
                native: None,
            },
        };
        st.ports.insert(name, state);
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openvswitch_csv_with_trunks_access_all_and_none() {
        let out = "br0,,,\nswp1,trunk,,100 200\nswp2,access,100,\nswp3,trunk,,4095\n\
                   swp4,,,\nswp5,native-untagged,10,20\n{lab-node=es1, vlan-100=VLAN0100, vlan-200=x}\n";
        let st = openvswitch(out).unwrap();
        let v = |p: &str| st.ports[p].vlans.to_string();
        assert_eq!(v("swp1"), "100,200");
        assert_eq!(st.ports["swp2"].mode, Mode::Access);
        assert_eq!(v("swp2"), "100");
        assert_eq!(v("swp3"), "none");
        assert_eq!(v("swp4"), "1-4094");
        assert_eq!(v("swp5"), "10,20");
        assert_eq!(st.ports["swp5"].native, Some(10));
        assert_eq!(st.vlans.to_string(), "100,200");
    }

    #[test]
    fn openvswitch_garbage_is_an_error_with_the_line() {
        let e = openvswitch("swp1,trunk,,100\nbash: ovs-vsctl: not found\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().contains("expected name,vlan_mode,tag,trunks"));
    }

    #[test]
    fn cisco_ios_running_config() {
        let out = "Building configuration...\n\nCurrent configuration : 300 bytes\n!\n\
                   hostname Edge-Switch-2\n!\nvlan 1\n name default\n!\nvlan 100,200\n!\n\
                   interface swp1\n switchport trunk allowed vlan 100,200-202\n switchport mode trunk\n!\n\
                   interface swp2\n switchport trunk allowed vlan 10\n switchport trunk allowed vlan add 20-21\n switchport mode trunk\n!\n\
                   interface swp3\n switchport access vlan 100\n switchport mode access\n!\n\
                   interface swp4\n switchport mode trunk\n!\n\
                   interface swp5\n switchport trunk allowed vlan none\n switchport mode trunk\n shutdown\n!\nend\n";
        let st = cisco_ios(out).unwrap();
        let v = |p: &str| st.ports[p].vlans.to_string();
        assert_eq!(v("swp1"), "100,200-202");
        assert_eq!(v("swp2"), "10,20-21");
        assert_eq!(
            (st.ports["swp3"].mode, v("swp3")),
            (Mode::Access, "100".into())
        );
        assert_eq!(v("swp4"), "1-4094");
        assert_eq!(v("swp5"), "none");
        assert_eq!(st.vlans.to_string(), "1,100,200");
    }

    #[test]
    fn cisco_ios_bad_vlan_list_is_an_error() {
        let e = cisco_ios("interface Gi0/1\n switchport trunk allowed vlan 1x\n").unwrap_err();
        assert_eq!(e.line, 2);
    }
}
