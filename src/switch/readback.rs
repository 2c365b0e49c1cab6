//! Read-back parsers: a switch's own description of its VLAN configuration (the output of the
//! `show` template) turned into the structure the planner emits, so that "what is on the
//! switch" and "what should be" compare directly. One parser per CLI family: `openvswitch`
//! (`ovs-vsctl` CSV), `cisco-ios` (`show running-config`, also Arista EOS), `junos`
//! (`show configuration | display set`) and `cumulus-nvue` (`nv config show -o commands`).

use std::collections::BTreeMap;
use std::fmt;

use super::plan::{Mode, PortPlan};
use super::vlans::{Vlan, VlanSet};

/// A switch's VLAN configuration as read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwitchState {
    /// Per port: what it carries, in the planner's terms (an untagged VLAN is the native
    /// VLAN only where it really leaves untagged: OVS `native-untagged`, a Cisco/Junos/NVUE
    /// native VLAN that is also allowed on the trunk).
    pub ports: BTreeMap<String, PortPlan>,
    /// The VLAN database (VLANs defined on the switch).
    pub vlans: VlanSet,
}

/// Which parser a template set uses for its `show` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Parser {
    Openvswitch,
    CiscoIos,
    Junos,
    CumulusNvue,
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
        Parser::Junos => junos(output).map(Some),
        Parser::CumulusNvue => cumulus_nvue(output).map(Some),
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
/// set, else trunk. `native-untagged` has the tag as its native VLAN (always trunked, listed in
/// `trunks` or not); `native-tagged` sends the tag VLAN tagged, so it counts as tagged.
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
        let all = trunks.trim().is_empty();
        let trunks = if all { VlanSet::all() } else { set };
        let state = match (mode, tag) {
            ("access", Some(t)) | ("", Some(t)) => PortPlan::access(t),
            ("access", None) => return Err(err(i, line, "access port without a tag")),
            ("trunk" | "", None) | ("native-tagged" | "native-untagged", None) => {
                PortPlan::trunk(None, trunks)
            }
            ("native-untagged", Some(t)) => PortPlan::trunk(Some(t), trunks),
            // Untagged frames in, but tagged out: the tag VLAN is carried tagged.
            ("native-tagged", Some(t)) => {
                let mut tagged = trunks;
                tagged.insert(t);
                PortPlan::trunk(None, tagged)
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
/// allowed list carries all VLANs; a port without a mode line is an access port in VLAN 1; a
/// trunk without a native line has none (IOS's default native VLAN 1 is not nhn's to manage).
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
            Some(Mode::Trunk) => {
                let allowed = f.allowed.unwrap_or_else(VlanSet::all);
                // A native VLAN the trunk does not allow forwards nothing.
                let native = f.native.filter(|n| allowed.contains(*n));
                PortPlan::trunk(native, allowed)
            }
            Some(Mode::Access) | None => PortPlan::access(f.access.unwrap_or(1)),
        };
        st.ports.insert(name, state);
    }
    Ok(st)
}

/// Junos (ELS) `show configuration | display set`: `set vlans NAME vlan-id N` defines the
/// database; per interface, `unit 0 family ethernet-switching interface-mode trunk|access`
/// and one `vlan members X` line per member (a VLAN id, a range, a VLAN name or `all`), and
/// `native-vlan-id N` on the interface. Without `interface-mode` a port is an access port.
/// Interfaces without ethernet-switching are not switch ports and are left out.
pub fn junos(output: &str) -> Result<SwitchState, ParseError> {
    #[derive(Default)]
    struct Iface {
        trunk: bool,
        members: Vec<(usize, String)>,
        native: Option<Vlan>,
        switching: bool,
    }
    let mut st = SwitchState::default();
    let mut names: BTreeMap<String, Vlan> = BTreeMap::new();
    let mut ifaces: BTreeMap<String, Iface> = BTreeMap::new();
    for (i, raw) in output.lines().enumerate() {
        let line = raw.trim();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["set", "vlans", name, "vlan-id", id] => {
                let v: Vlan = id.parse().map_err(|_| err(i, raw, "bad vlan-id"))?;
                names.insert((*name).to_owned(), v);
                st.vlans.insert(v);
            }
            [
                "set",
                "interfaces",
                port,
                "unit",
                "0",
                "family",
                "ethernet-switching",
                rest @ ..,
            ] => {
                let f = ifaces.entry((*port).to_owned()).or_default();
                f.switching = true;
                match rest {
                    ["interface-mode", "trunk"] => f.trunk = true,
                    ["interface-mode", "access"] => f.trunk = false,
                    ["interface-mode", other] => {
                        return Err(err(i, raw, format!("unsupported interface-mode {other:?}")));
                    }
                    ["vlan", "members", m] => f.members.push((i, (*m).to_owned())),
                    _ => {}
                }
            }
            ["set", "interfaces", port, "native-vlan-id", id] => {
                let v: Vlan = id.parse().map_err(|_| err(i, raw, "bad native-vlan-id"))?;
                ifaces.entry((*port).to_owned()).or_default().native = Some(v);
            }
            _ => {}
        }
    }
    for (port, f) in ifaces.into_iter().filter(|(_, f)| f.switching) {
        let mut vlans = VlanSet::new();
        for (i, m) in &f.members {
            let set: VlanSet = if m == "all" {
                VlanSet::all()
            } else if let Some(v) = names.get(m) {
                [*v].into_iter().collect()
            } else {
                m.parse().map_err(|_| {
                    err(
                        *i,
                        m,
                        format!("vlan member {m:?} is neither a VLAN id nor a defined VLAN name"),
                    )
                })?
            };
            vlans.union_with(&set);
        }
        let state = if f.trunk {
            // ELS forwards the native VLAN only if it is also a member.
            let native = f.native.filter(|n| vlans.contains(*n));
            PortPlan::trunk(native, vlans)
        } else {
            PortPlan::access(vlans.iter().next().unwrap_or(1))
        };
        st.ports.insert(port, state);
    }
    Ok(st)
}

