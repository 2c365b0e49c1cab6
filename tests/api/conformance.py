#!/usr/bin/env python3
"""HaaS API conformance (HAAS-API.md), with Python's stock xmlrpc.client as the client.

Every method's happy path and documented faults, the VM state machine through a facility
(tests/api/facility.py), pagination, cross-customer isolation on every method that takes an
id, quotas, clientToken replay and conflict, and scopes. Run by tests/api.rs; a name on the
command line runs only that check.
"""
import base64
import hashlib
import hmac
import http.client
import time
import urllib.parse
import xmlrpc.client

from haas import IMAGE, URL, Client, check, facility, fault, key, ready_vm, run, wait_request

ALL = """getVmList getVmInfo getVmStatus allocateVm deallocateVm powerOnVm powerOffVm resetVm
restoreImage changeVmType changeVmArchitecture getNetworkList getNetworkInfo allocateNetwork
deallocateNetwork allocateIpAddress deallocateIpAddress attachNetwork detachNetwork
assignIpAddress removeIpAddress getVolumeList getVolumeInfo allocateVolume deallocateVolume
attachVolume detachVolume setIpAddress unsetIpAddress setNetwork setPassword setSshKey
setIptables setSshdConfig writeFile getImageList getImageInfo getRequestIdInfo
getResourceComment setResourceComment getQuota""".split()

acme = Client("acme_full")
globex = Client("globex_full")
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl t@x"
HASH = "$6$saltsalt$" + "a" * 86


def raw_call(body: bytes, path="/RPC2", method="POST"):
    u = urllib.parse.urlparse(URL)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request(method, path, body=body, headers={"Content-Type": "text/xml"})
    resp = conn.getresponse()
    return resp.status, resp.read().decode("utf-8", "replace")


@check
def introspection_lists_every_method_and_no_multicall():
    p = xmlrpc.client.ServerProxy(URL)
    names = p.system.listMethods()
    assert len(ALL) == 41
    for m in ALL + ["system.listMethods", "system.methodHelp", "system.methodSignature"]:
        assert m in names, m
    assert "system.multicall" not in names
    assert "vmId" in p.system.methodHelp("getVmInfo")
    assert p.system.methodSignature("getVmInfo")[0] == ["struct", "string", "struct"]
    fault(-32601, lambda: p.system.multicall([{"methodName": "getVmList", "params": [key("acme_full"), {}]}]))
    fault(-32601, lambda: p.noSuchMethod(key("acme_full"), {}))


@check
def every_response_has_a_request_id_and_no_nil():
    r = acme.getVmList()
    rid = r["requestId"]
    assert len(rid) == 44 and rid.count("-") == 4, rid
    body = xmlrpc.client.dumps((key("acme_full"), {}), "getQuota").encode()
    status, text = raw_call(body)
    assert status == 200 and "<nil" not in text and "requestId" in text, text
    info = wait_request(acme, rid)
    assert info["status"] == "succeeded" and info["method"] == "getVmList", info
    assert info["finishedAt"].endswith("Z") and info["startedAt"] == "", info


@check
def authentication_failures_are_fault_100():
    fault(100, Client(auth="").getVmList)
    fault(100, Client(auth="AKNOSUCHKEY:secret").getVmList)
    kid = key("acme_full").split(":")[0]
    fault(100, Client(auth=kid + ":wrong").getVmList)
    fault(100, lambda: xmlrpc.client.ServerProxy(URL).getVmList())


class SignedTransport(xmlrpc.client.Transport):
    """Mode B: the secret never travels; each request carries an HMAC over path, expiry and body."""

    def __init__(self, kid, secret, expire_in=300, sign_body=None):
        super().__init__()
        self.kid, self.secret, self.expire_in, self.sign_body = kid, secret, expire_in, sign_body

    def send_request(self, host, handler, request_body, debug):
        expire = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + self.expire_in))
        body = self.sign_body if self.sign_body is not None else request_body
        msg = f"POST\n{handler}\n{expire}\n{hashlib.sha256(body).hexdigest()}"
        sig = base64.b64encode(hmac.new(self.secret.encode(), msg.encode(), hashlib.sha256).digest()).decode()
        self.signature = [("X-Haas-Expire", expire), ("X-Haas-SignatureVersion", "2"),
                          ("Authorization", f"HAAS {self.kid}:{sig}")]
        return super().send_request(host, handler, request_body, debug)

    def send_headers(self, connection, headers):
        super().send_headers(connection, headers + self.signature)


