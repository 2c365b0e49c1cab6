"""nhn test lab (adapted from the project testbed): VLAN model of one OVS switch (bridge br0, ports swpN), shared by swcli.py (IOS-like CLI)
and qbridge_ovs.py (SNMP Q-BRIDGE-MIB). Talks to the switch's own ovsdb through ovs-vsctl;
the OVS_RUNDIR env (set by lab.sh's sshd/snmpd config) selects the switch.

Model (Q-BRIDGE-like): VLAN database = bridge external_ids "vlan-<vid>" = name, plus every VLAN
used on a port. Per port: members {vid: "T"|"U"} and pvid.
OVS mapping (one untagged VLAN per port is all OVS can do):
  no member           -> vlan_mode=trunk trunks=[4095]  (NOT trunks=[]: empty = ALL VLANs!)
  U={u}, no T         -> vlan_mode=access tag=u
  T, no U, pvid in T  -> vlan_mode=native-tagged tag=pvid trunks=T
  T, no U             -> vlan_mode=trunk trunks=T
  T and U={u}         -> vlan_mode=native-untagged tag=u trunks=T+{u}
"""
import json
import os
import re
import subprocess

BR = os.environ.get("OVSVLAN_BRIDGE", "br0")
PORT_RE = re.compile(r"^swp(\d+)$")
NONE_VID = 4095  # sentinel "no VLAN" trunk


class VlanError(Exception):
    pass


def vsctl(*args):
    p = subprocess.run(["ovs-vsctl", "--timeout=20", *map(str, args)], capture_output=True, text=True)
    if p.returncode:
        raise VlanError(p.stderr.strip() or f"ovs-vsctl rc {p.returncode}")
    return p.stdout


def _set(v):
    """OVSDB JSON atom/set -> python list"""
    if isinstance(v, list) and v and v[0] == "set":
        return list(v[1])
    return [v]


def parse_vids(s):
    """'100', '100,200', '100-105', '10,20-22' -> sorted list of ints"""
    out = set()
    for part in str(s).split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            a, b = int(a), int(b)
            if a > b:
                raise VlanError(f"bad range {part}")
            out.update(range(a, b + 1))
        else:
            out.add(int(part))
    for v in out:
        if not 1 <= v <= 4094:
            raise VlanError(f"VLAN {v} out of range")
    return sorted(out)


def fmt_vids(vids):
    """[1,2,3,7] -> '1-3,7'"""
    vids = sorted(vids)
    out, i = [], 0
    while i < len(vids):
        j = i
        while j + 1 < len(vids) and vids[j + 1] == vids[j] + 1:
            j += 1
        out.append(str(vids[i]) if i == j else f"{vids[i]}-{vids[j]}")
        i = j + 1
    return ",".join(out)


def load():
    """-> {"vlans": {vid: name}, "ports": {name: {"members": {vid: T|U}, "pvid": int|None,
    "mode": str, "num": N}}}"""
    out = vsctl("-f", "json", "--columns=name,tag,trunks,vlan_mode", "list", "Port",
                "--", "--columns=external_ids", "list", "Bridge", BR)
    docs = [json.loads(x) for x in out.splitlines() if x.strip()]
    ports = {}
    for name, tag, trunks, mode in docs[0]["data"]:
        m = PORT_RE.match(name)
        if not m:
            continue
        tag = _set(tag)
        tag = tag[0] if tag else None
        trunks = [t for t in _set(trunks) if t != NONE_VID]
        mode = (_set(mode) or [None])[0] or ("access" if tag is not None else "trunk")
        mem, pvid = {}, None
        if mode == "access":
            mem, pvid = {tag: "U"}, tag
        elif mode == "trunk":
            mem = {t: "T" for t in trunks}
        elif mode == "native-tagged":
            mem = {t: "T" for t in trunks}
            mem[tag] = "T"
            pvid = tag
        elif mode == "native-untagged":
            mem = {t: "T" for t in trunks}
            mem[tag] = "U"
            pvid = tag
        ports[name] = {"members": mem, "pvid": pvid, "mode": mode, "num": int(m.group(1)),
                       "trunks_all": mode != "access" and not _set(trunks)}
    vlans = {}
    for k, v in docs[1]["data"][0][0][1]:  # ["map", [[k, v], ...]]
        if k.startswith("vlan-") and k[5:].isdigit():
            vlans[int(k[5:])] = v
    for p in ports.values():
        for vid in p["members"]:
            vlans.setdefault(vid, f"VLAN{vid:04d}")
    return {"vlans": dict(sorted(vlans.items())), "ports": dict(sorted(ports.items(), key=lambda kv: kv[1]["num"]))}


def port_args(name, members, pvid):
    """ovs-vsctl 'set port' arguments for a member map"""
    U = [v for v, f in members.items() if f == "U"]
    T = sorted(v for v, f in members.items() if f == "T")
    if len(U) > 1:
        raise VlanError(f"{name}: OVS supports only one untagged VLAN per port")
    if not U and not T:
        return ["set", "port", name, "vlan_mode=trunk", "tag=[]", f"trunks={NONE_VID}"]
    if U and not T:
        return ["set", "port", name, "vlan_mode=access", f"tag={U[0]}", "trunks=[]"]
    if not U:
        if pvid in T:
            return ["set", "port", name, "vlan_mode=native-tagged", f"tag={pvid}",
                    "trunks=" + ",".join(map(str, T))]
        return ["set", "port", name, "vlan_mode=trunk", "tag=[]", "trunks=" + ",".join(map(str, T))]
    return ["set", "port", name, "vlan_mode=native-untagged", f"tag={U[0]}",
            "trunks=" + ",".join(map(str, sorted(T + U)))]


def commit(cmds):
    """cmds: list of ovs-vsctl command arg lists -> one transaction (waits until vswitchd applied it)"""
    if not cmds:
        return
    args = []
    for c in cmds:
        if args:
            args.append("--")
        args += c
    vsctl(*args)


def set_port(name, members, pvid):
    commit([port_args(name, members, pvid)])


def vlan_create(vids, name=None):
    commit([["set", "bridge", BR, f"external_ids:vlan-{v}={json.dumps(name or f'VLAN{v:04d}')}"]
            for v in vids])


def vlan_delete(vids, st=None):
    """remove VLANs from the database and from every port"""
    st = st or load()
    cmds = []
    for pn, p in st["ports"].items():
        mem = dict(p["members"])
        if any(v in mem for v in vids):
            for v in vids:
                mem.pop(v, None)
            pv = p["pvid"] if p["pvid"] not in vids else None
            cmds.append(port_args(pn, mem, pv))
    for v in vids:
        cmds.append(["remove", "bridge", BR, "external_ids", f"vlan-{v}"])
    commit(cmds)
