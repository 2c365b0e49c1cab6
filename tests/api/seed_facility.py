"""The seed scenario's API side, from Python's stock xmlrpc.client (tests/facility.rs drives it
step by step, between which it looks at hypervisors and switches):

  prepare               acme: one L2EX network, two VMs (DISK1 30 GB, NET1 on it);
                        globex: one L2EX network, one VM. Prints the ids as JSON.
  power_on KEY VM...    powerOnVm each VM, poll getRequestIdInfo until succeeded, check
                        getVmStatus; prints {vm: requestId}.
  power_off KEY VM...   powerOffVm (force=False) the same way.
  status KEY VM         prints getVmStatus as JSON.
  start KEY VM          powerOnVm without waiting; prints the requestId.
  stop KEY VM           powerOffVm (ACPI first) without waiting; prints the requestId.
  reset KEY VM          resetVm and wait until it succeeded.
  wait KEY RID          polls getRequestIdInfo until terminal; fails unless it succeeded.

For tests/restore.rs (images):
  disk_vm KEY           a VM with a 30 GB DISK1 (sparse), nothing installed, and NET1 on a new
                        L2EX network; prints its id.
  restore KEY VM IMAGE  restoreImage without waiting; prints the requestId.
  watch KEY RID         polls getRequestIdInfo until terminal (whatever the outcome), keeping
                        each distinct `progress` seen while it ran; prints
                        {"info": RequestInfo, "progress": [progress...]}.
  vm_info KEY VM        prints getVmInfo's vm as JSON.
  init KEY VM METHOD JSON   an Init* method with the arguments in JSON (a "content" string is
                        sent as base64 of its UTF-8 bytes, a "contentHex" as base64 of those
                        bytes), polled until terminal; prints the RequestInfo as JSON (or
                        {"fault": code, "message": text}).

For bench/power_on.rs:
  prepare_many KEY N    one L2EX network and N VMs on it (DISK1, NET1); prints the VM ids.
  timed_on KEY VM       powerOnVm, polls every 2 ms; prints the seconds until it succeeded.
  off KEY VM            powerOffVm(force) and wait.
  fairness KEY_A VMS_A KEY_B VM_B   A's power-ons and B's one, each from its own thread,
                        released at once; prints when each finished (seconds).
"""
import json
import sys
import threading
import time
import xmlrpc.client

from haas import Client, wait_request


def prepare():
    out = {}
    for name in ("acme", "globex"):
        c = Client(name)
        net = c.allocateNetwork(networkType="L2EX")["networkId"]
        vms = []
        for _ in range(2 if name == "acme" else 1):
            vm = c.allocateVm(vmType="V10")["vmId"]
            vol = c.allocateVolume(sizeGB=30)["volumeId"]
            c.attachVolume(vmId=vm, volumeId=vol, device="DISK1")
            mac = c.attachNetwork(vmId=vm, networkId=net, device="NET1")["macAddress"]
            vms.append({"vmId": vm, "volumeId": vol, "mac": mac})
        out[name] = {"networkId": net, "vms": vms}
    print(json.dumps(out))


def prepare_many(key, n):
    c = Client(key)
    net = c.allocateNetwork(networkType="L2EX")["networkId"]
    vms = []
    for _ in range(n):
        vm = c.allocateVm(vmType="V10")["vmId"]
        vol = c.allocateVolume(sizeGB=30)["volumeId"]
        c.attachVolume(vmId=vm, volumeId=vol, device="DISK1")
        c.attachNetwork(vmId=vm, networkId=net, device="NET1")
        vms.append(vm)
    print(json.dumps(vms))


def finish(c, rid, poll=0.002):
    while True:
        info = c.getRequestIdInfo(requestId=rid)["request"]
        if info["status"] in ("succeeded", "failed", "canceled"):
            assert info["status"] == "succeeded", info
            return
        time.sleep(poll)


def timed_on(key, vm):
    c = Client(key)
    t0 = time.perf_counter()
    finish(c, c.powerOnVm(vmId=vm)["requestId"])
    print(f"{time.perf_counter() - t0:.4f}")