@check
def signed_requests_authenticate_without_sending_the_secret():
    kid, secret = key("acme_full").split(":")
    signed = xmlrpc.client.ServerProxy(URL, transport=SignedTransport(kid, secret))
    vm = signed.allocateVm("", {"vmType": "V10"})["vmId"]
    assert signed.getVmInfo("", {"vmId": vm})["vm"]["vmId"] == vm
    for transport in (SignedTransport(kid, "nhns_" + "0" * 64), SignedTransport(kid, secret, expire_in=-60),
                      SignedTransport(kid, secret, expire_in=3 * 86400), SignedTransport(kid, secret, sign_body=b"x"),
                      SignedTransport("AKNOSUCHKEY", secret)):
        fault(100, lambda: xmlrpc.client.ServerProxy(URL, transport=transport).getVmList("", {}))
    signed.deallocateVm("", {"vmId": vm})


@check
def scopes_limit_what_a_key_may_call():
    read, operate = Client("acme_read"), Client("acme_operate")
    assert read.getVmList()["totalCount"] >= 0
    fault(200, read.allocateVm, vmType="V10")
    fault(200, operate.allocateVm, vmType="V10")
    vm = acme.allocateVm(vmType="V10")["vmId"]
    fault(200, read.setResourceComment, resourceId=vm, comment="x")
    assert operate.setResourceComment(resourceId=vm, comment="by operate")["comment"] == "by operate"
    fault(200, operate.deallocateVm, vmId=vm)
    acme.deallocateVm(vmId=vm)


@check
def bad_arguments_are_fault_minus_32602_naming_the_member():
    assert "vmIdd" in fault(-32602, acme.getVmInfo, vmIdd="vm-1")
    assert "vmId" in fault(-32602, acme.getVmInfo)
    assert "vmType" in fault(-32602, acme.allocateVm, vmType=10)
    fault(-32602, lambda: acme.proxy.getVmList(key("acme_full"), {}, "extra"))
    fault(-32602, lambda: acme.proxy.getVmList(key("acme_full"), ["not", "a", "struct"]))
    fault(-32602, acme.getVmList, limit=0)
    fault(-32602, acme.getVmList, limit=1001)
    fault(-32602, acme.getVmList, offset=-1)


@check
def vm_allocation_and_sync_changes():
    r = acme.allocateVm(vmType="V20", comment="web1")
    vm = r["vmId"]
    assert vm.startswith("vm-") and r["power"] == "off" and r["state"] == "stopped", r
    assert r["architecture"] == "x86_64"
    info = acme.getVmInfo(vmId=vm)["vm"]
    assert (info["cpu"], info["memoryMB"], info["comment"]) == (2, 2048, "web1"), info
    assert info["disks"] == [] and info["nics"] == [] and info["imageId"] == "" and info["currentRequestId"] == ""
    st = acme.getVmStatus(vmId=vm)
    assert (st["power"], st["state"], st["command"]) == ("off", "stopped", {}), st
    assert "V10" in fault(300, acme.allocateVm, vmType="V999")
    fault(300, acme.allocateVm, vmType="V10", architecture="arm64")
    c = acme.changeVmType(vmId=vm, vmType="V40")
    assert (c["previousVmType"], c["vmType"]) == ("V20", "V40")
    fault(300, acme.changeVmType, vmId=vm, vmType="V7")
    a = acme.changeVmArchitecture(vmId=vm, architecture="i386")
    assert (a["previousArchitecture"], a["architecture"]) == ("x86_64", "i386")
    acme.deallocateVm(vmId=vm)
    fault(400, acme.getVmInfo, vmId=vm)


