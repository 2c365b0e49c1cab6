#!/usr/bin/env python3
"""nhn test lab: a Cisco-IOS-like CLI (sshd ForceCommand) whose backend is the switch's own Open
vSwitch, so that the cisco-ios templates drive a real 802.1Q switch over SSH + PTY.
(Adapted from the project testbed's swcli.py; kept here so the tests carry their own lab.)

  exec:        ssh sw 'show vlan brief'   or  ssh sw 'conf t; interface swp1; switchport ...'
               (';' or newlines separate lines; exit status 1 if any line failed)
  interactive: ssh -tt sw  -> "Edge-Switch-2#" prompt, modes (config) (config-if) (config-vlan)

Keywords may be abbreviated (conf t, sh vlan br, int swp1, sw tr al vl add 300).
  configure terminal | end | exit | do <exec cmd> | write memory | copy running-config startup-config
  terminal length N | show vlan [brief] | show running-config [interface swpN] | show interfaces status
  vlan <list> / name WORD / no vlan <list>
  interface swpN / switchport mode access|trunk / switchport access vlan N / no switchport access vlan
    switchport trunk allowed vlan <list>|add <list>|remove <list>|all|none
    switchport trunk native vlan N / no switchport trunk native vlan / shutdown / no shutdown
    description TEXT
Errors: "% Invalid input detected at '^' marker." (caret under the bad word), "% Incomplete command."

IOS-side settings that OVS cannot hold while inactive (the access VLAN of a trunk port, the
allowed list of an access port) are kept in Port external_ids ios-*; the active part is always
read back from OVS, so SNMP/ovs-vsctl changes show up here.
"""
import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ovsvlan as ov  # noqa: E402

NAME = os.environ.get("SW_NAME", "Switch")
LOG = os.environ.get("SW_LOG")


class CliError(Exception):
    pass


def iosport(st, pn, extids):
    """IOS view of port pn: mode, access vlan, allowed ('all' | set), native"""
    p = st["ports"][pn]
    ex = extids.get(pn, {})
    shadow_allowed = ex.get("ios-allowed", "all")
    d = {"mode": "access" if p["mode"] == "access" else "trunk",
         "access": int(ex.get("ios-access", "1")),
         "allowed": "all" if shadow_allowed == "all" else set(ov.parse_vids(shadow_allowed)) if shadow_allowed != "none" else set(),
         "native": int(ex.get("ios-native", "1")),
         "desc": ex.get("description", ""),
         "num": p["num"]}
    if d["mode"] == "access":
        d["access"] = p["pvid"]
    else:
        if p["trunks_all"]:
            d["allowed"] = "all"
        else:
            d["allowed"] = {v for v, f in p["members"].items()}
        if p["mode"] in ("native-untagged", "native-tagged"):
            d["native"] = p["pvid"]
    return d


def load_extids():
    out = ov.vsctl("-f", "json", "--columns=name,external_ids", "list", "Port")
    import json
    d = json.loads(out)
    return {name: dict(m[1]) for name, m in d["data"]}


def apply(pn, d):
    """IOS port config -> one ovs-vsctl transaction (OVS port + ios-* shadow keys)"""
    allowed = d["allowed"]
    if d["mode"] == "access":
        ovs = ["vlan_mode=access", f"tag={d['access']}", "trunks=[]"]
    else:
        trunks = "[]" if allowed == "all" else (",".join(map(str, sorted(allowed))) or str(ov.NONE_VID))
        if d["native"] != 1:
            ovs = ["vlan_mode=native-untagged", f"tag={d['native']}", f"trunks={trunks}"]
        else:
            ovs = ["vlan_mode=trunk", "tag=[]", f"trunks={trunks}"]
    al = "all" if allowed == "all" else (ov.fmt_vids(allowed) or "none")
    ov.vsctl("set", "port", pn, *ovs, f"external_ids:ios-access={d['access']}",
             f'external_ids:ios-allowed="{al}"', f"external_ids:ios-native={d['native']}",
             f"external_ids:description={ov.json.dumps(d['desc'])}")