def fairness(key_a, vms_a, key_b, vm_b):
    """Every power-on from its own thread, all released at once."""
    calls = [(Client(key_a), vm) for vm in vms_a] + [(Client(key_b), vm_b)]
    gate = threading.Barrier(len(calls))
    done = {}
    t0 = time.perf_counter()

    def one(c, vm):
        gate.wait()
        finish(c, c.powerOnVm(vmId=vm)["requestId"], poll=0.01)
        done[vm] = time.perf_counter() - t0

    threads = [threading.Thread(target=one, args=call) for call in calls]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(done) == len(calls), done
    print(json.dumps({"a": sorted(done[vm] for vm in vms_a), "b": done[vm_b]}))


def power(key, method, vms, expect):
    c = Client(key)
    started = {vm: getattr(c, method)(vmId=vm)["requestId"] for vm in vms}
    for vm, rid in started.items():
        info = wait_request(c, rid, timeout=120)
        assert info["status"] == "succeeded", info
        st = c.getVmStatus(vmId=vm)
        assert st["state"] == expect, st
    print(json.dumps(started))


def disk_vm(key):
    c = Client(key)
    vm = c.allocateVm(vmType="V10")["vmId"]
    vol = c.allocateVolume(sizeGB=30)["volumeId"]
    c.attachVolume(vmId=vm, volumeId=vol, device="DISK1")
    net = c.allocateNetwork(networkType="L2EX")["networkId"]
    c.attachNetwork(vmId=vm, networkId=net, device="NET1")
    print(vm)


def init(key, vm, method, args):
    c = Client(key)
    args = json.loads(args)
    if "content" in args:
        args["content"] = xmlrpc.client.Binary(args["content"].encode())
    if "contentHex" in args:
        args["content"] = xmlrpc.client.Binary(bytes.fromhex(args.pop("contentHex")))
    try:
        rid = getattr(c, method)(vmId=vm, **args)["requestId"]
    except xmlrpc.client.Fault as f:
        print(json.dumps({"fault": f.faultCode, "message": f.faultString}))
        return
    print(json.dumps(wait_request(c, rid, timeout=300)))


def watch(key, rid, timeout=600):
    c = Client(key)
    seen = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        info = c.getRequestIdInfo(requestId=rid)["request"]
        p = info.get("progress")
        if p is not None and (not seen or seen[-1] != p):
            seen.append(p)
        if info["status"] in ("succeeded", "failed", "canceled"):
            print(json.dumps({"info": info, "progress": seen}))
            return
        time.sleep(0.2)
    raise AssertionError(f"request {rid} not terminal after {timeout}s: {info}")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "prepare":
        prepare()
    elif cmd == "power_on":
        power(args[0], "powerOnVm", args[1:], "running")
    elif cmd == "power_off":
        power(args[0], "powerOffVm", args[1:], "stopped")
    elif cmd == "prepare_many":
        prepare_many(args[0], int(args[1]))
    elif cmd == "timed_on":
        timed_on(args[0], args[1])
    elif cmd == "off":
        c = Client(args[0])
        finish(c, c.powerOffVm(vmId=args[1], force=True)["requestId"], poll=0.01)
    elif cmd == "fairness":
        fairness(args[0], args[1].split(","), args[2], args[3])
    elif cmd == "start":
        print(Client(args[0]).powerOnVm(vmId=args[1])["requestId"])
    elif cmd == "reset":
        c = Client(args[0])
        finish(c, c.resetVm(vmId=args[1])["requestId"], poll=0.05)
    elif cmd == "stop":
        print(Client(args[0]).powerOffVm(vmId=args[1])["requestId"])
    elif cmd == "wait":
        info = wait_request(Client(args[0]), args[1], timeout=120)
        assert info["status"] == "succeeded", info
        print(json.dumps(info))
    elif cmd == "disk_vm":
        disk_vm(args[0])
    elif cmd == "restore":
        print(Client(args[0]).restoreImage(vmId=args[1], imageId=args[2])["requestId"])
    elif cmd == "watch":
        watch(args[0], args[1])
    elif cmd == "init":
        init(args[0], args[1], args[2], args[3])
    elif cmd == "vm_info":
        print(json.dumps(Client(args[0]).getVmInfo(vmId=args[1])["vm"]))
    elif cmd == "status":
        print(json.dumps(Client(args[0]).getVmStatus(vmId=args[1])))
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