@check
def quotas_are_enforced_with_fault_600():
    # globex: vms = 5, vcpu = 16.
    vms = [globex.allocateVm(vmType="V10")["vmId"] for _ in range(5)]
    assert "vms" in fault(600, globex.allocateVm, vmType="V10")
    q = globex.getQuota()
    assert q["limits"]["vms"] == 5 and q["usage"]["vms"] == 5, q
    assert q["usage"]["vcpu"] == 5 and q["limits"]["networks"]["L3SH"] == 1, q
    assert q["rate"]["perSecond"] > 0
    globex.deallocateVm(vmId=vms.pop())
    assert "vcpu" in fault(600, globex.allocateVm, vmType="V160")
    assert "vcpu" in fault(600, globex.changeVmType, vmId=vms[0], vmType="V160")
    for vm in vms:
        globex.deallocateVm(vmId=vm)
    assert globex.getQuota()["usage"]["vms"] == 0


@check
def vm_list_pages_with_offset_and_limit():
    vms = [acme.allocateVm(vmType="V10", comment=f"page{i}")["vmId"] for i in range(5)]
    first = acme.getVmList(limit=2)
    assert first["totalCount"] == 5 and [v["vmId"] for v in first["vmList"]] == vms[:2], first
    rest = acme.getVmList(offset=2, limit=10)
    assert [v["vmId"] for v in rest["vmList"]] == vms[2:]
    s = rest["vmList"][0]
    assert set(s) == {"vmId", "vmType", "architecture", "power", "state", "comment"}, s
    assert acme.getVmList(state="running")["totalCount"] == 0
    fault(300, acme.getVmList, state="flying")
    for vm in vms:
        acme.deallocateVm(vmId=vm)


@check
def client_token_replays_and_conflicts():
    a = acme.allocateVm(vmType="V10", clientToken="tok-1")
    b = acme.allocateVm(vmType="V10", clientToken="tok-1")
    assert a == b, (a, b)
    assert acme.getVmList()["totalCount"] == 1
    assert "tok-1" in fault(510, acme.allocateVm, vmType="V20", clientToken="tok-1")
    v1 = acme.allocateVolume(sizeGB=30, clientToken="tok-1")  # per method
    assert acme.allocateVolume(sizeGB=30, clientToken="tok-1") == v1
    acme.deallocateVolume(volumeId=v1["volumeId"])
    acme.deallocateVm(vmId=a["vmId"])


@check
def volumes_allocate_attach_detach():
    vol = acme.allocateVolume(sizeGB=100, comment="data")
    vid = vol["volumeId"]
    assert vid.startswith("vol-") and vol["sizeGB"] == 100
    fault(300, acme.allocateVolume, sizeGB=50)
    vm = acme.allocateVm(vmType="V10")["vmId"]
    other = acme.allocateVm(vmType="V10")["vmId"]
    assert acme.attachVolume(vmId=vm, volumeId=vid, device="DISK2")["device"] == "DISK2"
    vol2 = acme.allocateVolume(sizeGB=30)["volumeId"]
    fault(510, acme.attachVolume, vmId=vm, volumeId=vol2, device="DISK2")
    fault(500, acme.attachVolume, vmId=other, volumeId=vid, device="DISK1")
    fault(300, acme.attachVolume, vmId=vm, volumeId=vol2, device="DISK3")
    info = acme.getVolumeInfo(volumeId=vid)["volume"]
    assert (info["vmId"], info["device"], info["comment"]) == (vm, "DISK2", "data"), info
    lst = acme.getVolumeList(limit=1)
    assert lst["totalCount"] == 2 and len(lst["volumeList"]) == 1
    fault(500, acme.deallocateVolume, volumeId=vid)
    assert acme.getVmInfo(vmId=vm)["vm"]["disks"] == [{"device": "DISK2", "volumeId": vid, "sizeGB": 100}]
    assert acme.detachVolume(vmId=vm, device="DISK2")["volumeId"] == vid
    fault(400, acme.detachVolume, vmId=vm, device="DISK2")
    for v in (vid, vol2):
        acme.deallocateVolume(volumeId=v)
    for v in (vm, other):
        acme.deallocateVm(vmId=v)