def link_up(pn):
    p = subprocess.run(["ip", "-o", "link", "show", pn], capture_output=True, text=True)
    return "state UP" in p.stdout or ",UP" in p.stdout.split(">")[0]


class Cli:
    def __init__(self, interactive):
        self.mode = "exec"  # exec | config | config-if | config-vlan
        self.ifname = None
        self.vids = None
        self.failed = False
        self.interactive = interactive

    def prompt(self):
        return NAME + ("#" if self.mode == "exec" else f"({self.mode})#")

    # ---------------------------------------------------------------- grammar
    def patterns(self, mode):
        exec_ = [
            ("configure terminal", self.c_conf),
            ("show vlan brief", self.c_show_vlan),
            ("show vlan", self.c_show_vlan),
            ("show running-config interface <if>", self.c_show_run_if),
            ("show running-config", self.c_show_run),
            ("show interfaces status", self.c_show_int_status),
            ("write memory", self.c_wr),
            ("copy running-config startup-config", self.c_wr),
            ("terminal length <num>", lambda a: None),
            ("terminal width <num>", lambda a: None),
            ("exit", self.c_logout),
            ("logout", self.c_logout),
            ("quit", self.c_logout),
        ]
        if mode == "exec":
            return exec_
        config = [
            ("vlan <vlist>", self.c_vlan),
            ("no vlan <vlist>", self.c_no_vlan),
            ("interface <if>", self.c_interface),
            ("end", self.c_end),
            ("exit", self.c_exit),
            ("do <rest>", self.c_do),
        ]
        if mode == "config":
            return config
        if mode == "config-vlan":
            return [("name <word>", self.c_name)] + config
        if_ = [
            ("switchport mode access|trunk", self.c_mode),
            ("switchport access vlan <vid>", self.c_access),
            ("no switchport access vlan", self.c_no_access),
            ("switchport trunk allowed vlan add <vlist>", self.c_allowed_add),
            ("switchport trunk allowed vlan remove <vlist>", self.c_allowed_remove),
            ("switchport trunk allowed vlan all|none", self.c_allowed_kw),
            ("switchport trunk allowed vlan <vlist>", self.c_allowed_set),
            ("switchport trunk native vlan <vid>", self.c_native),
            ("no switchport trunk native vlan", self.c_no_native),
            ("switchport", lambda a: None),
            ("shutdown", self.c_shut),
            ("no shutdown", self.c_noshut),
            ("description <rest>", self.c_desc),
            ("no description", lambda a: self.c_desc([""])),
        ]
        return if_ + config

    def conv(self, kind, tok):
        if kind == "<vid>":
            v = int(tok)
            if not 1 <= v <= 4094:
                raise ValueError
            return v
        if kind == "<vlist>":
            if not re.fullmatch(r"[0-9,\-]+", tok):
                raise ValueError
            return ov.parse_vids(tok)
        if kind == "<num>":
            return int(tok)
        if kind == "<if>":
            t = tok.lower()
            if t not in self.ports():
                raise ValueError
            return t
        return tok

    def ports(self):
        return ov.load()["ports"]

    @staticmethod
    def match(pattern, toks):
        """-> (ok, args, fail_idx, incomplete)"""
        pt = pattern.split()
        args = []
        for i, p in enumerate(pt):
            if i >= len(toks):
                return False, args, i, True
            t = toks[i][1]
            if p == "<rest>":
                return True, args + [("<rest>", " ".join(x[1] for x in toks[i:]), i)], None, False
            if p.startswith("<"):
                args.append((p, t, i))
                continue
            alts = p.split("|")
            m = [a for a in alts if a.startswith(t.lower())]
            if not m:
                return False, args, i, False
            if len(alts) > 1:
                args.append(("kw", m[0], i))
        if len(toks) > len(pt):
            return False, args, len(pt), False
        return True, args, None, False

    def line(self, raw):
        toks = [(m.start(), m.group()) for m in re.finditer(r"\S+", raw)]
        if not toks or toks[0][1].startswith("!"):
            return
        best, incomplete = -1, False
        for pat, fn in self.patterns(self.mode):
            ok, args, fail, inc = self.match(pat, toks)
            if ok:
                vals, idx = [], None
                for k, t, pos in args:
                    try:
                        vals.append(self.conv(k, t) if k.startswith("<") else t)
                    except (ValueError, ov.VlanError):
                        idx = pos  # typed argument rejected: caret under it
                        break
                if idx is not None:
                    if idx > best:
                        best, incomplete = idx, False
                    continue
                try:
                    fn(vals)
                except (CliError, ov.VlanError) as e:
                    self.out(f"% {e}")
                    self.failed = True
                self.log(raw, "ok")
                return
            if fail > best:
                best, incomplete = fail, inc
            elif fail == best and not inc:
                incomplete = False
        self.failed = True
        self.log(raw, "error")
        if incomplete:
            self.out("% Incomplete command.")
            return
        col = toks[best][0] if best < len(toks) else len(raw.rstrip())
        pad = len(self.prompt()) if self.interactive else 0
        self.out(" " * (pad + col) + "^")
        self.out("% Invalid input detected at '^' marker.")

    def out(self, s=""):
        sys.stdout.write(s + "\n")

    def log(self, raw, res):
        if LOG:
            with open(LOG, "a") as f:
                f.write(f"ios {self.mode} {res}: {raw.strip()}\n")

    # ---------------------------------------------------------------- commands
    def c_conf(self, a):
        if self.interactive:
            self.out("Enter configuration commands, one per line.  End with CNTL/Z.")
        self.mode = "config"

    def c_end(self, a):
        self.mode, self.ifname, self.vids = "exec", None, None

    def c_exit(self, a):
        if self.mode == "config":
            self.c_end(a)
        else:
            self.mode, self.ifname, self.vids = "config", None, None

    def c_logout(self, a):
        raise EOFError

    def c_do(self, a):
        saved = self.mode
        self.mode = "exec"
        try:
            self.line(a[0])
        finally:
            self.mode = saved if self.mode == "exec" else self.mode

    def c_wr(self, a):
        self.out("Building configuration...")
        self.out("[OK]")

    def c_vlan(self, a):
        st = ov.load()
        new = [v for v in a[0] if v not in st["vlans"] or v not in self.dbvlans()]
        if new:
            ov.vlan_create(new)
        self.mode, self.vids = "config-vlan", a[0]

    def dbvlans(self):
        out = ov.vsctl("get", "bridge", ov.BR, "external_ids")
        return {int(k) for k in re.findall(r'vlan-(\d+)=', out)}

    def c_no_vlan(self, a):
        if 1 in a[0]:
            raise CliError("Default VLAN 1 may not be deleted.")
        ov.commit([["remove", "bridge", ov.BR, "external_ids", f"vlan-{v}"] for v in a[0]])

    def c_name(self, a):
        ov.vlan_create(self.vids, a[0])

    def c_interface(self, a):
        self.mode, self.ifname = "config-if", a[0]

    def cur(self):
        st = ov.load()
        return iosport(st, self.ifname, load_extids())

    def c_mode(self, a):
        d = self.cur()
        d["mode"] = a[0]
        apply(self.ifname, d)

    def c_access(self, a):
        vid = a[0]
        if vid not in self.dbvlans():
            self.out("% Access VLAN does not exist. Creating vlan %d" % vid)
            ov.vlan_create([vid])
        d = self.cur()
        d["access"] = vid
        apply(self.ifname, d)

    def c_no_access(self, a):
        d = self.cur()
        d["access"] = 1
        apply(self.ifname, d)

    def _allowed(self, fn):
        d = self.cur()
        cur = set(range(1, 4095)) if d["allowed"] == "all" else set(d["allowed"])
        new = fn(cur)
        d["allowed"] = "all" if new == set(range(1, 4095)) else new
        apply(self.ifname, d)

    def c_allowed_add(self, a):
        self._allowed(lambda s: s | set(a[0]))

    def c_allowed_remove(self, a):
        self._allowed(lambda s: s - set(a[0]))

    def c_allowed_set(self, a):
        self._allowed(lambda s: set(a[0]))

    def c_allowed_kw(self, a):
        self._allowed(lambda s: set(range(1, 4095)) if a[0] == "all" else set())

    def c_native(self, a):
        d = self.cur()
        d["native"] = a[0]
        apply(self.ifname, d)

    def c_no_native(self, a):
        d = self.cur()
        d["native"] = 1
        apply(self.ifname, d)

    def c_shut(self, a):
        subprocess.run(["ip", "link", "set", self.ifname, "down"], check=True)

    def c_noshut(self, a):
        subprocess.run(["ip", "link", "set", self.ifname, "up"], check=True)

    def c_desc(self, a):
        d = self.cur()
        d["desc"] = a[0]
        apply(self.ifname, d)

    # ---------------------------------------------------------------- show
    def c_show_vlan(self, a):
        st = ov.load()
        ex = load_extids()
        names = {}
        out = ov.vsctl("-f", "json", "--columns=external_ids", "list", "Bridge", ov.BR)
        for k, v in ov.json.loads(out)["data"][0][0][1]:
            if k.startswith("vlan-") and k[5:].isdigit():
                names[int(k[5:])] = v
        self.out("")
        self.out("VLAN Name                             Status    Ports")
        self.out("---- -------------------------------- --------- -------------------------------")
        for vid in sorted(names):
            ports = [pn for pn in st["ports"] if iosport(st, pn, ex)["mode"] == "access"
                     and iosport(st, pn, ex)["access"] == vid]
            self.out(f"{vid:<4} {names[vid][:32]:<32} {'active':<9} {', '.join(ports)}".rstrip())

    def if_lines(self, pn, d):
        lines = [f"interface {pn}"]
        if d["desc"]:
            lines.append(f" description {d['desc']}")
        if d["access"] != 1:
            lines.append(f" switchport access vlan {d['access']}")
        if d["native"] != 1:
            lines.append(f" switchport trunk native vlan {d['native']}")
        if d["allowed"] != "all":
            lines.append(f" switchport trunk allowed vlan {ov.fmt_vids(d['allowed']) or 'none'}")
        lines.append(f" switchport mode {d['mode']}")
        if not link_up(pn):
            lines.append(" shutdown")
        return lines

    def c_show_run_if(self, a):
        st = ov.load()
        body = self.if_lines(a[0], iosport(st, a[0], load_extids()))
        text = "!\n" + "\n".join(body) + "\nend\n"
        self.out("Building configuration...\n")
        self.out(f"Current configuration : {len(text)} bytes")
        self.out(text)

    def c_show_run(self, a):
        st = ov.load()
        ex = load_extids()
        lines = ["!", f"hostname {NAME}", "!"]
        for vid, name in st["vlans"].items():
            if vid in self.dbvlans():
                lines += [f"vlan {vid}", f" name {name}", "!"]
        for pn in st["ports"]:
            lines += self.if_lines(pn, iosport(st, pn, ex)) + ["!"]
        text = "\n".join(lines) + "\nend\n"
        self.out("Building configuration...\n")
        self.out(f"Current configuration : {len(text)} bytes")
        self.out(text)

    def c_show_int_status(self, a):
        st = ov.load()
        ex = load_extids()
        self.out("Port      Name               Status       Vlan       Duplex  Speed Type")
        for pn in st["ports"]:
            d = iosport(st, pn, ex)
            vl = str(d["access"]) if d["mode"] == "access" else "trunk"
            stt = "connected" if link_up(pn) else "disabled"
            self.out(f"{pn:<9} {d['desc'][:18]:<18} {stt:<12} {vl:<10} a-full  a-10G veth")


def main():
    cmd = os.environ.get("SSH_ORIGINAL_COMMAND", "")
    if cmd.strip():
        cli = Cli(False)
        try:
            for part in cmd.replace(";", "\n").splitlines():
                cli.line(part)
        except EOFError:
            pass
        sys.stdout.flush()
        sys.exit(1 if cli.failed else 0)
    cli = Cli(True)
    while True:
        sys.stdout.write(cli.prompt())
        sys.stdout.flush()
        raw = sys.stdin.readline()
        if not raw:
            break
        raw = raw.replace("\r", "").replace("\x1a", "end")
        try:
            cli.line(raw.rstrip("\n"))
        except EOFError:
            break
        sys.stdout.flush()
    sys.exit(0)


if __name__ == "__main__":
    main()
