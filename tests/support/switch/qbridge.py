#!/usr/bin/env python3
"""nhn test lab: BRIDGE-MIB and Q-BRIDGE-MIB for net-snmp's snmpd (`pass_persist`), backed by
the Open vSwitch of the switch whose namespace snmpd runs in (OVS_RUNDIR selects it).

snmpd.conf:  pass_persist .1.3.6.1.2.1.17 /usr/bin/env OVS_RUNDIR=... python3 qbridge.py

Bridge port N is OVS port swpN; its ifIndex is the kernel's (if_nametoindex, in this
namespace), so snmpd's own IF-MIB ifName.<ifIndex> names it: nhn maps names to ports through
the switch, as on real hardware.

Objects served (everything else under .17 is absent):
  dot1dBaseNumPorts          .1.3.6.1.2.1.17.1.2.0                 Integer32
  dot1dBasePortIfIndex       .1.3.6.1.2.1.17.1.4.1.2.<port>        Integer32
  dot1qVlanStaticTable       .1.3.6.1.2.1.17.7.1.4.3.1.<col>.<vid>
      2 Name (rw)  3 EgressPorts (rw)  4 ForbiddenEgressPorts (all zeros only)
      5 UntaggedPorts (rw)  6 RowStatus (active(1); SET createAndGo(4)/createAndWait(5)/destroy(6))
  dot1qPvid                  .1.3.6.1.2.1.17.7.1.4.5.1.1.<port>    Unsigned32 (0: none)

PortList: bit N (MSB of the first octet = port 1) is bridge port N; a bit for a port the
bridge does not have is wrongValue, as is a PortList longer than the bridge needs.

SET (snmpd hands over one varbind at a time, in PDU order, after GETting each one; nothing
is rolled back):
  RowStatus 4/5   VLAN into the database (bridge external_ids:vlan-<vid>); an existing row
                  is inconsistentValue. 6: off every port and out of the database (not VLAN 1).
  EgressPorts     bit set on a non-member: tagged member; bit clear on a member: removed.
  UntaggedPorts   bit set: the port's untagged VLAN (OVS holds one per port: a previous
                  untagged VLAN stays as a tagged member); bit clear: tagged.
  dot1qPvid.N=V   V becomes the port's PVID: untagged unless V is a tagged member.
The OVS encoding of a port's members is ovsvlan.py's. QBRIDGE_TRACE=/path logs every request
(snmpd discards the script's stderr).
"""
import os
import socket
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ovsvlan  # noqa: E402

NUM_PORTS = (1, 3, 6, 1, 2, 1, 17, 1, 2, 0)
PORT_IFINDEX = (1, 3, 6, 1, 2, 1, 17, 1, 4, 1, 2)
STATIC = (1, 3, 6, 1, 2, 1, 17, 7, 1, 4, 3, 1)
PVID = (1, 3, 6, 1, 2, 1, 17, 7, 1, 4, 5, 1, 1)
NAME, EGRESS, FORBIDDEN, UNTAGGED, ROW_STATUS = 2, 3, 4, 5, 6


def trace(msg):
    path = os.environ.get("QBRIDGE_TRACE")
    if path:
        with open(path, "a") as f:
            f.write(msg + "\n")