@check
def networks_take_vlans_prefixes_and_shared_addresses():
    l2 = acme.allocateNetwork(networkType="L2EX", comment="backend")
    assert l2["networkId"].startswith("net-") and l2["subnet"] == "" and l2["gateway"] == ""
    l3 = acme.allocateNetwork(networkType="L3EX")
    assert l3["subnet"].startswith("198.51.100.") and l3["subnet"].endswith("/29"), l3
    l3b = acme.allocateNetwork(networkType="L3EX", prefixLength=28)
    assert l3b["subnet"].endswith("/28") and l3b["subnet"] != l3["subnet"]
    fault(300, acme.allocateNetwork, networkType="L2EX", prefixLength=24)
    fault(300, acme.allocateNetwork, networkType="L9")
    sh = acme.allocateNetwork(networkType="L3SH")
    assert sh["subnet"] == "203.0.113.0/24" and sh["gateway"] == "203.0.113.1", sh
    assert "L3SH" in fault(600, acme.allocateNetwork, networkType="L3SH")
    ips = acme.allocateIpAddress(networkId=sh["networkId"], count=2)["ipAddresses"]
    assert ips == ["203.0.113.10", "203.0.113.11"], ips
    assert acme.allocateIpAddress(networkId=sh["networkId"], ipAddress="203.0.113.99")["ipAddresses"] == ["203.0.113.99"]
    fault(510, acme.allocateIpAddress, networkId=sh["networkId"], ipAddress="203.0.113.99")
    fault(300, acme.allocateIpAddress, networkId=sh["networkId"], ipAddress="192.0.2.1")
    assert "NotSupportedForNetworkType" in fault(300, acme.allocateIpAddress, networkId=l2["networkId"])
    info = acme.getNetworkInfo(networkId=l3["networkId"])["network"]
    assert info["prefixLength"] == 29 and info["gateway"] != "" and info["attachments"] == [], info
    lst = acme.getNetworkList(networkType="L3EX")
    assert lst["totalCount"] == 2 and {n["networkId"] for n in lst["networkList"]} == {l3["networkId"], l3b["networkId"]}

    vm = acme.allocateVm(vmType="V10")["vmId"]
    nic = acme.attachNetwork(vmId=vm, networkId=sh["networkId"], device="NET1")
    mac = nic["macAddress"]
    assert mac.startswith("02:") and len(mac) == 17, mac
    fault(510, acme.attachNetwork, vmId=vm, networkId=l2["networkId"], device="NET1")
    fault(510, acme.attachNetwork, vmId=vm, networkId=sh["networkId"], device="NET2")
    acme.attachNetwork(vmId=vm, networkId=l2["networkId"], device="NET2")
    assert acme.assignIpAddress(vmId=vm, device="NET1", ipAddress=ips[0])["ipAddress"] == ips[0]
    fault(510, acme.assignIpAddress, vmId=vm, device="NET1", ipAddress=ips[0])
    fault(300, acme.assignIpAddress, vmId=vm, device="NET2", ipAddress=ips[1])
    fault(300, acme.assignIpAddress, vmId=vm, device="NET1", ipAddress="203.0.113.200")
    nics = acme.getVmInfo(vmId=vm)["vm"]["nics"]
    assert nics[0] == {"device": "NET1", "networkId": sh["networkId"], "networkType": "L3SH",
                       "macAddress": mac, "ipAddresses": [ips[0]]}, nics
    shinfo = acme.getNetworkInfo(networkId=sh["networkId"])["network"]
    assert {"ipAddress": ips[0], "vmId": vm, "device": "NET1"} in shinfo["ipAddresses"], shinfo
    assert shinfo["attachments"] == [{"vmId": vm, "device": "NET1"}]
    fault(500, acme.deallocateIpAddress, networkId=sh["networkId"], ipAddress=ips[0])
    fault(500, acme.deallocateNetwork, networkId=l2["networkId"])
    assert acme.removeIpAddress(vmId=vm, device="NET1", ipAddress=ips[0])["ipAddress"] == ips[0]
    fault(400, acme.removeIpAddress, vmId=vm, device="NET1", ipAddress=ips[0])
    acme.assignIpAddress(vmId=vm, device="NET1", ipAddress=ips[1])
    assert acme.detachNetwork(vmId=vm, device="NET1")["networkId"] == sh["networkId"]
    fault(400, acme.detachNetwork, vmId=vm, device="NET1")
    # deallocateVm detaches networks; addresses and networks stay allocated.
    acme.deallocateVm(vmId=vm)
    assert acme.getNetworkInfo(networkId=l2["networkId"])["network"]["attachments"] == []
    fault(500, acme.deallocateNetwork, networkId=sh["networkId"])
    for ip in ips + ["203.0.113.99"]:
        assert acme.deallocateIpAddress(networkId=sh["networkId"], ipAddress=ip)["ipAddress"] == ip
    fault(400, acme.deallocateIpAddress, networkId=sh["networkId"], ipAddress=ips[0])
    for n in (l2, l3, l3b, sh):
        acme.deallocateNetwork(networkId=n["networkId"])
    assert acme.getNetworkList()["totalCount"] == 0