/// Expands an NVUE interface list (`swp1-3,swp7`) into names.
fn nvue_ports(list: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for part in list.split(',') {
        let digits = part.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-');
        let range = &part[digits.len()..];
        match range.split_once('-') {
            Some((a, b)) if !digits.is_empty() => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if a > b || b - a > 4096 {
                    return None;
                }
                out.extend((a..=b).map(|n| format!("{digits}{n}")));
            }
            _ => out.push(part.to_owned()),
        }
    }
    Some(out)
}

/// Cumulus Linux NVUE `nv config show -o commands`: `nv set bridge domain BR vlan LIST`
/// defines the database; per interface (or interface range) `bridge domain BR vlan LIST|all`
/// (tagged members, added up over lines), `access N` and `untagged N` (the native VLAN). A
/// bridge member with no `vlan` line carries every VLAN of its bridge (NVUE's default).
pub fn cumulus_nvue(output: &str) -> Result<SwitchState, ParseError> {
    #[derive(Default)]
    struct Iface {
        vlans: Option<VlanSet>,
        access: Option<Vlan>,
        native: Option<Vlan>,
    }
    let mut st = SwitchState::default();
    let mut ifaces: BTreeMap<String, Iface> = BTreeMap::new();
    let list = |i: usize, raw: &str, s: &str| -> Result<VlanSet, ParseError> {
        if s == "all" {
            Ok(VlanSet::all())
        } else {
            s.parse().map_err(|e: String| err(i, raw, e))
        }
    };
    for (i, raw) in output.lines().enumerate() {
        let words: Vec<&str> = raw.split_whitespace().collect();
        match words.as_slice() {
            ["nv", "set", "bridge", "domain", _, "vlan", l] => {
                let set = list(i, raw, l)?;
                st.vlans.union_with(&set);
            }
            [
                "nv",
                "set",
                "interface",
                ports,
                "bridge",
                "domain",
                _,
                rest @ ..,
            ] => {
                let ports = nvue_ports(ports).ok_or_else(|| err(i, raw, "bad interface range"))?;
                for port in ports {
                    let f = ifaces.entry(port).or_default();
                    match rest {
                        ["vlan", l] => f
                            .vlans
                            .get_or_insert_with(VlanSet::new)
                            .union_with(&list(i, raw, l)?),
                        ["access", v] => {
                            f.access = Some(v.parse().map_err(|_| err(i, raw, "bad VLAN"))?)
                        }
                        ["untagged", v] if *v != "none" => {
                            f.native = Some(v.parse().map_err(|_| err(i, raw, "bad VLAN"))?)
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    for (port, f) in ifaces {
        let state = match f.access {
            Some(v) => PortPlan::access(v),
            None => {
                let vlans = f.vlans.unwrap_or_else(|| st.vlans.clone());
                let native = f.native.filter(|n| vlans.contains(*n));
                PortPlan::trunk(native, vlans)
            }
        };
        st.ports.insert(port, state);
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each port as `nhn switch show` prints a plan: `access 20`, `10,100`, `native 20 + 10`.
    fn show(st: &SwitchState) -> Vec<String> {
        st.ports.iter().map(|(p, s)| format!("{p}={s}")).collect()
    }

    #[test]
    fn openvswitch_csv_with_trunks_access_all_none_and_native_modes() {
        let out = "br0,,,\nswp1,trunk,,100 200\nswp2,access,100,\nswp3,trunk,,4095\n\
                   swp4,,,\nswp5,native-untagged,10,20\nswp6,native-untagged,20,4095\n\
                   swp7,native-untagged,20,10 20\nswp8,native-tagged,20,10\n\
                   {lab-node=es1, vlan-100=VLAN0100, vlan-200=x}\n";
        let st = openvswitch(out).unwrap();
        assert_eq!(
            show(&st),
            [
                "br0=1-4094",
                "swp1=100,200",
                "swp2=access 100",
                "swp3=none",
                "swp4=1-4094",
                "swp5=native 10 + 20",
                // Native with no tagged VLAN: trunks=4095, OVS's "none".
                "swp6=native 20 + none",
                // OVS trunks the native VLAN whether trunks lists it or not.
                "swp7=native 20 + 10",
                // native-tagged sends the tag VLAN tagged: not a native VLAN for nhn.
                "swp8=10,20",
            ]
        );
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
                   interface swp5\n switchport trunk allowed vlan none\n switchport mode trunk\n shutdown\n!\n\
                   interface swp6\n switchport trunk native vlan 20\n switchport trunk allowed vlan 10,20\n switchport mode trunk\n!\n\
                   interface swp7\n switchport trunk native vlan 30\n switchport trunk allowed vlan 10\n switchport mode trunk\n!\n\
                   interface swp8\n switchport trunk native vlan 20\n switchport access vlan 300\n switchport mode access\n!\nend\n";
        let st = cisco_ios(out).unwrap();
        assert_eq!(
            show(&st),
            [
                "swp1=100,200-202",
                "swp2=10,20-21",
                "swp3=access 100",
                "swp4=1-4094",
                "swp5=none",
                "swp6=native 20 + 10",
                // A native VLAN the trunk does not allow forwards nothing.
                "swp7=10",
                // Trunk settings of an access port are inactive.
                "swp8=access 300",
            ]
        );
        assert_eq!(st.vlans.to_string(), "1,100,200");
    }

    #[test]
    fn junos_display_set() {
        let out = "set version 21.4R3\nset vlans VLAN0100 vlan-id 100\nset vlans web vlan-id 200\n\
                   set interfaces xe-0/0/1 unit 0 family ethernet-switching interface-mode trunk\n\
                   set interfaces xe-0/0/1 unit 0 family ethernet-switching vlan members VLAN0100\n\
                   set interfaces xe-0/0/1 unit 0 family ethernet-switching vlan members 300-302\n\
                   set interfaces xe-0/0/1 unit 0 family ethernet-switching vlan members 10\n\
                   set interfaces xe-0/0/1 native-vlan-id 10\n\
                   set interfaces xe-0/0/2 unit 0 family ethernet-switching interface-mode access\n\
                   set interfaces xe-0/0/2 unit 0 family ethernet-switching vlan members web\n\
                   set interfaces xe-0/0/3 unit 0 family ethernet-switching interface-mode trunk\n\
                   set interfaces xe-0/0/4 unit 0 family ethernet-switching interface-mode trunk\n\
                   set interfaces xe-0/0/4 unit 0 family ethernet-switching vlan members all\n\
                   set interfaces xe-0/0/5 unit 0 family ethernet-switching interface-mode trunk\n\
                   set interfaces xe-0/0/5 unit 0 family ethernet-switching vlan members 100\n\
                   set interfaces xe-0/0/5 native-vlan-id 20\n\
                   set interfaces em0 unit 0 family inet address 10.0.0.1/24\n";
        let st = junos(out).unwrap();
        assert_eq!(
            show(&st),
            [
                "xe-0/0/1=native 10 + 100,300-302",
                "xe-0/0/2=access 200",
                "xe-0/0/3=none",
                "xe-0/0/4=1-4094",
                // ELS forwards a native VLAN only if it is a member.
                "xe-0/0/5=100",
            ]
        );
        assert_eq!(st.vlans.to_string(), "100,200");
        let e =
            junos("set interfaces xe-0/0/1 unit 0 family ethernet-switching vlan members nosuch\n")
                .unwrap_err();
        assert!(e.to_string().contains("nosuch"), "{e}");
    }

    #[test]
    fn cumulus_nvue_config_commands() {
        let out = "nv set bridge domain br_default vlan 100,200\n\
                   nv set interface swp1 bridge domain br_default vlan 100,200-202\n\
                   nv set interface swp1 bridge domain br_default vlan 10\n\
                   nv set interface swp1 bridge domain br_default untagged 10\n\
                   nv set interface swp2 bridge domain br_default access 100\n\
                   nv set interface swp3-4,swp6 bridge domain br_default\n\
                   nv set interface swp5 bridge domain br_default vlan 300\n\
                   nv set interface swp5 bridge domain br_default vlan 301\n\
                   nv set interface swp5 bridge domain br_default untagged none\n\
                   nv set interface eth0 ip address 192.0.2.1/24\n\
                   nv config apply\n";
        let st = cumulus_nvue(out).unwrap();
        assert_eq!(
            show(&st),
            [
                "swp1=native 10 + 100,200-202",
                "swp2=access 100",
                "swp3=100,200",
                "swp4=100,200",
                "swp5=300-301",
                "swp6=100,200",
            ]
        );
        assert_eq!(st.vlans.to_string(), "100,200");
        assert!(cumulus_nvue("nv set interface swp1 bridge domain br_default vlan x1\n").is_err());
    }

    #[test]
    fn cisco_ios_bad_vlan_list_is_an_error() {
        let e = cisco_ios("interface Gi0/1\n switchport trunk allowed vlan 1x\n").unwrap_err();
        assert_eq!(e.line, 2);
    }
}