class Bridge:
    """One consistent view of the switch: ports by number, VLAN database, members."""

    def __init__(self):
        self.st = ovsvlan.load()
        self.ports = {p["num"]: name for name, p in self.st["ports"].items()}

    def octets(self):
        return max(1, (max(self.ports, default=1) + 7) // 8)

    def portlist(self, nums):
        b = bytearray(self.octets())
        for n in nums:
            b[(n - 1) // 8] |= 0x80 >> ((n - 1) % 8)
        return b

    def members(self, vid, flag=None):
        return [n for n, name in self.ports.items()
                if (f := self.st["ports"][name]["members"].get(vid)) and (flag is None or f == flag)]

    def objects(self):
        """Every object as (oid, type, value), sorted by OID."""
        out = [(NUM_PORTS, "integer", str(len(self.ports)))]
        for n, name in self.ports.items():
            out.append((PORT_IFINDEX + (n,), "integer", str(socket.if_nametoindex(name))))
            out.append((PVID + (n,), "gauge", str(self.st["ports"][name]["pvid"] or 0)))
        for vid, vname in self.st["vlans"].items():
            out.append((STATIC + (NAME, vid), "string", vname))
            out.append((STATIC + (EGRESS, vid), "octet", self.portlist(self.members(vid)).hex()))
            out.append((STATIC + (FORBIDDEN, vid), "octet", self.portlist([]).hex()))
            out.append((STATIC + (UNTAGGED, vid), "octet", self.portlist(self.members(vid, "U")).hex()))
            out.append((STATIC + (ROW_STATUS, vid), "integer", "1"))
        return sorted(out)

    def placeholder(self, oid):
        """GET of a column of a row that does not exist yet: snmpd GETs every varbind of a
        SET first and refuses the SET (notWritable) when the object is absent, so a
        createAndGo PDU needs something to be there."""
        if oid[:len(STATIC)] == STATIC and len(oid) == len(STATIC) + 2 \
                and NAME <= oid[-2] <= ROW_STATUS and 1 <= oid[-1] <= 4094:
            col = oid[-2]
            if col == NAME:
                return (oid, "string", "")
            if col == ROW_STATUS:
                return (oid, "integer", "3")  # notReady
            return (oid, "octet", self.portlist([]).hex())
        return None

    def decode(self, typ, val):
        """A PortList from `octet "80 00"`/`octet 0x8000`/`string ...` -> set of ports."""
        val = val.strip()
        if typ == "string":
            raw = val[1:-1] if len(val) >= 2 and val[0] == val[-1] == '"' else val
            data = raw.encode("latin-1")
        elif typ == "octet":
            h = val.strip('"').strip()
            h = h[2:] if h.lower().startswith("0x") else h
            data = bytes.fromhex("".join(h.split()))
        else:
            raise SetError("wrong-type")
        if len(data) > self.octets():
            raise SetError("wrong-length")
        ports = {i * 8 + j + 1 for i, b in enumerate(data) for j in range(8) if b & (0x80 >> j)}
        if any(n not in self.ports for n in ports):
            raise SetError("wrong-value")
        return ports


class SetError(Exception):
    pass


_cache = {"at": 0.0, "bridge": None}


def current():
    """The switch as of at most 0.2 s ago (a walk is one request per object; SETs and their
    pre-GETs always see a fresh view because a SET drops the cache)."""
    now = time.monotonic()
    if _cache["bridge"] is None or now - _cache["at"] > 0.2:
        _cache["bridge"], _cache["at"] = Bridge(), now
    return _cache["bridge"]


def set_pvid(br, port, typ, val):
    if typ not in ("gauge", "unsigned", "integer"):
        raise SetError("wrong-type")
    if port not in br.ports:
        raise SetError("no-creation")
    vid = int(val)
    if vid not in br.st["vlans"]:
        raise SetError("inconsistent-value")
    name = br.ports[port]
    p = br.st["ports"][name]
    mem = dict(p["members"])
    if mem.get(vid) != "T":
        mem = {v: f for v, f in mem.items() if f != "U"}
        mem[vid] = "U"
    ovsvlan.set_port(name, mem, vid)


def set_static(br, col, vid, typ, val):
    exists = vid in br.st["vlans"]
    if col == ROW_STATUS:
        if typ != "integer":
            raise SetError("wrong-type")
        rs = int(val)
        if rs in (4, 5):
            if exists:
                raise SetError("inconsistent-value")
            ovsvlan.vlan_create([vid])
        elif rs == 6:
            if vid == 1:
                raise SetError("inconsistent-value")
            if exists:
                ovsvlan.vlan_delete([vid], br.st)
        elif rs == 1:
            if not exists:
                raise SetError("inconsistent-value")
        else:
            raise SetError("wrong-value")
        return
    if not exists:
        raise SetError("inconsistent-name")
    if col == NAME:
        if typ not in ("string", "octet"):
            raise SetError("wrong-type")
        ovsvlan.vlan_create([vid], val.strip().strip('"'))
        return
    if col not in (EGRESS, FORBIDDEN, UNTAGGED):
        raise SetError("not-writable")
    want = br.decode(typ, val)
    if col == FORBIDDEN:
        if want:
            raise SetError("inconsistent-value")
        return
    cmds = []
    for n, name in sorted(br.ports.items()):
        p = br.st["ports"][name]
        mem, pvid = dict(p["members"]), p["pvid"]
        cur = mem.get(vid)
        if col == EGRESS and n in want and cur is None:
            mem[vid] = "T"
        elif col == EGRESS and n not in want and cur is not None:
            del mem[vid]
            pvid = None if pvid == vid else pvid
        elif col == UNTAGGED and n in want and cur != "U":
            mem = {v: ("T" if f == "U" else f) for v, f in mem.items()}
            mem[vid], pvid = "U", vid
        elif col == UNTAGGED and n not in want and cur == "U":
            mem[vid] = "T"
        else:
            continue
        cmds.append(ovsvlan.port_args(name, mem, pvid))
    ovsvlan.commit(cmds)


def do_set(oid, typ, val):
    br = Bridge()
    if oid[:len(PVID)] == PVID and len(oid) == len(PVID) + 1:
        return set_pvid(br, oid[-1], typ, val)
    if oid[:len(STATIC)] == STATIC and len(oid) == len(STATIC) + 2:
        return set_static(br, oid[-2], oid[-1], typ, val)
    raise SetError("not-writable")


def parse_oid(s):
    return tuple(int(x) for x in s.strip().strip(".").split(".") if x)


def emit(obj):
    oid, typ, val = obj
    if typ == "octet":
        val = " ".join(val[i:i + 2] for i in range(0, len(val), 2)) or "00"
    sys.stdout.write("." + ".".join(map(str, oid)) + f"\n{typ}\n{val}\n")


def main():
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        cmd = line.strip()
        if cmd == "PING":
            sys.stdout.write("PONG\n")
        elif cmd in ("get", "getnext"):
            oid = parse_oid(sys.stdin.readline())
            try:
                br = current()
                objs = br.objects()
            except (ovsvlan.VlanError, OSError) as e:
                trace(f"cannot read the switch: {e}")
                br, objs = None, []
            if cmd == "get":
                hit = next((o for o in objs if o[0] == oid), None) or (br and br.placeholder(oid))
            else:
                hit = next((o for o in objs if o[0] > oid), None)
            trace(f"{cmd} .{'.'.join(map(str, oid))} -> {'found' if hit else 'NONE'}")
            if hit:
                emit(hit)
            else:
                sys.stdout.write("NONE\n")
        elif cmd == "set":
            oid = parse_oid(sys.stdin.readline())
            typ, _, val = sys.stdin.readline().strip().partition(" ")
            try:
                do_set(oid, typ, val)
                res = "DONE"
            except SetError as e:
                res = str(e)
            except ValueError:
                res = "wrong-value"
            except ovsvlan.VlanError as e:
                trace(f"ovs-vsctl failed: {e}")
                res = "inconsistent-value" if "one untagged" in str(e) else "commit-failed"
            _cache["bridge"] = None
            trace(f"set .{'.'.join(map(str, oid))} {typ} {val} -> {res}")
            sys.stdout.write(res + "\n")
        elif cmd:
            sys.stdout.write("NONE\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