@check
def images_and_comments():
    imgs = acme.getImageList()
    assert imgs["totalCount"] == 1
    img = imgs["imageList"][0]
    assert img == {"imageId": IMAGE, "name": "centos54-64", "os": "CentOS", "osVersion": "5.4",
                   "architecture": "x86_64", "minDiskGB": 30, "initSupported": True}, img
    info = acme.getImageInfo(imageId=IMAGE)["image"]
    assert info["description"].startswith("CentOS") and info["createdAt"].endswith("Z")
    fault(400, acme.getImageInfo, imageId="img-nope")
    vol = acme.allocateVolume(sizeGB=30)["volumeId"]
    acme.setResourceComment(resourceId=vol, comment="ünïcode ok")
    assert acme.getResourceComment(resourceId=vol) ["comment"] == "ünïcode ok"
    fault(300, acme.setResourceComment, resourceId=vol, comment="x" * 256)
    fault(400, acme.getResourceComment, resourceId="foo-1")
    acme.deallocateVolume(volumeId=vol)


@check
def vm_state_machine_through_the_facility():
    vm = acme.allocateVm(vmType="V10")["vmId"]
    fault(500, acme.powerOnVm, vmId=vm)  # no DISK1
    fault(500, acme.restoreImage, vmId=vm, imageId=IMAGE)  # no DISK1
    vol = acme.allocateVolume(sizeGB=30)["volumeId"]
    acme.attachVolume(vmId=vm, volumeId=vol, device="DISK1")
    fault(500, acme.powerOnVm, vmId=vm)  # no image yet
    fault(500, acme.setPassword, vmId=vm, passwordHash=HASH)  # no image yet
    fault(400, acme.restoreImage, vmId=vm, imageId="img-nope")
    fault(300, acme.restoreImage, vmId=vm, imageId=IMAGE, device="DISK2")
    r = acme.restoreImage(vmId=vm, imageId=IMAGE)
    assert (r["previousState"], r["currentState"], r["imageId"]) == ("stopped", "installing", IMAGE), r
    st = acme.getVmStatus(vmId=vm)
    assert st["command"]["requestId"] == r["requestId"] and st["command"]["method"] == "restoreImage", st
    info = wait_request(acme, r["requestId"])
    assert info["status"] == "succeeded" and info["result"]["state"] == "stopped", info
    assert info["resourceType"] == "vm" and info["resourceId"] == vm and info["startedAt"] != "", info
    v = acme.getVmInfo(vmId=vm)["vm"]
    assert v["imageId"] == IMAGE and v["state"] == "stopped" and v["currentRequestId"] == "", v
    assert acme.getVolumeInfo(volumeId=vol)["volume"]["imageId"] == IMAGE

    on = acme.powerOnVm(vmId=vm)
    assert (on["previousState"], on["currentState"]) == ("stopped", "starting"), on
    st = acme.getVmStatus(vmId=vm)
    assert st["power"] == "on" and st["command"]["status"] in ("queued", "running"), st
    assert wait_request(acme, on["requestId"])["status"] == "succeeded"
    assert acme.getVmStatus(vmId=vm)["state"] == "running"
    fault(500, acme.powerOnVm, vmId=vm)
    fault(500, acme.attachVolume, vmId=vm, volumeId=acme.allocateVolume(sizeGB=30)["volumeId"], device="DISK2")
    fault(500, acme.setSshKey, vmId=vm, publicKeys=[SSH_KEY])
    fault(500, acme.deallocateVm, vmId=vm)
    fault(500, acme.changeVmType, vmId=vm, vmType="V20")
    rs = acme.resetVm(vmId=vm)
    assert rs["currentState"] == "resetting"
    fault(700, acme.powerOffVm, vmId=vm)  # one request per VM
    assert wait_request(acme, rs["requestId"])["status"] == "succeeded"
    off = acme.powerOffVm(vmId=vm, force=True)
    assert (off["previousState"], off["currentState"]) == ("running", "stopping")
    assert wait_request(acme, off["requestId"])["status"] == "succeeded"
    assert acme.getVmStatus(vmId=vm)["state"] == "stopped"
    fault(500, acme.powerOffVm, vmId=vm)
    fault(500, acme.resetVm, vmId=vm)


@check
def init_calls_validate_and_configure_offline():
    vm = ready_vm(acme)
    net = acme.allocateNetwork(networkType="L3EX")
    acme.attachNetwork(vmId=vm, networkId=net["networkId"], device="NET1")
    base = net["subnet"].split("/")[0].rsplit(".", 1)
    inside = f"{base[0]}.{int(base[1]) + 2}"
    calls = [
        ("setIpAddress", dict(device="NET1", ipAddress=inside, prefixLength=29, gateway=net["gateway"])),
        ("setIpAddress", dict(device="NET1", ipAddress=inside, netmask="255.255.255.248")),
        ("unsetIpAddress", dict(device="NET1")),
        ("setNetwork", dict(hostname="web1.example.com", defaultGateway=net["gateway"], gatewayDevice="NET1",
                            nameservers=["192.0.2.53"], searchDomains=["example.com"])),
        ("setPassword", dict(passwordHash=HASH)),
        ("setSshKey", dict(publicKeys=[SSH_KEY], append=True)),
        ("setIptables", dict(rules="*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n")),
        ("setSshdConfig", dict(permitRootLogin="without-password", passwordAuthentication=False, port=22)),
        ("writeFile", dict(path="/etc/hosts", content=xmlrpc.client.Binary(b"127.0.0.1 localhost\n"), mode=420)),
    ]
    for method, args in calls:
        r = getattr(acme, method)(vmId=vm, **args)
        assert (r["previousState"], r["currentState"]) == ("stopped", "configuring"), (method, r)
        fault(700, acme.powerOnVm, vmId=vm)
        info = wait_request(acme, r["requestId"])
        assert info["status"] == "succeeded" and info["method"] == method, info
        assert acme.getVmStatus(vmId=vm)["state"] == "stopped"
    bad = [
        ("setIpAddress", dict(device="NET1", ipAddress="192.0.2.7", prefixLength=24)),
        ("setIpAddress", dict(device="NET2", ipAddress=inside, prefixLength=29)),
        ("setIpAddress", dict(device="NET1", ipAddress="not-an-ip", prefixLength=29)),
        ("setNetwork", dict(hostname="bad_host!")),
        ("setNetwork", dict(nameservers=["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"])),
        ("setPassword", dict(password="hunter2")),
        ("setPassword", dict(passwordHash="plain")),
        ("setPassword", dict(passwordHash=HASH, user="Robert'); DROP")),
        ("setSshKey", dict(publicKeys=["ssh-rsa AAAAnotakey"])),
        ("setIptables", dict(rules="rm -rf /\n")),
        ("setSshdConfig", dict(permitRootLogin="sometimes")),
        ("setSshdConfig", dict(port=70000)),
        ("writeFile", dict(path="/etc/shadow", content=xmlrpc.client.Binary(b"x"))),
        ("writeFile", dict(path="/etc/hosts", content=xmlrpc.client.Binary(b"x" * 65537))),
    ]
    for method, args in bad:
        text = fault(300, getattr(acme, method), vmId=vm, **args)
        assert text.startswith("ParameterError: "), text
    assert "PathNotAllowed" in fault(300, acme.writeFile, vmId=vm, path="/root/x", content=xmlrpc.client.Binary(b""))
    assert "hunter2" not in fault(300, acme.setPassword, vmId=vm, password="hunter2")


@check
def power_on_places_vms_of_one_network_together_and_power_off_frees_the_slot():
    net = acme.allocateNetwork(networkType="L2EX")["networkId"]
    vms = [ready_vm(acme) for _ in range(2)]
    for vm in vms:
        acme.attachNetwork(vmId=vm, networkId=net, device="NET1")
    rids = [acme.powerOnVm(vmId=vm)["requestId"] for vm in vms]
    for rid in rids:
        assert wait_request(acme, rid)["status"] == "succeeded"
    stats = facility().getStats()
    hosts = {stats[rid]["hypervisor"] for rid in rids}
    assert len(hosts) == 1 and "" not in hosts, hosts  # same VLAN, same host (the seed's rule)
    host = hosts.pop()
    for vm in vms:
        assert host not in repr(acme.getVmInfo(vmId=vm)), "slots are never shown to customers"
    off = acme.powerOffVm(vmId=vms[0])
    assert wait_request(acme, off["requestId"])["status"] == "succeeded"
    again = acme.powerOnVm(vmId=vms[0])["requestId"]
    assert wait_request(acme, again)["status"] == "succeeded"
    assert facility().getStats()[again]["hypervisor"] == host
    for vm in vms:
        off = acme.powerOffVm(vmId=vm)
        assert wait_request(acme, off["requestId"])["status"] == "succeeded"


PLAINTEXT = "nhn-Plaintext-Marker-42"


@check
def a_plaintext_password_is_hashed_before_anything_stores_it():
    import subprocess
    vm = ready_vm(acme)
    r = acme.setPassword(vmId=vm, password=PLAINTEXT, clientToken="pw-1")
    assert r["currentState"] == "configuring", r
    assert acme.setPassword(vmId=vm, password=PLAINTEXT, clientToken="pw-1") == r  # replay matches
    assert wait_request(acme, r["requestId"])["status"] == "succeeded"
    got = facility().getArgs(r["requestId"])
    assert "password" not in got and PLAINTEXT not in repr(got), got
    h = got["passwordHash"]
    salt = h.split("$")[2]
    # The facility writes it to /etc/shadow: it must verify as the customer's password.
    out = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], input=PLAINTEXT,
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == h, (out, h)
    text = fault(510, acme.setPassword, vmId=vm, password=PLAINTEXT + "x", clientToken="pw-1")
    assert PLAINTEXT not in text, text
    assert PLAINTEXT not in fault(-32602, acme.setPassword, vmId=vm, password=PLAINTEXT, passwordHash=HASH)


@check
def a_facility_failure_returns_the_vm_to_its_previous_state():
    vm = ready_vm(acme)
    r = acme.setIptables(vmId=vm, rules="# FAIL-IN-FACILITY\n*filter\nCOMMIT\n")
    info = wait_request(acme, r["requestId"])
    assert info["status"] == "failed" and info["errorType"] == "GuestError", info
    assert acme.getVmStatus(vmId=vm)["state"] == "stopped"


@check
def power_on_is_idempotent_with_a_client_token():
    vm = ready_vm(acme)
    a = acme.powerOnVm(vmId=vm, clientToken="boot-1")
    b = acme.powerOnVm(vmId=vm, clientToken="boot-1")
    assert a == b, (a, b)
    wait_request(acme, a["requestId"])
    assert acme.powerOnVm(vmId=vm, clientToken="boot-1") == a
    fault(500, acme.powerOnVm, vmId=vm, clientToken="boot-2")


@check
def another_customers_ids_are_not_found_on_every_method():
    vm = ready_vm(acme)
    vol = acme.allocateVolume(sizeGB=30)["volumeId"]
    acme.attachVolume(vmId=vm, volumeId=vol, device="DISK2")
    free_vol = acme.allocateVolume(sizeGB=30)["volumeId"]
    sh = acme.allocateNetwork(networkType="L3SH")["networkId"]
    ip = acme.allocateIpAddress(networkId=sh)["ipAddresses"][0]
    acme.attachNetwork(vmId=vm, networkId=sh, device="NET1")
    acme.assignIpAddress(vmId=vm, device="NET1", ipAddress=ip)
    rid = acme.getVmList()["requestId"]
    # globex's own objects, so that only the foreign id can be the reason for NotFound.
    gvm = globex.allocateVm(vmType="V10")["vmId"]
    gvol = globex.allocateVolume(sizeGB=30)["volumeId"]
    gnet = globex.allocateNetwork(networkType="L2EX")["networkId"]
    b64 = xmlrpc.client.Binary(b"x")
    cases = [
        ("getVmInfo", dict(vmId=vm)), ("getVmStatus", dict(vmId=vm)), ("deallocateVm", dict(vmId=vm)),
        ("powerOnVm", dict(vmId=vm)), ("powerOffVm", dict(vmId=vm)), ("resetVm", dict(vmId=vm)),
        ("restoreImage", dict(vmId=vm, imageId=IMAGE)), ("changeVmType", dict(vmId=vm, vmType="V10")),
        ("changeVmArchitecture", dict(vmId=vm, architecture="x86_64")),
        ("getNetworkInfo", dict(networkId=sh)), ("deallocateNetwork", dict(networkId=sh)),
        ("allocateIpAddress", dict(networkId=sh)), ("deallocateIpAddress", dict(networkId=sh, ipAddress=ip)),
        ("attachNetwork", dict(vmId=vm, networkId=gnet, device="NET2")),
        ("attachNetwork", dict(vmId=gvm, networkId=sh, device="NET2")),
        ("detachNetwork", dict(vmId=vm, device="NET1")),
        ("assignIpAddress", dict(vmId=vm, device="NET1", ipAddress=ip)),
        ("removeIpAddress", dict(vmId=vm, device="NET1", ipAddress=ip)),
        ("getVolumeInfo", dict(volumeId=vol)), ("deallocateVolume", dict(volumeId=free_vol)),
        ("attachVolume", dict(vmId=gvm, volumeId=free_vol, device="DISK1")),
        ("attachVolume", dict(vmId=vm, volumeId=gvol, device="DISK1")),
        ("detachVolume", dict(vmId=vm, device="DISK2")),
        ("setIpAddress", dict(vmId=vm, device="NET1", ipAddress=ip, prefixLength=24)),
        ("unsetIpAddress", dict(vmId=vm, device="NET1")), ("setNetwork", dict(vmId=vm, hostname="h")),
        ("setPassword", dict(vmId=vm, passwordHash=HASH)), ("setSshKey", dict(vmId=vm, publicKeys=[SSH_KEY])),
        ("setIptables", dict(vmId=vm, rules="*filter\nCOMMIT\n")), ("setSshdConfig", dict(vmId=vm, port=22)),
        ("writeFile", dict(vmId=vm, path="/etc/hosts", content=b64)),
        ("getRequestIdInfo", dict(requestId=rid)),
        ("getResourceComment", dict(resourceId=vm)), ("getResourceComment", dict(resourceId=vol)),
        ("getResourceComment", dict(resourceId=sh)),
        ("setResourceComment", dict(resourceId=vm, comment="pwned")),
    ]
    covered = {m for m, _ in cases}
    takes_id = {m for m in ALL if m not in ("getVmList", "allocateVm", "getNetworkList", "allocateNetwork",
                                           "getVolumeList", "allocateVolume", "getImageList", "getImageInfo",
                                           "getQuota")}
    assert takes_id <= covered, takes_id - covered
    for method, args in cases:
        text = fault(400, getattr(globex, method), **args)
        assert text.startswith("NotFound: "), (method, text)
    # Nothing changed for acme.
    v = acme.getVmInfo(vmId=vm)["vm"]
    assert v["comment"] == "" and len(v["disks"]) == 2 and v["nics"][0]["ipAddresses"] == [ip], v


@check
def failed_calls_are_recorded_too():
    try:
        acme.getVmInfo(vmId="vm-nothere")
    except xmlrpc.client.Fault:
        pass
    # The fault carries no struct, so find the id in the HTTP header.
    body = xmlrpc.client.dumps((key("acme_full"), {"vmId": "vm-nothere"}), "getVmInfo").encode()
    u = urllib.parse.urlparse(URL)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request("POST", "/RPC2", body=body, headers={"Content-Type": "text/xml"})
    resp = conn.getresponse()
    rid = resp.getheader("X-Request-Id")
    assert resp.status == 200 and "<fault>" in resp.read().decode()
    info = wait_request(acme, rid)
    assert (info["status"], info["errorType"]) == ("failed", "NotFound"), info


if __name__ == "__main__":
    run()
